//! docs/api.md, the HTTP reference, against the server's OpenAPI document:
//! the two cannot drift apart.
//!
//! docs/api.md gives each endpoint a section headed ``### `METHOD /path` ``.
//! Every operation of `/openapi.json` must have one, naming each of its
//! parameters, response headers and statuses (the refusals every endpoint
//! shares, `401`, `403` and `415`, are documented once, in the section
//! "Refusals before any handler"); and every section must be an operation
//! of the document.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::Server;

/// The statuses the router's rules add to every operation, documented once.
const SHARED_REFUSALS: [&str; 3] = ["401", "403", "415"];
const SHARED_SECTION: &str = "Refusals before any handler";

/// docs/api.md split into sections: heading text -> body, for headings of
/// level 2 and 3.
fn sections(markdown: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        let heading = line
            .strip_prefix("### ")
            .or_else(|| line.strip_prefix("## "));
        if let Some(title) = heading {
            if let Some((t, body)) = current.take() {
                out.insert(t, body);
            }
            current = Some((title.trim().to_string(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((t, body)) = current {
        out.insert(t, body);
    }
    out
}

/// An endpoint heading: ``### `GET /get/{key}` `` -> ("get", "/get/{key}").
fn endpoint(title: &str) -> Option<(String, String)> {
    let inner = title.strip_prefix('`')?.strip_suffix('`')?;
    let (method, path) = inner.split_once(' ')?;
    let known = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    (known.contains(&method) && path.starts_with('/'))
        .then(|| (method.to_ascii_lowercase(), path.to_string()))
}

#[test]
fn docs_api_md_and_the_openapi_document_agree() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md");
    let markdown = std::fs::read_to_string(path).expect("docs/api.md");
    let sections = sections(&markdown);
    let documented: BTreeMap<(String, String), &String> = sections
        .iter()
        .filter_map(|(title, body)| endpoint(title).map(|e| (e, body)))
        .collect();
    assert!(
        !documented.is_empty(),
        "no endpoint sections in docs/api.md"
    );
    let shared = sections
        .get(SHARED_SECTION)
        .unwrap_or_else(|| panic!("docs/api.md has no section '{SHARED_SECTION}'"));
    for status in SHARED_REFUSALS {
        assert!(
            shared.contains(&format!("`{status}`")),
            "docs/api.md '{SHARED_SECTION}' does not explain {status}"
        );
    }

    let s = Server::start(&[]);
    let doc = s.client().get("/openapi.json").json();
    let mut operations = BTreeSet::new();
    let mut missing = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let key = (method.clone(), path.clone());
            operations.insert(key.clone());
            let heading = format!("### `{} {path}`", method.to_uppercase());
            let Some(body) = documented.get(&key) else {
                missing.push(format!("no section {heading}"));
                continue;
            };
            for param in op["parameters"].as_array().into_iter().flatten() {
                let name = param["name"].as_str().unwrap();
                if !body.contains(&format!("`{name}`")) {
                    missing.push(format!("{heading}: parameter `{name}` not described"));
                }
            }
            for (status, answer) in op["responses"].as_object().unwrap() {
                if SHARED_REFUSALS.contains(&status.as_str()) {
                    continue;
                }
                if !body.contains(&format!("`{status}`")) {
                    missing.push(format!("{heading}: status `{status}` not described"));
                }
                for header in answer["headers"].as_object().into_iter().flatten() {
                    if !body.contains(header.0.as_str()) {
                        missing.push(format!(
                            "{heading}: header {} of {status} not described",
                            header.0
                        ));
                    }
                }
            }
        }
    }
    for (method, path) in documented.keys() {
        if !operations.contains(&(method.clone(), path.clone())) {
            missing.push(format!(
                "docs/api.md documents {} {path}, which /openapi.json does not have",
                method.to_uppercase()
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/api.md and /openapi.json disagree:\n{}",
        missing.join("\n")
    );
}
