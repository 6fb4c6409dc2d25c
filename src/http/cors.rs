//! CORS (`--cors-origins`): what lets a web app on another site use vkv
//! from a browser, and `OPTIONS` on every route.
//!
//! - Nothing is allowed by default: without `--cors-origins`, answers carry
//!   no `Access-Control-*` header and a browser keeps them from other
//!   sites' pages (and `cross_site` refuses their writes).
//! - A preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) from a listed origin is answered
//!   `204` with the route's methods, the request headers vkv reads
//!   ([`ALLOW_HEADERS`]) and a max age; from any other origin, or with CORS
//!   off, `403` saying why (a browser reports a CORS failure either way;
//!   curl users read the detail).
//! - Every other answer to a listed origin (errors too, so that a page can
//!   read why) carries `Access-Control-Allow-Origin` and the headers a page
//!   may read ([`EXPOSE_HEADERS`]). A list echoes the origin and adds
//!   `Vary: Origin` to every answer (a cache must not hand one origin's
//!   answer to another); `*` sends `*`.
//! - Credentials: vkv authenticates with bearer tokens, which a page sends
//!   in `Authorization` (allowed by the preflight), never with cookies, so
//!   `Access-Control-Allow-Credentials` is never sent; with it absent a
//!   browser refuses `credentials: "include"` requests, as the CORS rules
//!   require for `*`.
//! - `OPTIONS` without a preflight's headers is answered `204` with
//!   `Allow`, as RFC 9110 describes, open like a preflight (it tells no
//!   more than the OpenAPI document).

use super::api_error::ApiError;
use super::cross_site::{AllowOrigin, Origins};
use super::message::{HttpRequest, HttpResponse};

/// The request headers a page may send: the ones vkv reads.
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, If-Match, If-None-Match";
/// The response headers a page may read besides the CORS-safelisted ones.
pub const EXPOSE_HEADERS: &str = "ETag, Retry-After, WWW-Authenticate, Allow, Content-Disposition";
/// How long a browser may keep a preflight's answer, in seconds.
const MAX_AGE: &str = "600";

/// Adds the CORS headers of an answer to a request whose `Origin` is
/// `origin`: `Access-Control-Allow-Origin` and the exposed headers when
/// CORS allows it, and `Vary: Origin` whenever the answer depends on it.
pub fn decorate(origins: &Origins, origin: Option<&str>, response: &mut HttpResponse) {
    if !origins.cors_enabled() {
        return;
    }
    let allowed = origin.and_then(|o| origins.cors(o));
    if !matches!(allowed, Some(AllowOrigin::Any)) {
        vary(response, "Origin");
    }
    let Some(allowed) = allowed else { return };
    response
        .headers
        .push(("Access-Control-Allow-Origin", value(&allowed)));
    response
        .headers
        .push(("Access-Control-Expose-Headers", EXPOSE_HEADERS.to_string()));
}

/// The answer to `OPTIONS` on a route taking `allow` (an `Allow` value):
/// a preflight's, or the methods.
pub fn options(
    origins: &Origins,
    req: &HttpRequest,
    allow: &'static str,
) -> Result<HttpResponse, ApiError> {
    let methods = format!("{allow}, OPTIONS");
    let (Some(origin), Some(method)) = (
        req.header("origin"),
        req.header("access-control-request-method"),
    ) else {
        return Ok(HttpResponse::json(204, Vec::new()).with_header("Allow", methods));
    };
    if !origins.cors_enabled() {
        return Err(ApiError::new(
            403,
            "CORS is not enabled on this server: start vkv with --cors-origins listing the web \
             app's origin",
        ));
    }
    let Some(allowed) = origins.cors(origin) else {
        return Err(ApiError::new(
            403,
            format!(
                "CORS: origin '{}' is not listed in --cors-origins",
                printable(origin)
            ),
        ));
    };
    if !allow.split(", ").any(|m| m == method.trim()) {
        let mut e = ApiError::method_not_allowed(allow);
        e.detail = format!("CORS: this path takes {allow}, not {}", printable(method));
        return Err(e);
    }
    let requested = req.header("access-control-request-headers").unwrap_or("");
    for name in requested
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let known = ALLOW_HEADERS
            .split(", ")
            .any(|h| h.eq_ignore_ascii_case(name));
        if !known {
            return Err(ApiError::new(
                403,
                format!(
                    "CORS: request header '{}' is not read by vkv (it reads {ALLOW_HEADERS})",
                    printable(name)
                ),
            ));
        }
    }
    let mut r = HttpResponse::json(204, Vec::new())
        .with_header("Access-Control-Allow-Origin", value(&allowed))
        .with_header("Access-Control-Allow-Methods", allow.to_string())
        .with_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
        .with_header("Access-Control-Max-Age", MAX_AGE);
    vary(
        &mut r,
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    );
    Ok(r)
}

fn value(allowed: &AllowOrigin) -> String {
    match allowed {
        AllowOrigin::Any => "*".to_string(),
        AllowOrigin::This(origin) => origin.clone(),
    }
}

/// Adds `names` to the response's `Vary`.
fn vary(response: &mut HttpResponse, names: &str) {
    match response
        .headers
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case("vary"))
    {
        Some((_, v)) => {
            v.push_str(", ");
            v.push_str(names);
        }
        None => response.headers.push(("Vary", names.to_string())),
    }
}

/// A request header for an error detail: at most 100 characters, no
/// control characters.
fn printable(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).take(100).collect()
}
