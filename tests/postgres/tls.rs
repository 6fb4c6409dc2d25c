//! TLS to PostgreSQL: libpq's `sslmode` (`disable` to `verify-full`) and
//! `sslrootcert`, against a second throw-away server with `ssl = on` and a
//! certificate for the name `db.internal` signed by a test CA; vkv reaches
//! it as 127.0.0.1, so only a check of the name itself fails there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::common::{Server, poll_until, psql};

/// A CA certificate (PEM) and the key that signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A PostgreSQL server with TLS on, stopped and removed on drop.
struct TlsServer {
    dir: PathBuf,
    _certs: tempfile::TempDir,
    admin: String,
    /// The CA that signed the server's certificate, as a file.
    ca_file: PathBuf,
    /// Another CA, as a file.
    other_ca_file: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster.sh")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl TlsServer {
    fn start() -> TlsServer {
        let certs = tempfile::tempdir().unwrap();
        let ca = new_ca("vkv test CA");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["db.internal".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "db.internal");
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        let write = |name: &str, text: &str| {
            let path = certs.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let cert_file = write("server.crt", &cert.pem());
        let key_file = write("server.key", &key.serialize_pem());
        let ca_file = write("ca.pem", &ca.pem);
        let other_ca_file = write("other-ca.pem", &new_ca("another CA").pem);
        // PostgreSQL refuses a key others may read, and runs as `postgres`.
        let mut perms = vec![("0700", certs.path()), ("0600", key_file.as_path())];
        perms.push(("0644", cert_file.as_path()));
        for (mode, path) in perms {
            let ok = Command::new("chmod")
                .args([mode])
                .arg(path)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(certs.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let dir = std::env::temp_dir().join(format!("vkv-pg-tls-{}", std::process::id()));
        let opts = format!(
            "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert_file.display(),
            key_file.display()
        );
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&dir)
            .env("PG_SERVER_OPTS", opts)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg-cluster.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin = String::from_utf8(out.stdout).unwrap().trim().to_string();
        TlsServer {
            dir,
            _certs: certs,
            admin,
            ca_file,
            other_ca_file,
        }
    }

    /// The admin URL with `params` added.
    fn url(&self, params: &str) -> PathBuf {
        PathBuf::from(format!("{}?{params}", self.admin))
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// Starts vkv on `url`, expects a refusal, returns the log.
fn refused(url: &Path) -> String {
    let Err((status, log)) = Server::try_start_on(url, &[], &[]) else {
        panic!("vkv started on {}", url.display());
    };
    assert!(status.is_some_and(|s| !s.success()), "exit {status:?}");
    log.join("\n")
}

/// How many of vkv's connections to `server` are encrypted, and how many
/// it has.
fn encrypted(server: &TlsServer) -> (u64, u64) {
    let count = |sql: &str| psql(&server.admin, sql).parse::<u64>().unwrap();
    let from = "FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                WHERE a.application_name LIKE 'vkv%'";
    (
        count(&format!("SELECT count(*) {from} AND s.ssl")),
        count(&format!("SELECT count(*) {from}")),
    )
}

/// Waits until every connection of vkv to `server` is encrypted (those of
/// a server stopped just before may take a moment to go).
fn all_encrypted(server: &TlsServer, what: &str) {
    let done = poll_until(Duration::from_secs(10), || {
        let (tls, all) = encrypted(server);
        all > 0 && tls == all
    });
    let rows = "SELECT a.pid, s.ssl, a.query FROM pg_stat_activity a \
                JOIN pg_stat_ssl s USING (pid) WHERE a.application_name LIKE 'vkv%'";
    assert!(
        done,
        "{what}: not all encrypted:\n{}",
        psql(&server.admin, rows)
    );
}

#[test]
fn sslmode_checks_the_servers_certificate_as_libpq_does() {
    let _serial = crate::common::shared();
    let server = TlsServer::start();
    let ca = server.ca_file.display().to_string();
    let other = server.other_ca_file.display().to_string();

    // verify-ca: the chain leads to the CA: served, over TLS only.
    let vkv = Server::start_on(
        &server.url(&format!("sslmode=verify-ca&sslrootcert={ca}")),
        &[],
    );
    let mut c = vkv.client();
    assert_eq!(c.put("k", &serde_json::json!("over tls")).status, 200);
    assert_eq!(c.get("/get/k").json()["value"], "over tls");
    all_encrypted(&server, "verify-ca");
    drop(vkv);

    // verify-full: the certificate names db.internal, not 127.0.0.1.
    let log = refused(&server.url(&format!("sslmode=verify-full&sslrootcert={ca}")));
    assert!(log.contains("certificate"), "{log}");
    // A chain to another CA fails verify-ca, and require with that root.
    for mode in ["verify-ca", "require"] {
        let log = refused(&server.url(&format!("sslmode={mode}&sslrootcert={other}")));
        assert!(log.contains("certificate"), "{mode}: {log}");
    }
    // verify-* without a root to check against: said so.
    let log = refused(&server.url("sslmode=verify-full"));
    assert!(log.contains("sslrootcert"), "{log}");
    // A bad sslmode is named.
    let log = refused(&server.url("sslmode=always"));
    assert!(log.contains("sslmode 'always'"), "{log}");

    // require without a root, and the default (prefer): encrypted, the
    // certificate not checked, as libpq.
    for params in ["sslmode=require", "application_name=vkv"] {
        let vkv = Server::start_on(&server.url(params), &[]);
        assert_eq!(vkv.client().get("/get/k").status, 200, "{params}");
        all_encrypted(&server, params);
    }
    // disable: in the clear.
    let vkv = Server::start_on(&server.url("sslmode=disable"), &[]);
    assert_eq!(vkv.client().get("/get/k").status, 200);
    // (Once the earlier servers' connections are gone.)
    assert!(
        poll_until(Duration::from_secs(10), || {
            let (tls, all) = encrypted(&server);
            tls == 0 && all > 0
        }),
        "still encrypted: {:?}",
        encrypted(&server)
    );
}

#[test]
fn sslmode_require_against_a_server_without_tls_is_refused() {
    let _serial = crate::common::shared();
    let (_, url) = crate::fresh_database();
    let url = PathBuf::from(format!("{}?sslmode=require", url.display()));
    let log = refused(&url);
    assert!(log.contains("TLS") || log.contains("SSL"), "{log}");
}
