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
        assert!(
            r.text().contains("/docs/swagger-ui-bundle.js"),
            "{}",
            r.text()
        );
    }
    let r = c.get("/docs/swagger-ui-bundle.js");
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 100_000);
    assert!(
        c.get("/docs/swagger-initializer.js")
            .text()
            .contains("/openapi.json")
    );
    assert_eq!(c.get("/docs/nope.js").status, 404);
}
