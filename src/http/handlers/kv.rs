//! `POST /put/{key}`, `GET /get/{key}` (with ETag, conditional GET and
//! long-poll watch) and `DELETE /delete/{key}`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::api_error::ApiError;
use crate::http::completion::Reply;
use crate::http::completion::Responder;
use crate::http::message::{HttpRequest, HttpResponse};
use crate::http::query::Query;
use crate::http::wire::{
    ConflictResponse, DeleteOrPurge, DeleteResponse, ErrorResponse, GetResponse, PurgeResponse,
    PutRequest, PutResponse,
};
use crate::key::decode_key;
use crate::watch::Subscription;
use crate::{Store, StoreError, Versioned, Watch};

/// Default and largest wait of a long poll, in seconds.
const WAIT_DEFAULT_SECS: u64 = 30;
const WAIT_MAX_SECS: u64 = 300;

/// Stores the body's `value` as the next version of the key.
#[utoipa::path(
    post,
    path = "/put/{key}",
    params(
        ("key" = String, Path, description = "The key, percent-encoded; 1 to 1024 bytes of UTF-8, may contain '/'"),
        ("if_version" = Option<u64>, Query, description = "Write only if the latest version is this; 0: only if the key has no version"),
        ("If-Match" = Option<String>, Header, description = "Same as if_version, as an ETag: \"N\""),
    ),
    request_body = PutRequest,
    responses(
        (status = 200, description = "Committed", body = PutResponse),
        (status = 409, description = "if_version did not match; nothing written", body = ConflictResponse),
        (status = 413, description = "Body over the limit", body = ErrorResponse),
        (status = 422, description = "Malformed JSON, missing value, invalid key or condition", body = ErrorResponse),
        (status = 503, description = "Overloaded or database unavailable", body = ErrorResponse),
        (status = 507, description = "Disk full", body = ErrorResponse),
    )
)]
pub fn put(store: &Store, req: &HttpRequest, encoded_key: &str) -> Result<Reply, ApiError> {
    let key = decode_key(encoded_key)?;
    let query = Query::parse(req.query())?;
    let expect = match query.get("if_version") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::unprocessable(format!("if_version must be a version number, got '{v}'"))
        })?),
        None => req.header("if-match").map(parse_etag).transpose()?,
    };
    // serde would also accept `[value]` for a struct: only an object is valid.
    if req.body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::unprocessable(
            "body must be a JSON object like {\"value\": ...}",
        ));
    }
    let body: PutRequest<'_> = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::unprocessable(format!("invalid JSON body: {e}")))?;
    let value = body.value.to_owned();
    let store = store.clone();
    // Answered from the writer thread right after the commit: no worker and
    // no connection thread waits for it, so workers stay free for reads and
    // the writer sees every in-flight put at once (group commits grow with
    // the number of clients, not with the number of workers).
    Ok(Reply::Later(Box::new(move |responder| {
        let stored = key.clone();
        store.put_then(&stored, value, expect, move |outcome| {
            let response = outcome
                .map_err(ApiError::from)
                .and_then(|outcome| {
                    json(&PutResponse {
                        key: &key,
                        version: outcome.version,
                        operation: outcome.operation().as_str(),
                        timestamp: outcome.timestamp(),
                    })
                })
                .unwrap_or_else(ApiError::into_response);
            responder.send(response);
        });
    })))
}

/// `"N"` or `N` to N.
fn parse_etag(v: &str) -> Result<u64, ApiError> {
    v.trim_matches('"').parse().map_err(|_| {
        ApiError::unprocessable("If-Match must be a version ETag like \"3\"".to_string())
    })
}

/// Reads the latest version of the key, or `?version=N`; or waits for a
/// version above `wait_after`.
#[utoipa::path(
    get,
    path = "/get/{key}",
    params(
        ("key" = String, Path, description = "The key, percent-encoded"),
        ("version" = Option<u64>, Query, description = "A version to read instead of the latest"),
        ("wait_after" = Option<u64>, Query, description = "Long poll: answer when the latest version is above this"),
        ("timeout" = Option<u64>, Query, description = "Long poll limit in seconds (default 30, max 300); then the current latest is answered"),
        ("If-None-Match" = Option<String>, Header, description = "\"N\": answer 304 if the latest is still N"),
    ),
    responses(
        (status = 200, description = "The value", body = GetResponse,
         headers(("ETag" = String, description = "The version, quoted"))),
        (status = 304, description = "The latest version is still the one in If-None-Match"),
        (status = 404, description = "No such key or version, or the key was deleted", body = ErrorResponse),
        (status = 410, description = "The version was removed by retention", body = ErrorResponse),
        (status = 422, description = "Invalid key or parameter", body = ErrorResponse),
        (status = 503, description = "Too many watchers", body = ErrorResponse),
    )
)]
pub fn get(store: &Store, req: &HttpRequest, encoded_key: &str) -> Result<Reply, ApiError> {
    let key = decode_key(encoded_key)?;
    let query = Query::parse(req.query())?;
    if let Some(after) = query.get("wait_after") {
        let after: u64 = after.parse().map_err(|_| {
            ApiError::unprocessable(format!(
                "wait_after must be a version number, got '{after}'"
            ))
        })?;
        let secs = query.positive("timeout")?.unwrap_or(WAIT_DEFAULT_SECS);
        if secs > WAIT_MAX_SECS {
            return Err(ApiError::unprocessable(format!(
                "timeout is at most {WAIT_MAX_SECS} seconds"
            )));
        }
        return watch(store, key, after, Duration::from_secs(secs));
    }
    let version = query.positive("version")?;
    // Answered when the read is (at once on a cache hit; a backend whose
    // reads are queued frees the worker meanwhile, so that shared rounds
    // carry every read in flight, not one per worker).
    let if_none_match = req.header("if-none-match").map(str::to_string);
    let store = store.clone();
    Ok(Reply::Later(Box::new(move |responder| {
        store.get_then(&key, version, move |found| {
            responder.send(
                found
                    .map_err(ApiError::from)
                    .and_then(|v| found_response(&v, version, if_none_match.as_deref()))
                    .unwrap_or_else(ApiError::into_response),
            );
        });
    })))
}

/// [`get`] when the store can answer from its cache alone (see
/// `Store::get_cached`), so the connection loop may run it without
/// blocking; `None` for everything else (a miss, a long poll), which
/// [`get`] then answers on a worker.
pub fn get_cached(
    store: &Store,
    req: &HttpRequest,
    encoded_key: &str,
) -> Option<Result<HttpResponse, ApiError>> {
    let key = decode_key(encoded_key).ok()?;
    let query = Query::parse(req.query()).ok()?;
    if query.get("wait_after").is_some() {
        return None;
    }
    let version = query.positive("version").ok()?;
    let found = store.get_cached(&key, version)?;
    Some(
        found
            .map_err(ApiError::from)
            .and_then(|found| found_response(&found, version, req.header("if-none-match"))),
    )
}

/// The answer to a GET that found `found`: `304` if it is the latest
/// (`version` not given) and `If-None-Match` names it.
fn found_response(
    found: &Versioned,
    version: Option<u64>,
    if_none_match: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let etag = etag(found);
    if version.is_none()
        && if_none_match.is_some_and(|h| h.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok(HttpResponse::json(304, Vec::new()).with_header("ETag", etag));
    }
    versioned(found)
}

/// The long poll: answered at once if the key is past `after`, else parked
/// (no thread waits) until the writer hands over a newer version, the
/// timeout passes (the connection loop's timer; then the current latest is
/// answered), the server shuts down (the same), or the client goes away
/// (the watcher slot is freed at once).
fn watch(store: &Store, key: String, after: u64, timeout: Duration) -> Result<Reply, ApiError> {
    let store = store.clone();
    Ok(Reply::Later(Box::new(move |responder| {
        let deadline = Instant::now().checked_add(timeout);
        // Whoever answers first (a commit, the deadline) takes the responder.
        let slot = Arc::new(AnswerOnce(Mutex::new(None)));
        let subscription = Arc::new(Mutex::new(None::<Subscription>));
        let answer = {
            let (slot, store, key) = (Arc::clone(&slot), store.clone(), key.clone());
            move |found: Option<Arc<Versioned>>| {
                let Some(responder) = lock(&slot).take() else {
                    return;
                };
                let latest = found.map_or_else(|| store.get(&key, None), Ok);
                responder.send(
                    latest
                        .map_err(ApiError::from)
                        .map(|v| versioned_or_deleted(&v))
                        .unwrap_or_else(ApiError::into_response),
                );
            }
        };
        {
            let (slot, subscription) = (Arc::clone(&slot), Arc::clone(&subscription));
            let (store, key) = (store.clone(), key.clone());
            // Dropped unrun if the client leaves: that drops the subscription.
            // At the deadline, the latest version as the wait was registered
            // (current then, after the request came: never stale), so that
            // the answer never waits on the database.
            responder.park(deadline, move || {
                let Some(responder) = lock(&slot).take() else {
                    return;
                };
                let latest = lock(&subscription).take().map(|sub| sub.latest.clone());
                match latest {
                    Some(Some(v)) => responder.send(versioned_or_deleted(&v)),
                    Some(None) => {
                        responder.send(ApiError::from(StoreError::KeyNotFound(key)).into_response())
                    }
                    // Not registered yet (a timeout shorter than the
                    // registration): the latest, without waiting for it.
                    None => store.get_then(&key, None, move |found| {
                        responder.send(
                            found
                                .map(|v| versioned_or_deleted(&v))
                                .unwrap_or_else(|e| ApiError::from(e).into_response()),
                        )
                    }),
                }
            });
        }
        *lock(&slot) = Some(responder);
        match store.subscribe_then(&key, after, answer.clone()) {
            Ok(Watch::Ready(v)) => answer(Some(v)),
            Ok(Watch::Pending(sub)) => *lock(&subscription) = Some(sub),
            Err(e) => {
                if let Some(responder) = lock(&slot).take() {
                    responder.send(ApiError::from(e).into_response());
                }
            }
        }
    })))
}

/// The responder of a long poll, taken by whoever answers first. If nobody
/// does (the client went away, so the loop dropped the wait), it is
/// abandoned quietly: there is nobody to answer.
struct AnswerOnce(Mutex<Option<Responder>>);

impl std::ops::Deref for AnswerOnce {
    type Target = Mutex<Option<Responder>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for AnswerOnce {
    fn drop(&mut self) {
        if let Some(responder) = lock(&self.0).take() {
            responder.abandon();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn versioned_or_deleted(v: &Arc<Versioned>) -> HttpResponse {
    if v.deleted {
        return ApiError::from(StoreError::Deleted {
            key: v.key.clone(),
            version: v.version,
        })
        .into_response()
        .with_header("ETag", etag(v));
    }
    versioned(v).unwrap_or_else(ApiError::into_response)
}

fn etag(v: &Versioned) -> String {
    format!("\"{}\"", v.version)
}

fn versioned(v: &Versioned) -> Result<HttpResponse, ApiError> {
    Ok(json(&GetResponse {
        key: &v.key,
        value: &v.value,
        version: v.version,
        timestamp: v.timestamp(),
    })?
    .with_header("ETag", etag(v)))
}

/// Deletes the key: a tombstone version, or with `purge=true` every version
/// for good.
#[utoipa::path(
    delete,
    path = "/delete/{key}",
    params(
        ("key" = String, Path, description = "The key, percent-encoded"),
        ("purge" = Option<bool>, Query, description = "true: remove every version permanently"),
    ),
    responses(
        (status = 200, description = "Deleted: a tombstone version was written (DeleteResponse); with purge=true, every version removed (PurgeResponse)", body = DeleteOrPurge),
        (status = 422, description = "Invalid key, or purge is not true or false", body = ErrorResponse),
        (status = 503, description = "Overloaded or database unavailable", body = ErrorResponse),
        (status = 507, description = "Disk full", body = ErrorResponse),
        (status = 404, description = "No such key, or already deleted", body = ErrorResponse),
    )
)]
pub fn delete(
    store: &Store,
    req: &HttpRequest,
    encoded_key: &str,
) -> Result<HttpResponse, ApiError> {
    let key = decode_key(encoded_key)?;
    let query = Query::parse(req.query())?;
    match query.get("purge") {
        Some("true" | "1") => json(&PurgeResponse {
            key: &key,
            purged_versions: store.purge(&key)?,
        }),
        None | Some("false" | "0") => {
            let outcome = store.delete(&key)?;
            json(&DeleteResponse {
                key: &key,
                version: outcome.version,
                timestamp: outcome.timestamp(),
            })
        }
        Some(other) => Err(ApiError::unprocessable(format!(
            "purge must be true or false, got '{other}'"
        ))),
    }
}

/// Serializes `body` as a `200` JSON response.
pub fn json<T: serde::Serialize>(body: &T) -> Result<HttpResponse, ApiError> {
    serde_json::to_vec(body)
        .map(|b| HttpResponse::json(200, b))
        .map_err(|e| ApiError::new(500, format!("cannot encode response: {e}")))
}
