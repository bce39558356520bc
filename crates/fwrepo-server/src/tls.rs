//! TLS for the listener: a PEM certificate chain and private key become a rustls acceptor that
//! offers ALPN `h2` then `http/1.1`.
//!
//! Only the `ring` crypto provider is used, passed explicitly, so nothing depends on a
//! process-wide default provider. The key file is refused when group or others may access it.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// ALPN identifiers offered, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Loads `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 RSA or SEC1 EC) into an
/// acceptor. Every failure names the file it is about.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let chain = read_chain(cert)?;
    let private_key = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mismatch = |reason: String| Error::TlsKeyMismatch { cert: cert.to_owned(), key: key.to_owned(), reason };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| mismatch(e.to_string()))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::TlsFile { path: path.to_owned(), source })?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::TlsPem { path: path.to_owned(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(Error::TlsNoCertificate { path: path.to_owned() });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let file_error = |source| Error::TlsFile { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(file_error)?;
    check_private(path, &meta)?;
    let bytes = std::fs::read(path).map_err(file_error)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => Error::TlsNoKey { path: path.to_owned() },
        other => Error::TlsPem { path: path.to_owned(), reason: other.to_string() },
    })
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::TlsKeyPermissions { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), Error> {
    Ok(())
}
