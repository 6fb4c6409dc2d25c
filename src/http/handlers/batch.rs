//! `POST /batch`: several puts, all or nothing.

use super::kv::json;
use crate::http::api_error::ApiError;
use crate::http::completion::Reply;
use crate::http::lifetime::{TtlValue, lifetime};
use crate::http::message::{HttpRequest, HttpResponse};
use crate::http::wire::{
    BatchRequest, BatchResponse, ConflictResponse, ErrorResponse, PutResponse,
};
use crate::{PutItem, PutOutcome, Store};

/// Commits every put or none (one transaction).
#[utoipa::path(
    post,
    path = "/batch",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "All committed", body = BatchResponse),
        (status = 404, description = "A lease is unknown, expired or revoked (named); nothing written", body = ErrorResponse),
        (status = 409, description = "A condition failed (named); nothing written", body = ConflictResponse),
        (status = 422, description = "Malformed body, invalid key, too many puts, a ttl out of bounds, or ttl and lease together", body = ErrorResponse),
    )
)]
pub fn batch(store: &Store, req: &HttpRequest, max_puts: usize) -> Result<Reply, ApiError> {
    if req.body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::unprocessable(
            "body must be a JSON object like {\"puts\": [...]}",
        ));
    }
    let body: BatchRequest<'_> = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::unprocessable(format!("invalid JSON body: {e}")))?;
    if body.puts.is_empty() || body.puts.len() > max_puts {
        return Err(ApiError::unprocessable(format!(
            "a batch holds 1 to {max_puts} puts, got {}",
            body.puts.len()
        )));
    }
    let items = body
        .puts
        .into_iter()
        .map(|p| {
            let ttl = p.ttl.as_ref().map(TtlValue::duration).transpose()?;
            Ok(PutItem {
                lifetime: lifetime(ttl, p.lease).map_err(|e| named(e, &p.key))?,
                key: p.key,
                value: p.value.to_owned(),
                expect: p.if_version,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let store = store.clone();
    // Answered from the writer thread right after the commit, as a put is:
    // the worker is free meanwhile, and batches in flight share commits.
    Ok(Reply::Later(Box::new(move |responder| {
        store.batch_then(items, move |outcomes| {
            let response = outcomes
                .map_err(ApiError::from)
                .and_then(|outcomes| answer(&outcomes))
                .unwrap_or_else(ApiError::into_response);
            responder.send(response);
        });
    })))
}

/// The answer to a committed batch.
fn answer(outcomes: &[PutOutcome]) -> Result<HttpResponse, ApiError> {
    json(&BatchResponse {
        results: outcomes
            .iter()
            .map(|o| PutResponse {
                key: &o.key,
                version: o.version,
                operation: o.operation().into(),
                timestamp: o.timestamp(),
                revision: o.revision,
            })
            .collect(),
    })
}

/// `e` with the key of the entry it is about.
fn named(mut e: ApiError, key: &str) -> ApiError {
    e.detail = format!("{} (key '{key}')", e.detail);
    e
}
