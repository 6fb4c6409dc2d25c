//! The OpenAPI document and the embedded Swagger UI.

use crate::common::{Server, json};

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
