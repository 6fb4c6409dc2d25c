//! HTTPS (`--tls-cert`, `--tls-key`, feature `tls`) with a real rustls
//! client and a self-signed certificate made by the test.

#[cfg(not(feature = "tls"))]
#[test]
fn tls_flags_need_the_tls_feature() {
    use crate::common::*;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, "x").unwrap();
    std::fs::write(&key, "x").unwrap();
    let db = dir.path().join("kv.db");
    let out = run(&[
        "--bind",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(text.contains("without TLS support"), "{text}");
    assert!(!db.exists());
}

#[cfg(feature = "tls")]
mod with_tls {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rustls::pki_types::{CertificateDer, ServerName};

    use crate::auth::{ADMIN, READER, tokens_file};
    use crate::common::*;

    struct Cert {
        cert: PathBuf,
        key: PathBuf,
        der: CertificateDer<'static>,
    }

    /// A self-signed certificate for `localhost`, as PEM files in `dir`.
    fn self_signed(dir: &Path, name: &str) -> Cert {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        Cert {
            cert,
            key,
            der: made.cert.der().clone(),
        }
    }

    fn tls_server(dir: &Path, cert: &Cert, extra: &[&str]) -> Server {
        let mut args = vec![
            "--tls-cert",
            cert.cert.to_str().unwrap(),
            "--tls-key",
            cert.key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Server::start_on(&dir.join("kv.db"), &args)
    }

    /// A TLS session that trusts only `cert` and checks the name
    /// `localhost`.
    fn trusting(cert: &Cert) -> rustls::ClientConnection {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        rustls::ClientConnection::new(Arc::new(config), name).unwrap()
    }

    /// A client that trusts only `cert` and checks the name `localhost`.
    fn tls_client(addr: SocketAddr, cert: &Cert) -> Client {
        let conn = trusting(cert);
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client::over(Box::new(rustls::StreamOwned::new(conn, sock)))
    }

    #[test]
    fn https_serves_the_api_with_auth_and_streams_backups() {
        let dir = tempfile::tempdir().unwrap();
        let cert = self_signed(dir.path(), "server");
        let tokens = tokens_file(dir.path());
        let s = tls_server(
            dir.path(),
            &cert,
            &["--auth-tokens", tokens.to_str().unwrap()],
        );
        assert!(s.log_text().contains("TLS"), "{}", s.log_text());
        let mut c = tls_client(s.addr, &cert).with_token(ADMIN);
        for i in 0..20 {
            assert_eq!(c.put("k", &json!(i)).status, 200);
        }
        let got = c.get("/get/k");
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["value"], 19);
        // A value over 64 KiB is sent in pieces from the cache's bytes,
        // through the TLS session's bounded buffer.
        let big = "b".repeat(800_000);
        assert_eq!(c.put("big", &json!(big)).status, 200);
        for _ in 0..2 {
            let got = c.get("/get/big");
            assert_eq!(got.status, 200);
            assert_eq!(got.json()["value"], big.as_str());
        }
        // HEAD takes no snapshot, so it cannot know (nor send) the length.
        let head = c.request("HEAD", "/backup", &[], b"");
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), None);
        let backup = c.get("/backup");
        assert_eq!(backup.status, 200);
        let len: usize = backup.header("content-length").unwrap().parse().unwrap();
        assert_eq!(backup.body.len(), len);
        assert!(backup.body.starts_with(b"SQLite format 3\0"));
        // Still framed right after the streamed body, inside TLS.
        assert_eq!(c.get("/history/k").json()["versions"][0]["version"], 20);
        // Authentication still applies over TLS.
        let mut anon = tls_client(s.addr, &cert);
        assert_eq!(anon.get("/get/k").status, 401);
        assert_eq!(anon.get("/health").status, 200);
        let mut reader = tls_client(s.addr, &cert).with_token(READER);
        assert_eq!(reader.get("/backup").status, 403);
    }

    #[test]
    fn plain_http_on_the_tls_port_is_not_answered_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let cert = self_signed(dir.path(), "server");
        let s = tls_server(dir.path(), &cert, &[]);
        let mut raw = TcpStream::connect(s.addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        raw.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
        assert!(!answer.starts_with(b"HTTP/"), "answered in clear text");
        // A TLS alert record (content type 21), if anything.
        assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
        // The server lives on.
        assert_eq!(tls_client(s.addr, &cert).get("/health").status, 200);
    }

    #[test]
    fn a_silent_client_is_dropped_after_the_read_timeout_without_blocking_others() {
        let dir = tempfile::tempdir().unwrap();
        let cert = self_signed(dir.path(), "server");
        let s = tls_server(dir.path(), &cert, &["--read-timeout", "1s"]);
        let start = Instant::now();
        let mut silent = TcpStream::connect(s.addr).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Others are served while the silent one holds its handshake open.
        let served = Instant::now();
        assert_eq!(tls_client(s.addr, &cert).get("/health").status, 200);
        assert!(served.elapsed() < Duration::from_millis(900));
        let mut buf = [0u8; 64];
        let n = silent.read(&mut buf).unwrap_or(0);
        let waited = start.elapsed();
        assert_eq!(n, 0, "the server sent {:?}", &buf[..n]);
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
            "closed after {waited:?}"
        );
    }

    #[test]
    fn an_untrusted_certificate_is_refused_by_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let cert = self_signed(dir.path(), "server");
        let other = self_signed(dir.path(), "other");
        let s = tls_server(dir.path(), &cert, &[]);
        let mut conn = trusting(&other);
        let mut sock = TcpStream::connect(s.addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let err = conn
            .complete_io(&mut sock)
            .and_then(|_| conn.complete_io(&mut sock));
        assert!(
            err.is_err(),
            "handshake with an untrusted certificate succeeded"
        );
        // The server is fine afterwards.
        assert_eq!(tls_client(s.addr, &cert).get("/health").status, 200);
    }

    #[test]
    fn bad_certificate_or_key_files_refuse_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let good = self_signed(dir.path(), "good");
        let other = self_signed(dir.path(), "other");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let db = dir.path().join("kv.db");
        let cases: [(&Path, &Path, &str); 3] = [
            (&garbage, &good.key, "garbage.pem"),
            (&good.cert, &garbage, "garbage.pem"),
            // A key that is not the certificate's.
            (&good.cert, &other.key, "TLS"),
        ];
        for (cert, key, expected) in cases {
            let started = Server::try_start_on(
                &db,
                &[
                    "--tls-cert",
                    cert.to_str().unwrap(),
                    "--tls-key",
                    key.to_str().unwrap(),
                ],
                &[],
            );
            let Err((status, log)) = started else {
                panic!("started with {} and {}", cert.display(), key.display());
            };
            assert!(!status.expect("neither started nor exited").success());
            let log = log.join("\n");
            assert!(log.contains(expected), "{expected:?} not in {log}");
            assert!(!log.contains("PRIVATE KEY"), "{log}");
        }
        assert!(!db.exists());
        // One without the other is a usage error.
        let out = run(&["--tls-cert", good.cert.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
        assert!(output_text(&out).contains("--tls-key"));
    }

    /// `vkv ARGS` with `env`: exit code, stdout, stderr.
    fn vkv_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let out = vkv()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run vkv");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn vkv_health_probes_a_tls_server_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let cert = self_signed(dir.path(), "server");
        let other = self_signed(dir.path(), "other");
        let mut s = tls_server(dir.path(), &cert, &[]);
        let addr = s.addr.to_string();
        let (c, k) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
        // As a container's HEALTHCHECK runs it: the server's environment,
        // so TLS, and the server's own certificate is the one expected.
        let server_env = [("VKV_TLS_CERT", c), ("VKV_TLS_KEY", k)];
        let (code, out, err) = vkv_env(&["health", "--bind", &addr], &server_env);
        assert_eq!((code, out.as_str()), (Some(0), "healthy\n"), "{err}");
        // With the CA given (the name is not checked: the probe dials an
        // address), or with --tls and the CA from SSL_CERT_FILE.
        let (code, out, err) = vkv_env(&["health", "--bind", &addr, "--cacert", c], &[]);
        assert_eq!((code, out.as_str()), (Some(0), "healthy\n"), "{err}");
        let (code, _, err) = vkv_env(
            &["health", "--bind", &addr, "--tls"],
            &[("SSL_CERT_FILE", c)],
        );
        assert_eq!(code, Some(0), "{err}");
        // Failures name the address and the reason; exit 1.
        let url = format!("https://{addr}/health");
        let o = other.cert.to_str().unwrap();
        let (code, _, err) = vkv_env(&["health", "--bind", &addr, "--cacert", o], &[]);
        assert_eq!(code, Some(1));
        assert!(err.contains(&url) && err.contains("certificate"), "{err}");
        let (code, _, err) = vkv_env(
            &["health", "--bind", &addr],
            &[("VKV_TLS_CERT", o), ("VKV_TLS_KEY", k)],
        );
        assert_eq!(code, Some(1));
        assert!(err.contains("not the one in --tls-cert"), "{err}");
        // Plain HTTP to the TLS port: unhealthy, with the hint.
        let (code, _, err) = vkv_env(&["health", "--bind", &addr], &[]);
        assert_eq!(code, Some(1));
        assert!(
            err.contains(&format!("http://{addr}/health")) && err.contains("--tls"),
            "{err}"
        );
        s.kill();
        let (code, out, err) = vkv_env(&["health", "--bind", &addr], &server_env);
        assert_eq!(code, Some(1));
        assert!(out.is_empty());
        assert!(
            err.contains(&url) && err.contains("connection refused"),
            "{err}"
        );
    }

    #[test]
    fn the_client_commands_speak_https_with_cacert() {
        let dir = tempfile::tempdir().unwrap();
        let cert = self_signed(dir.path(), "server");
        let tokens = tokens_file(dir.path());
        let s = tls_server(
            dir.path(),
            &cert,
            &["--auth-tokens", tokens.to_str().unwrap()],
        );
        let c = cert.cert.to_str().unwrap();
        // The certificate names localhost: the endpoint must too.
        let endpoint = format!("https://localhost:{}", s.addr.port());
        let token = [("VKV_TOKEN", ADMIN)];
        let args = |a: &[&str]| {
            let mut v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            v.extend([
                "--endpoints".into(),
                endpoint.clone(),
                "--cacert".into(),
                c.into(),
            ]);
            v
        };
        let run_args = |a: &[&str], env: &[(&str, &str)]| {
            let v = args(a);
            let v: Vec<&str> = v.iter().map(String::as_str).collect();
            vkv_env(&v, env)
        };
        let (code, out, err) = run_args(&["put", "k", "over tls"], &token);
        assert_eq!(code, Some(0), "{out}{err}");
        let (code, out, _) = run_args(&["get", "k"], &token);
        assert_eq!((code, out.as_str()), (Some(0), "over tls\n"));
        let (code, out, _) = run_args(&["backup", "-"], &token);
        assert_eq!(code, Some(0));
        assert!(out.starts_with("SQLite format 3"));
        let (code, _, _) = run_args(&["get", "k"], &[]);
        assert_eq!(code, Some(5), "no token: refused");
        // A certificate not from the CA given, or not naming the host
        // connected to: refused before anything is sent.
        let other = self_signed(dir.path(), "other");
        let (code, _, err) = vkv_env(
            &[
                "get",
                "k",
                "--endpoints",
                &endpoint,
                "--cacert",
                other.cert.to_str().unwrap(),
            ],
            &token,
        );
        assert_eq!(code, Some(6));
        assert!(err.contains("TLS handshake failed"), "{err}");
        let by_address = format!("https://127.0.0.1:{}", s.addr.port());
        let (code, _, err) = vkv_env(
            &["get", "k", "--endpoints", &by_address, "--cacert", c],
            &token,
        );
        assert_eq!(code, Some(6));
        assert!(err.contains("not valid for name"), "{err}");
        // A CA file that is not one: a usage error.
        let (code, _, err) = vkv_env(
            &[
                "get",
                "k",
                "--endpoints",
                &endpoint,
                "--cacert",
                "/nonexistent.pem",
            ],
            &token,
        );
        assert_eq!(code, Some(2));
        assert!(err.contains("/nonexistent.pem"), "{err}");
    }
}
