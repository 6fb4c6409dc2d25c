//! `GET /history/{key}` and `GET /keys`: cursor-paginated listings.

use super::kv::json;
use crate::Store;
use crate::http::api_error::ApiError;
use crate::http::message::{HttpRequest, HttpResponse};
use crate::http::query::{AFTER, BEFORE, LIMIT, PREFIX, Query};
use crate::http::wire::{ErrorResponse, HistoryEntry, HistoryResponse, KeyEntry, KeysResponse};
use crate::key::decode_key;
use crate::version::rfc3339_ms;

/// A page's length when `limit` is not given (the largest is [`LIMIT`]'s).
const DEFAULT_LIMIT: u64 = 100;

fn limit(query: &Query) -> Result<usize, ApiError> {
    let n = query.integer(LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    usize::try_from(n).map_err(|_| ApiError::unprocessable("limit is too large"))
}

/// The key's versions, newest first.
#[utoipa::path(
    get,
    path = "/history/{key}",
    params(
        ("key" = String, Path, description = "The key, percent-encoded", example = "user/1"),
        ("limit" = Option<u64>, Query, description = "At most this many (default 100, max 1000)"),
        ("before" = Option<u64>, Query, description = "Only versions below this (the previous page's next_before)"),
    ),
    responses(
        (status = 200, description = "A page of versions, newest first", body = HistoryResponse),
        (status = 404, description = "No such key", body = ErrorResponse),
        (status = 422, description = "Invalid parameter", body = ErrorResponse),
    )
)]
pub fn history(
    store: &Store,
    req: &HttpRequest,
    encoded_key: &str,
) -> Result<HttpResponse, ApiError> {
    let key = decode_key(encoded_key)?;
    let query = Query::parse(req.query())?;
    let limit = limit(&query)?;
    let (rows, more) = store.history(&key, query.integer(BEFORE)?, limit)?;
    let next_before = if more {
        rows.last().map(|r| r.version)
    } else {
        None
    };
    json(&HistoryResponse {
        key: &key,
        versions: rows
            .into_iter()
            .map(|r| HistoryEntry {
                version: r.version,
                timestamp: rfc3339_ms(r.timestamp_ms),
                deleted: r.deleted,
                size_bytes: r.size_bytes,
            })
            .collect(),
        next_before,
    })
}

/// Keys in byte order with their latest version.
#[utoipa::path(
    get,
    path = "/keys",
    params(
        ("prefix" = Option<String>, Query, description = "Only keys starting with this"),
        ("limit" = Option<u64>, Query, description = "At most this many (default 100, max 1000)"),
        ("after" = Option<String>, Query, description = "Only keys after this (the previous page's next_after)"),
    ),
    responses(
        (status = 200, description = "A page of live keys in byte order", body = KeysResponse),
        (status = 422, description = "Invalid parameter", body = ErrorResponse),
    )
)]
pub fn keys(store: &Store, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(req.query())?;
    let limit = limit(&query)?;
    let prefix = query.get(PREFIX.name).unwrap_or("");
    let (rows, more) = store.keys(prefix, query.get(AFTER.name), limit)?;
    let next_after = if more {
        rows.last().map(|r| r.key.clone())
    } else {
        None
    };
    json(&KeysResponse {
        keys: rows
            .into_iter()
            .map(|r| KeyEntry {
                key: r.key,
                version: r.version,
                timestamp: rfc3339_ms(r.timestamp_ms),
            })
            .collect(),
        next_after,
    })
}
