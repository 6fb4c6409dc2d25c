//! `/leases`: grant, keep alive, read, list and revoke leases. A key put
//! with `?lease=ID` expires when its lease runs out or is revoked.

use std::time::Duration;

use super::kv::json;
use crate::http::api_error::ApiError;
use crate::http::message::{HttpRequest, HttpResponse};
use crate::http::query::{LIMIT, Query};
use crate::http::wire::{
    ErrorResponse, LeaseDetail, LeaseRequest, LeaseResponse, LeasesResponse, RevokeResponse,
};
use crate::version::{now_ms, rfc3339_ms};
use crate::{Lease, Store};

/// Keys listed by `GET /leases/{id}` when `limit` is not given.
const DEFAULT_LIMIT: u64 = 100;

/// Grants a lease.
#[utoipa::path(
    post,
    path = "/leases",
    request_body = LeaseRequest,
    responses(
        (status = 201, description = "Granted", body = LeaseResponse),
        (status = 422, description = "Malformed body, or a ttl out of bounds (1s to 30days)", body = ErrorResponse),
        (status = 503, description = "Overloaded or database unavailable", body = ErrorResponse),
    )
)]
pub fn grant(store: &Store, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    if req.body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::unprocessable(
            "body must be a JSON object like {\"ttl\": \"10s\"}",
        ));
    }
    let body: LeaseRequest = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::unprocessable(format!("invalid JSON body: {e}")))?;
    let lease = store.grant_lease(body.ttl.duration()?)?;
    let mut response = json(&wire(&lease))?;
    response.status = 201;
    Ok(response)
}

/// Keeps a lease alive: it now runs out its TTL from now.
#[utoipa::path(
    post,
    path = "/leases/{id}/keepalive",
    params(("id" = u64, Path, description = "The lease")),
    responses(
        (status = 200, description = "Kept alive: its new deadline", body = LeaseResponse),
        (status = 404, description = "No such lease: never granted, expired or revoked", body = ErrorResponse),
        (status = 422, description = "Invalid id", body = ErrorResponse),
    )
)]
pub fn keepalive(store: &Store, id: &str) -> Result<HttpResponse, ApiError> {
    json(&wire(&store.keepalive(parse_id(id)?)?))
}

/// A lease: its deadline, the time left and the keys attached to it.
#[utoipa::path(
    get,
    path = "/leases/{id}",
    params(
        ("id" = u64, Path, description = "The lease"),
        ("limit" = Option<u64>, Query, description = "List at most this many of its keys (default 100, max 1000)"),
    ),
    responses(
        (status = 200, description = "The lease", body = LeaseDetail),
        (status = 404, description = "No such lease: never granted, expired or revoked", body = ErrorResponse),
        (status = 422, description = "Invalid id or parameter", body = ErrorResponse),
    )
)]
pub fn lease(store: &Store, req: &HttpRequest, id: &str) -> Result<HttpResponse, ApiError> {
    let id = parse_id(id)?;
    let query = Query::parse(req.query())?;
    let limit = query.integer(LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    let limit = usize::try_from(limit).map_err(|_| ApiError::unprocessable("limit too large"))?;
    let (lease, keys, more_keys) = store.lease(id, limit)?;
    json(&LeaseDetail {
        lease: wire(&lease),
        remaining_ms: u64::try_from(lease.expires_ms.saturating_sub(now_ms())).unwrap_or(0),
        keys,
        more_keys,
    })
}

/// Every live lease.
#[utoipa::path(
    get,
    path = "/leases",
    responses(
        (status = 200, description = "Every live lease, by id", body = LeasesResponse),
    )
)]
pub fn list(store: &Store) -> Result<HttpResponse, ApiError> {
    json(&LeasesResponse {
        leases: store.leases()?.iter().map(wire).collect(),
    })
}

/// Revokes a lease: every key attached to it expires, in one transaction.
#[utoipa::path(
    delete,
    path = "/leases/{id}",
    params(("id" = u64, Path, description = "The lease")),
    responses(
        (status = 200, description = "Revoked", body = RevokeResponse),
        (status = 404, description = "No such lease: never granted, expired or revoked", body = ErrorResponse),
        (status = 422, description = "Invalid id", body = ErrorResponse),
        (status = 503, description = "Overloaded or database unavailable", body = ErrorResponse),
    )
)]
pub fn revoke(store: &Store, id: &str) -> Result<HttpResponse, ApiError> {
    let id = parse_id(id)?;
    let expired = store.revoke_lease(id)?;
    json(&RevokeResponse {
        id,
        expired_keys: expired.len() as u64,
    })
}

/// A lease id from the path (`422` if it is not a positive integer).
fn parse_id(id: &str) -> Result<u64, ApiError> {
    match id.parse::<u64>() {
        Ok(n) if n >= 1 && i64::try_from(n).is_ok() => Ok(n),
        _ => {
            let shown: String = id.chars().filter(|c| !c.is_control()).take(100).collect();
            Err(ApiError::unprocessable(format!(
                "a lease id is a positive integer, got '{shown}'"
            )))
        }
    }
}

fn wire(lease: &Lease) -> LeaseResponse {
    LeaseResponse {
        id: lease.id,
        ttl: humantime::format_duration(lease.ttl).to_string(),
        ttl_seconds: Duration::as_secs_f64(&lease.ttl),
        expires_at: rfc3339_ms(lease.expires_ms),
    }
}
