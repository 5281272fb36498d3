//! The fuzz targets' checks (contrib/fuzz/src/lib.rs, included as it is)
//! on the stable compiler, in every `cargo test`:
//!
//! - every input under contrib/fuzz/regressions/TARGET/ (each crash the
//!   fuzzers ever found, kept once fixed) and contrib/fuzz/seeds/TARGET/;
//! - a few thousand inputs per target from a fixed pseudo-random
//!   generator, mutating the seeds: a smoke test, not a fuzzer.

#[path = "../contrib/fuzz/src/lib.rs"]
mod harness;

use std::fs;
use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("command_line", harness::command_line),
    ("vpath", harness::vpath),
    ("addr", harness::addr),
    ("session", harness::session),
    ("fs", harness::fs),
    ("proxy_header", harness::proxy_header),
];

fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let data = fs::read(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), data))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn saved_inputs_then_pseudo_random_ones() {
    regressions_and_seeds();
    pseudo_random_smoke();
    // The tree the fs target serves (one per process).
    harness::remove_tree();
}

fn regressions_and_seeds() {
    let mut n = 0;
    for (target, f) in TARGETS {
        for kind in ["regressions", "seeds"] {
            for (name, data) in inputs(kind, target) {
                eprintln!("{kind}/{target}/{name}");
                f(&data);
                n += 1;
            }
        }
    }
    assert!(
        n >= 10,
        "only {n} inputs: are contrib/fuzz/seeds and regressions there?"
    );
}

/// xorshift64*: the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `seed` with a few random byte changes, insertions and deletions.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(8) {
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            _ => {
                // A splice of a common protocol fragment.
                const BITS: [&[u8]; 8] = [
                    b"\r\n",
                    b"\xff\xf4",
                    b"..",
                    b"/",
                    b"PASV\r\n",
                    b"RETR ",
                    b"LIST",
                    b"\xff",
                ];
                let i = rng.below(v.len() + 1);
                let bit = BITS[rng.below(BITS.len())];
                v.splice(i..i, bit.iter().copied());
            }
        }
    }
    v
}

fn pseudo_random_smoke() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (target, f) in TARGETS {
        let seeds: Vec<Vec<u8>> = inputs("seeds", target)
            .into_iter()
            .map(|(_, d)| d)
            .chain([Vec::new()])
            .collect();
        let rounds = match target {
            "session" | "fs" => 5000,
            _ => 20_000,
        };
        for _ in 0..rounds {
            let seed = &seeds[rng.below(seeds.len())];
            let data = mutate(&mut rng, seed);
            f(&data);
        }
    }
}
