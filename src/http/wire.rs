//! The JSON bodies of the API. The same types serialize the answers and
//! describe them in the OpenAPI document, so the two cannot drift.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// Body of `POST /put/{key}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PutRequest<'a> {
    /// Any JSON value.
    #[serde(borrow)]
    #[schema(value_type = Object)]
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
    /// The stored JSON value.
    #[schema(value_type = Object)]
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
