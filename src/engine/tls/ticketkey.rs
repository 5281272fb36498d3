//! Ticket keys from files (`--tls-ticket-key`), so that processes which
//! share no memory (ftpd, one per connection; supervisors behind a
//! balancer, or across a restart) open each other's tickets. Like
//! nginx's `ssl_session_ticket_key`: each file holds random bytes; the
//! first key seals new tickets, every key opens them (for a rotation).
//! The files are read before the chroot; one that others may read, or
//! too short to hold a key's worth of randomness, is refused.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use super::resume::LIFETIME;

/// Fewest bytes a key file holds: 256 bits of randomness.
pub const MIN_KEY: usize = 32;
/// Most bytes read from a key file.
const MAX_KEY: usize = 1024;
/// Bytes of a ticket before its ciphertext: the key's name, the nonce.
const NAME: usize = 8;
const HEAD: usize = NAME + aead::NONCE_LEN;

/// What is wrong with a key file: it cannot be read now (temporary), or
/// it is not fit to be a key (the operator must change it).
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    Unreadable(String),
    Unfit(String),
}

/// One key, derived from a file's bytes.
struct Key {
    name: [u8; NAME],
    aead: LessSafeKey,
}

/// Tickets sealed with keys read from files.
pub struct FileTickets {
    keys: Vec<Key>,
    rng: SystemRandom,
}

impl std::fmt::Debug for FileTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key.
        write!(f, "FileTickets({} keys)", self.keys.len())
    }
}

/// A length `hkdf` expands to.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl Key {
    fn derive(secret: &[u8]) -> Option<Key> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"aftpd TLS ticket key").extract(secret);
        let mut name = [0u8; NAME];
        let mut key = [0u8; 32];
        prk.expand(&[b"name"], Len(NAME))
            .ok()?
            .fill(&mut name)
            .ok()?;
        prk.expand(&[b"key"], Len(32)).ok()?.fill(&mut key).ok()?;
        let aead = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).ok()?);
        Some(Key { name, aead })
    }
}

impl FileTickets {
    /// The keys in `paths`, the first to seal.
    pub fn read(paths: &[impl AsRef<Path>]) -> Result<FileTickets, KeyError> {
        let mut keys = Vec::new();
        for path in paths {
            let secret = read_key(path.as_ref())?;
            keys.push(Self::key(&secret)?);
        }
        if keys.is_empty() {
            return Err(KeyError::Unfit("no ticket key".to_owned()));
        }
        Ok(FileTickets {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Keys from secrets already read (tests).
    #[cfg(test)]
    pub fn from_secrets(secrets: &[&[u8]]) -> Result<FileTickets, KeyError> {
        let keys = secrets
            .iter()
            .map(|s| Self::key(s))
            .collect::<Result<_, _>>()?;
        Ok(FileTickets {
            keys,
            rng: SystemRandom::new(),
        })
    }

    fn key(secret: &[u8]) -> Result<Key, KeyError> {
        if secret.len() < MIN_KEY {
            return Err(KeyError::Unfit(format!(
                "a ticket key needs at least {MIN_KEY} random bytes, not {}",
                secret.len()
            )));
        }
        Key::derive(secret).ok_or_else(|| KeyError::Unfit("cannot derive a ticket key".to_owned()))
    }
}

/// A key file's bytes, if only its owner may read or change it.
fn read_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let name = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(o_nofollow())
        .open(path)
        .map_err(|e| KeyError::Unreadable(format!("cannot read {name}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| KeyError::Unreadable(format!("cannot read {name}: {e}")))?;
    if !meta.is_file() {
        return Err(KeyError::Unfit(format!("{name} is not a regular file")));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(KeyError::Unfit(format!(
            "{name} is open to others (mode {:o}): chmod 600 it",
            meta.mode() & 0o7777
        )));
    }
    let mut secret = Vec::new();
    file.take(MAX_KEY as u64 + 1)
        .read_to_end(&mut secret)
        .map_err(|e| KeyError::Unreadable(format!("cannot read {name}: {e}")))?;
    if secret.len() > MAX_KEY {
        return Err(KeyError::Unfit(format!(
            "{name} is longer than {MAX_KEY} bytes"
        )));
    }
    if secret.len() < MIN_KEY {
        return Err(KeyError::Unfit(format!(
            "{name} holds {} bytes, a ticket key needs at least {MIN_KEY} random bytes",
            secret.len()
        )));
    }
    Ok(secret)
}

/// O_NOFOLLOW: a key file is named as it is, not through a symlink
/// someone else may point elsewhere.
fn o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

impl ProducesTickets for FileTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut nonce = [0u8; aead::NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(HEAD + plain.len() + CHACHA20_POLY1305.tag_len());
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(plain);
        let mut body = ticket.split_off(HEAD);
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.name),
                &mut body,
            )
            .ok()?;
        ticket.extend_from_slice(&body);
        Some(ticket)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let (head, body) = cipher.split_at_checked(HEAD)?;
        let (name, nonce) = head.split_at(NAME);
        let key = self.keys.iter().find(|k| k.name == name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(name), &mut body)
            .ok()?;
        let n = plain.len();
        body.truncate(n);
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn seal_open_and_rotate() {
        let (old, new) = ([1u8; 32], [2u8; 48]);
        let a = FileTickets::from_secrets(&[&old]).unwrap();
        let t = a.encrypt(b"session").unwrap();
        assert_eq!(a.decrypt(&t).unwrap(), b"session");
        // Two processes with the same file open each other's tickets.
        let b = FileTickets::from_secrets(&[&old]).unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session");
        // Rotated: the new key seals, the old still opens.
        let rotated = FileTickets::from_secrets(&[&new, &old]).unwrap();
        assert_eq!(rotated.decrypt(&t).unwrap(), b"session");
        let t2 = rotated.encrypt(b"later").unwrap();
        assert_eq!(a.decrypt(&t2), None);
        // Tampered, truncated, another key: nothing.
        let mut bad = t.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(a.decrypt(&bad), None);
        assert_eq!(a.decrypt(&t[..HEAD]), None);
        let other = FileTickets::from_secrets(&[&[3u8; 32]]).unwrap();
        assert_eq!(other.decrypt(&t), None);
        assert!(matches!(
            FileTickets::from_secrets(&[&[0u8; 31]]),
            Err(KeyError::Unfit(_))
        ));
        assert!(format!("{a:?}").starts_with("FileTickets(1 keys"));
    }

    #[test]
    fn key_files() {
        let dir = std::env::temp_dir().join(format!("aftpd-ticketkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, [9u8; 80]).unwrap();
        std::fs::set_permissions(&path, PermissionsExt::from_mode(0o600)).unwrap();
        FileTickets::read(&[&path]).unwrap();
        std::fs::set_permissions(&path, PermissionsExt::from_mode(0o640)).unwrap();
        let e = FileTickets::read(&[&path]).unwrap_err();
        assert!(
            matches!(&e, KeyError::Unfit(m) if m.contains("open to others")),
            "{e:?}"
        );
        std::fs::write(&path, [9u8; 16]).unwrap();
        std::fs::set_permissions(&path, PermissionsExt::from_mode(0o400)).unwrap();
        let e = FileTickets::read(&[&path]).unwrap_err();
        assert!(
            matches!(&e, KeyError::Unfit(m) if m.contains("at least 32")),
            "{e:?}"
        );
        let missing = dir.join("missing");
        assert!(matches!(
            FileTickets::read(&[&missing]),
            Err(KeyError::Unreadable(_))
        ));
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(FileTickets::read(&[&link]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
