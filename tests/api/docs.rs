//! The OpenAPI document and the embedded Swagger UI.

use std::time::Duration;

use crate::common::{Server, Value, json};

#[test]
fn openapi_document_and_router_agree_both_ways() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let doc = c.get("/openapi.json").json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in vkv::http::router::API_ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    // Every documented operation is served by the router: neither "no such
    // endpoint" nor 405 when called for real.
    let mut documented = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented += 1;
            assert!(
                vkv::http::router::API_ROUTES.contains(&(method.as_str(), path.as_str())),
                "{method} {path} is documented but not in API_ROUTES"
            );
            let url = path.replace("{key}", "doc-check");
            let r = c.request(&method.to_uppercase(), &url, &[], b"{}");
            assert_ne!(r.status, 405, "{method} {path}: {}", r.text());
            let body: Option<serde_json::Value> = serde_json::from_slice(&r.body).ok();
            let detail = body
                .as_ref()
                .and_then(|b| b.get("detail"))
                .and_then(|d| d.as_str())
                .map(str::to_owned);
            assert!(
                !detail.is_some_and(|d| d.starts_with("no such endpoint")),
                "{method} {path} is documented but not routed"
            );
        }
    }
    assert_eq!(documented, vkv::http::router::API_ROUTES.len());
}

#[test]
fn swagger_ui_is_served_from_the_binary() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for page in ["/docs", "/docs/"] {
        let r = c.get(page);
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        let html = r.text();
        assert!(
            html.contains("/docs/swagger-ui-bundle.js") && html.contains("/openapi.json"),
            "{html}"
        );
    }
    for (asset, marker) in [
        ("swagger-ui-bundle.js", "SwaggerUIBundle"),
        ("swagger-ui.css", ".swagger-ui"),
    ] {
        let path = format!("/docs/{asset}");
        // A browser: gzip.
        let r = c.request(
            "GET",
            &path,
            &[("Accept-Encoding", "gzip, deflate, br")],
            b"",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut text)
            .unwrap();
        assert!(
            text.contains(marker),
            "{asset} does not look like Swagger UI"
        );
        // A client that does not say it takes gzip, or refuses it: plain.
        for headers in [vec![], vec![("Accept-Encoding", "gzip;q=0, identity")]] {
            let r = c.request("GET", &path, &headers, b"");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-encoding"), None, "{headers:?}");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"));
            assert_eq!(r.text(), text, "{asset} {headers:?}: not the same asset");
        }
    }
    assert_eq!(c.get("/docs/nope.js").status, 404);
}

#[test]
fn openapi_document_describes_every_answer_and_any_json_value() {
    let s = Server::start(&[]);
    let doc = s.client().get("/openapi.json").json();
    let schemas = &doc["components"]["schemas"];
    // OpenAPI requires a description on every response.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for (status, answer) in op["responses"].as_object().unwrap() {
                let description = answer["description"].as_str().unwrap_or("");
                assert!(
                    !description.is_empty(),
                    "{method} {path} {status}: no description"
                );
            }
            // The refusals that come before any handler.
            let answers = op["responses"].as_object().unwrap();
            assert!(answers.contains_key("403"), "{method} {path}: no 403");
            if method != "get" {
                assert!(answers.contains_key("415"), "{method} {path}: no 415");
            }
            if path == "/health" {
                assert_eq!(op["security"], json!([]), "/health is open");
                assert!(!answers.contains_key("401"));
            } else {
                assert!(answers.contains_key("401"), "{method} {path}: no 401");
                assert!(op.get("security").is_none(), "{method} {path}");
            }
        }
    }
    // Linters (redocly's recommended rules) want servers and no nameless
    // license.
    assert_eq!(doc["servers"][0]["url"], "/");
    assert!(doc["info"].get("license").is_none(), "{}", doc["info"]);
    // What Swagger UI's Authorize button offers.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer"})
    );
    // `value` is any JSON value: a schema with no type at all.
    for (schema, field) in [
        ("PutRequest", "value"),
        ("GetResponse", "value"),
        ("BatchPut", "value"),
    ] {
        let value = &schemas[schema]["properties"][field];
        assert!(value.is_object(), "{schema}.{field} missing");
        assert!(
            value.get("type").is_none(),
            "{schema}.{field} is typed: {value}"
        );
        assert!(
            value.get("$ref").is_none() && value.get("oneOf").is_none(),
            "{value}"
        );
    }
    // DELETE answers a tombstone or, with purge=true, a purge count.
    let ok = &doc["paths"]["/delete/{key}"]["delete"]["responses"]["200"];
    assert_eq!(
        ok["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/DeleteOrPurge"
    );
    let refs: Vec<&str> = schemas["DeleteOrPurge"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["$ref"].as_str())
        .collect();
    assert_eq!(
        refs,
        [
            "#/components/schemas/DeleteResponse",
            "#/components/schemas/PurgeResponse"
        ]
    );
    assert!(schemas["PurgeResponse"]["properties"]["purged_versions"].is_object());
}

/// Starts a server with an auth tokens file holding `read-token` (read).
fn server_with_a_read_token() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "read-token read\n").unwrap();
    (
        Server::start(&["--auth-tokens", tokens.to_str().unwrap()]),
        dir,
    )
}

/// The OpenAPI document's query parameters are the router's: each
/// operation documents exactly `Route::params`, typed and bounded as the
/// server parses them, and the server really answers `422` just past each
/// bound and something else at it.
#[test]
fn openapi_parameters_and_their_bounds_are_what_the_server_enforces() {
    use vkv::http::query::Kind;
    let s = Server::start(&[]);
    let mut c = s.client();
    let doc = c.get("/openapi.json").json();
    c.put("k", &json!(1));
    let mut probed = 0;
    for (method, path) in vkv::http::router::API_ROUTES {
        let route = vkv::http::router::route(&method.to_uppercase(), path).unwrap();
        let op = &doc["paths"][path][method];
        let documented: Vec<&Value> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "query").collect())
            .unwrap_or_default();
        let names: Vec<&str> = documented
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let rules: Vec<&str> = route.params().iter().map(|p| p.name).collect();
        assert_eq!(names, rules, "{method} {path}: documented query parameters");
        for (p, rule) in documented.iter().zip(route.params()) {
            let schema = &p["schema"];
            let url = |value: &str| {
                // What the parameter needs beside it to be probed without
                // waiting or writing: a long poll's timeout, and a purge's
                // condition that fails.
                let with = match rule.name {
                    "timeout" => "&wait_after=0",
                    "wait_after" => "&timeout=1",
                    // The store holds a change after 0: answered at once.
                    "wait" => "&after=0",
                    "purge" => "&if_version=99",
                    _ => "",
                };
                format!(
                    "{}?{}={value}{with}",
                    path.replace("{key}", "k").replace("{id}", "1"),
                    rule.name
                )
            };
            let body: &[u8] = if *method == "post" {
                br#"{"value": 2}"#
            } else {
                b""
            };
            let mut status = |value: &str| {
                probed += 1;
                let r = c.request(&method.to_uppercase(), &url(value), &[], body);
                (r.status, r.text())
            };
            match rule.kind {
                Kind::Integer { min, max } => {
                    assert_eq!(schema["type"], "integer", "{path} {}", rule.name);
                    assert_eq!(schema["minimum"], min, "{path} {}", rule.name);
                    assert_eq!(schema["maximum"], max, "{path} {}", rule.name);
                    let past = (u128::from(max) + 1).to_string();
                    let mut outside = vec![past];
                    if min > 0 {
                        outside.push((min - 1).to_string());
                    }
                    for v in outside {
                        let (st, text) = status(&v);
                        assert_eq!(st, 422, "{method} {path} {}={v}: {text}", rule.name);
                    }
                    for v in [min, max] {
                        let (st, text) = status(&v.to_string());
                        assert_ne!(st, 422, "{method} {path} {}={v}: {text}", rule.name);
                    }
                }
                Kind::Boolean => {
                    assert_eq!(schema["type"], "boolean", "{path} {}", rule.name);
                    for v in ["true", "false"] {
                        let (st, text) = status(v);
                        assert_ne!(st, 422, "{method} {path} {}={v}: {text}", rule.name);
                    }
                    assert_eq!(status("maybe").0, 422);
                }
                Kind::Text => assert_eq!(schema["type"], "string", "{path} {}", rule.name),
            }
        }
    }
    assert!(probed >= 30, "only {probed} probes");
    // Nothing the probes sent wrote anything.
    assert_eq!(c.get("/db/stats").json()["total_versions"], 1);
}

/// Every status each operation documents is one the server gives, and
/// every status the server gives is documented: each is provoked here on a
/// real server, or (disk full, overload, a database gone) named with the
/// test that provokes it elsewhere.
#[test]
fn openapi_statuses_are_the_ones_the_server_answers() {
    let s = Server::start(&[
        "--max-body-bytes",
        "1K",
        "--max-versions",
        "2",
        "--max-watchers",
        "1",
    ]);
    let (auth, _tokens) = server_with_a_read_token();
    let doc = s.client().get("/openapi.json").json();
    let mut c = s.client();
    c.put("a", &json!(0)); // revision 1: the change feed after it lost k's version 1
    c.put("k", &json!(1));
    c.put("k", &json!(2));
    c.put("k", &json!(3)); // version 1 is removed by --max-versions 2
    c.put("b", &json!(1)); // deleted by the 200 of DELETE
    let elsewhere = |status: u16| match status {
        503 => Some(
            "faults::load (a full worker queue), faults::unavailable, faults::disk_full (/health)",
        ),
        507 => Some("faults::disk_full"),
        _ => None,
    };
    let big = format!(r#"{{"value": "{}"}}"#, "x".repeat(2000));
    let big_batch = format!(
        r#"{{"puts": [{{"key": "b", "value": "{}"}}]}}"#,
        "x".repeat(2000)
    );
    let candidates = [
        200, 201, 304, 401, 403, 404, 409, 410, 413, 415, 422, 503, 507,
    ];
    let lease_body = br#"{"ttl": "1h"}"#;
    let grant = |c: &mut crate::common::Client| {
        let r = c.request("POST", "/leases", &[], lease_body);
        r.json()["id"].as_u64().map(|id| id.to_string())
    };
    let (lease, revoked) = (grant(&mut c).unwrap(), grant(&mut c).unwrap());
    for (method, path) in vkv::http::router::API_ROUTES {
        let m = method.to_uppercase();
        let url = path.replace("{key}", "k").replace("{id}", &lease);
        let answers = doc["paths"][path][method]["responses"].as_object().unwrap();
        let ok_body: &[u8] = match *path {
            "/leases" => lease_body,
            "/put/{key}" => br#"{"value": 4}"#,
            "/batch" => br#"{"puts": [{"key": "b", "value": 1}]}"#,
            _ => b"",
        };
        for status in candidates {
            // Provokes `status` on this operation, if it can be here.
            let r = match (status, *method, *path) {
                (200, "post", "/leases") => None,
                (201, "post", "/leases") => Some(c.request(&m, &url, &[], lease_body)),
                (200, "delete", "/leases/{id}") => {
                    Some(c.request(&m, &format!("/leases/{revoked}"), &[], b""))
                }
                (404, _, "/leases/{id}" | "/leases/{id}/keepalive") => {
                    Some(c.request(&m, &path.replace("{id}", "999999"), &[], b""))
                }
                (404, "post", "/put/{key}") => {
                    Some(c.request(&m, &format!("{url}?lease=999999"), &[], ok_body))
                }
                (404, "post", "/batch") => Some(c.request(
                    &m,
                    &url,
                    &[],
                    br#"{"puts": [{"key": "b", "value": 1, "lease": 999999}]}"#,
                )),
                (200, "delete", _) => Some(c.request(&m, "/delete/b", &[], b"")),
                (200, _, _) => Some(c.request(&m, &url, &[], ok_body)),
                (304, "get", "/get/{key}") => {
                    let etag = c.get(&url).header("etag").unwrap().to_string();
                    Some(c.request("GET", &url, &[("If-None-Match", &etag)], b""))
                }
                (401, _, _) if route_scope(&m, path) => {
                    Some(auth.client().request(&m, &url, &[], ok_body))
                }
                (403, "post" | "delete", _) => {
                    let mut reader = auth.client().with_token("read-token");
                    Some(reader.request(&m, &url, &[], ok_body))
                }
                (403, _, _) => {
                    let mut rebound = s.client();
                    rebound.host = "evil.example".to_string();
                    Some(rebound.request(&m, &url, &[], ok_body))
                }
                (
                    404,
                    "get" | "delete" | "post",
                    "/get/{key}" | "/delete/{key}" | "/history/{key}",
                ) => Some(c.request(&m, &path.replace("{key}", "never"), &[], b"")),
                (409, "post", "/put/{key}") | (409, "delete", "/delete/{key}") => {
                    Some(c.request(&m, &format!("{url}?if_version=99"), &[], ok_body))
                }
                (409, "post", "/batch") => Some(c.request(
                    &m,
                    &url,
                    &[],
                    br#"{"puts": [{"key": "k", "value": 1, "if_version": 99}]}"#,
                )),
                (410, "get", "/get/{key}") => Some(c.get(&format!("{url}?version=1"))),
                (410, "get", "/changes") => Some(c.get(&format!("{url}?after=1"))),
                // The connection is closed after a 413: a client of its own.
                (413, "post", "/put/{key}") => {
                    Some(s.client().request(&m, &url, &[], big.as_bytes()))
                }
                (413, "post", "/leases") => {
                    let big = format!(r#"{{"ttl": "{}"}}"#, "1".repeat(2000));
                    Some(s.client().request(&m, &url, &[], big.as_bytes()))
                }
                (413, "post", "/batch") => {
                    Some(s.client().request(&m, &url, &[], big_batch.as_bytes()))
                }
                (415, "post" | "delete", _) => {
                    Some(c.request(&m, &url, &[("Content-Type", "text/plain")], ok_body))
                }
                (422, _, _) => Some(c.request(&m, &format!("{url}?nope=1"), &[], ok_body)),
                (503, "get", "/get/{key}") => {
                    // --max-watchers 1: once one long poll is parked, the
                    // next finds no room.
                    let mut first = s.client();
                    first
                        .send_raw(
                            b"GET /get/k?wait_after=99&timeout=30 HTTP/1.1\r\nHost: localhost\r\n\r\n",
                        )
                        .unwrap();
                    let parked = crate::common::poll_until(Duration::from_secs(10), || {
                        crate::common::metric(&mut c, "vkv_watchers") == Some(1.0)
                    });
                    assert!(parked, "the first long poll never parked");
                    Some(c.get("/get/k?wait_after=99&timeout=1"))
                }
                _ => None,
            };
            let key = status.to_string();
            match r {
                Some(r) => {
                    assert_eq!(
                        r.status,
                        status,
                        "{m} {path}: provoking {status} gave {}",
                        r.text()
                    );
                    assert!(
                        answers.contains_key(&key),
                        "{m} {path} answers {status}: not documented"
                    );
                    // Its body is of a documented media type.
                    if !r.body.is_empty() {
                        let media = r.header("content-type").unwrap_or_default();
                        let media = media.split(';').next().unwrap_or_default().trim();
                        let content = &answers[&key]["content"];
                        assert!(
                            content.get(media).is_some(),
                            "{m} {path} {status}: {media} is not among {content}"
                        );
                    }
                }
                None => assert!(
                    !answers.contains_key(&key) || elsewhere(status).is_some(),
                    "{m} {path} documents {status}, which nothing provokes"
                ),
            }
        }
        // Whatever is documented is among the statuses looked at.
        for status in answers.keys() {
            let n: u16 = status.parse().unwrap();
            assert!(candidates.contains(&n), "{m} {path} documents {status}");
        }
    }
}

/// `/backup` is a SQLite file; a client that asks for generic bytes (as
/// generated clients that know only those do) gets the same bytes under
/// that type; both are documented with a binary schema.
#[test]
fn backup_is_documented_as_binary_and_negotiates_its_media_type() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let doc = c.get("/openapi.json").json();
    let content = &doc["paths"]["/backup"]["get"]["responses"]["200"]["content"];
    for media in ["application/vnd.sqlite3", "application/octet-stream"] {
        let schema = &content[media]["schema"]["$ref"];
        assert_eq!(
            schema, "#/components/schemas/BackupFile",
            "{media}: {content}"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["BackupFile"],
        json!({"type": "string", "format": "binary",
               "description": "The body of `GET /backup`: a SQLite database file, as bytes."})
    );
    c.put("k", &json!(1));
    for (accept, media) in [
        (None, "application/vnd.sqlite3"),
        (Some("application/octet-stream"), "application/octet-stream"),
        (Some("*/*"), "application/vnd.sqlite3"),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept", *a)).collect();
        let r = c.request("GET", "/backup", &headers, b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(media), "{accept:?}");
        assert!(r.body.starts_with(b"SQLite format 3\0"), "{accept:?}");
    }
}

/// Whether the route needs a token when authentication is on.
fn route_scope(method: &str, path: &str) -> bool {
    vkv::http::router::route(method, path)
        .ok()
        .and_then(|r| r.scope())
        .is_some()
}

/// Swagger UI shows what the document holds, in its order: the key-value
/// operations first, by use; examples that are real requests (the server
/// takes them as they are); and a site icon, open like the page.
#[test]
fn swagger_ui_puts_key_values_first_with_working_examples_and_an_icon() {
    let (s, _tokens) = server_with_a_read_token();
    let mut c = s.client();
    let text = c.get("/openapi.json").text();
    let at = |needle: &str| {
        text.find(&format!("\"{needle}\""))
            .unwrap_or_else(|| panic!("{needle} not in the document"))
    };
    let order = [
        "/put/{key}",
        "/get/{key}",
        "/delete/{key}",
        "/keys",
        "/history/{key}",
        "/batch",
        "/health",
        "/metrics",
        "/db/stats",
        "/cache/stats",
        "/backup",
    ];
    for pair in order.windows(2) {
        assert!(at(pair[0]) < at(pair[1]), "{} after {}", pair[0], pair[1]);
    }
    let doc: Value = serde_json::from_str(&text).unwrap();
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tags[0], "kv");
    assert_eq!(doc["paths"]["/put/{key}"]["post"]["tags"], json!(["kv"]));

    // The examples Swagger UI fills "Try it out" with, sent as they are.
    let schemas = &doc["components"]["schemas"];
    let put = &schemas["PutRequest"]["example"];
    assert!(put["value"].is_object(), "{put}");
    let batch = &schemas["BatchRequest"]["example"];
    let key = doc["paths"]["/put/{key}"]["post"]["parameters"][0]["example"]
        .as_str()
        .unwrap();
    // A server without tokens takes them.
    let open = Server::start(&[]);
    let mut o = open.client();
    let r = o.request(
        "POST",
        &format!("/put/{key}"),
        &[],
        put.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    let documented = &schemas["PutResponse"]["example"];
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&answer), keys(documented));
    let r = o.request("POST", "/batch", &[], batch.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let got = o.get(&format!("/get/{key}")).json();
    assert_eq!(keys(&got), keys(&schemas["GetResponse"]["example"]));

    // The icon: open without a token, an ICO file.
    for method in ["GET", "HEAD"] {
        let r = c.request(method, "/favicon.ico", &[], b"");
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("content-type"), Some("image/x-icon"));
        if method == "GET" {
            assert!(r.body.starts_with(&[0, 0, 1, 0]), "not an ICO file");
        }
    }
}

/// The schema `schema` names, `$ref`s followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The JSON body schema of `method path`'s `status` answer.
fn answer_schema<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    let answer = &doc["paths"][path][method]["responses"][status];
    let schema = &answer["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path} {status}: {answer}");
    resolve(doc, schema)
}

#[test]
fn openapi_declares_every_field_of_the_404_bodies_the_server_sends() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let doc = c.get("/openapi.json").json();
    // A deleted key, an expired one (its lease revoked), one never written.
    assert_eq!(c.put("gone", &json!(1)).status, 200);
    assert_eq!(c.request("DELETE", "/delete/gone", &[], b"").status, 200);
    let json_type = [("Content-Type", "application/json")];
    let lease = c.request("POST", "/leases", &json_type, br#"{"ttl": "1m"}"#);
    assert_eq!(lease.status, 201, "{}", lease.text());
    let id = lease.json()["id"].as_u64().unwrap();
    let r = c.request(
        "POST",
        &format!("/put/lapsed?lease={id}"),
        &json_type,
        b"{\"value\": 1}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.request("DELETE", &format!("/leases/{id}"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut named = std::collections::BTreeSet::new();
    for (method, path, request, field) in [
        ("get", "/get/{key}", "/get/gone", "deleted_version"),
        (
            "get",
            "/get/{key}",
            "/get/gone?wait_after=1&timeout=1",
            "deleted_version",
        ),
        ("get", "/get/{key}", "/get/lapsed", "expired_version"),
        ("get", "/get/{key}", "/get/never", "detail"),
        ("delete", "/delete/{key}", "/delete/gone", "deleted_version"),
    ] {
        let r = c.request(&method.to_uppercase(), request, &[], b"");
        assert_eq!(r.status, 404, "{method} {request}: {}", r.text());
        let body = r.json();
        assert!(
            body[field].is_number() || field == "detail",
            "{request}: {body}"
        );
        let schema = answer_schema(&doc, method, path, "404");
        let declared = schema["properties"].as_object().unwrap();
        for (name, value) in body.as_object().unwrap() {
            let Some(declared) = declared.get(name) else {
                panic!("{method} {path} 404 sends {name:?}, not in its schema {schema}")
            };
            let ty = declared["type"].as_str().unwrap();
            let fits = match ty {
                "string" => value.is_string(),
                "integer" => value.is_u64(),
                other => panic!("{name}: type {other}"),
            };
            assert!(fits, "{request}: {name} = {value}, declared {declared}");
            named.insert(name.clone());
        }
        // What the document requires, the server sends.
        for required in schema["required"].as_array().unwrap() {
            assert!(
                body.get(required.as_str().unwrap()).is_some(),
                "{required} in {body}"
            );
        }
    }
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["deleted_version", "detail", "expired_version", "key"]
    );
}

#[test]
fn openapi_operation_is_an_enum_of_the_values_the_server_emits() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let doc = c.get("/openapi.json").json();
    let every: Vec<&str> = vkv::ChangeOperation::ALL
        .iter()
        .map(|o| o.as_str())
        .collect();
    assert_eq!(every, ["create", "update", "delete", "purge", "expire"]);
    let names = |schema: &Value| -> Vec<String> {
        let values = schema["enum"].as_array();
        let values = values.unwrap_or_else(|| panic!("not an enum: {schema}"));
        assert_eq!(schema["type"], "string", "{schema}");
        values
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    // Every `operation` member of every schema is an enum: the write
    // answers' of create and update, the history's and the feed's of all.
    let mut found = 0;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for (name, schema) in schemas {
        let Some(op) = schema["properties"].get("operation") else {
            continue;
        };
        found += 1;
        let values = names(resolve(&doc, op));
        let expected: Vec<&str> = if name == "PutResponse" {
            vec![
                vkv::Operation::Create.as_str(),
                vkv::Operation::Update.as_str(),
            ]
        } else {
            every.clone()
        };
        assert_eq!(values, expected, "{name}.operation");
    }
    assert_eq!(found, 3, "PutResponse, HistoryEntry and ChangeEntry");
    let write_ops = names(resolve(
        &doc,
        &schemas["PutResponse"]["properties"]["operation"],
    ));
    // "create": no live version before (a delete or a purge leaves none),
    // not "version 1".
    let described =
        resolve(&doc, &schemas["PutResponse"]["properties"]["operation"])["description"]
            .as_str()
            .unwrap_or("");
    assert!(
        described.contains("deleted") && !described.contains("version 1"),
        "PutResponse.operation: {described}"
    );
    let feed_ops = names(resolve(
        &doc,
        &schemas["ChangeEntry"]["properties"]["operation"],
    ));

    // Write answers: each operation one the document names.
    let mut written = Vec::new();
    let mut put = |c: &mut crate::common::Client, key: &str| {
        let r = c.put(key, &json!(1));
        assert_eq!(r.status, 200, "{}", r.text());
        written.push(r.json()["operation"].as_str().unwrap().to_string());
    };
    put(&mut c, "o/a");
    put(&mut c, "o/a");
    assert_eq!(c.request("DELETE", "/delete/o/a", &[], b"").status, 200);
    put(&mut c, "o/a");
    let r = c.request("DELETE", "/delete/o/a?purge=true", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    put(&mut c, "o/a");
    let batch = json!({"puts": [{"key": "o/a", "value": 2}, {"key": "o/b", "value": 2}]});
    let r = c.request("POST", "/batch", &[], batch.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    for result in r.json()["results"].as_array().unwrap() {
        written.push(result["operation"].as_str().unwrap().to_string());
    }
    // (A purge removes the key's earlier changes from the feed: this
    // tombstone stays.)
    assert_eq!(c.request("DELETE", "/delete/o/b", &[], b"").status, 200);
    let json_type = [("Content-Type", "application/json")];
    let lease = c.request("POST", "/leases", &json_type, br#"{"ttl": "1m"}"#);
    let id = lease.json()["id"].as_u64().unwrap();
    let r = c.request(
        "POST",
        &format!("/put/o/c?lease={id}"),
        &json_type,
        b"{\"value\": 1}",
    );
    written.push(r.json()["operation"].as_str().unwrap().to_string());
    assert_eq!(
        c.request("DELETE", &format!("/leases/{id}"), &[], b"")
            .status,
        200
    );
    assert_eq!(
        written,
        [
            "create", "update", "create", "create", "update", "create", "create"
        ]
    );
    for op in &written {
        assert!(write_ops.contains(op), "{op} not in {write_ops:?}");
    }
    // The feed and the history name every documented operation, and only
    // those.
    let feed = c.get("/changes?prefix=o/&after=0").json();
    let mut seen: Vec<String> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ch| ch["operation"].as_str().unwrap().to_string())
        .collect();
    let history = c.get("/history/o/a").json();
    seen.extend(
        history["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["operation"].as_str().unwrap().to_string()),
    );
    for op in &seen {
        assert!(feed_ops.contains(op), "{op} not in {feed_ops:?}");
    }
    seen.sort();
    seen.dedup();
    let mut documented = feed_ops.clone();
    documented.sort();
    assert_eq!(
        seen, documented,
        "the feed shows every documented operation"
    );
}

#[test]
fn openapi_key_parameter_states_the_dot_segment_rule() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let doc = c.get("/openapi.json").json();
    let mut described = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(params) = op["parameters"].as_array() else {
                continue;
            };
            for p in params.iter().filter(|p| p["name"] == "key") {
                let text = p["description"].as_str().unwrap();
                assert!(text.contains("1 to 1024 bytes"), "{method} {path}: {text}");
                if method == "delete" {
                    assert!(text.contains("is taken too"), "{method} {path}: {text}");
                } else {
                    assert!(
                        text.contains("'..' segment") && text.contains("422"),
                        "{text}"
                    );
                }
                described += 1;
            }
        }
    }
    assert_eq!(described, 4, "put, get, history, delete");
    // What the description says, the server does.
    let json_type = [("Content-Type", "application/json")];
    let r = c.request("POST", "/put/x/../y", &json_type, b"{\"value\": 1}");
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(c.get("/history/x/./y").status, 422);
    assert_eq!(c.request("DELETE", "/delete/x/../y", &[], b"").status, 404);
}
