//! Command-line options and the one-line JSON records the run script
//! collects (no serde: a flat object of numbers and strings is enough).

use std::collections::HashMap;
use std::fmt::Write;
use std::net::SocketAddr;

pub struct Args {
    opts: HashMap<String, Vec<String>>,
    flags: Vec<String>,
}

impl Args {
    /// `--name value` pairs and bare `--flag`s; a value never starts with
    /// `--` in this program's usage.
    pub fn parse(args: &[String]) -> Args {
        let mut a = Args {
            opts: HashMap::new(),
            flags: Vec::new(),
        };
        let mut i = 0;
        while i < args.len() {
            let k = args[i].trim_start_matches('-').to_string();
            match args.get(i + 1) {
                Some(v) if !v.starts_with("--") => {
                    a.opts.entry(k).or_default().push(v.clone());
                    i += 2;
                }
                _ => {
                    a.flags.push(k);
                    i += 1;
                }
            }
        }
        a
    }

    pub fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }

    pub fn str(&self, k: &str) -> Option<&str> {
        self.opts.get(k).and_then(|v| v.last()).map(String::as_str)
    }

    pub fn all(&self, k: &str) -> &[String] {
        self.opts.get(k).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        match self.str(k) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| die(&format!("--{k}: not a number: {v}"))),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        let a = self
            .str("addr")
            .unwrap_or_else(|| die("--addr ADDR:PORT is required"));
        a.parse()
            .unwrap_or_else(|_| die(&format!("--addr: not ADDR:PORT: {a}")))
    }

    pub fn server_pid(&self) -> Option<i32> {
        self.str("server-pid").map(|_| self.num("server-pid", 0))
    }

    /// The server's CPU time, from --cpu-cg or --server-pid.
    pub fn server_cpu(&self) -> crate::procfs::ServerCpu {
        crate::procfs::ServerCpu::new(self.server_pid(), self.str("cpu-cg"))
    }
}

pub fn die(msg: &str) -> ! {
    eprintln!("aftpd-bench: {msg}");
    std::process::exit(100);
}

/// One result record, printed as a JSON object on one line.
pub struct Record {
    s: String,
}

impl Record {
    /// Starts a record of `kind`, with the `--label key=value` options of
    /// the command line (target, rep, ...) so the script need not edit it.
    pub fn new(kind: &str, args: &Args) -> Record {
        let mut r = Record { s: String::new() };
        r.str("kind", kind);
        for l in args.all("label") {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            match v.parse::<f64>() {
                Ok(n) if n.is_finite() => r.num(k, n),
                _ => r.str(k, v),
            }
        }
        r
    }

    fn key(&mut self, k: &str) {
        self.s.push(if self.s.is_empty() { '{' } else { ',' });
        let _ = write!(self.s, "{}:", quote(k));
    }

    pub fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.s.push_str(&quote(v));
    }

    pub fn num(&mut self, k: &str, v: f64) {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.s, "{}", Num(v));
        } else {
            self.s.push_str("null");
        }
    }

    /// A list of numbers (per-second counts, per-client rates).
    pub fn list(&mut self, k: &str, v: &[f64]) {
        self.key(k);
        self.s.push('[');
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                self.s.push(',');
            }
            if x.is_finite() {
                let _ = write!(self.s, "{}", Num(*x));
            } else {
                self.s.push_str("null");
            }
        }
        self.s.push(']');
    }

    pub fn finish(mut self) -> String {
        self.s.push('}');
        self.s
    }

    pub fn print(self) {
        println!("{}", self.finish());
    }
}

/// A finite number as JSON: integers without a fraction.
struct Num(f64);

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == self.0.trunc() && self.0.abs() < 1e15 {
            write!(f, "{}", self.0 as i64)
        } else {
            write!(f, "{:.6}", self.0)
        }
    }
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(q, "\\u{:04x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let args = Args::parse(&[
            "--label".into(),
            "target=vsftpd".into(),
            "--label".into(),
            "rep=2".into(),
            "--quick".into(),
        ]);
        assert!(args.flag("quick"));
        let mut r = Record::new("bulk", &args);
        r.num("mb_s", 1.5);
        r.str("err", "a\"b\n");
        r.list("l", &[1.0, 0.5, f64::NAN]);
        assert_eq!(
            r.finish(),
            r#"{"kind":"bulk","target":"vsftpd","rep":2,"mb_s":1.500000,"err":"a\"b\u000a","l":[1,0.500000,null]}"#
        );
    }
}
