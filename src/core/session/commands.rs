//! What each command does: checks, the reply, and the actions asked of the
//! driver.

use std::net::{IpAddr, SocketAddr};

use super::data::{Data, PassiveKind};
use super::pending::{Refusal, Then};
use super::{Action, DataConn, FsRequest, Handles, Login, Session, TransferKind};
use crate::core::clock::Now;
use crate::core::listing::Facts;
use crate::core::proto::command::{self, Command, DataType, EpsvArg, ListArg, Opts};
use crate::core::proto::reply::{self, Code};
use crate::core::vpath::{VPath, VPathError};

impl<H: Handles> Session<H> {
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
                    self.logged_in(now);
                }
                Login::LoggedIn => self.reply(Code::NotNeeded, "Already logged in."),
            },
            Command::Acct => self.reply(Code::NotNeeded, "ACCT not needed."),
            Command::Host(name) => self.host(&name, now),
            Command::Pwd => {
                let mut text = reply::quoted_path(self.cwd.as_bytes());
                text.extend_from_slice(b" is the current directory.");
                self.reply(Code::PathName, text);
            }
            Command::Cwd(arg) => self.cwd(&arg, now),
            Command::Cdup => self.cwd(b"..", now),
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
            Command::Size(arg) => self.stat_file(&arg, Then::Size, now),
            Command::Mdtm(arg) => self.stat_file(&arg, Then::Mdtm, now),
            Command::List(ListArg { path }) => {
                self.listing(path.as_deref(), TransferKind::List, now)
            }
            Command::Nlst(ListArg { path }) => {
                self.listing(path.as_deref(), TransferKind::Nlst, now)
            }
            Command::Mlsd(arg) => self.listing(arg.as_deref(), TransferKind::Mlsd, now),
            Command::Mlst(arg) => self.mlst(arg.as_deref(), now),
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
                let tls = self.config.tls.enabled();
                if command::VERBS.iter().any(|v| v.as_bytes() == verb)
                    || (tls && command::TLS_VERBS.iter().any(|v| v.as_bytes() == verb))
                {
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
            Command::Clnt => self.reply(Code::Ok, "Noted."),
            Command::Stor(arg) => self.stor(arg, false, now),
            Command::Stou(arg) => self.stor(arg, true, now),
            Command::Write(verb) => self.refuse_write(verb),
            Command::Site => self.reply(Code::Unknown, "No SITE commands here."),
            Command::Auth(arg) => self.auth(arg.as_deref()),
            Command::Pbsz(arg) => self.pbsz(arg.as_deref()),
            Command::Prot(arg) => self.prot(arg.as_deref()),
            Command::NotOffered(verb) => {
                self.reply(Code::NotImplemented, format!("{verb} not implemented."));
            }
        }
    }

    /// Refuses a verb that would change the archive, with a code RFC 959
    /// §5.4 allows for it: STOR and STOU have no 550 (553, file name not
    /// allowed); RNTO only follows an accepted RNFR, which never comes
    /// here (503); the others 550.
    pub(super) fn refuse_write(&mut self, verb: &str) {
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
                self.refuse(&crate::core::meta::FsError::NotFound, refusal);
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

    fn cwd(&mut self, arg: &[u8], now: Now) {
        if let Some(path) = self.resolve(arg, Refusal::Code550) {
            self.ask(FsRequest::Stat(path.clone()), Then::Cwd(path), now);
        }
    }

    /// SIZE and MDTM: the facts of a published regular file.
    fn stat_file(&mut self, arg: &[u8], then: Then, now: Now) {
        if let Some(path) = self.resolve(arg, Refusal::Code550) {
            self.ask(FsRequest::Stat(path), then, now);
        }
    }

    fn mlst(&mut self, arg: Option<&[u8]>, now: Now) {
        if let Some(path) = self.target(arg, Refusal::Code550) {
            self.ask(FsRequest::Stat(path.clone()), Then::Mlst(path), now);
        }
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

    fn retr(&mut self, arg: &[u8], now: Now) {
        let rest = std::mem::take(&mut self.rest);
        let Some(path) = self.resolve(arg, Refusal::Code550) else {
            return;
        };
        let Some(conn) = self.data_conn() else {
            return;
        };
        let request = FsRequest::OpenFile(path.clone());
        self.ask(request, Then::Retr { path, conn, rest }, now);
    }

    /// LIST, NLST, MLSD: a listing of a directory (or of one file) on the
    /// data connection.
    fn listing(&mut self, arg: Option<&[u8]>, kind: TransferKind, now: Now) {
        // A REST marker is for the transfer command that follows it: a
        // listing uses it up (it would otherwise shift a later RETR).
        self.rest = 0;
        let Some(path) = self.target(arg, Refusal::Code550) else {
            return;
        };
        let Some(conn) = self.data_conn() else {
            return;
        };
        let request = FsRequest::OpenList(path.clone());
        self.ask(request, Then::List { path, conn, kind }, now);
    }

    fn stat_server(&mut self) {
        if let Some((path, sent, kind)) = self.transfer_status() {
            let verb = if kind == TransferKind::Stor {
                "received"
            } else {
                "sent"
            };
            let text = format!(
                "Transfer in progress: {} of {} bytes {verb}.",
                String::from_utf8_lossy(path.as_bytes()),
                sent
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
            match &self.config.uploads {
                None => format!(" aftpd {}: read-only", env!("CARGO_PKG_VERSION")),
                Some(u) => format!(
                    " aftpd {}: read-only, uploads into {}",
                    env!("CARGO_PKG_VERSION"),
                    String::from_utf8_lossy(u.incoming.as_bytes())
                ),
            },
        ];
        let lines = lines.into_iter().chain(self.tls_status());
        reply::multi(
            &mut self.out,
            Code::SystemStatus,
            "FTP server status:",
            lines,
            "End of status.",
        );
    }

    fn stat_path(&mut self, arg: &[u8], now: Now) {
        if let Some(path) = self.resolve(arg, Refusal::Code450) {
            self.ask(FsRequest::OpenList(path.clone()), Then::Stat(path), now);
        }
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
        let tls = self.tls_features();
        // Sorted, as clients read them: AUTH TLS first, PBSZ, PROT after PASV.
        let lines = tls.iter().take(tls.len().saturating_sub(2)).copied();
        let lines = lines.chain([" EPRT", " EPSV", " HOST", " MDTM", &mlst, " PASV"]);
        let lines = lines.chain(tls.iter().rev().take(2).rev().copied());
        let lines = lines.chain([" REST STREAM", " SIZE", " TVFS", " UTF8"]);
        reply::multi(&mut self.out, Code::SystemStatus, "Features:", lines, "End");
    }

    fn help(&mut self) {
        let tls: &[&str] = if self.config.tls.enabled() {
            &command::TLS_VERBS
        } else {
            &[]
        };
        let lines: Vec<String> = command::VERBS
            .chunks(12)
            .chain(Some(tls).filter(|t| !t.is_empty()))
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
