//! The OpenAPI document and the embedded Swagger UI.

use crate::common::Server;

#[test]
fn openapi_document_lists_every_endpoint() {
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
