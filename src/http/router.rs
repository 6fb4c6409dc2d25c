//! Routing: one `match` from (method, path) to a [`Route`]. Adding an
//! endpoint is one variant here, one arm in `app.rs` and one handler.

use super::api_error::ApiError;
use super::auth::Scope;

/// What a request asks for, decided from its method and path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `POST /put/{key}`; the key still percent-encoded.
    Put(&'a str),
    /// `GET /get/{key}`; the key still percent-encoded.
    Get(&'a str),
    /// `DELETE /delete/{key}`.
    Delete(&'a str),
    /// `GET /history/{key}`.
    History(&'a str),
    /// `GET /keys`.
    Keys,
    /// `POST /batch`.
    Batch,
    /// `GET /metrics`.
    Metrics,
    /// `GET /cache/stats`.
    CacheStats,
    /// `GET /db/stats`.
    DbStats,
    /// `GET /health`.
    Health,
    /// `GET /openapi.json`.
    OpenApi,
    /// `GET /docs/{file}`: Swagger UI; `""` is the page itself.
    Docs(&'a str),
    /// `GET /backup`: a consistent snapshot of the database file.
    Backup,
    /// `GET /auth/whoami`: the scope of the request's token.
    WhoAmI,
    /// `GET /ui/{file}`: the key browser; `""` is the page itself.
    Ui(&'a str),
}

/// Every (method, OpenAPI path) of the API proper, for the test that keeps
/// the OpenAPI document in step with the router.
pub const API_ROUTES: &[(&str, &str)] = &[
    ("post", "/put/{key}"),
    ("get", "/get/{key}"),
    ("delete", "/delete/{key}"),
    ("get", "/history/{key}"),
    ("get", "/keys"),
    ("post", "/batch"),
    ("get", "/metrics"),
    ("get", "/cache/stats"),
    ("get", "/db/stats"),
    ("get", "/health"),
    ("get", "/backup"),
    ("get", "/auth/whoami"),
];

const READ: &str = "GET, HEAD";

impl Route<'_> {
    /// A short name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Put(_) => "put",
            Route::Get(_) => "get",
            Route::Delete(_) => "delete",
            Route::History(_) => "history",
            Route::Keys => "keys",
            Route::Batch => "batch",
            Route::Metrics => "metrics",
            Route::CacheStats => "cache_stats",
            Route::DbStats => "db_stats",
            Route::Health => "health",
            Route::OpenApi => "openapi",
            Route::Docs(_) => "docs",
            Route::Backup => "backup",
            Route::WhoAmI => "whoami",
            Route::Ui(_) => "ui",
        }
    }

    /// The scope a request needs when authentication is on (`None`: open
    /// to all: `/health`, so that probes need no secret, and the API's
    /// description, which holds no data and which a browser must load
    /// without a token before Swagger UI's Authorize button can send one).
    pub fn scope(&self) -> Option<Scope> {
        match self {
            // The key browser's page and assets hold no data either; the
            // page asks for a token before it reads any.
            Route::Health | Route::OpenApi | Route::Docs(_) | Route::Ui(_) => None,
            Route::Put(_) | Route::Delete(_) | Route::Batch => Some(Scope::Write),
            Route::Backup => Some(Scope::Admin),
            Route::Get(_)
            | Route::History(_)
            | Route::Keys
            | Route::Metrics
            | Route::CacheStats
            | Route::DbStats
            | Route::WhoAmI => Some(Scope::Read),
        }
    }
}

/// Finds the route for `method` and `path` (`404` / `405` with `Allow`).
pub fn route<'a>(method: &str, path: &'a str) -> Result<Route<'a>, ApiError> {
    let (allow, route) = if let Some(key) = path.strip_prefix("/put/") {
        ("POST", Route::Put(key))
    } else if let Some(key) = path.strip_prefix("/get/") {
        (READ, Route::Get(key))
    } else if let Some(key) = path.strip_prefix("/delete/") {
        ("DELETE", Route::Delete(key))
    } else if let Some(key) = path.strip_prefix("/history/") {
        (READ, Route::History(key))
    } else if path == "/batch" {
        ("POST", Route::Batch)
    } else if let Some(file) = path.strip_prefix("/docs/") {
        (READ, Route::Docs(file))
    } else if let Some(file) = path.strip_prefix("/ui/") {
        (READ, Route::Ui(file))
    } else {
        let r = match path {
            "/cache/stats" => Route::CacheStats,
            "/db/stats" => Route::DbStats,
            "/health" => Route::Health,
            "/keys" => Route::Keys,
            "/metrics" => Route::Metrics,
            "/openapi.json" => Route::OpenApi,
            "/backup" => Route::Backup,
            "/docs" => Route::Docs(""),
            "/ui" => Route::Ui(""),
            "/auth/whoami" => Route::WhoAmI,
            _ => return Err(ApiError::no_route(path)),
        };
        (READ, r)
    };
    if allow.split(", ").any(|m| m == method) {
        Ok(route)
    } else {
        Err(ApiError::method_not_allowed(allow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_rejects() {
        assert_eq!(route("POST", "/put/a/b"), Ok(Route::Put("a/b")));
        assert_eq!(route("HEAD", "/get/x"), Ok(Route::Get("x")));
        assert_eq!(route("GET", "/docs"), Ok(Route::Docs("")));
        assert_eq!(route("GET", "/nope").map_err(|e| e.status), Err(404));
        let e = route("GET", "/put/a").err();
        assert_eq!(e.as_ref().map(|e| e.status), Some(405));
        assert_eq!(
            e.and_then(|e| e.headers.first().cloned()),
            Some(("Allow", "POST".to_string()))
        );
    }
}
