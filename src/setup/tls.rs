//! FTPS set-up both programs share: the certificate and key, read while
//! the process may still read them (before the chroot and the drop).

use crate::engine::tls::keys::Sessions;
use crate::engine::tls::ticketkey::{FileTickets, KeyError};
use crate::engine::tls::{Pem, ServerTls};
use crate::setup::Fail;
use crate::setup::options::TlsFiles;

/// The certificate and key (and ticket keys), read and checked: a file
/// that cannot be read is a temporary failure, one that holds no usable
/// certificate or key a configuration error, and so is a ticket key file
/// others may read or too short to be a key.
pub fn load(files: &TlsFiles, sessions: Sessions) -> Result<ServerTls, Fail> {
    let tickets = match files.ticket_keys.as_slice() {
        [] => None,
        paths => Some(FileTickets::read(paths).map_err(|e| match e {
            KeyError::Unreadable(m) => Fail::temporary(format!("TLS: {m}")),
            KeyError::Unfit(m) => Fail::usage(format!("TLS: {m}")),
        })?),
    };
    let pem = Pem::read(files).map_err(Fail::temporary)?;
    ServerTls::new(&pem, tickets, sessions).map_err(|e| Fail::usage(format!("TLS: {e}")))
}
