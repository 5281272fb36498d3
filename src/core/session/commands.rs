//! What each command does: checks, the reply, and the actions asked of the
//! driver.

use std::net::{IpAddr, SocketAddr};

use super::{
    Action, ControlListing, Data, DataConn, Login, PassiveKind, Session, Source, Transfer,
    TransferKind,
};
use crate::core::calendar;
use crate::core::clock::Now;
use crate::core::listing::{self, Facts, Style};
use crate::core::meta::{FsError, Kind, Meta};
use crate::core::proto::command::{self, Command, DataType, EpsvArg, ListArg, Opts};
use crate::core::proto::reply::{self, Code};
use crate::core::vpath::{VPath, VPathError};
use crate::fs::dir::Lister;

/// How a failed lookup is answered: LIST, NLST and STAT have 450 for
/// every refusal (RFC 959 §5.4 lists no 550 for them); the rest 550.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Code550,
    Code450,
}

impl Session {
    pub(super) fn execute(&mut self, cmd: Command, now: Now) {
        match cmd {
            Command::User(_) => {
                // Any name is anonymous; a new USER starts a new login.
                self.login = Login::User;
                self.reply(Code::NeedPassword, "Anonymous login: any password will do.");
            }
            Command::Pass => match self.login {
                Login::Start => self.reply(Code::BadSequence, "Log in with USER first."),
                Login::User => {
                    self.login = Login::LoggedIn;
                    self.reply(Code::LoggedIn, "Logged in: anonymous read-only access.");
                }
                Login::LoggedIn => self.reply(Code::NotNeeded, "Already logged in."),
            },
            Command::Acct => self.reply(Code::NotNeeded, "ACCT not needed."),
            Command::Host(_) => {
                if self.login == Login::Start {
                    self.reply(Code::Ready, "Host accepted.");
                } else {
                    self.reply(Code::BadSequence, "HOST must come before USER.");
                }
            }
            Command::Pwd => {
                let mut text = reply::quoted_path(self.cwd.as_bytes());
                text.extend_from_slice(b" is the current directory.");
                self.reply(Code::PathName, text);
            }
            Command::Cwd(arg) => self.cwd(&arg),
            Command::Cdup => self.cwd(b".."),
            Command::Type(t) => {
                self.ascii = t == DataType::Ascii;
                let text = if self.ascii {
                    "Switching to ASCII mode."
                } else {
                    "Switching to BINARY mode."
                };
                self.reply(Code::Ok, text);
            }
            Command::StruFile => self.reply(Code::Ok, "Structure set to F."),
            Command::ModeStream => self.reply(Code::Ok, "Mode set to S."),
            Command::Port(addr) => self.active(SocketAddr::V4(addr), "PORT"),
            Command::Eprt(addr) => self.active(addr, "EPRT"),
            Command::Pasv => self.passive(PassiveKind::Pasv, EpsvArg::Any),
            Command::Epsv(EpsvArg::All) => {
                self.epsv_all = true;
                self.reply(Code::Ok, "EPSV ALL ok: only EPSV from now on.");
            }
            Command::Epsv(arg) => self.passive(PassiveKind::Epsv, arg),
            Command::Rest(offset) => {
                self.rest = offset;
                self.reply(
                    Code::PendingMore,
                    format!("Restarting at {offset}. Send RETR to start the transfer."),
                );
            }
            Command::Retr(arg) => self.retr(&arg, now),
            Command::Size(arg) => self.size(&arg),
            Command::Mdtm(arg) => self.mdtm(&arg),
            Command::List(arg) => self.list(arg, TransferKind::List, now),
            Command::Nlst(arg) => self.list(arg, TransferKind::Nlst, now),
            Command::Mlsd(arg) => self.mlsd(arg.as_deref(), now),
            Command::Mlst(arg) => self.mlst(arg.as_deref()),
            Command::Stat(None) => self.stat_server(),
            Command::Stat(Some(arg)) => self.stat_path(&arg, now),
            Command::Feat => self.feat(),
            Command::Opts(Opts::Utf8(_)) => {
                self.reply(Code::Ok, "UTF-8 names pass through unchanged.")
            }
            Command::Opts(Opts::Mlst(facts)) => {
                self.facts = facts;
                // RFC 3659 §7.9: "MLST OPTS", then SP and the facts if any.
                let mut text = String::from("MLST OPTS");
                for (i, (_, name)) in Facts::ALL
                    .iter()
                    .filter(|(f, _)| facts.contains(*f))
                    .enumerate()
                {
                    text.push_str(if i == 0 { " " } else { "" });
                    text.push_str(name);
                    text.push(';');
                }
                self.reply(Code::Ok, text);
            }
            Command::Syst => self.reply(Code::SystemType, "UNIX Type: L8"),
            Command::Help(None) => self.help(),
            Command::Help(Some(verb)) => {
                let verb = verb.to_ascii_uppercase();
                if command::VERBS.iter().any(|v| v.as_bytes() == verb) {
                    let mut text = verb;
                    text.extend_from_slice(b" is supported.");
                    self.reply(Code::Help, text);
                } else {
                    self.reply(Code::NotImplemented, "Not a command of this server.");
                }
            }
            Command::Noop => self.reply(Code::Ok, "NOOP ok."),
            Command::Allo => self.reply(Code::NotNeeded, "ALLO not needed."),
            Command::Abor => self.abor(now),
            Command::Quit => {
                self.reply(Code::Goodbye, "Goodbye.");
                self.close("quit", now);
            }
            Command::Write(verb) => self.refuse_write(verb),
            Command::Site => self.reply(Code::Unknown, "No SITE commands here."),
            Command::NotOffered(verb) => {
                self.reply(Code::NotImplemented, format!("{verb} not implemented."));
            }
        }
    }

    /// Refuses a verb that would change the archive, with a code RFC 959
    /// §5.4 allows for it: STOR and STOU have no 550 (553, file name not
    /// allowed); RNTO only follows an accepted RNFR, which never comes
    /// here (503); the others 550.
    fn refuse_write(&mut self, verb: &str) {
        const READ_ONLY: &str = "Permission denied: this is a read-only archive.";
        match verb {
            "STOR" | "STOU" => self.reply(Code::NameNotAllowed, READ_ONLY),
            "RNTO" => self.reply(
                Code::BadSequence,
                "RNTO needs an accepted RNFR first; nothing is renamed in a read-only archive.",
            ),
            _ => self.reply(Code::FileUnavailable, READ_ONLY),
        }
    }

    /// Resolves a client path; a refusal is answered with `refusal`'s code.
    fn resolve(&mut self, arg: &[u8], refusal: Refusal) -> Option<VPath> {
        match VPath::resolve(&self.cwd, arg) {
            Ok(p) => Some(p),
            Err(VPathError::Nul) => {
                self.reply(Code::BadArguments, "Invalid file name.");
                None
            }
            // A hidden name is answered as if it did not exist.
            Err(VPathError::Hidden) => {
                self.refuse(&FsError::NotFound, refusal);
                None
            }
        }
    }

    /// Answers a failed lookup.
    fn refuse(&mut self, e: &FsError, refusal: Refusal) {
        let text = match e {
            // What is not published reads as absent, as hidden names do:
            // a client cannot probe for files the archive does not offer.
            FsError::NotFound => "No such file or directory.",
            FsError::NotFile => "Not a plain file.",
            FsError::NotDir => "Not a directory.",
            FsError::Busy(_) => "Temporarily unavailable; try again later.",
            FsError::Io(_) => "Cannot read that.",
        };
        let code = match (e, refusal) {
            (FsError::Busy(_), _) | (_, Refusal::Code450) => Code::FileBusy,
            _ => Code::FileUnavailable,
        };
        self.reply(code, text);
    }

    /// A public entry's facts, or the refusal already answered.
    fn public_meta(&mut self, path: &VPath, refusal: Refusal) -> Option<Meta> {
        match self.root.stat(path) {
            Ok(m) if m.is_public() => Some(m),
            Ok(_) => {
                self.refuse(&FsError::NotFound, refusal);
                None
            }
            Err(e) => {
                self.refuse(&e, refusal);
                None
            }
        }
    }

    fn cwd(&mut self, arg: &[u8]) {
        let Some((path, meta)) = self.public_target(Some(arg), Refusal::Code550) else {
            return;
        };
        if meta.kind != Kind::Dir {
            return self.reply(Code::FileUnavailable, "Not a directory.");
        }
        self.cwd = path;
        self.reply(Code::FileOk, "Directory changed.");
    }

    fn active(&mut self, to: SocketAddr, verb: &str) {
        if self.epsv_all {
            return self.reply(
                Code::BadSequence,
                format!("{verb} not allowed after EPSV ALL."),
            );
        }
        let Some(peer) = self.ends.peer else {
            return self.reply(
                Code::CantOpenData,
                "Client address unknown: active mode unavailable.",
            );
        };
        let Some(local) = self.ends.local else {
            return self.reply(
                Code::CantOpenData,
                "Local address unknown: active mode unavailable.",
            );
        };
        let mut to = SocketAddr::new(to.ip().to_canonical(), to.port());
        // An unspecified address of the peer's family (lftp sends `EPRT
        // |2|::|port|` over IPv6 loopback) can only mean the client itself.
        if to.ip().is_unspecified() && to.is_ipv4() == peer.is_ipv4() {
            to.set_ip(peer.ip());
        }
        // No FTP bounce: only the client's own address, only unprivileged ports.
        if to.ip() != peer.ip() {
            return self.reply(
                Code::BadParameter,
                format!("{verb} refused: only to your own address."),
            );
        }
        if to.port() < 1024 {
            return self.reply(
                Code::BadParameter,
                format!("{verb} refused: port below 1024."),
            );
        }
        self.drop_data();
        self.data = Data::Active(DataConn::Active {
            to,
            from: local.ip(),
        });
        self.reply(Code::Ok, format!("{verb} command successful."));
    }

    fn passive(&mut self, kind: PassiveKind, arg: EpsvArg) {
        if kind == PassiveKind::Pasv && self.epsv_all {
            return self.reply(Code::BadSequence, "PASV not allowed after EPSV ALL.");
        }
        let Some(local) = self.ends.local else {
            return self.reply(
                Code::CantOpenData,
                "Local address unknown: passive mode unavailable.",
            );
        };
        let ip = local.ip();
        match (kind, arg, ip) {
            (PassiveKind::Pasv, _, IpAddr::V6(_)) => {
                return self.reply(Code::NetProtocol, "PASV needs IPv4: use EPSV.");
            }
            (_, EpsvArg::Ipv4, IpAddr::V6(_)) => {
                return self.reply(Code::NetProtocol, "Network protocol not supported, use (2)");
            }
            (_, EpsvArg::Ipv6, IpAddr::V4(_)) => {
                return self.reply(Code::NetProtocol, "Network protocol not supported, use (1)");
            }
            _ => {}
        }
        self.drop_data();
        self.data = Data::Listening(kind);
        self.actions.push_back(Action::Listen {
            ip,
            ports: self.config.pasv_ports,
        });
    }

    /// Forgets any listener or active address (a new PASV/PORT replaces it).
    fn drop_data(&mut self) {
        if matches!(self.data, Data::Passive | Data::Listening(_)) {
            self.actions.push_back(Action::AbortData);
        }
        self.data = Data::None;
    }

    /// The data connection a transfer would use, or a 425 when none was
    /// set up. Checked before the file or directory is opened.
    fn data_conn(&mut self) -> Option<DataConn> {
        match self.data {
            Data::Passive => Some(DataConn::Passive),
            Data::Active(conn) => Some(conn),
            _ => {
                self.reply(Code::CantOpenData, "Use PASV, EPSV, PORT or EPRT first.");
                None
            }
        }
    }

    /// The path a command names: its argument, or the working directory.
    fn target(&mut self, arg: Option<&[u8]>, refusal: Refusal) -> Option<VPath> {
        match arg {
            Some(a) => self.resolve(a, refusal),
            None => Some(self.cwd.clone()),
        }
    }

    /// The path and facts of the public entry a command names.
    fn public_target(&mut self, arg: Option<&[u8]>, refusal: Refusal) -> Option<(VPath, Meta)> {
        let path = self.target(arg, refusal)?;
        let meta = self.public_meta(&path, refusal)?;
        Some((path, meta))
    }

    /// The facts of the public regular file SIZE or MDTM names (550 else).
    fn public_file(&mut self, arg: &[u8]) -> Option<Meta> {
        let (_, meta) = self.public_target(Some(arg), Refusal::Code550)?;
        if meta.kind != Kind::File {
            self.reply(Code::FileUnavailable, "Not a plain file.");
            return None;
        }
        Some(meta)
    }

    fn start(
        &mut self,
        conn: DataConn,
        source: Source,
        kind: TransferKind,
        path: VPath,
        opening: String,
        now: Now,
    ) {
        let ascii = match &source {
            Source::File { ascii, .. } => *ascii,
            Source::Listing(_) => true,
        };
        self.data = Data::Transfer(Box::new(Transfer {
            kind,
            path,
            ascii,
            opening,
            connected: false,
            sent: 0,
            acked: 0,
            unannounced: 0,
            started: now.mono,
            deadline: now.mono + self.data_timeout(),
        }));
        self.actions.push_back(Action::Transfer { conn, source });
    }

    fn retr(&mut self, arg: &[u8], now: Now) {
        let rest = std::mem::take(&mut self.rest);
        let Some(path) = self.resolve(arg, Refusal::Code550) else {
            return;
        };
        let Some(conn) = self.data_conn() else {
            return;
        };
        let (file, meta) = match self.root.open_file(&path) {
            Ok(f) => f,
            Err(e) => return self.refuse(&e, Refusal::Code550),
        };
        if rest > meta.size {
            return self.reply(
                Code::BadRestart,
                "Restart offset beyond the end of the file.",
            );
        }
        let len = meta.size - rest;
        let mode = if self.ascii { "ASCII" } else { "BINARY" };
        let mut opening = format!("Opening {mode} mode data connection for ");
        opening.push_str(&String::from_utf8_lossy(path.as_bytes()));
        opening.push_str(&format!(" ({} bytes).", meta.size));
        let source = Source::File {
            file,
            offset: rest,
            len,
            ascii: self.ascii,
        };
        self.start(conn, source, TransferKind::Retr, path, opening, now);
    }

    fn size(&mut self, arg: &[u8]) {
        let Some(meta) = self.public_file(arg) else {
            return;
        };
        if self.ascii {
            // The ASCII size differs from the binary one; RFC 3659 §4.
            return self.reply(
                Code::FileUnavailable,
                "SIZE not available in ASCII mode: use TYPE I.",
            );
        }
        self.reply(Code::FileStatus, meta.size.to_string());
    }

    fn mdtm(&mut self, arg: &[u8]) {
        if let Some(meta) = self.public_file(arg) {
            self.reply(Code::FileStatus, calendar::utc_timestamp(meta.mtime));
        }
    }

    /// A lister for `path`: the directory's entries, or the one file.
    fn lister_for(
        &mut self,
        path: &VPath,
        style: Style,
        refusal: Refusal,
        now: Now,
    ) -> Option<Lister> {
        let meta = self.public_meta(path, refusal)?;
        match meta.kind {
            Kind::Dir => match self.root.open_dir(path) {
                Ok((fd, _)) => Some(Lister::dir(
                    self.root.clone(),
                    fd,
                    path.clone(),
                    style,
                    now.unix(),
                )),
                Err(e) => {
                    self.refuse(&e, refusal);
                    None
                }
            },
            _ => Some(Lister::single(path.name(), &meta, style, now.unix())),
        }
    }

    fn list(&mut self, arg: ListArg, kind: TransferKind, now: Now) {
        // A REST marker is for the transfer command that follows it: a
        // listing uses it up (it would otherwise shift a later RETR).
        self.rest = 0;
        let Some(path) = self.target(arg.path.as_deref(), Refusal::Code450) else {
            return;
        };
        let Some(conn) = self.data_conn() else {
            return;
        };
        let style = match kind {
            TransferKind::Nlst => Style::Nlst,
            _ => Style::List(self.config.list_format),
        };
        let Some(lister) = self.lister_for(&path, style, Refusal::Code450, now) else {
            return;
        };
        let opening = "Here comes the directory listing.".to_string();
        self.start(conn, Source::Listing(lister), kind, path, opening, now);
    }

    fn mlsd(&mut self, arg: Option<&[u8]>, now: Now) {
        self.rest = 0; // as in `list`
        let Some(path) = self.target(arg, Refusal::Code550) else {
            return;
        };
        let Some(conn) = self.data_conn() else {
            return;
        };
        let Some(meta) = self.public_meta(&path, Refusal::Code550) else {
            return;
        };
        if meta.kind != Kind::Dir {
            // RFC 3659 §7.2: MLSD of a non-directory is a 501.
            return self.reply(Code::BadArguments, "Not a directory: use MLST.");
        }
        let Some(lister) = self.lister_for(&path, Style::Mlsd(self.facts), Refusal::Code550, now)
        else {
            return;
        };
        let opening = "Here comes the directory listing.".to_string();
        self.start(
            conn,
            Source::Listing(lister),
            TransferKind::Mlsd,
            path,
            opening,
            now,
        );
    }

    fn mlst(&mut self, arg: Option<&[u8]>) {
        let Some((path, meta)) = self.public_target(arg, Refusal::Code550) else {
            return;
        };
        let mut line = vec![b' '];
        listing::mlsx_line(&mut line, path.as_bytes(), &meta, self.facts);
        let line = line.strip_suffix(b"\r\n").unwrap_or(&line).to_vec();
        let mut head = b"Listing ".to_vec();
        head.extend_from_slice(path.as_bytes());
        reply::first(&mut self.out, Code::FileOk, head);
        reply::middle(&mut self.out, line);
        self.reply(Code::FileOk, "End.");
    }

    fn stat_server(&mut self) {
        if let Data::Transfer(t) = &self.data {
            let text = format!(
                "Transfer in progress: {} of {} bytes sent.",
                String::from_utf8_lossy(t.path.as_bytes()),
                t.sent
            );
            return self.reply(Code::FileStatus, text);
        }
        let peer = match self.ends.peer {
            Some(p) => p.ip().to_string(),
            None => "an unknown address".to_string(),
        };
        let lines = [
            format!(" Connected to {peer}"),
            match self.login {
                Login::LoggedIn => " Logged in anonymously".to_string(),
                _ => " Not logged in".to_string(),
            },
            format!(" TYPE: {}", if self.ascii { "ASCII" } else { "BINARY" }),
            format!(
                " Idle timeout: {} seconds",
                self.config.idle_timeout.as_secs()
            ),
            format!(" aftpd {}: read-only", env!("CARGO_PKG_VERSION")),
        ];
        reply::multi(
            &mut self.out,
            Code::SystemStatus,
            "FTP server status:",
            lines,
            "End of status.",
        );
    }

    fn stat_path(&mut self, arg: &[u8], now: Now) {
        let Some(path) = self.resolve(arg, Refusal::Code450) else {
            return;
        };
        let style = Style::List(self.config.list_format);
        let Some(lister) = self.lister_for(&path, style, Refusal::Code450, now) else {
            return;
        };
        let mut head = b"Status of ".to_vec();
        head.extend_from_slice(path.as_bytes());
        head.push(b':');
        reply::first(&mut self.out, Code::FileStatus, head);
        self.stat_listing = Some(Box::new(ControlListing { lister }));
        self.continue_stat_listing();
    }

    fn feat(&mut self) {
        let mut mlst = String::from(" MLST ");
        for (f, name) in Facts::ALL {
            mlst.push_str(name);
            if self.facts.contains(f) {
                mlst.push('*');
            }
            mlst.push(';');
        }
        let lines = [
            " EPRT",
            " EPSV",
            " HOST",
            " MDTM",
            &mlst,
            " PASV",
            " REST STREAM",
            " SIZE",
            " TVFS",
            " UTF8",
        ];
        reply::multi(&mut self.out, Code::SystemStatus, "Features:", lines, "End");
    }

    fn help(&mut self) {
        let lines: Vec<String> = command::VERBS
            .chunks(12)
            .map(|row| row.iter().map(|v| format!(" {v:<4}")).collect::<String>())
            .collect();
        reply::multi(
            &mut self.out,
            Code::Help,
            "The following commands are recognized:",
            lines,
            "Help OK.",
        );
    }

    fn abor(&mut self, now: Now) {
        if matches!(self.data, Data::Transfer(_)) {
            self.finish_transfer("aborted", now);
            self.reply(Code::TransferAborted, "Transfer aborted.");
            self.reply(Code::TransferDone, "Abort successful.");
        } else {
            self.reply(Code::TransferDone, "No transfer to abort.");
        }
    }
}
