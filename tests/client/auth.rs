//! Tokens: `--token-file` and `VKV_TOKEN` become `Authorization: Bearer`;
//! a refusal (401, 403) is exit 5 and is not tried on another endpoint.

use crate::common::Server;
use crate::{url, vkv_with};

const READER: &str = "reader-Gd82kLq0Vx3m";
const WRITER: &str = "writer-Pw6nR1sZt9Ye";
const ADMIN: &str = "admin-Hu4cJ7bWq2Ko";

fn auth_server(dir: &std::path::Path) -> Server {
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("{READER} read\n{WRITER} write\n{ADMIN} admin\n"),
    )
    .unwrap();
    Server::start_on(
        &dir.join("kv.db"),
        &["--auth-tokens", tokens.to_str().unwrap()],
    )
}

/// A file holding `token` (and a newline, as editors leave it).
fn token_file(dir: &std::path::Path, name: &str, token: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn tokens_from_a_file_or_the_environment_and_refusals_exit_5() {
    let dir = tempfile::tempdir().unwrap();
    let s = auth_server(dir.path());
    let e = url(&s);
    let reader = token_file(dir.path(), "reader", READER);
    let writer = token_file(dir.path(), "writer", WRITER);
    let admin = token_file(dir.path(), "admin", ADMIN);

    // No token: 401, exit 5.
    let r = vkv_with(&["get", "k", "--endpoints", &e], &[], b"");
    r.code(5);
    assert!(r.stderr.contains("401"), "{r:?}");
    // A writer token from a file writes; from VKV_TOKEN too.
    vkv_with(
        &["put", "k", "1", "--endpoints", &e, "--token-file", &writer],
        &[],
        b"",
    )
    .code(0);
    vkv_with(
        &["put", "k", "2", "--endpoints", &e],
        &[("VKV_TOKEN", WRITER)],
        b"",
    )
    .code(0);
    // The file wins over the variable.
    vkv_with(
        &["get", "k", "--endpoints", &e, "--token-file", &reader],
        &[("VKV_TOKEN", "not-a-token")],
        b"",
    )
    .code(0);
    // A reader cannot write (403), nor take a backup; exit 5 both.
    let r = vkv_with(
        &["put", "k", "3", "--endpoints", &e, "--token-file", &reader],
        &[],
        b"",
    );
    r.code(5);
    assert!(r.stderr.contains("403"), "{r:?}");
    vkv_with(
        &["backup", "-", "--endpoints", &e, "--token-file", &reader],
        &[],
        b"",
    )
    .code(5);
    let r = vkv_with(
        &["backup", "-", "--endpoints", &e, "--token-file", &admin],
        &[],
        b"",
    );
    assert!(r.code(0).stdout.starts_with("SQLite format 3"));
    // An unknown token: 401.
    vkv_with(
        &["get", "k", "--endpoints", &e],
        &[("VKV_TOKEN", "nope")],
        b"",
    )
    .code(5);
    // A refusal is an answer: the next endpoint is not asked.
    let r = vkv_with(
        &[
            "get",
            "k",
            "--endpoints",
            &format!("{e},http://127.0.0.1:1"),
        ],
        &[],
        b"",
    );
    r.code(5);
    assert!(!r.stderr.contains("127.0.0.1:1"), "{r:?}");
    // The value written with tokens is there.
    let r = vkv_with(
        &["get", "k", "--endpoints", &e],
        &[("VKV_TOKEN", READER)],
        b"",
    );
    assert_eq!(r.code(0).out(), "2");
    // The change feed needs a token too, a reader's.
    vkv_with(&["changes", "--after", "0", "--endpoints", &e], &[], b"").code(5);
    let r = vkv_with(
        &["changes", "--after", "0", "--endpoints", &e],
        &[("VKV_TOKEN", READER)],
        b"",
    );
    let lines: Vec<&str> = r.code(0).out().lines().collect();
    assert_eq!(lines.len(), 3, "two puts and where to resume: {r:?}");
    assert!(lines[1].ends_with("\tupdate\tk\t2\t2"), "{r:?}");
}

#[test]
fn an_unreadable_or_empty_token_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = auth_server(dir.path());
    let e = url(&s);
    let r = vkv_with(
        &[
            "get",
            "k",
            "--endpoints",
            &e,
            "--token-file",
            "/nonexistent/t",
        ],
        &[],
        b"",
    );
    r.code(2);
    assert!(r.stderr.contains("/nonexistent/t"), "{r:?}");
    let empty = token_file(dir.path(), "empty", "");
    let r = vkv_with(
        &["get", "k", "--endpoints", &e, "--token-file", &empty],
        &[],
        b"",
    );
    r.code(2);
    assert!(r.stderr.contains("no token"), "{r:?}");
    // A token that would break the header is refused before it is sent.
    let r = vkv_with(
        &["get", "k", "--endpoints", &e],
        &[("VKV_TOKEN", "a\r\nX-Evil: 1")],
        b"",
    );
    r.code(2);
    assert!(r.stderr.contains("control characters"), "{r:?}");
    // The token never shows in what vkv prints.
    let wrong = token_file(dir.path(), "wrong", "secret-Zx81");
    let r = vkv_with(
        &["get", "k", "--endpoints", &e, "--token-file", &wrong],
        &[],
        b"",
    );
    r.code(5);
    assert!(!r.stderr.contains("secret-Zx81"), "{r:?}");
}
