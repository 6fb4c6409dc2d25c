//! `GET /cache/stats`, `GET /db/stats`, `GET /health`.

use super::kv::json;
use crate::http::api_error::ApiError;
use crate::http::message::HttpResponse;
use crate::http::metrics::Metrics;
use crate::http::wire::{ErrorResponse, HealthResponse};
use crate::{CacheStats, DbStats, Store};

/// Cache size, capacity, hits, misses and evictions.
#[utoipa::path(
    get,
    path = "/cache/stats",
    responses((status = 200, description = "Cache counters", body = CacheStats))
)]
pub fn cache_stats(store: &Store) -> Result<HttpResponse, ApiError> {
    json(&store.cache_stats())
}

/// Key and version totals and the file size (constant time).
#[utoipa::path(
    get,
    path = "/db/stats",
    responses(
        (status = 200, description = "Totals and file size", body = DbStats),
        (status = 503, description = "The database is unavailable", body = ErrorResponse),
    )
)]
pub fn db_stats(store: &Store) -> Result<HttpResponse, ApiError> {
    json(&store.db_stats()?)
}

/// `200` when the database answers and takes writes; `503` with the fault
/// (file gone, disk full or read-only, I/O error) and `Retry-After`
/// otherwise.
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "Healthy: reads and writes work", body = HealthResponse),
        (status = 503, description = "Unavailable, with the fault in detail", body = HealthResponse),
    )
)]
pub fn health(store: &Store) -> Result<HttpResponse, ApiError> {
    let (status, body) = match store.health() {
        Ok(()) => (
            200,
            HealthResponse {
                status: "ok",
                detail: None,
            },
        ),
        Err(e) => (
            503,
            HealthResponse {
                status: "unavailable",
                detail: Some(e.to_string()),
            },
        ),
    };
    let mut r = json(&body)?;
    r.status = status;
    // An unhealthy answer says when to ask again, like every other 503.
    Ok(if status == 503 {
        r.with_header("Retry-After", "1")
    } else {
        r
    })
}

/// Prometheus text metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain"))
)]
pub fn metrics(metrics: &Metrics, store: &Store) -> HttpResponse {
    HttpResponse::json(200, metrics.render(store).into_bytes())
        .with_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
}
