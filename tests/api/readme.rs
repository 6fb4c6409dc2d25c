//! The README and the operations guide say what the server does: the
//! README's claims about curl hold, no paragraph is said twice, and the
//! list of PostgreSQL tables is the schema's. (The README's tour is run
//! against a real server, its answers compared, by scripts/readme-tour.sh
//! in CI.)

use crate::common::{Client, Server};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

fn operations() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap()
}

/// A README curl command: method, path, headers, body.
struct Curl {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Parses `curl [-X M] URL [-H 'N: V'] [-d 'BODY']` (single-quoted words).
fn parse_curl(command: &str) -> Curl {
    let mut words = Vec::new();
    let mut rest = command.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.find('\'').unwrap();
            words.push(quoted[..end].to_string());
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            words.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    let mut curl = Curl {
        method: "GET".into(),
        path: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let mut it = words.into_iter().skip(1);
    while let Some(w) = it.next() {
        match w.as_str() {
            "-X" => curl.method = it.next().unwrap(),
            "-H" => {
                let h = it.next().unwrap();
                let (n, v) = h.split_once(':').unwrap();
                curl.headers.push((n.trim().into(), v.trim().into()));
            }
            "-d" => {
                curl.body = it.next().unwrap().into_bytes();
                if curl.method == "GET" {
                    curl.method = "POST".into();
                }
            }
            url => {
                let path = url.split_once("8080").map(|(_, p)| p).unwrap_or(url);
                curl.path = path.to_string();
            }
        }
    }
    // curl -d sends this type unless told another.
    if !curl.body.is_empty()
        && !curl
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        curl.headers.push((
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
    }
    curl
}

fn send(c: &mut Client, curl: &Curl) -> crate::common::Resp {
    let headers: Vec<(&str, &str)> = curl
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    c.request(&curl.method, &curl.path, &headers, &curl.body)
}

/// "curl -d" without `Content-Type: application/json` sends a form type,
/// which vkv refuses with 415; the README says exactly that.
#[test]
fn readme_says_what_curl_d_without_a_content_type_gets() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = send(
        &mut c,
        &parse_curl("curl -X POST http://127.0.0.1:8080/put/k -d '{\"value\": 1}'"),
    );
    assert_eq!(r.status, 415, "{}", r.text());
    let text = readme();
    let intro = &text[..text.find("## Set-up").unwrap()];
    assert!(
        intro.contains("`curl -d`") && intro.contains("`415`"),
        "the README's promise about curl scripts does not say what `curl -d` gets:\n{intro}"
    );
    assert!(
        !text.contains("curl scripts keep working;"),
        "the README still promises that curl scripts without a Content-Type keep working"
    );
}

#[test]
fn readme_says_no_paragraph_twice() {
    let text = readme();
    let mut seen = std::collections::HashSet::new();
    for paragraph in text.split("\n\n").map(str::trim) {
        if paragraph.len() < 80 {
            continue;
        }
        assert!(
            seen.insert(paragraph),
            "this paragraph appears twice:\n{paragraph}"
        );
    }
}

#[test]
fn readme_lists_every_postgresql_table() {
    let schema = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/storage/postgres/schema.rs"
    ))
    .unwrap();
    let tables: Vec<&str> = schema
        .split("CREATE TABLE ")
        .skip(1)
        .map(|rest| {
            let rest = rest.trim_start_matches("IF NOT EXISTS ");
            &rest[..rest
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .unwrap()]
        })
        .collect();
    assert!(tables.contains(&"vkv_acks"), "{tables:?}");
    let text = operations();
    let list = &text[text
        .find("- The tables (")
        .expect("the schema's table list in docs/operations.md")..];
    let list = &list[..list.find(')').unwrap()];
    for table in tables {
        assert!(
            list.contains(&format!("`{table}`")),
            "the README's list of tables misses {table}: {list}"
        );
    }
}
