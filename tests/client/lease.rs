//! `vkv lease grant|keepalive|revoke|show|ls` against a real server.

use std::time::Duration;

use crate::common::{Server, json, poll_until};
use crate::on;

#[test]
fn grant_show_ls_keepalive_and_revoke_a_lease() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = on(&s, &["lease", "grant", "30s"]);
    let id: u64 = r.code(0).out().parse().expect("the id alone");
    let id_s = id.to_string();
    on(&s, &["put", "svc/a", "up", "--lease", &id_s]).code(0);
    on(&s, &["put", "svc/b", "up", "--lease", &id_s]).code(0);

    let show = on(&s, &["lease", "show", &id_s]);
    let out = show.code(0).out().to_string();
    assert!(out.starts_with(&format!("id\t{id}\nttl\t30s\n")), "{out}");
    assert!(out.contains("\nkey\tsvc/a\nkey\tsvc/b"), "{out}");
    let j: serde_json::Value = serde_json::from_str(
        on(&s, &["lease", "show", &id_s, "-o", "json"])
            .code(0)
            .out(),
    )
    .unwrap();
    assert_eq!(j["keys"], json!(["svc/a", "svc/b"]));

    let ls = on(&s, &["lease", "ls"]);
    assert!(
        ls.code(0).out().starts_with(&format!("{id}\t30s\t")),
        "{ls:?}"
    );

    let k = on(&s, &["lease", "keepalive", &id_s, "-o", "json"]);
    let j: serde_json::Value = serde_json::from_str(k.code(0).out()).unwrap();
    assert_eq!(j["id"], json!(id));

    let r = on(&s, &["lease", "revoke", &id_s]);
    assert_eq!(
        r.code(0).out(),
        format!("revoked lease {id}: 2 keys expired")
    );
    assert_eq!(c.get("/get/svc/a").status, 404);
    // Gone: every lease command on it exits 3.
    for args in [
        &["lease", "show", &id_s][..],
        &["lease", "revoke", &id_s],
        &["lease", "keepalive", &id_s],
        &["lease", "keepalive", &id_s, "--every", "1s"],
    ] {
        on(&s, args).code(3);
    }
    assert_eq!(on(&s, &["lease", "ls"]).code(0).out(), "");
    // A TTL the server refuses: exit 1; a bad id: usage.
    on(&s, &["lease", "grant", "0s"]).code(1);
    on(&s, &["lease", "show", "x"]).code(2);
}

#[test]
fn keepalive_every_keeps_a_short_lease_past_its_ttl() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let id = on(&s, &["lease", "grant", "1s"]).code(0).out().to_string();
    on(&s, &["put", "k", "v", "--lease", &id]).code(0);
    let mut keeper = crate::common::vkv()
        .args(["lease", "keepalive", &id, "--every", "300ms"])
        .args(["--endpoints", &crate::url(&s)])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Three TTLs later the key is still there.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(c.get("/get/k").status, 200, "expired while kept alive");
        std::thread::sleep(Duration::from_millis(200));
    }
    keeper.kill().unwrap();
    keeper.wait().unwrap();
    // Left alone, it runs out.
    assert!(poll_until(Duration::from_secs(5), || c
        .get("/get/k")
        .status
        == 404));
}
