//! TLS for the client (feature `tls`): rustls with the ring provider over
//! the connection's socket. What is trusted: the CA certificates of a PEM
//! file (`--cacert`, else `SSL_CERT_FILE`, else the system's bundle), or
//! one pinned certificate (`vkv health` probing its own server's
//! `--tls-cert`). Without the feature, asking for TLS is an error that
//! says how to get it.

use std::path::PathBuf;

#[cfg(feature = "tls")]
pub use with_tls::{Trust, connect};
#[cfg(not(feature = "tls"))]
pub use without_tls::{Trust, connect};

/// Where the certificates to trust come from.
#[derive(Debug, Clone)]
pub enum Roots {
    /// The CA certificates of this PEM file.
    CaFile(PathBuf),
    /// `SSL_CERT_FILE`, else the system's CA bundle.
    System,
    /// Exactly the first certificate of this PEM file (a server's own
    /// `--tls-cert`), whatever its issuer and names.
    Pinned(PathBuf),
}

/// The system's CA bundle (Debian's `ca-certificates`, then Fedora's).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

impl Roots {
    /// The PEM file these roots are read from.
    fn file(&self) -> Result<PathBuf, String> {
        match self {
            Roots::CaFile(p) | Roots::Pinned(p) => Ok(p.clone()),
            Roots::System => std::env::var_os("SSL_CERT_FILE")
                .map(PathBuf::from)
                .or_else(|| {
                    SYSTEM_BUNDLES
                        .iter()
                        .map(PathBuf::from)
                        .find(|p| p.exists())
                })
                .ok_or_else(|| {
                    "no CA certificates to check the server with: give --cacert FILE \
                     (or set SSL_CERT_FILE)"
                        .to_string()
                }),
        }
    }
}

#[cfg(feature = "tls")]
mod with_tls {
    use std::net::TcpStream;
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{
        CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, Error,
        SignatureScheme, StreamOwned,
    };

    use super::Roots;
    use crate::client::stream::Stream;

    /// A client TLS configuration, built once per command.
    #[derive(Clone)]
    pub struct Trust(Arc<ClientConfig>);

    impl Trust {
        /// Reads the certificates `roots` names. With `check_names`, the
        /// server's certificate must name the host connected to (as a
        /// browser checks); without, only its chain is checked (a probe
        /// of a server's own address, which its certificate rarely names).
        pub fn new(roots: &Roots, check_names: bool) -> Result<Trust, String> {
            let file = roots.file()?;
            let shown = file.display().to_string();
            let certs = CertificateDer::pem_file_iter(&file)
                .map_err(|e| format!("{shown}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{shown}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("{shown}: no CERTIFICATE in it"));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let check = match roots {
                Roots::Pinned(_) => Check::Pinned(certs[0].clone().into_owned()),
                Roots::CaFile(_) | Roots::System => {
                    let mut store = rustls::RootCertStore::empty();
                    let (added, _) = store.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(format!("{shown}: no usable CA certificate in it"));
                    }
                    let webpki = WebPkiServerVerifier::builder_with_provider(
                        Arc::new(store),
                        Arc::clone(&provider),
                    )
                    .build()
                    .map_err(|e| format!("{shown}: {e}"))?;
                    Check::Chain {
                        webpki,
                        names: check_names,
                    }
                }
            };
            let verifier = Verifier {
                check,
                provider: Arc::clone(&provider),
            };
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Trust(Arc::new(config)))
        }
    }

    /// TLS over `socket` to `host`, the handshake done (so that a refused
    /// certificate is a connection error, before anything is sent).
    pub fn connect(
        mut socket: TcpStream,
        host: &str,
        trust: &Trust,
    ) -> Result<Box<dyn Stream>, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
        let mut conn =
            ClientConnection::new(Arc::clone(&trust.0), name).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut socket).map_err(|e| {
                // rustls's error, not the I/O wrapper's.
                match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
                    Some(tls) => tls.to_string(),
                    None => e.to_string(),
                }
            })?;
        }
        Ok(Box::new(StreamOwned::new(conn, socket)))
    }

    #[derive(Debug)]
    enum Check {
        /// The chain up to one of the CAs, and the name if `names`.
        Chain {
            webpki: Arc<WebPkiServerVerifier>,
            names: bool,
        },
        /// The server's certificate is exactly this one.
        Pinned(CertificateDer<'static>),
    }

    #[derive(Debug)]
    struct Verifier {
        check: Check,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for Verifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            match &self.check {
                Check::Pinned(cert) if cert.as_ref() == end_entity.as_ref() => {
                    Ok(ServerCertVerified::assertion())
                }
                Check::Pinned(_) => Err(Error::General(
                    "the server's certificate is not the one in --tls-cert".to_string(),
                )),
                Check::Chain { webpki, names } => {
                    match webpki.verify_server_cert(
                        end_entity,
                        intermediates,
                        server_name,
                        ocsp,
                        now,
                    ) {
                        Err(Error::InvalidCertificate(
                            CertificateError::NotValidForName
                            | CertificateError::NotValidForNameContext { .. },
                        )) if !names => Ok(ServerCertVerified::assertion()),
                        other => other,
                    }
                }
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
}

#[cfg(not(feature = "tls"))]
mod without_tls {
    use std::net::TcpStream;

    use super::Roots;
    use crate::client::stream::Stream;

    /// Never built: this vkv has no TLS.
    #[derive(Clone)]
    pub struct Trust(());

    impl Trust {
        /// Always the error that says how to get TLS.
        pub fn new(roots: &Roots, _check_names: bool) -> Result<Trust, String> {
            let _ = roots.file();
            Err(NO_TLS.to_string())
        }
    }

    /// Unreachable without a [`Trust`].
    pub fn connect(_: TcpStream, _: &str, trust: &Trust) -> Result<Box<dyn Stream>, String> {
        let Trust(never) = trust;
        let () = never;
        Err(NO_TLS.to_string())
    }

    const NO_TLS: &str =
        "this vkv was built without TLS support; rebuild with `cargo build --features tls`";
}
