//! SIGHUP reloads `--auth-tokens` at once and whole; a bad file keeps the
//! tokens in force (and says why in the log); SIGHUP never stops vkv.

use std::path::Path;
use std::time::Duration;

use crate::auth::{READER, WRITER, auth_server};
use crate::common::*;

const FRESH: &str = "fresh-Vn4Kq8Rt2Lw6Yz0Pd";

/// Replaces `path` the way an operator should: write aside, then rename.
fn replace(path: &Path, content: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn status_with(s: &Server, token: &str) -> u16 {
    s.client().with_token(token).get("/keys").status
}

#[test]
fn sighup_swaps_the_tokens_and_a_bad_file_keeps_the_old_ones() {
    let (mut s, dir) = auth_server(&[]);
    let tokens = dir.path().join("tokens");
    assert_eq!(status_with(&s, WRITER), 200);
    assert_eq!(status_with(&s, FRESH), 401);

    replace(&tokens, &format!("{FRESH} write\n"));
    s.signal("HUP");
    assert!(
        poll_until(Duration::from_secs(10), || status_with(&s, FRESH) == 200),
        "the new token was never accepted:\n{}",
        s.log_text()
    );
    // Whole: the tokens no longer listed are refused at once.
    assert_eq!(status_with(&s, WRITER), 401);
    assert_eq!(status_with(&s, READER), 401);
    let r = s.client().with_token(FRESH).put("after-reload", &json!(1));
    assert_eq!(r.status, 200, "{}", r.text());

    // A malformed, an empty and a missing file: each logged, none applied.
    for (i, bad) in [Some("only-one-field\n"), Some("# nothing\n"), None]
        .into_iter()
        .enumerate()
    {
        match bad {
            Some(content) => replace(&tokens, content),
            None => std::fs::remove_file(&tokens).unwrap(),
        }
        s.signal("HUP");
        assert!(
            poll_until(Duration::from_secs(10), || {
                s.log_text()
                    .matches("keeping the 1 auth tokens loaded before")
                    .count()
                    > i
            }),
            "no log line for bad file {i}:\n{}",
            s.log_text()
        );
        assert_eq!(status_with(&s, FRESH), 200, "bad file {i} was applied");
        assert_eq!(status_with(&s, WRITER), 401);
        assert!(s.exited().is_none(), "SIGHUP stopped vkv");
    }
    let log = s.log_text();
    assert!(log.contains("tokens, line 1"), "{log}");
    assert!(
        !log.contains(FRESH) && !log.contains(WRITER),
        "a token reached the log"
    );
    assert!(s.terminate().success());
}

#[test]
fn sighup_without_auth_keeps_serving() {
    let mut s = Server::start(&[]);
    s.signal("HUP");
    assert!(
        poll_until(Duration::from_secs(10), || s
            .log_text()
            .contains("no --auth-tokens file to reload")),
        "{}",
        s.log_text()
    );
    assert!(s.exited().is_none(), "SIGHUP stopped vkv");
    assert_eq!(s.client().get("/health").status, 200);
    assert!(s.terminate().success());
}
