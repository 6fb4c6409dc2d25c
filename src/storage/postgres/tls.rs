//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` ask, with
//! rustls.
//!
//! The `postgres` crate parses `sslmode` `disable`, `prefer` and `require`
//! only, and no `sslrootcert`: [`split_url`] takes both out of the URL and
//! hands `postgres` the mode it knows, and [`connector`] checks the
//! server's certificate as libpq would:
//! - `disable`: no TLS;
//! - `allow`, `prefer` (the default): TLS when the server offers it, the
//!   certificate not checked;
//! - `require`: TLS or no connection; the certificate is not checked,
//!   unless `sslrootcert` is given (then as `verify-ca`);
//! - `verify-ca`: the chain must lead to a CA of `sslrootcert`;
//! - `verify-full`: that, and the certificate must name the host.

use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, SignatureScheme};

/// What `postgres` connects through.
pub(crate) type Connector = tokio_postgres_rustls::MakeRustlsConnect;

/// How the server's certificate is checked (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS settings of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub mode: Mode,
    /// `sslrootcert`: a PEM file of the CA certificates to trust.
    pub root_cert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of `url`: the URL `postgres` can
/// parse (with the `sslmode` it knows) and the settings.
pub(crate) fn split_url(url: &str) -> Result<(String, Settings), String> {
    let mut settings = Settings {
        mode: Mode::Prefer,
        root_cert: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), settings));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(value).decode_utf8_lossy();
        match name {
            "sslmode" => {
                settings.mode = match &*value {
                    "disable" => Mode::Disable,
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode '{other}' is not one of disable, allow, prefer, require, \
                             verify-ca, verify-full"
                        ));
                    }
                }
            }
            "sslrootcert" => settings.root_cert = Some(value.into_owned()),
            _ => kept.push(pair),
        }
    }
    kept.push(match settings.mode {
        Mode::Disable => "sslmode=disable",
        Mode::Prefer => "sslmode=prefer",
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => "sslmode=require",
    });
    Ok((format!("{base}?{}", kept.join("&")), settings))
}

/// The connector that checks certificates as `settings` ask.
pub(crate) fn connector(settings: &Settings) -> Result<Connector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mode = match (settings.mode, &settings.root_cert) {
        (Mode::Require, Some(_)) => Mode::VerifyCa,
        (mode, _) => mode,
    };
    let chain = match mode {
        Mode::Disable | Mode::Prefer | Mode::Require => None,
        Mode::VerifyCa | Mode::VerifyFull => {
            let Some(path) = &settings.root_cert else {
                return Err(
                    "sslmode=verify-ca and verify-full need sslrootcert=FILE (the CA \
                     certificates to trust, PEM)"
                        .to_string(),
                );
            };
            Some(web_pki(path, &provider)?)
        }
    };
    let verifier = Verifier {
        chain,
        names: mode == Mode::VerifyFull,
        provider: Arc::clone(&provider),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Connector::new(config))
}

/// rustls's standard check (chain and host name) against the CAs in the
/// PEM file `path`.
fn web_pki(
    path: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {path}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {path}: no certificate in it"));
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| format!("sslrootcert {path}: {e}"))
}

/// How the server's certificate is checked: its chain against `chain`'s
/// CAs when given (`verify-ca`), and its name too if `names`
/// (`verify-full`); with no `chain`, not at all (`prefer`, `require`:
/// libpq's meaning). The handshake's signatures always are.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    names: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let (url, s) = split_url(
            "postgres://u:p@a,b/db?target_session_attrs=read-write&sslmode=verify-full\
             &sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@a,b/db?target_session_attrs=read-write&sslmode=require"
        );
        assert_eq!(s.mode, Mode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let (url, s) = split_url("postgres://h/db").unwrap();
        assert_eq!((url.as_str(), s.mode), ("postgres://h/db", Mode::Prefer));
        let (url, s) = split_url("postgres://h/db?sslmode=allow").unwrap();
        assert_eq!(
            (url.as_str(), s.mode),
            ("postgres://h/db?sslmode=prefer", Mode::Prefer)
        );
        assert!(split_url("postgres://h/db?sslmode=sometimes").is_err());
        let needs_root = Settings {
            mode: Mode::VerifyFull,
            root_cert: None,
        };
        assert!(connector(&needs_root).is_err_and(|e| e.contains("sslrootcert")));
    }
}
