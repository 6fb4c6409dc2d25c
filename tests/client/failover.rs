//! `--endpoints`: a dead endpoint or one answering `503` is passed over for
//! the next; when none answers, exit 6 naming each and why.

use crate::common::{Server, free_port, json, sqlite_only};
use crate::{on, url, vkv_with};

#[test]
fn a_dead_endpoint_first_is_passed_over() {
    let s = Server::start(&[]);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let both = format!("{dead},{}", url(&s));
    vkv_with(&["put", "k", "1", "--endpoints", &both], &[], b"").code(0);
    let r = vkv_with(&["get", "k", "--endpoints", &both], &[], b"");
    assert_eq!(r.code(0).out(), "1");
    assert!(r.stderr.is_empty(), "{r:?}");
    // From the environment as well.
    let r = vkv_with(&["get", "k"], &[("VKV_ENDPOINTS", &both)], b"");
    assert_eq!(r.code(0).out(), "1");
    // A listing of several pages stays on the endpoint that answered.
    let r = vkv_with(&["ls", "--values", "--endpoints", &both], &[], b"");
    assert_eq!(r.code(0).out(), "k\t1");
}

#[test]
fn no_endpoint_answering_is_exit_6_naming_each() {
    let (a, b) = (free_port(), free_port());
    let endpoints = format!("http://127.0.0.1:{a},127.0.0.1:{b}");
    for args in [
        vec!["get", "k"],
        vec!["put", "k", "1"],
        vec!["ls"],
        vec!["backup", "-"],
    ] {
        let mut all = args.clone();
        all.extend(["--endpoints", &endpoints]);
        let r = vkv_with(&all, &[], b"");
        r.code(6);
        assert!(
            r.stderr
                .contains(&format!("127.0.0.1:{a}: connection refused"))
                && r.stderr
                    .contains(&format!("127.0.0.1:{b}: connection refused")),
            "{r:?}"
        );
    }
}

#[test]
fn an_endpoint_answering_503_is_passed_over() {
    if sqlite_only("a vanished SQLite directory is what answers 503 here") {
        return;
    }
    // Server A loses its database directory: its writes answer 503.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let a = Server::start_on(&data.join("kv.db"), &[]);
    let b = Server::start(&[]);
    std::fs::remove_dir_all(&data).unwrap();
    let mut ca = a.client();
    assert_eq!(ca.put("x", &json!(1)).status, 503);

    let both = format!("{},{}", url(&a), url(&b));
    let r = vkv_with(&["put", "k", "from-b", "--endpoints", &both], &[], b"");
    r.code(0);
    assert_eq!(b.client().get("/get/k").json()["value"], json!("from-b"));
    // A alone: every endpoint answered 503: exit 6, with A's reason.
    let r = on(&a, &["put", "k", "1"]);
    r.code(6);
    assert!(
        r.stderr.contains("503") && r.stderr.contains("gone"),
        "{r:?}"
    );
}

#[cfg(not(feature = "tls"))]
#[test]
fn https_without_tls_support_is_a_usage_error() {
    let r = vkv_with(
        &["get", "k", "--endpoints", "https://127.0.0.1:1"],
        &[],
        b"",
    );
    r.code(2);
    assert!(r.stderr.contains("without TLS support"), "{r:?}");
}
