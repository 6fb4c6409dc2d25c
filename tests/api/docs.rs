//! The OpenAPI document and the embedded Swagger UI.

use crate::common::Server;

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
        let r = c.get(&format!("/docs/{asset}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut text)
            .unwrap();
        assert!(
            text.contains(marker),
            "{asset} does not look like Swagger UI"
        );
    }
    assert_eq!(c.get("/docs/nope.js").status, 404);
}
