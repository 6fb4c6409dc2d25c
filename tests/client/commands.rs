//! Each command's output and exit codes against a real server.

use crate::common::feed::json_lines;
use crate::common::{Server, json, sqlite_only};
use crate::{on, url, vkv_with};

#[test]
fn put_takes_json_when_it_parses_and_get_prints_the_value_alone() {
    let s = Server::start(&[]);
    on(&s, &["put", "k", "on"]).code(0);
    assert_eq!(on(&s, &["get", "k"]).code(0).out(), "on");
    let r = on(&s, &["get", "k", "-o", "json"]);
    let whole: serde_json::Value = serde_json::from_str(r.code(0).out()).unwrap();
    assert_eq!(whole["value"], json!("on"));
    assert_eq!(whole["version"], json!(1));
    assert_eq!(whole["key"], json!("k"));

    let r = on(&s, &["put", "k", r#"{"a": [1, 2.50]}"#]);
    assert_eq!(r.code(0).out(), "updated k to version 2");
    // Not a string: printed as the JSON stored, byte for byte.
    assert_eq!(on(&s, &["get", "k"]).out(), r#"{"a": [1, 2.50]}"#);
    assert_eq!(on(&s, &["get", "k", "--version", "1"]).out(), "on");

    // --string: 42 stays the string "42"; without, it is a number.
    on(&s, &["put", "n", "42", "--string"]).code(0);
    let mut c = s.client();
    assert_eq!(c.get("/get/n").json()["value"], json!("42"));
    on(&s, &["put", "n", "42"]).code(0);
    assert_eq!(c.get("/get/n").json()["value"], json!(42));
    // Not JSON: a string, spaces and quotes kept.
    on(&s, &["put", "n", "hello \"world\""]).code(0);
    assert_eq!(c.get("/get/n").json()["value"], json!("hello \"world\""));
    assert_eq!(on(&s, &["get", "n"]).out(), "hello \"world\"");
    // Digits beyond a double's precision survive the round trip.
    on(&s, &["put", "big", "12345678901234567890123"]).code(0);
    assert_eq!(on(&s, &["get", "big"]).out(), "12345678901234567890123");
    // A value starting with '-' is a value, not a flag.
    on(&s, &["put", "neg", "-5"]).code(0);
    assert_eq!(c.get("/get/neg").json()["value"], json!(-5));

    // `-` reads stdin: JSON when it parses, else the exact text.
    let e = url(&s);
    let ran = vkv_with(
        &["put", "in", "-", "--endpoints", &e],
        &[],
        b"{\"x\": true}\n",
    );
    ran.code(0);
    assert_eq!(c.get("/get/in").json()["value"], json!({"x": true}));
    vkv_with(&["put", "in", "-", "--endpoints", &e], &[], b"two\nlines\n").code(0);
    assert_eq!(c.get("/get/in").json()["value"], json!("two\nlines\n"));
    assert_eq!(on(&s, &["get", "in"]).stdout, "two\nlines\n\n");
    // Not UTF-8: a usage error, nothing written.
    vkv_with(&["put", "in", "-", "--endpoints", &e], &[], &[0xff, 0xfe]).code(2);
    assert_eq!(c.get("/get/in").json()["version"], json!(2));
}

#[test]
fn keys_with_slashes_spaces_and_unicode_reach_the_server_intact() {
    let s = Server::start(&[]);
    for key in ["a/b/c", "with space", "ü/ß?#&%", "x+y=z"] {
        on(&s, &["put", key, "1"]).code(0);
        assert_eq!(on(&s, &["get", key]).code(0).out(), "1", "{key}");
    }
    let listed = on(&s, &["ls"]).code(0).stdout.clone();
    let mut want = vec!["a/b/c", "with space", "x+y=z", "ü/ß?#&%"];
    want.sort();
    assert_eq!(listed.lines().collect::<Vec<_>>(), want);
    let mut c = s.client();
    assert_eq!(c.get("/get/with%20space").status, 200);
    assert_eq!(c.get("/get/x%2By%3Dz").status, 200);
}

#[test]
fn conditions_and_exit_codes_for_missing_and_conflicting_keys() {
    let s = Server::start(&["--max-versions", "2"]);
    // 404: exit 3, the server's words on stderr.
    let r = on(&s, &["get", "nope"]);
    r.code(3);
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(
        r.stderr.contains("not found") && r.stderr.contains("404"),
        "{r:?}"
    );
    on(&s, &["put", "k", "1", "--if-version", "0"]).code(0);
    // 409: exit 4, nothing written.
    let r = on(&s, &["put", "k", "2", "--if-version", "0"]);
    r.code(4);
    assert!(r.stderr.contains("409"), "{r:?}");
    on(&s, &["put", "k", "2", "--if-version", "5"]).code(4);
    assert_eq!(on(&s, &["get", "k"]).out(), "1");
    on(&s, &["put", "k", "2", "--if-version", "1"]).code(0);
    on(&s, &["put", "k", "3"]).code(0);
    // A missing version: 3; a version removed by retention (410): 3.
    on(&s, &["get", "k", "--version", "9"]).code(3);
    let r = on(&s, &["get", "k", "--version", "1"]);
    r.code(3);
    assert!(r.stderr.contains("410"), "{r:?}");
    // A deleted key: 3, and the version of the deletion in the message.
    assert_eq!(
        on(&s, &["del", "k"]).code(0).out(),
        "deleted k at version 4"
    );
    let r = on(&s, &["get", "k"]);
    r.code(3);
    assert!(r.stderr.contains("deleted"), "{r:?}");
    on(&s, &["del", "k"]).code(3);
    // 422 (an invalid key; a value nested too deep): exit 1.
    let r = on(&s, &["put", &"k".repeat(1025), "1"]);
    r.code(1);
    assert!(r.stderr.contains("422"), "{r:?}");
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    on(&s, &["put", "deep", &deep]).code(1);
    // Usage errors: 2, nothing sent.
    on(&s, &["put", "k"]).code(2);
    on(&s, &["get", "k", "-o", "yaml"]).code(2);
    on(&s, &["get", "k", "--version", "0"]).code(2);
    let r = on(&s, &["get", "k", "--db", "x.db"]);
    r.code(2);
    assert!(r.stderr.contains("server flag"), "{r:?}");
    on(&s, &["get", "k", "--endpoints", "ftp://x"]).code(2);
}

#[test]
fn del_with_if_version_is_conditional() {
    let s = Server::start(&[]);
    on(&s, &["put", "k", "1"]).code(0);
    on(&s, &["put", "k", "2"]).code(0);
    let r = on(&s, &["del", "k", "--if-version", "1"]);
    r.code(4);
    assert_eq!(on(&s, &["get", "k"]).code(0).out(), "2");
    on(&s, &["del", "k", "--if-version", "2"]).code(0);
    on(&s, &["get", "k"]).code(3);
}

#[test]
fn purge_history_and_json_output() {
    let s = Server::start(&[]);
    on(&s, &["put", "k", "1"]).code(0);
    on(&s, &["put", "k", "\"two\""]).code(0);
    on(&s, &["del", "k"]).code(0);
    let r = on(&s, &["history", "k"]);
    let lines: Vec<&str> = r.code(0).out().lines().collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(
        lines[0].starts_with("3\t") && lines[0].ends_with("\tdeleted"),
        "{r:?}"
    );
    assert!(
        lines[1].starts_with("2\t") && lines[1].ends_with("\t5 bytes"),
        "{r:?}"
    );
    assert!(lines[2].starts_with("1\t"), "{r:?}");
    let r = on(&s, &["history", "k", "--limit", "2", "-o", "json"]);
    let entries = json_lines(r.code(0).out());
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["version"], json!(3));
    assert_eq!(entries[0]["deleted"], json!(true));
    assert_eq!(entries[1]["size_bytes"], json!(5));
    on(&s, &["history", "nope"]).code(3);

    let r = on(&s, &["del", "k", "--purge"]);
    assert_eq!(r.code(0).out(), "purged k: 3 versions removed");
    on(&s, &["history", "k"]).code(3);
    on(&s, &["put", "j", "1"]).code(0);
    let r = on(&s, &["del", "j", "-o", "json"]);
    let answer: serde_json::Value = serde_json::from_str(r.code(0).out()).unwrap();
    assert_eq!(answer["version"], json!(2));
    let r = on(&s, &["put", "j", "[1]", "-o", "json"]);
    let answer: serde_json::Value = serde_json::from_str(r.code(0).out()).unwrap();
    assert_eq!(answer["version"], json!(3));
}

#[test]
fn ls_pages_through_a_prefix_with_or_without_values() {
    let s = Server::start(&[]);
    // Over one page (the server gives 1,000 keys at most per page).
    for chunk in 0..2 {
        let puts: Vec<_> = (chunk * 600..(chunk + 1) * 600)
            .map(|i| json!({ "key": format!("p/{i:05}"), "value": { "i": i } }))
            .collect();
        let body = serde_json::to_vec(&json!({ "puts": puts })).unwrap();
        let e = url(&s);
        vkv_with(&["batch", "-", "--endpoints", &e], &[], &body).code(0);
    }
    on(&s, &["put", "q", "\"other\""]).code(0);
    let r = on(&s, &["ls", "p/"]);
    let keys: Vec<&str> = r.code(0).out().lines().collect();
    assert_eq!(keys.len(), 1200);
    assert_eq!(keys[0], "p/00000");
    assert_eq!(keys[1199], "p/01199");
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "not in order");
    assert_eq!(on(&s, &["ls"]).out().lines().count(), 1201);
    assert_eq!(on(&s, &["ls", "nothing/"]).code(0).stdout, "");

    on(&s, &["put", "v/a", "{\n  \"x\": 1\n}"]).code(0);
    on(&s, &["put", "v/b", "text\twith tab"]).code(0);
    on(&s, &["put", "v/c", "gone"]).code(0);
    on(&s, &["del", "v/c"]).code(0);
    let r = on(&s, &["ls", "v/", "--values"]);
    assert_eq!(r.code(0).out(), "v/a\t{\"x\":1}\nv/b\t\"text\\twith tab\"");
    let r = on(&s, &["ls", "v/", "--values", "-o", "json"]);
    let rows = json_lines(r.code(0).out());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["key"], json!("v/a"));
    assert_eq!(rows[0]["value"], json!({"x": 1}));
    assert_eq!(rows[0]["version"], json!(1));
    assert!(
        rows[1]["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

#[test]
fn a_reader_that_stops_early_ends_ls_quietly() {
    let s = Server::start(&[]);
    let puts: Vec<_> = (0..1000)
        .map(|i| json!({ "key": format!("k{i:04}"), "value": "x".repeat(100) }))
        .collect();
    let mut c = s.client();
    let body = serde_json::to_vec(&json!({ "puts": puts })).unwrap();
    assert_eq!(c.request("POST", "/batch", &[], &body).status, 200);
    let script = format!(
        "\"$VKV\" ls --values --endpoints {} | head -1; echo \"status ${{PIPESTATUS[0]}}\"",
        url(&s)
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("VKV", env!("CARGO_BIN_EXE_vkv"))
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("k0000\t\"xxx"), "{text}");
    assert!(text.ends_with("status 0\n"), "{text}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn batch_from_a_file_or_stdin_all_or_nothing() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.json");
    std::fs::write(
        &file,
        r#"{"puts": [{"key": "a", "value": 1}, {"key": "b", "value": {"n": 2}}]}"#,
    )
    .unwrap();
    let r = on(&s, &["batch", file.to_str().unwrap()]);
    assert_eq!(
        r.code(0).out(),
        "created a at version 1\ncreated b at version 1"
    );
    // One failed condition: nothing written, exit 4.
    let e = url(&s);
    let body =
        br#"{"puts": [{"key": "a", "value": 3}, {"key": "b", "value": 4, "if_version": 7}]}"#;
    vkv_with(&["batch", "-", "--endpoints", &e], &[], body).code(4);
    assert_eq!(on(&s, &["get", "a"]).out(), "1");
    let r = vkv_with(
        &["batch", "-", "-o", "json", "--endpoints", &e],
        &[],
        br#"{"puts": [{"key": "a", "value": 3}]}"#,
    );
    let answer: serde_json::Value = serde_json::from_str(r.code(0).out()).unwrap();
    assert_eq!(answer["results"][0]["version"], json!(2));
    // Not a batch body: the server's 422, exit 1.
    vkv_with(&["batch", "-", "--endpoints", &e], &[], b"[1, 2]").code(1);
    // A file that is not there: exit 1, named.
    let r = on(&s, &["batch", "/nonexistent/b.json"]);
    r.code(1);
    assert!(r.stderr.contains("/nonexistent/b.json"), "{r:?}");
}

#[test]
fn backup_downloads_a_snapshot_that_vkv_check_accepts() {
    if sqlite_only("the snapshot is checked with `vkv check` on a file") {
        return;
    }
    let s = Server::start(&[]);
    let mut c = s.client();
    crate::common::write_mix(&mut c);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    let f = file.to_str().unwrap();
    let r = on(&s, &["backup", f]);
    assert!(
        r.code(0).out().starts_with(&format!("wrote {f} (")),
        "{r:?}"
    );
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"));
    assert!(!dir.path().join("snap.db.partial").exists());
    let check = crate::common::run(&["check", "--db", f]);
    assert!(
        check.status.success(),
        "{}",
        crate::common::output_text(&check)
    );
    // An existing file is kept unless --force.
    std::fs::write(&file, b"keep").unwrap();
    let r = on(&s, &["backup", f]);
    r.code(1);
    assert!(r.stderr.contains("--force"), "{r:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    on(&s, &["backup", f, "--force"]).code(0);
    assert!(
        std::fs::read(&file)
            .unwrap()
            .starts_with(b"SQLite format 3\0")
    );
    // To stdout.
    let r = on(&s, &["backup", "-"]);
    assert!(r.code(0).stdout.starts_with("SQLite format 3"));
}

#[test]
fn put_takes_a_ttl_or_a_lease() {
    if crate::common::on_postgres() {
        return;
    }
    let s = Server::start(&[]);
    on(&s, &["put", "svc/a", "up", "--ttl", "1m 30s"]).code(0);
    let got = s.client().get("/get/svc/a").json();
    assert!(got["expires_at"].is_string(), "{got}");
    let r = on(&s, &["put", "svc/b", "up", "--lease", "7"]);
    assert!(r.stderr.contains("lease 7"), "{}", r.stderr);
    r.code(3);
    let r = on(&s, &["put", "svc/c", "up", "--ttl", "0"]);
    assert!(r.stderr.contains("30days"), "{}", r.stderr);
    r.code(1);
    on(&s, &["put", "k", "v", "--ttl", "5s", "--lease", "1"]).code(2);
}
