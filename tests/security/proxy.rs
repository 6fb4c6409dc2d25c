//! vkv behind a real nginx (Debian's `nginx` package), configured as the
//! README shows: a page served through the proxy writes to its own origin,
//! and a proxy that rewrites `Host` needs `--allowed-origins`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// A running nginx on a configuration of its own, stopped on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx on `port` with `server` as the body of its `http`
    /// block (upstreams and the server), everything else in a temporary
    /// directory.
    fn start(port: u16, server: &str) -> Nginx {
        let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "nginx"]
            .into_iter()
            .find(|b| !b.starts_with('/') || Path::new(b).exists())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Its workers may run as another user: they must reach the files.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{server}\n}}\n"
        );
        let conf_path: PathBuf = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nginx ({e}): apt-get install nginx"));
        let mut nginx = Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let up = poll_until(Duration::from_secs(10), || {
            TcpStream::connect(nginx.addr).is_ok()
                || nginx.child.try_wait().ok().flatten().is_some()
        });
        let log = std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default();
        assert!(
            up && nginx.child.try_wait().ok().flatten().is_none(),
            "nginx did not start:\n{log}"
        );
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: the master stops its workers and exits (a SIGKILL would
        // leave the workers running).
        // SAFETY: kill(2) on the pid of a child this test started.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT) };
        if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the README's `location` block sets, with `host` as the `Host`
/// header passed on.
fn location(path: &str, upstream: &str, host: &str) -> String {
    format!(
        "  location {path} {{\n    proxy_pass http://{upstream};\n    proxy_http_version 1.1;\n\
         \x20   proxy_set_header Connection \"\";\n    proxy_set_header Host {host};\n  }}\n"
    )
}

#[test]
fn browser_writes_through_nginx_are_same_origin_and_a_rewritten_host_needs_allowed_origins() {
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    // a: default flags; b: trusts the proxy's public origin, and CORS for
    // a web app elsewhere.
    let a = Server::start(&[]);
    let b = Server::start(&[
        "--allowed-origins",
        &public,
        "--cors-origins",
        "https://app.example",
    ]);
    let server = format!(
        "upstream a {{ server {}; keepalive 4; }}\nupstream b {{ server {}; keepalive 4; }}\n\
         server {{\n  listen 127.0.0.1:{port};\n{}{}{}}}",
        a.addr,
        b.addr,
        // The README's configuration: the client's Host, port included.
        location("/", "a", "$http_host"),
        // A proxy that rewrites Host (the README's old configuration).
        location("/rewritten/", "a/", "localhost"),
        location("/trusted/", "b/", "localhost"),
    );
    let nginx = Nginx::start(port, &server);
    // A browser on a page served by the proxy: Host and Origin both name
    // the proxy.
    let mut c = Client::connect(nginx.addr);
    assert_eq!(c.host, format!("127.0.0.1:{port}"));
    let page = [
        ("Origin", public.as_str()),
        ("Content-Type", "application/json"),
    ];
    let put = |c: &mut Client, path: &str, headers: &[(&str, &str)]| {
        c.request("POST", path, headers, br#"{"value": "from the page"}"#)
    };
    let r = put(&mut c, "/put/k", &page);
    assert_eq!(r.status, 200, "through $http_host: {}", r.text());
    assert_eq!(c.get("/get/k").json()["value"], "from the page");
    let r = c.request("DELETE", "/delete/k", &[page[0]], b"");
    assert_eq!(r.status, 200, "{}", r.text());

    // Host rewritten: the same write is refused, unless the origin is
    // listed in --allowed-origins.
    let r = put(&mut c, "/rewritten/put/k", &page);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.detail().contains("--allowed-origins"), "{}", r.text());
    let r = put(&mut c, "/trusted/put/k", &page);
    assert_eq!(r.status, 200, "with --allowed-origins: {}", r.text());

    // Another site's page is refused whichever way.
    let evil = [
        ("Origin", "http://evil.example"),
        ("Content-Type", "application/json"),
    ];
    for path in ["/put/x", "/rewritten/put/x", "/trusted/put/x"] {
        let r = put(&mut c, path, &evil);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }

    // CORS through the proxy: the preflight reaches vkv and is answered.
    let r = c.request(
        "OPTIONS",
        "/trusted/put/k",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}
