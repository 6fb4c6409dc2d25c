//! `POST /put/{key}` and `GET /get/{key}`.

use serde_json::value::RawValue;

use crate::Store;
use crate::http::api_error::ApiError;
use crate::http::message::{HttpRequest, HttpResponse};
use crate::http::query::Query;
use crate::http::wire::{ErrorResponse, GetResponse, PutRequest, PutResponse};
use crate::key::decode_key;

/// Stores the body's `value` as the next version of the key.
#[utoipa::path(
    post,
    path = "/put/{key}",
    params(("key" = String, Path, description = "The key, percent-encoded; 1 to 1024 bytes of UTF-8, may contain '/'")),
    request_body = PutRequest,
    responses(
        (status = 200, description = "Committed", body = PutResponse),
        (status = 413, description = "Body over the limit", body = ErrorResponse),
        (status = 422, description = "Malformed JSON, missing value, or invalid key", body = ErrorResponse),
        (status = 503, description = "Overloaded or database unavailable", body = ErrorResponse),
        (status = 507, description = "Disk full", body = ErrorResponse),
    )
)]
pub fn put(store: &Store, req: &HttpRequest, encoded_key: &str) -> Result<HttpResponse, ApiError> {
    let key = decode_key(encoded_key)?;
    // serde would also accept `[value]` for a struct: only an object is valid.
    if req.body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::unprocessable(
            "body must be a JSON object like {\"value\": ...}",
        ));
    }
    let body: PutRequest<'_> = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::unprocessable(format!("invalid JSON body: {e}")))?;
    let value: Box<RawValue> = body.value.to_owned();
    let outcome = store.put_raw(&key, value)?;
    json(&PutResponse {
        key: &key,
        version: outcome.version,
        operation: outcome.operation().as_str(),
        timestamp: outcome.timestamp(),
    })
}

/// Reads the latest version of the key, or `?version=N`.
#[utoipa::path(
    get,
    path = "/get/{key}",
    params(
        ("key" = String, Path, description = "The key, percent-encoded"),
        ("version" = Option<u64>, Query, description = "A version to read instead of the latest"),
    ),
    responses(
        (status = 200, description = "The value", body = GetResponse,
         headers(("ETag" = String, description = "The version, quoted"))),
        (status = 404, description = "No such key or version", body = ErrorResponse),
        (status = 422, description = "Invalid key or version parameter", body = ErrorResponse),
    )
)]
pub fn get(store: &Store, req: &HttpRequest, encoded_key: &str) -> Result<HttpResponse, ApiError> {
    let key = decode_key(encoded_key)?;
    let version = Query::parse(req.query())?.positive("version")?;
    let found = store.get(&key, version)?;
    let etag = format!("\"{}\"", found.version);
    Ok(json(&GetResponse {
        key: &found.key,
        value: &found.value,
        version: found.version,
        timestamp: found.timestamp(),
    })?
    .with_header("ETag", etag))
}

/// Serializes `body` as a `200` JSON response.
pub fn json<T: serde::Serialize>(body: &T) -> Result<HttpResponse, ApiError> {
    serde_json::to_vec(body)
        .map(|b| HttpResponse::json(200, b))
        .map_err(|e| ApiError::new(500, format!("cannot encode response: {e}")))
}
