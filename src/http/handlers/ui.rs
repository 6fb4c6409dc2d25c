//! `GET /ui`: the key browser, one page and its script and style sheet,
//! compiled into the binary (gzip-compressed by `build.rs`; no download at
//! build or run time, nothing loaded from another site).
//!
//! The page holds no data: it calls the API from the browser, with the
//! token the user typed (kept in `sessionStorage`). It is served with a
//! Content-Security-Policy that allows scripts, styles and requests from
//! this origin only and no inline script or style, so a value that holds
//! markup can never run even if it reached the document as HTML (the
//! script only ever sets values as text).

use super::docs::{accepts_gzip, inflate};
use crate::http::api_error::ApiError;
use crate::http::message::HttpResponse;

/// The page; its asset links carry a hash of the assets (`?v=`), set by
/// `build.rs`, so a new binary's page never runs an old cached script.
const PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/ui.html"));
const APP_JS_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ui-app.js.gz"));
const APP_CSS_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ui-app.css.gz"));

/// What the page may load and do: its own script and style sheet, requests
/// to this server, no inline script or style, no plugins, no frames of it
/// elsewhere, no form posted anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// `GET /ui` (the page) and `GET /ui/{file}` (its assets). The assets are
/// sent gzipped when `Accept-Encoding` allows it, and may be cached for a
/// year (their URLs change with their content); the page is revalidated.
pub fn serve(file: &str, accept_encoding: Option<&str>) -> Result<HttpResponse, ApiError> {
    let (body, content_type) = match file {
        "" | "index.html" => {
            return Ok(HttpResponse::json(200, PAGE.as_bytes().to_vec())
                .with_header("Content-Type", "text/html; charset=utf-8")
                .with_header("Cache-Control", "no-cache")
                .with_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                .with_header("X-Content-Type-Options", "nosniff")
                .with_header("X-Frame-Options", "DENY")
                .with_header("Referrer-Policy", "no-referrer"));
        }
        "app.js" => (APP_JS_GZ, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS_GZ, "text/css; charset=utf-8"),
        _ => return Err(ApiError::no_route(&format!("/ui/{file}"))),
    };
    let gzip = accepts_gzip(accept_encoding);
    let body = if gzip { body.to_vec() } else { inflate(body)? };
    let mut r = HttpResponse::json(200, body)
        .with_header("Content-Type", content_type)
        .with_header("Cache-Control", "public, max-age=31536000, immutable")
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Vary", "Accept-Encoding");
    if gzip {
        r = r.with_header("Content-Encoding", "gzip");
    }
    Ok(r)
}
