//! `POST /put/{key}`, `GET /get/{key}` (with ETag, conditional GET and
//! long-poll watch) and `DELETE /delete/{key}`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::api_error::ApiError;
use crate::http::completion::{Deferred, Lane, Reply, Responder};
use crate::http::lifetime::{lifetime, ttl};
use crate::http::message::{HttpRequest, HttpResponse, Part, SharedBytes};
use crate::http::query::{IF_VERSION, LEASE, PURGE, Query, TIMEOUT, TTL, VERSION, WAIT_AFTER};
use crate::http::wire::{
    ConflictResponse, DeleteOrPurge, DeleteResponse, ErrorResponse, GetResponse, PurgeResponse,
    PutRequest, PutResponse,
};
use crate::key::{decode_key, decode_key_to_remove};
use crate::version::rfc3339_ms;
use crate::watch::Subscription;
use crate::{PutItem, Store, StoreError, Versioned, Watch};

/// Default wait of a long poll, in seconds (the largest is [`TIMEOUT`]'s).
const WAIT_DEFAULT_SECS: u64 = 30;

/// Stores the body's `value` as the next version of the key.
#[utoipa::path(
    post,
    path = "/put/{key}",
    params(
        ("key" = String, Path, description = "The key, percent-encoded; 1 to 1024 bytes of UTF-8, may contain '/'", example = "user/1"),
        ("if_version" = Option<u64>, Query, description = "Write only if the live version is this (the latest unless deleted); 0: only if the key has none (never written, deleted or purged)"),
        ("If-Match" = Option<String>, Header, description = "Same as if_version, as an ETag: \"N\" (compared strongly: a weak W/\"N\" is refused)"),
        ("ttl" = Option<String>, Query, description = "The key expires this long after the write (1s to 30days; 30s, 5m, 2h or plain seconds 30) unless written again: a tombstone marked as an expiry is written. A write without ttl or lease makes the key permanent again"),
        ("lease" = Option<u64>, Query, description = "Attach the key to this lease (POST /leases): it expires when the lease runs out or is revoked. Not with ttl"),
    ),
    request_body = PutRequest,
    responses(
        (status = 200, description = "Committed", body = PutResponse),
        (status = 404, description = "The lease is unknown, expired or revoked; nothing written", body = ErrorResponse),
        (status = 409, description = "if_version did not match; nothing written", body = ConflictResponse),
        (status = 413, description = "Body over the limit", body = ErrorResponse),
        (status = 422, description = "Malformed JSON, missing value, invalid key or condition, a ttl out of bounds, ttl and lease together", body = ErrorResponse),
        (status = 503, description = "Overloaded or database unavailable", body = ErrorResponse),
        (status = 507, description = "Disk full", body = ErrorResponse),
    )
)]
pub fn put(store: &Store, req: &HttpRequest, encoded_key: &str) -> Result<Reply, ApiError> {
    let key = decode_key(encoded_key)?;
    let query = Query::parse(req.query())?;
    let expect = condition(req, &query)?;
    let lifetime = lifetime(
        query.get(TTL.name).map(ttl).transpose()?,
        query.integer(LEASE)?,
    )?;
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
        let item = PutItem {
            key: key.clone(),
            value,
            expect,
            lifetime,
        };
        store.put_then(item, move |outcome| {
            let response = outcome
                .map_err(ApiError::from)
                .and_then(|outcome| {
                    json(&PutResponse {
                        key: &key,
                        version: outcome.version,
                        operation: outcome.operation().into(),
                        timestamp: outcome.timestamp(),
                        revision: outcome.revision,
                    })
                })
                .unwrap_or_else(ApiError::into_response);
            responder.send(response);
        });
    })))
}

/// A write's condition on the key's live version: `?if_version=N`, else
/// `If-Match: "N"`.
fn condition(req: &HttpRequest, query: &Query) -> Result<Option<u64>, ApiError> {
    match query.integer(IF_VERSION)? {
        Some(v) => Ok(Some(v)),
        None => req.header("if-match").map(parse_etag).transpose(),
    }
}

/// `"N"` or `N` to N. `If-Match` compares strongly (RFC 9110, 13.1.1): a
/// weak ETag never matches, which is refused as such rather than taken
/// for a version.
fn parse_etag(v: &str) -> Result<u64, ApiError> {
    let v = v.trim();
    if v.starts_with("W/") {
        return Err(ApiError::unprocessable(
            "If-Match compares strongly: a weak ETag (W/\"N\") never matches; send \"N\"",
        ));
    }
    v.trim_matches('"').parse().map_err(|_| {
        ApiError::unprocessable("If-Match must be a version ETag like \"3\"".to_string())
    })
}

/// Whether `If-None-Match` names `version`, compared weakly (RFC 9110,
/// 13.1.2: `W/"1"` matches `"1"`, as a proxy that compresses answers
/// makes ETags weak): `*`, or a list of entity tags of which one is it.
fn none_match(header: &str, version: u64) -> bool {
    let ours = format!("\"{version}\"");
    header.split(',').any(|tag| {
        let tag = tag.trim();
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours
    })
}

/// Reads the latest version of the key, or `?version=N`; or waits for a
/// version above `wait_after`.
#[utoipa::path(
    get,
    path = "/get/{key}",
    params(
        ("key" = String, Path, description = "The key, percent-encoded", example = "user/1"),
        ("version" = Option<u64>, Query, description = "A version to read instead of the latest"),
        ("wait_after" = Option<u64>, Query, description = "Long poll: answer when the latest version is above this"),
        ("timeout" = Option<u64>, Query, description = "Long poll limit in seconds (default 30, max 300); then the current latest is answered"),
        ("If-None-Match" = Option<String>, Header, description = "\"N\", W/\"N\" (compared weakly), a list of them or *: answer 304 if the latest is still N"),
    ),
    responses(
        (status = 200, description = "The value", body = GetResponse,
         headers(("ETag" = String, description = "The version, quoted"))),
        (status = 304, description = "The latest version is still the one in If-None-Match"),
        (status = 404, description = "No such key or version, or the key was deleted or expired (expired_version: the expiry's tombstone)", body = ErrorResponse),
        (status = 410, description = "The version was removed by retention", body = ErrorResponse),
        (status = 422, description = "Invalid key or parameter", body = ErrorResponse),
        (status = 503, description = "Too many watchers", body = ErrorResponse),
    )
)]
pub fn get(store: &Store, req: &HttpRequest, encoded_key: &str) -> Result<Reply, ApiError> {
    let key = decode_key(encoded_key)?;
    let query = Query::parse(req.query())?;
    // A parameter that would do nothing is refused, as an unknown one is.
    match (
        query.get("wait_after"),
        query.get("version"),
        query.get("timeout"),
    ) {
        (Some(_), Some(_), _) => {
            return Err(ApiError::unprocessable(
                "version and wait_after cannot be combined: a long poll waits for the latest",
            ));
        }
        (None, _, Some(_)) => {
            return Err(ApiError::unprocessable(
                "timeout is the limit of a long poll: it needs wait_after",
            ));
        }
        _ => {}
    }
    if let Some(after) = query.integer(WAIT_AFTER)? {
        let secs = query.integer(TIMEOUT)?.unwrap_or(WAIT_DEFAULT_SECS);
        // It reads the store before it parks: on a worker.
        let store = store.clone();
        return Ok(Reply::Defer(Deferred::new(Lane::Workers, move |_| {
            watch(&store, key, after, Duration::from_secs(secs))
        })));
    }
    let version = query.integer(VERSION)?;
    let if_none_match = req.header("if-none-match");
    // From the cache alone when it can (no database, no lock but the
    // cache's): answered at once, on the connection loop's thread.
    if let Some(found) = store.get_cached(&key, version) {
        return found
            .map_err(ApiError::from)
            .and_then(|found| found_response(store, &found, version, if_none_match))
            .map(Reply::Ready);
    }
    // A backend whose reads are queued answers on its own thread (shared
    // rounds carry every read in flight): handed on from here. Else the
    // read blocks: on a worker.
    let if_none_match = if_none_match.map(str::to_string);
    let store = store.clone();
    let answer = move |store: &Store, found: Result<Arc<Versioned>, StoreError>| {
        found
            .map_err(ApiError::from)
            .and_then(|v| found_response(store, &v, version, if_none_match.as_deref()))
            .unwrap_or_else(ApiError::into_response)
    };
    if !store.reads_never_block() {
        return Ok(Reply::Defer(Deferred::new(Lane::Workers, move |_| {
            Reply::Ready(answer(&store, store.get(&key, version)))
        })));
    }
    Ok(Reply::Later(Box::new(move |responder| {
        let reader = store.clone();
        reader.get_then(&key, version, Instant::now(), move |found| {
            responder.send(answer(&store, found));
        });
    })))
}

/// The answer to a GET that found `found`: `304` if it is the latest
/// (`version` not given) and `If-None-Match` names it.
fn found_response(
    store: &Store,
    found: &Arc<Versioned>,
    version: Option<u64>,
    if_none_match: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    if version.is_none() && if_none_match.is_some_and(|h| none_match(h, found.version)) {
        return Ok(HttpResponse::json(304, Vec::new()).with_header("ETag", etag(found)));
    }
    versioned(found, store.expires_at(found))
}

/// The long poll: answered at once if the key is past `after`, else parked
/// (no thread waits) until the writer hands over a newer version, the
/// timeout passes (the connection loop's timer; then the current latest is
/// answered), the server shuts down (the same), or the client goes away
/// (the watcher slot is freed at once).
fn watch(store: &Store, key: String, after: u64, timeout: Duration) -> Reply {
    let store = store.clone();
    Reply::Later(Box::new(move |responder| {
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
                        .map(|v| versioned_or_deleted(&store, &v))
                        .unwrap_or_else(ApiError::into_response),
                );
            }
        };
        {
            let (slot, subscription) = (Arc::clone(&slot), Arc::clone(&subscription));
            let (store, key) = (store.clone(), key.clone());
            // Dropped unrun if the client leaves: that drops the subscription.
            // At the deadline, the latest version as read then (a version
            // another replica committed may not have woken this one yet).
            // The read does not block the caller where the storage queues
            // reads (PostgreSQL's rounds); it is bounded by the query
            // timeout from the deadline, however long this waited for a
            // worker (all of them may wait on a locked table).
            responder.park(deadline, move || {
                drop(lock(&subscription).take());
                let Some(responder) = lock(&slot).take() else {
                    return;
                };
                let reader = store.clone();
                let asked = deadline.unwrap_or_else(Instant::now);
                reader.get_then(&key, None, asked, move |found| {
                    responder.send(
                        found
                            .map(|v| versioned_or_deleted(&store, &v))
                            .unwrap_or_else(|e| ApiError::from(e).into_response()),
                    )
                });
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
    }))
}

/// The responder of a long poll, taken by whoever answers first. If nobody
/// does (the client went away, so the loop dropped the wait), it is
/// abandoned quietly: there is nobody to answer.
pub(super) struct AnswerOnce(pub(super) Mutex<Option<Responder>>);

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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn versioned_or_deleted(store: &Store, v: &Arc<Versioned>) -> HttpResponse {
    if v.deleted {
        let (key, version) = (v.key.clone(), v.version);
        let gone = if v.expired {
            StoreError::Expired { key, version }
        } else {
            StoreError::Deleted { key, version }
        };
        return ApiError::from(gone)
            .into_response()
            .with_header("ETag", etag(v));
    }
    versioned(v, store.expires_at(v)).unwrap_or_else(ApiError::into_response)
}

fn etag(v: &Versioned) -> String {
    format!("\"{}\"", v.version)
}

/// A stored value's text, shared with the cache (or the read that found
/// it): the connection sends a large value from there, without a copy.
struct ValueText(Arc<Versioned>);

impl SharedBytes for ValueText {
    fn bytes(&self) -> &[u8] {
        self.0.value.get().as_bytes()
    }
}

/// The `200` of a GET: the bytes `json(&GetResponse { .. })` would make,
/// with the value not copied into them (see [`ValueText`]); `expires_ms`:
/// the key's deadline, if it has one.
fn versioned(v: &Arc<Versioned>, expires_ms: Option<i64>) -> Result<HttpResponse, ApiError> {
    let encode = |e: serde_json::Error| ApiError::new(500, format!("cannot encode response: {e}"));
    let mut head = br#"{"key":"#.to_vec();
    serde_json::to_writer(&mut head, &v.key).map_err(encode)?;
    head.extend_from_slice(br#","value":"#);
    let mut tail = format!(r#","version":{},"timestamp":"#, v.version).into_bytes();
    serde_json::to_writer(&mut tail, &v.timestamp()).map_err(encode)?;
    tail.extend_from_slice(format!(r#","revision":{}"#, v.revision).as_bytes());
    if let Some(ms) = expires_ms {
        tail.extend_from_slice(br#","expires_at":"#);
        serde_json::to_writer(&mut tail, &rfc3339_ms(ms)).map_err(encode)?;
    }
    tail.push(b'}');
    let value = Part::Shared(Arc::new(ValueText(Arc::clone(v))));
    Ok(
        HttpResponse::json_parts(200, head, vec![value, Part::Owned(tail)])
            .with_header("ETag", etag(v)),
    )
}

/// Deletes the key: a tombstone version, or with `purge=true` every version
/// for good.
#[utoipa::path(
    delete,
    path = "/delete/{key}",
    params(
        ("key" = String, Path, description = "The key, percent-encoded", example = "user/1"),
        ("purge" = Option<bool>, Query, description = "true: remove every version permanently"),
        ("if_version" = Option<u64>, Query, description = "Delete (or purge) only if the live version is this: the latest unless deleted; 0: none (with purge=true: only a deleted key)"),
        ("If-Match" = Option<String>, Header, description = "Same as if_version, as an ETag: \"N\" (compared strongly: a weak W/\"N\" is refused)"),
    ),
    responses(
        (status = 200, description = "Deleted: a tombstone version was written (DeleteResponse); with purge=true, every version removed (PurgeResponse)", body = DeleteOrPurge),
        (status = 409, description = "if_version or If-Match did not match; nothing written", body = ConflictResponse),
        (status = 422, description = "Invalid key, condition, or purge is not true or false", body = ErrorResponse),
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
    // Also a key stored before dot segments were refused.
    let key = decode_key_to_remove(encoded_key)?;
    let query = Query::parse(req.query())?;
    let expect = condition(req, &query)?;
    if query.boolean(PURGE)? {
        let (purged_versions, revision) = store.purge_revision(&key, expect)?;
        json(&PurgeResponse {
            key: &key,
            purged_versions,
            revision,
        })
    } else {
        let outcome = store.delete_if(&key, expect)?;
        json(&DeleteResponse {
            key: &key,
            version: outcome.version,
            timestamp: outcome.timestamp(),
            revision: outcome.revision,
        })
    }
}

/// Serializes `body` as a `200` JSON response.
pub fn json<T: serde::Serialize>(body: &T) -> Result<HttpResponse, ApiError> {
    serde_json::to_vec(body)
        .map(|b| HttpResponse::json(200, b))
        .map_err(|e| ApiError::new(500, format!("cannot encode response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn if_none_match_compares_weakly_and_if_match_strongly() {
        for yes in ["\"1\"", "W/\"1\"", "*", "\"3\", W/\"1\"", " \"2\" ,\"1\""] {
            assert!(none_match(yes, 1), "{yes}");
        }
        for no in ["\"2\"", "W/\"2\"", "1", "w/\"1\"", "\"1", "", "W/\"01\""] {
            assert!(!none_match(no, 1), "{no}");
        }
        assert_eq!(parse_etag("\"7\"").ok(), Some(7));
        assert!(parse_etag("W/\"7\"").is_err());
        assert!(parse_etag("*").is_err());
    }

    /// The GET body made in parts is the one serde makes of `GetResponse`.
    #[test]
    fn versioned_parts_match_the_documented_shape() {
        for (key, value) in [
            ("k", "1"),
            ("a \"quoted\"/ключ\\x", r#"{"n": [1, 2, "é"]}"#),
            ("x", "\"a string\""),
        ] {
            let v = Arc::new(Versioned {
                key: key.to_string(),
                version: 42,
                timestamp_ms: 1_780_000_000_123,
                deleted: false,
                expired: false,
                revision: 7,
                value: RawValue::from_string(value.to_string()).unwrap(),
                deadline: None,
            });
            for expires in [None, Some(1_780_000_030_123)] {
                let made = versioned(&v, expires).unwrap();
                let expected = serde_json::to_vec(&GetResponse {
                    key: &v.key,
                    value: &v.value,
                    version: v.version,
                    timestamp: v.timestamp(),
                    revision: v.revision,
                    expires_at: expires.map(rfc3339_ms),
                })
                .unwrap();
                assert_eq!(made.body_bytes(), expected);
                assert_eq!(made.body_len(), expected.len() as u64);
                assert_eq!(made.header("ETag"), Some("\"42\""));
            }
        }
    }
}
