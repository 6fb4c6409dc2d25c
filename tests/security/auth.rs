//! `--auth-tokens`: the 401/403/200 matrix per scope, `/health` and the
//! docs open, no
//! secret in the log, bad token files refused.

use std::path::{Path, PathBuf};

use crate::common::*;

pub const READER: &str = "reader-Zq3v8T1mK0pLx9aB";
pub const WRITER: &str = "writer-Hc7Ud2Rw5YsN4eJf";
pub const ADMIN: &str = "admin-Pb6Gt9Lk2Wq8Vm3Xz";
const WRONG: &str = "wrong-Sx5Nh8Fd1Jc4Ty7Qe";

/// A tokens file in `dir` with one token per scope, comments and blanks.
pub fn tokens_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens");
    std::fs::write(
        &path,
        format!(
            "# vkv tokens: TOKEN SCOPE\n\n{READER} read\n  {WRITER}\twrite   # the app\r\n{ADMIN} admin\n"
        ),
    )
    .unwrap();
    path
}

/// A server with authentication on; the tokens file lives next to the db.
pub fn auth_server(extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let mut args = vec!["--auth-tokens", tokens.to_str().unwrap()];
    args.extend_from_slice(extra);
    let s = Server::start_on(&dir.path().join("kv.db"), &args);
    (s, dir)
}

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Cred {
    None,
    Wrong,
    Read,
    Write,
    Admin,
}

impl Cred {
    fn token(self) -> Option<&'static str> {
        match self {
            Cred::None => None,
            Cred::Wrong => Some(WRONG),
            Cred::Read => Some(READER),
            Cred::Write => Some(WRITER),
            Cred::Admin => Some(ADMIN),
        }
    }
}

const CREDS: [Cred; 5] = [
    Cred::None,
    Cred::Wrong,
    Cred::Read,
    Cred::Write,
    Cred::Admin,
];

/// Every endpoint with the least credential it needs (`None`: open).
fn endpoints() -> Vec<(&'static str, &'static str, Vec<u8>, Cred)> {
    let put = br#"{"value": {"n": 1}}"#.to_vec();
    let batch = br#"{"puts": [{"key": "b1", "value": 1}]}"#.to_vec();
    vec![
        ("GET", "/health", vec![], Cred::None),
        ("GET", "/get/k", vec![], Cred::Read),
        ("HEAD", "/get/k", vec![], Cred::Read),
        ("GET", "/get/k?version=1", vec![], Cred::Read),
        ("GET", "/history/k", vec![], Cred::Read),
        ("GET", "/keys", vec![], Cred::Read),
        ("GET", "/cache/stats", vec![], Cred::Read),
        ("GET", "/db/stats", vec![], Cred::Read),
        ("GET", "/metrics", vec![], Cred::Read),
        // The API's description holds no data: open, so that a browser can
        // open Swagger UI (it cannot send a token when navigating).
        ("GET", "/openapi.json", vec![], Cred::None),
        ("GET", "/docs", vec![], Cred::None),
        ("HEAD", "/docs/swagger-ui.css", vec![], Cred::None),
        // The key browser's page and assets too; it then asks for a token.
        ("GET", "/ui", vec![], Cred::None),
        ("GET", "/ui/app.js", vec![], Cred::None),
        ("GET", "/auth/whoami", vec![], Cred::Read),
        ("POST", "/put/k", put, Cred::Write),
        ("POST", "/batch", batch, Cred::Write),
        ("DELETE", "/delete/DEL", vec![], Cred::Write),
        ("GET", "/backup", vec![], Cred::Admin),
        ("HEAD", "/backup", vec![], Cred::Admin),
    ]
}

#[test]
fn every_endpoint_answers_401_403_or_200_by_scope() {
    let (s, _dir) = auth_server(&[]);
    let mut admin = s.client().with_token(ADMIN);
    assert_eq!(admin.put("k", &json!("v1")).status, 200);
    let mut checked = 0;
    for (method, path, body, need) in endpoints() {
        for cred in CREDS {
            // Each delete needs a live key of its own.
            let path = path.replace("DEL", &format!("del-{cred:?}"));
            if method == "DELETE" {
                let key = path.trim_start_matches("/delete/");
                assert_eq!(admin.put(key, &json!(1)).status, 200);
            }
            let mut c = s.client();
            c.token = cred.token().map(str::to_string);
            let r = c.request(method, &path, &[], &body);
            let what = format!("{method} {path} as {cred:?}: {} {}", r.status, r.text());
            let expected = if need == Cred::None || cred >= need {
                200
            } else if cred <= Cred::Wrong {
                401
            } else {
                403
            };
            assert_eq!(r.status, expected, "{what}");
            match r.status {
                401 => {
                    let challenge = r.header("www-authenticate").unwrap_or("");
                    assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
                    if cred == Cred::Wrong {
                        assert!(challenge.contains("invalid_token"), "{what}");
                    }
                }
                403 => {
                    let challenge = r.header("www-authenticate").unwrap_or("");
                    assert!(challenge.contains("insufficient_scope"), "{what}");
                    if method != "HEAD" {
                        let detail = r.json()["detail"].as_str().unwrap_or("").to_string();
                        assert!(detail.contains("scope"), "{what}");
                    }
                }
                _ => {}
            }
            checked += 1;
        }
    }
    assert_eq!(checked, endpoints().len() * CREDS.len());
    // Writes refused by scope wrote nothing: only the admin's and the
    // writer's puts of `k` happened.
    let got = admin.get("/history/k").json();
    assert_eq!(got["versions"].as_array().map(Vec::len), Some(3), "{got}");
}

#[test]
fn unknown_paths_and_methods_need_a_token_too() {
    let (s, _dir) = auth_server(&[]);
    let mut anon = s.client();
    assert_eq!(anon.get("/no/such/thing").status, 401);
    assert_eq!(anon.request("PUT", "/get/k", &[], b"").status, 401);
    let mut reader = s.client().with_token(READER);
    assert_eq!(reader.get("/no/such/thing").status, 404);
    assert_eq!(reader.request("PUT", "/get/k", &[], b"").status, 405);
    // Other schemes and malformed headers are not a token.
    for header in ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer  ", ADMIN] {
        let r = anon.request("GET", "/keys", &[("Authorization", header)], b"");
        assert_eq!(r.status, 401, "{header:?}");
    }
    // The scheme is case-insensitive (RFC 9110 11.1).
    let header = format!("bEaReR {READER}");
    let r = anon.request("GET", "/keys", &[("Authorization", &header)], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn without_auth_tokens_everything_is_open() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.put("k", &json!(1)).status, 200);
    assert_eq!(c.get("/get/k").status, 200);
    assert_eq!(c.get("/backup").status, 200);
    // A token is ignored, not refused.
    let mut t = s.client().with_token(WRONG);
    assert_eq!(t.get("/get/k").status, 200);
}

#[test]
fn auth_tokens_come_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let s = Server::try_start_on(
        &dir.path().join("kv.db"),
        &[],
        &[("VKV_AUTH_TOKENS", tokens.to_str().unwrap())],
    )
    .unwrap_or_else(|(st, log)| panic!("{st:?} {log:?}"));
    assert_eq!(s.client().get("/keys").status, 401);
    assert_eq!(s.client().with_token(READER).get("/keys").status, 200);
    assert_eq!(s.client().get("/health").status, 200);
}

#[test]
fn tokens_and_values_never_reach_the_log() {
    let (mut s, _dir) = auth_server(&["--log-level", "debug"]);
    const MARKER: &str = "VALUE-MARKER-b71c2e";
    for cred in CREDS {
        let mut c = s.client();
        c.token = cred.token().map(str::to_string);
        c.put("secret", &json!({ "payload": MARKER }));
        c.get("/get/secret");
        c.get("/backup");
        c.request("DELETE", "/delete/nothing", &[], b"");
    }
    // Also as a raw header value of another scheme and in the query.
    let mut c = s.client();
    let basic = format!("Basic {WRONG}");
    c.request("GET", "/keys", &[("Authorization", &basic)], b"");
    c.request(
        "POST",
        &format!("/put/q?if_version=1&token={WRONG}"),
        &[],
        format!("{{\"value\": \"{MARKER}\"}}").as_bytes(),
    );
    assert!(s.terminate().success());
    let log = s.log_text();
    // The log is there and does log requests...
    assert!(log.contains("POST /put/secret 200"), "{log}");
    assert!(log.contains("GET /get/secret 401"), "{log}");
    assert!(log.contains("GET /backup 403"), "{log}");
    // ...but never a secret or a value.
    for secret in [READER, WRITER, ADMIN, WRONG, MARKER] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// Starts vkv with `content` as its tokens file; must be refused.
fn refused(content: &str) -> (String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.txt");
    std::fs::write(&path, content).unwrap();
    let db = dir.path().join("kv.db");
    let started = Server::try_start_on(&db, &["--auth-tokens", path.to_str().unwrap()], &[]);
    let Err((status, log)) = started else {
        panic!("started with tokens file {content:?}");
    };
    let status = status.expect("vkv neither started nor exited");
    assert!(!status.success(), "exit status {status:?}");
    assert!(!db.exists(), "the database was touched before the refusal");
    (log.join("\n"), path)
}

#[test]
fn bad_token_files_refuse_start_up_naming_file_and_line() {
    let cases = [
        // A token without a scope on line 4.
        (
            format!("# tokens\n{READER} read\n\nsecret-Mx8Kd2Lq9Wr4 \n"),
            "line 4",
        ),
        // An unknown scope on line 2.
        (
            format!("{READER} read\nsecret-Mx8Kd2Lq9Wr4 superuser\n"),
            "line 2",
        ),
        // Three fields on line 1.
        ("secret-Mx8Kd2Lq9Wr4 read write\n".to_string(), "line 1"),
        // A character a bearer token cannot have.
        ("secret-Mx8Kd2Lq9Wr4\" admin\n".to_string(), "line 1"),
        // The same token twice.
        (
            format!("{READER} read\n# again\n{READER} admin\n"),
            "line 3",
        ),
    ];
    for (content, line) in &cases {
        let (log, path) = refused(content);
        assert!(log.contains(&path.display().to_string()), "{log}");
        assert!(log.contains(line), "{line} not named: {log}");
        for secret in ["secret-Mx8Kd2Lq9Wr4", READER] {
            assert!(!log.contains(secret), "token in the message: {log}");
        }
    }
    // No token at all.
    let (log, _) = refused("# nothing yet\n\n");
    assert!(log.contains("no tokens"), "{log}");
}

#[test]
fn a_missing_token_file_refuses_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.tokens");
    let out = run(&[
        "--bind",
        "127.0.0.1:0",
        "--db",
        dir.path().join("kv.db").to_str().unwrap(),
        "--auth-tokens",
        missing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(text.contains(&missing.display().to_string()), "{text}");
}

#[test]
fn swagger_ui_and_the_document_open_without_a_token_and_offer_bearer_auth() {
    let (s, _dir) = auth_server(&[]);
    let mut anon = s.client();
    for path in [
        "/docs",
        "/docs/",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/openapi.json",
    ] {
        let r = anon.request("GET", path, &[("Accept-Encoding", "gzip")], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // The page loads the document that declares the bearer scheme, so its
    // Authorize button can send a token with the calls it makes.
    let doc = anon.get("/openapi.json").json();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["paths"]["/keys"]["get"]["responses"]["401"].is_object());
    // Data stays closed.
    assert_eq!(anon.get("/keys").status, 401);
    assert_eq!(anon.get("/metrics").status, 401);
    let mut reader = s.client().with_token(READER);
    assert_eq!(reader.get("/keys").status, 200);
}
