//! The JSON bodies of the API. The same types serialize the answers and
//! describe them in the OpenAPI document, so the two cannot drift.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// Body of `POST /put/{key}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PutRequest<'a> {
    /// Any JSON value: object, array, string, number, boolean or null.
    #[serde(borrow)]
    #[schema(value_type = Value)]
    pub value: &'a RawValue,
}

/// Answer of `POST /put/{key}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PutResponse<'a> {
    /// The key written.
    pub key: &'a str,
    /// The version created.
    pub version: u64,
    /// `create` for version 1, `update` after.
    #[schema(example = "create")]
    pub operation: &'static str,
    /// Commit time, RFC 3339 UTC.
    pub timestamp: String,
}

/// Answer of `GET /get/{key}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GetResponse<'a> {
    /// The key.
    pub key: &'a str,
    /// The stored JSON value, any JSON value.
    #[schema(value_type = Value)]
    pub value: &'a RawValue,
    /// Its version.
    pub version: u64,
    /// Commit time, RFC 3339 UTC.
    pub timestamp: String,
}

/// Answer of `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`, or `unavailable` with a detail.
    pub status: &'static str,
    /// What is wrong, when something is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// What went wrong, for humans.
    pub detail: String,
}

/// Answer of `DELETE /delete/{key}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteResponse<'a> {
    /// The key.
    pub key: &'a str,
    /// The version of the deletion marker.
    pub version: u64,
    /// Commit time, RFC 3339 UTC.
    pub timestamp: String,
}

/// Answer of `DELETE /delete/{key}?purge=true`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeResponse<'a> {
    /// The key.
    pub key: &'a str,
    /// How many versions were removed for good.
    pub purged_versions: u64,
}

/// Answer of `DELETE /delete/{key}`: a tombstone, or with `purge=true`
/// the count of versions removed. Only the OpenAPI document uses it.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the two answers; never built
pub enum DeleteOrPurge<'a> {
    /// Without `purge`.
    Deleted(DeleteResponse<'a>),
    /// With `purge=true`.
    Purged(PurgeResponse<'a>),
}

/// One version in `GET /history/{key}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// The version number.
    pub version: u64,
    /// Commit time, RFC 3339 UTC.
    pub timestamp: String,
    /// Whether this version is a deletion marker.
    pub deleted: bool,
    /// Size of the stored JSON value in bytes.
    pub size_bytes: u64,
}

/// Answer of `GET /history/{key}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse<'a> {
    /// The key.
    pub key: &'a str,
    /// Versions, newest first.
    pub versions: Vec<HistoryEntry>,
    /// Pass as `before` for the next page; null at the end.
    pub next_before: Option<u64>,
}

/// One key in `GET /keys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyEntry {
    /// The key.
    pub key: String,
    /// Its latest version.
    pub version: u64,
    /// Commit time of the latest version, RFC 3339 UTC.
    pub timestamp: String,
}

/// Answer of `GET /keys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeysResponse {
    /// Keys in byte order.
    pub keys: Vec<KeyEntry>,
    /// With `delimiter`: the folders of this level (common prefixes: the
    /// prefix, then the rest of some key up to and including the first
    /// delimiter), each once, in byte order; absent without `delimiter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub prefixes: Option<Vec<String>>,
    /// Pass as `after` for the next page; null at the end.
    pub next_after: Option<String>,
}

/// One put of `POST /batch`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchPut<'a> {
    /// The key (not percent-encoded).
    pub key: String,
    /// Any JSON value: object, array, string, number, boolean or null.
    #[serde(borrow)]
    #[schema(value_type = Value)]
    pub value: &'a RawValue,
    /// Write only if the latest version is this (0: only if absent).
    pub if_version: Option<u64>,
}

/// Body of `POST /batch`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchRequest<'a> {
    /// The puts, committed all or none.
    #[serde(borrow)]
    pub puts: Vec<BatchPut<'a>>,
}

/// Answer of `POST /batch`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse<'a> {
    /// One result per put, in order.
    pub results: Vec<PutResponse<'a>>,
}

/// Answer of a failed condition (`409`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictResponse {
    /// What went wrong.
    pub detail: String,
    /// The key whose condition failed.
    pub key: String,
    /// Its latest version (0: none).
    pub current_version: u64,
}

/// Answer of `GET /auth/whoami`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmIResponse {
    /// What the request's token may do: `read`, `write` or `admin` (each
    /// includes the ones before it); `admin` when authentication is off.
    pub scope: &'static str,
    /// Whether the server checks tokens (`--auth-tokens`).
    pub auth: bool,
}
