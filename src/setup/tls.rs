//! FTPS set-up both programs share: the certificate and key, read while
//! the process may still read them (before the chroot and the drop).

use crate::engine::tls::{Pem, ServerTls};
use crate::setup::Fail;
use crate::setup::options::TlsFiles;

/// The certificate and key, read and checked: a file that cannot be read
/// is a temporary failure, one that holds no usable certificate or key a
/// configuration error.
pub fn load(files: &TlsFiles) -> Result<ServerTls, Fail> {
    let pem = Pem::read(files).map_err(Fail::temporary)?;
    ServerTls::new(&pem).map_err(|e| Fail::usage(format!("TLS: {e}")))
}
