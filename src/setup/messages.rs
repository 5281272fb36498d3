//! The texts of `--banner FILE` and `--welcome FILE`. Both programs open
//! and read them before the chroot (afterwards the path may not exist,
//! and the sandbox reads nothing outside ROOT). The supervisor keeps the
//! descriptors and reads them again on SIGHUP: that takes no right the
//! sandbox would have to grant, and sees every edit made in place (an
//! editor or `cp` writing into the file); a file replaced by a rename is
//! a new file the process cannot reach, which the reload says in the log.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Fail;
use super::options::MessagePaths;
use crate::core::config::SessionConfig;
use crate::core::message::{MAX_BYTES, Message};

/// The message files named on the command line, open.
#[derive(Debug, Default)]
pub struct MessageFiles {
    banner: Option<Held>,
    welcome: Option<Held>,
}

#[derive(Debug)]
struct Held {
    option: &'static str,
    path: PathBuf,
    file: File,
}

impl MessageFiles {
    /// Opens the files `paths` names. A file that cannot be opened, or is
    /// not a regular file, is a temporary failure (exit 111), as an
    /// xferlog that cannot be opened is.
    pub fn open(paths: &MessagePaths) -> Result<MessageFiles, Fail> {
        let hold = |option, path: &Option<PathBuf>| {
            path.as_ref()
                .map(|p| {
                    Held::open(option, p)
                        .map_err(|e| Fail::temporary(format!("{option} {}: {e}", p.display())))
                })
                .transpose()
        };
        Ok(MessageFiles {
            banner: hold("--banner", &paths.banner)?,
            welcome: hold("--welcome", &paths.welcome)?,
        })
    }

    /// `config` with the texts read: the start.
    pub fn apply(&self, mut config: SessionConfig) -> Result<SessionConfig, Fail> {
        for (held, slot) in [
            (&self.banner, &mut config.banner),
            (&self.welcome, &mut config.welcome),
        ] {
            if let Some(h) = held {
                let text = h.read().map_err(|e| {
                    Fail::temporary(format!("{} {}: {e}", h.option, h.path.display()))
                })?;
                *slot = Some(text);
            }
        }
        Ok(config)
    }

    /// `config` with the texts read again (SIGHUP), and a line for the log
    /// about each file that could not be (its text stays as it was).
    pub fn reread(&self, config: &SessionConfig) -> (Arc<SessionConfig>, Vec<String>) {
        let mut config = config.clone();
        let mut notes = Vec::new();
        for (held, slot) in [
            (&self.banner, &mut config.banner),
            (&self.welcome, &mut config.welcome),
        ] {
            let Some(h) = held else { continue };
            if h.replaced() {
                notes.push(format!(
                    "{} {}: replaced or removed since the start; still showing what was read before (write into the file to change it, or restart)",
                    h.option,
                    h.path.display()
                ));
            }
            match h.read() {
                Ok(text) => *slot = Some(text),
                Err(e) => notes.push(format!(
                    "{} {}: {e}; still showing what was read before",
                    h.option,
                    h.path.display()
                )),
            }
        }
        (Arc::new(config), notes)
    }

    /// Whether any file is held (there is something to read again).
    pub fn any(&self) -> bool {
        self.banner.is_some() || self.welcome.is_some()
    }
}

impl Held {
    fn open(option: &'static str, path: &Path) -> io::Result<Held> {
        // O_NONBLOCK: a FIFO given by mistake must not hang the start.
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(Held {
            option,
            path: path.to_owned(),
            file,
        })
    }

    /// The file's first `MAX_BYTES`, as a message.
    fn read(&self) -> io::Result<Message> {
        let mut buf = vec![0u8; MAX_BYTES];
        let mut len = 0;
        // Each turn reads at least a byte, or ends.
        while len < buf.len() {
            match self.file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Message::parse(&buf[..len]))
    }

    /// The name no longer leads to this file (it was renamed over, or
    /// removed).
    fn replaced(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.nlink() == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::test_tree::TempTree;

    #[test]
    fn read_at_start_and_again() {
        let t = TempTree::new("setup-messages");
        t.file("banner", 0o644, b"Hello\n123 world\n");
        t.file("welcome", 0o644, b"Welcome\n");
        let paths = MessagePaths {
            banner: Some(t.at("banner")),
            welcome: Some(t.at("welcome")),
        };
        let files = MessageFiles::open(&paths).unwrap();
        assert!(files.any());
        let config = files.apply(SessionConfig::default()).unwrap();
        let banner: Vec<&str> = config.banner.as_ref().unwrap().lines().collect();
        assert_eq!(banner, ["Hello", "123 world"]);
        // Written in place: seen. Replaced by a rename: said, not seen.
        std::fs::write(t.at("banner"), b"Changed\n").unwrap();
        let new = t.at("welcome.new");
        std::fs::write(&new, b"Other\n").unwrap();
        std::fs::rename(&new, t.at("welcome")).unwrap();
        let (again, notes) = files.reread(&config);
        let banner: Vec<&str> = again.banner.as_ref().unwrap().lines().collect();
        assert_eq!(banner, ["Changed"]);
        let welcome: Vec<&str> = again.welcome.as_ref().unwrap().lines().collect();
        assert_eq!(welcome, ["Welcome"]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("--welcome "), "{notes:?}");
    }

    #[test]
    fn what_cannot_be_a_message_file() {
        let t = TempTree::new("setup-messages-bad");
        t.dir("dir", 0o755);
        t.fifo("fifo", 0o644);
        for name in ["dir", "fifo", "missing"] {
            let paths = MessagePaths {
                banner: Some(t.at(name)),
                welcome: None,
            };
            let e = MessageFiles::open(&paths).unwrap_err();
            assert!(e.message.starts_with("--banner "), "{}", e.message);
        }
        assert!(!MessageFiles::default().any());
    }
}
