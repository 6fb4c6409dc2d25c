//! Routing: one `match` from (method, path) to a [`Route`]. Adding an
//! endpoint is one variant here, one arm in `app.rs` and one handler.

use super::api_error::ApiError;
use super::auth::Scope;
use super::query::{
    AFTER, ASSET_HASH, BEFORE, CHANGES_AFTER, DELIMITER, IF_VERSION, LEASE, LIMIT, PREFIX, PURGE,
    Param, TIMEOUT, TTL, UI_KEY, VALUES, VERSION, WAIT, WAIT_AFTER,
};

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
    /// `GET /changes`: the change feed.
    Changes,
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
    /// `GET /favicon.ico`: the icon a browser shows for `/docs`.
    Favicon,
    /// `GET /leases`.
    Leases,
    /// `POST /leases`.
    Grant,
    /// `GET /leases/{id}`; the id as given.
    Lease(&'a str),
    /// `DELETE /leases/{id}`.
    Revoke(&'a str),
    /// `POST /leases/{id}/keepalive`.
    Keepalive(&'a str),
}

/// Every (method, OpenAPI path) of the API proper, for the test that keeps
/// the OpenAPI document in step with the router.
pub const API_ROUTES: &[(&str, &str)] = &[
    ("post", "/put/{key}"),
    ("get", "/get/{key}"),
    ("delete", "/delete/{key}"),
    ("get", "/history/{key}"),
    ("get", "/keys"),
    ("get", "/changes"),
    ("post", "/batch"),
    ("get", "/metrics"),
    ("get", "/cache/stats"),
    ("get", "/db/stats"),
    ("get", "/health"),
    ("get", "/backup"),
    ("get", "/auth/whoami"),
    ("post", "/leases"),
    ("get", "/leases"),
    ("get", "/leases/{id}"),
    ("delete", "/leases/{id}"),
    ("post", "/leases/{id}/keepalive"),
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
            Route::Changes => "changes",
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
            Route::Favicon => "favicon",
            Route::Leases => "leases",
            Route::Grant => "lease_grant",
            Route::Lease(_) => "lease",
            Route::Revoke(_) => "lease_revoke",
            Route::Keepalive(_) => "lease_keepalive",
        }
    }

    /// The query parameters the route takes. Any other is refused with
    /// `422` naming it (`App::handle`), so that a misspelt one (`versoin`)
    /// never answers as if it were absent; the OpenAPI document lists
    /// exactly these (a test compares them).
    pub fn params(&self) -> &'static [Param] {
        match self {
            Route::Put(_) => &[IF_VERSION, TTL, LEASE],
            Route::Lease(_) => &[LIMIT],
            Route::Get(_) => &[VERSION, WAIT_AFTER, TIMEOUT],
            Route::Delete(_) => &[PURGE, IF_VERSION],
            Route::History(_) => &[LIMIT, BEFORE],
            Route::Keys => &[PREFIX, LIMIT, AFTER, DELIMITER, VALUES],
            Route::Changes => &[PREFIX, CHANGES_AFTER, LIMIT, VALUES, WAIT],
            // The page's own links: a folder, a key, one of its versions;
            // its assets' links carry their hash.
            Route::Ui("") => &[PREFIX, UI_KEY, VERSION],
            Route::Ui(_) => &[ASSET_HASH],
            Route::Batch
            | Route::Metrics
            | Route::CacheStats
            | Route::DbStats
            | Route::Health
            | Route::OpenApi
            | Route::Docs(_)
            | Route::Favicon
            | Route::WhoAmI
            | Route::Leases
            | Route::Grant
            | Route::Revoke(_)
            | Route::Keepalive(_)
            | Route::Backup => &[],
        }
    }

    /// The scope a request needs when authentication is on (`None`: open
    /// to all: `/health`, so that probes need no secret, and the API's
    /// description, which holds no data and which a browser must load
    /// without a token before Swagger UI's Authorize button can send one,
    /// and the icon the browser asks for with it).
    pub fn scope(&self) -> Option<Scope> {
        match self {
            // The key browser's page and assets hold no data either; the
            // page asks for a token before it reads any.
            Route::Health | Route::OpenApi | Route::Docs(_) | Route::Ui(_) | Route::Favicon => None,
            Route::Put(_)
            | Route::Delete(_)
            | Route::Batch
            | Route::Grant
            | Route::Revoke(_)
            | Route::Keepalive(_) => Some(Scope::Write),
            Route::Backup => Some(Scope::Admin),
            Route::Get(_)
            | Route::History(_)
            | Route::Keys
            | Route::Changes
            | Route::Metrics
            | Route::CacheStats
            | Route::DbStats
            | Route::WhoAmI
            | Route::Leases
            | Route::Lease(_) => Some(Scope::Read),
        }
    }
}

impl<'a> Route<'a> {
    /// The route apart from its request, for work handed to a worker
    /// (see [`Detached`]).
    pub fn detach(self) -> Detached {
        let (route, arg) = match self {
            Route::Put(a) => (Route::Put(""), a),
            Route::Get(a) => (Route::Get(""), a),
            Route::Delete(a) => (Route::Delete(""), a),
            Route::History(a) => (Route::History(""), a),
            Route::Docs(a) => (Route::Docs(""), a),
            Route::Ui(a) => (Route::Ui(""), a),
            Route::Lease(a) => (Route::Lease(""), a),
            Route::Revoke(a) => (Route::Revoke(""), a),
            Route::Keepalive(a) => (Route::Keepalive(""), a),
            Route::Keys => (Route::Keys, ""),
            Route::Changes => (Route::Changes, ""),
            Route::Batch => (Route::Batch, ""),
            Route::Metrics => (Route::Metrics, ""),
            Route::CacheStats => (Route::CacheStats, ""),
            Route::DbStats => (Route::DbStats, ""),
            Route::Health => (Route::Health, ""),
            Route::OpenApi => (Route::OpenApi, ""),
            Route::Backup => (Route::Backup, ""),
            Route::WhoAmI => (Route::WhoAmI, ""),
            Route::Favicon => (Route::Favicon, ""),
            Route::Leases => (Route::Leases, ""),
            Route::Grant => (Route::Grant, ""),
        };
        Detached {
            route,
            arg: arg.into(),
        }
    }
}

/// A [`Route`] that owns its argument (a key, a file, an id): the request
/// is routed once, on the connection loop, and the worker that handles it
/// takes the route from here.
#[derive(Debug, Clone)]
pub struct Detached {
    route: Route<'static>,
    arg: Box<str>,
}

impl Detached {
    /// The route, borrowing its argument from here.
    pub fn route(&self) -> Route<'_> {
        let a = &*self.arg;
        match self.route {
            Route::Put(_) => Route::Put(a),
            Route::Get(_) => Route::Get(a),
            Route::Delete(_) => Route::Delete(a),
            Route::History(_) => Route::History(a),
            Route::Docs(_) => Route::Docs(a),
            Route::Ui(_) => Route::Ui(a),
            Route::Lease(_) => Route::Lease(a),
            Route::Revoke(_) => Route::Revoke(a),
            Route::Keepalive(_) => Route::Keepalive(a),
            other => other,
        }
    }
}

/// Finds the route for `method` and `path` (`404` / `405` with `Allow`).
pub fn route<'a>(method: &str, path: &'a str) -> Result<Route<'a>, ApiError> {
    let (allow, route) = resolve(path).ok_or_else(|| ApiError::no_route(path))?;
    if allow.split(", ").any(|m| m == method) {
        // One path, a route per method where they differ in scope.
        Ok(match (route, method) {
            (Route::Leases, "POST") => Route::Grant,
            (Route::Lease(id), "DELETE") => Route::Revoke(id),
            (r, _) => r,
        })
    } else {
        Err(ApiError::method_not_allowed(allow))
    }
}

/// The route `path` leads to, and the methods it takes (an `Allow`
/// value; `OPTIONS` aside, which `App` answers for every route).
pub fn resolve(path: &str) -> Option<(&'static str, Route<'_>)> {
    Some(if let Some(key) = path.strip_prefix("/put/") {
        ("POST", Route::Put(key))
    } else if let Some(key) = path.strip_prefix("/get/") {
        (READ, Route::Get(key))
    } else if let Some(key) = path.strip_prefix("/delete/") {
        ("DELETE", Route::Delete(key))
    } else if let Some(key) = path.strip_prefix("/history/") {
        (READ, Route::History(key))
    } else if let Some(rest) = path.strip_prefix("/leases/") {
        match rest.strip_suffix("/keepalive") {
            Some(id) => ("POST", Route::Keepalive(id)),
            None => ("GET, HEAD, DELETE", Route::Lease(rest)),
        }
    } else if path == "/leases" {
        ("GET, HEAD, POST", Route::Leases)
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
            "/changes" => Route::Changes,
            "/metrics" => Route::Metrics,
            "/openapi.json" => Route::OpenApi,
            "/backup" => Route::Backup,
            "/docs" => Route::Docs(""),
            "/ui" => Route::Ui(""),
            "/auth/whoami" => Route::WhoAmI,
            "/favicon.ico" => Route::Favicon,
            _ => return None,
        };
        (READ, r)
    })
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
        for (method, path) in [
            ("POST", "/leases/7/keepalive"),
            ("GET", "/ui/app.js"),
            ("GET", "/keys"),
        ] {
            let routed = route(method, path).map(Route::detach).ok();
            assert_eq!(
                routed.as_ref().map(Detached::route),
                route(method, path).ok()
            );
        }
        let e = route("GET", "/put/a").err();
        assert_eq!(e.as_ref().map(|e| e.status), Some(405));
        assert_eq!(
            e.and_then(|e| e.headers.first().cloned()),
            Some(("Allow", "POST, OPTIONS".to_string()))
        );
    }
}
