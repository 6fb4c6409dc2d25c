//! The README, the operations guide and ARCHITECTURE.md say what the code
//! does: the README's claims about curl hold, it stays short and says no
//! paragraph twice, the list of PostgreSQL tables is the schema's, and
//! ARCHITECTURE.md's code map names every file under src/. (The README's
//! tour is run against a real server, its answers compared, by
//! scripts/readme-tour.sh in CI.)

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

#[test]
fn readme_is_at_most_250_lines() {
    let lines = readme().lines().count();
    assert!(
        lines <= 250,
        "the README has {lines} lines: move the details into a guide under docs/"
    );
}

/// Every file under `dir`, as paths relative to `root` with `/`.
fn files_under(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap();
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
}

/// ARCHITECTURE.md's code map has a row for every file under src/, named
/// in its first column by its path under `src/` or under its top
/// directory (`handlers/kv.rs` in the `src/http/` table), with its job.
#[test]
fn architecture_names_every_file_under_src() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let map =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md")).unwrap();
    let named: std::collections::HashSet<&str> = map
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .filter(|(_, job)| job.trim().len() > 3)
        .map(|(name, _)| name)
        .collect();
    let mut files = Vec::new();
    files_under(root, root, &mut files);
    assert!(files.len() > 50, "{files:?}");
    let missing: Vec<&String> = files
        .iter()
        .filter(|f| {
            let short = f.split_once('/').map(|(_, rest)| rest);
            !named.contains(f.as_str()) && short.is_none_or(|s| !named.contains(s))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map has no row (| `path` | job |) for {missing:?}"
    );
    // And no row names a file that is gone.
    let gone: Vec<&&str> = named
        .iter()
        .filter(|name| {
            !name.contains(' ') && name.rsplit_once('.').is_some_and(|(_, ext)| ext.len() <= 4)
        })
        .filter(|name| {
            !files
                .iter()
                .any(|f| f == *name || f.split_once('/').is_some_and(|(_, rest)| rest == **name))
        })
        .collect();
    assert!(
        gone.is_empty(),
        "ARCHITECTURE.md's code map names files that are not under src/: {gone:?}"
    );
}
