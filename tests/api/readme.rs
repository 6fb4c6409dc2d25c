//! The README says what the server does: its example answers are the bytes
//! the server sends, its claims about curl hold, no paragraph is said twice
//! and its list of PostgreSQL tables is the schema's.

use crate::common::{Client, Server};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The text of the first fenced code block after the heading `heading`.
fn code_after(text: &str, heading: &str) -> String {
    let rest = &text[text.find(heading).expect(heading)..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
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

/// `text` with every timestamp value written as `"..."`.
fn without_times(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("\"timestamp\":\"") {
        let value = &rest[i + 13..];
        out.push_str(&rest[..i + 13]);
        out.push_str("...\"");
        rest = &value[value.find('"').unwrap() + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn readme_example_answers_are_the_bytes_the_server_sends() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let block = code_after(&readme(), "## Using it");
    // Each command is sent when whole (it may continue over lines ending
    // in '\'); a `# {...}` line after it is its answer.
    let (mut command, mut last) = (String::new(), None);
    let mut checked = 0;
    for line in block.lines() {
        if let Some(expected) = line.strip_prefix("# ") {
            if expected.starts_with('{') {
                let (sent, answer): &(String, String) = last.as_ref().unwrap();
                assert_eq!(
                    without_times(answer),
                    without_times(expected),
                    "README answer of `{sent}`"
                );
                checked += 1;
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        command.push_str(line.trim().trim_end_matches('\\'));
        command.push(' ');
        if !line.ends_with('\\') {
            let r = send(&mut c, &parse_curl(&command));
            assert!(r.status < 300, "`{command}`: {} {}", r.status, r.text());
            last = Some((command.clone(), r.text()));
            command.clear();
        }
    }
    assert!(checked >= 2, "only {checked} example answers found");
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
    let text = readme();
    let list = &text[text
        .find("- The schema (")
        .expect("the schema's table list")..];
    let list = &list[..list.find(')').unwrap()];
    for table in tables {
        assert!(
            list.contains(&format!("`{table}`")),
            "the README's list of tables misses {table}: {list}"
        );
    }
}
