//! The key browser's server side: the page and its assets at `/ui`, the
//! delimiter listing of `GET /keys` it browses folders with (on SQLite, and
//! on PostgreSQL when `VKV_TEST_PG` is set), and `GET /auth/whoami`. The
//! page itself is tested in headless Chromium by `scripts/ui-browser.py`.

use std::io::Read;

use crate::common::{Client, Server, json};

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[test]
fn ui_page_is_served_with_a_strict_content_security_policy() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.get("/ui?prefix=a/b/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let html = r.text();
    // No inline script: every script element loads a file of this origin.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=\"/ui/app.js?v=").count(),
        "{html}"
    );
    assert!(html.contains("href=\"/ui/app.css?v="), "{html}");
    assert!(
        !html.contains("{{VERSION}}"),
        "the asset version is not filled in"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );

    let mut size = html.len();
    for (asset, marker, content_type) in [
        ("app.js", "textContent", "text/javascript; charset=utf-8"),
        ("app.css", "prefers-color-scheme", "text/css; charset=utf-8"),
    ] {
        let path = format!("/ui/{asset}?v=any");
        let gz = c.request("GET", &path, &[("Accept-Encoding", "gzip")], b"");
        assert_eq!(gz.status, 200, "{asset}");
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        assert_eq!(gz.header("content-type"), Some(content_type));
        assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
        let text = gunzip(&gz.body);
        assert!(text.contains(marker), "{asset}");
        // Nothing from another site.
        assert!(!text.contains("https://"), "{asset} loads from elsewhere");
        let plain = c.get(&path);
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.text(), text, "{asset}");
        size += gz.body.len();
    }
    // What the page adds to the binary: the page, the gzipped assets.
    assert!(size < 150 * 1024, "the key browser takes {size} bytes");
    assert!(!html.contains("innerHTML"));
    let js = c.get("/ui/app.js").text();
    assert!(
        !js.contains("innerHTML") && !js.contains("insertAdjacentHTML") && !js.contains("eval("),
        "the script must set data as text only"
    );
    assert_eq!(c.get("/ui/nope.js").status, 404);
    assert_eq!(c.request("POST", "/ui", &[], b"{}").status, 405);
}

/// `GET /keys?delimiter=/&...` as `(prefixes, keys, next_after)`.
fn level(c: &mut Client, query: &str) -> (Vec<String>, Vec<String>, Option<String>) {
    let r = c.get(&format!("/keys?delimiter=/&{query}"));
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    let page = r.json();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    let keys = page["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap().to_string())
        .collect();
    let next = page["next_after"].as_str().map(str::to_string);
    (strings(&page["prefixes"]), keys, next)
}

#[test]
fn keys_with_a_delimiter_list_one_level_as_folders_and_keys() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let mut puts = Vec::new();
    for key in [
        "a", "a/1", "a/2", "a/b/c", "a/b/d", "b", "c/", "c/x", "d/e/f", "gone/x", "é/1",
    ] {
        puts.push(json!({"key": key, "value": {"k": key}}));
    }
    // A folder large enough that skipping it takes a seek, not one page.
    for i in 0..250 {
        puts.push(json!({"key": format!("m/{i:03}"), "value": i}));
    }
    let r = c.request(
        "POST",
        "/batch",
        &[],
        json!({ "puts": puts }).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // A folder whose keys are all deleted is not listed.
    assert_eq!(
        c.request("DELETE", "/delete/gone%2Fx", &[], b"").status,
        200
    );

    let root = level(&mut c, "");
    assert_eq!(root.0, ["a/", "c/", "d/", "m/", "é/"]);
    assert_eq!(root.1, ["a", "b"]);
    assert_eq!(root.2, None);
    let a = level(&mut c, "prefix=a%2F");
    assert_eq!(
        (a.0, a.1),
        (
            vec!["a/b/".to_string()],
            vec!["a/1".to_string(), "a/2".to_string()]
        )
    );
    // A prefix that does not end at the delimiter, as S3 does it.
    let a = level(&mut c, "prefix=a");
    assert_eq!((a.0, a.1), (vec!["a/".to_string()], vec!["a".to_string()]));
    let c_level = level(&mut c, "prefix=c/");
    assert_eq!(
        (c_level.0.len(), c_level.1),
        (0, vec!["c/".to_string(), "c/x".to_string()])
    );
    let m = level(&mut c, "prefix=m/&limit=1000");
    assert_eq!((m.0.len(), m.1.len(), m.2), (0, 250, None));

    // Pages of two: keys and folders count alike, and `after` a folder
    // resumes after the whole folder.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let query = match &after {
            Some(a) => format!("limit=2&after={}", percent(a)),
            None => "limit=2".to_string(),
        };
        let (prefixes, keys, next) = level(&mut c, &query);
        assert!(prefixes.len() + keys.len() <= 2);
        let mut page: Vec<String> = prefixes.into_iter().chain(keys).collect();
        page.sort();
        seen.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["a", "a/", "b", "c/", "d/", "m/", "é/"]);
    let past_m = level(&mut c, "after=m%2F");
    assert_eq!((past_m.0, past_m.1), (vec!["é/".to_string()], vec![]));
    let inside_a = level(&mut c, "after=a%2Fb%2Fc");
    assert_eq!(
        inside_a.1,
        ["b"],
        "after a key inside a folder skips that folder"
    );

    // Without a delimiter the answer is as it was: no `prefixes`.
    let plain = c.get("/keys?prefix=a/").json();
    assert!(plain.get("prefixes").is_none(), "{plain}");
    assert_eq!(plain["keys"].as_array().unwrap().len(), 4);
    // An empty delimiter and a bad limit are refused.
    let r = c.get("/keys?delimiter=");
    assert_eq!((r.status, r.detail().contains("delimiter")), (422, true));
    assert_eq!(c.get("/keys?delimiter=/&limit=0").status, 422);
    assert_eq!(c.get("/keys?delimiter=/&limit=1001").status, 422);
}

#[test]
fn the_openapi_document_describes_the_delimiter_listing_and_whoami() {
    let s = Server::start(&[]);
    let doc = s.client().get("/openapi.json").json();
    let params = doc["paths"]["/keys"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "delimiter" && p["in"] == "query"),
        "{params:?}"
    );
    let prefixes = &doc["components"]["schemas"]["KeysResponse"]["properties"]["prefixes"];
    assert_eq!(prefixes["type"], "array", "{prefixes}");
    let whoami = &doc["paths"]["/auth/whoami"]["get"];
    assert_eq!(
        whoami["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/WhoAmIResponse"
    );
    assert!(whoami["responses"]["401"].is_object());
    // The page is not an API operation.
    assert!(doc["paths"].get("/ui").is_none());
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn whoami_names_the_tokens_scope() {
    let open = Server::start(&[]);
    let r = open.client().get("/auth/whoami");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"scope": "admin", "auth": false}));

    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "ui-reader-0123456789 read\nui-writer-0123456789 write\nui-admin-01234567890 admin\n",
    )
    .unwrap();
    let s = Server::start(&["--auth-tokens", tokens.to_str().unwrap()]);
    for (token, scope) in [
        ("ui-reader-0123456789", "read"),
        ("ui-writer-0123456789", "write"),
        ("ui-admin-01234567890", "admin"),
    ] {
        let r = s.client().with_token(token).get("/auth/whoami");
        assert_eq!(r.status, 200, "{scope}");
        assert_eq!(r.json(), json!({"scope": scope, "auth": true}));
    }
    let mut anonymous = s.client();
    assert_eq!(anonymous.get("/auth/whoami").status, 401);
    let wrong = s
        .client()
        .with_token("not-a-token-at-all")
        .get("/auth/whoami");
    assert_eq!(wrong.status, 401);
    // The page and its assets hold no data: open without a token, as /docs.
    assert_eq!(anonymous.get("/ui").status, 200);
    assert_eq!(anonymous.get("/ui/app.js").status, 200);
    assert_eq!(anonymous.get("/keys?delimiter=/").status, 401);
}
