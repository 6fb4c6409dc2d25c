//! Loading the TLS configuration (`--tls-cert`, `--tls-key`; feature `tls`):
//! rustls with the ring provider, TLS 1.2 and 1.3, HTTP/1.1 over ALPN.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key was refused; names the file, never its
/// content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain cannot be read or parsed.
    #[error("cannot load TLS certificate chain {}: {reason}", .path.display())]
    Cert {
        /// The PEM file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The private key cannot be read or parsed.
    #[error("cannot load TLS private key {}: {reason}", .path.display())]
    Key {
        /// The PEM file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the pair (for instance a key that does not match).
    #[error("invalid TLS certificate or key: {0}")]
    Config(String),
}

/// A server's TLS configuration, as [`load`] made it: opaque, so that the
/// TLS library is not part of vkv's API.
#[derive(Clone)]
pub struct TlsConfig(pub(crate) Arc<rustls::ServerConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1) into a server configuration.
pub fn load(cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE section found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConfig(Arc::new(config)))
}
