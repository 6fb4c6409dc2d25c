//! The JSON bodies of the API. The same types serialize the answers and
//! describe them in the OpenAPI document, so the two cannot drift.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// Body of `POST /put/{key}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"value": {"name": "Ada", "languages": ["en", "fr"], "admin": true}}))]
pub struct PutRequest<'a> {
    /// Any JSON value: object, array, string, number, boolean or null.
    #[serde(borrow)]
    #[schema(value_type = Value)]
    pub value: &'a RawValue,
}

/// Answer of `POST /put/{key}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"key": "user/1", "version": 1, "operation": "create", "timestamp": "2026-11-26T10:00:00.000Z", "revision": 42}))]
pub struct PutResponse<'a> {
    /// The key written.
    pub key: &'a str,
    /// The version created.
    pub version: u64,
    /// Whether the key had a live version before this write.
    pub operation: WriteOperation,
    /// Commit time, RFC 3339 UTC.
    pub timestamp: String,
    /// The store's revision of this write (a batch's puts share one).
    pub revision: u64,
}

/// What a put did: `create` when the key had no live version before it
/// (never written, deleted or purged; its number continues the key's
/// numbering, so it is not always 1), `update` when it had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteOperation {
    /// The key had no live version before.
    Create,
    /// The key had a live version before.
    Update,
}

impl From<crate::Operation> for WriteOperation {
    fn from(o: crate::Operation) -> Self {
        match o {
            crate::Operation::Create => WriteOperation::Create,
            crate::Operation::Update => WriteOperation::Update,
        }
    }
}

/// The body of `GET /backup`: a SQLite database file, as bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // describes the answer; never built
pub struct BackupFile(Vec<u8>);

/// Answer of `GET /get/{key}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"key": "user/1", "value": {"name": "Ada", "languages": ["en", "fr"], "admin": true}, "version": 1, "timestamp": "2026-11-26T10:00:00.000Z", "revision": 42}))]
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
    /// The store's revision of the write that made this version.
    pub revision: u64,
    /// When the key expires (RFC 3339 UTC), if it has a deadline: its TTL's
    /// or its lease's. Absent for a permanent key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub expires_at: Option<String>,
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

/// Answer `404` of a key's read or delete: no such key or version (only
/// `detail`), or the key's latest version is a tombstone (`key`, and
/// `deleted_version` or `expired_version`).
// Built by `ApiError` from the store's error; this type describes it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"detail": "key 'user/1' was deleted at version 2", "key": "user/1", "deleted_version": 2}))]
#[allow(dead_code)] // describes the answer; never built
pub struct NotFoundResponse {
    /// What was not found, for humans.
    pub detail: String,
    /// The key, when its latest version is a tombstone.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub key: Option<String>,
    /// The key was deleted: the version of its tombstone (a create-only
    /// put, `if_version=0`, succeeds now; the next version is one more).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub deleted_version: Option<u64>,
    /// The key expired (its TTL or lease ran out, or the lease was
    /// revoked): the version of the expiry's tombstone.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub expired_version: Option<u64>,
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
    /// The store's revision of the delete.
    pub revision: u64,
}

/// Answer of `DELETE /delete/{key}?purge=true`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeResponse<'a> {
    /// The key.
    pub key: &'a str,
    /// How many versions were removed for good.
    pub purged_versions: u64,
    /// The store's revision of the purge (a change of the feed).
    pub revision: u64,
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
    /// What wrote it, named as in write answers and the change feed:
    /// `create` (the key had no live version), `update`, `delete`, or
    /// `expire` (a TTL or lease ran out, or the lease was revoked).
    pub operation: ChangeKind,
    /// Size of the stored JSON value in bytes.
    pub size_bytes: u64,
    /// The store's revision of the write that made this version.
    pub revision: u64,
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
    /// Its latest value (with `values=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>, nullable = false)]
    pub value: Option<Box<RawValue>>,
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
    /// The store's revision this page shows: it is exactly the store at
    /// that revision, so `GET /changes?after=` it misses nothing and
    /// repeats nothing (list, then watch).
    pub revision: u64,
}

/// One change in `GET /changes` (and one event of its streams).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"revision": 43, "key": "app/prod/mode", "version": 2, "operation": "update", "timestamp": "2026-11-26T10:00:00.000Z", "value": "on"}))]
pub struct ChangeEntry<'a> {
    /// The store's revision of the write (a batch's changes share one).
    pub revision: u64,
    /// The key.
    pub key: &'a str,
    /// The version written; for a purge, the last version the key had.
    pub version: u64,
    /// What the write did.
    pub operation: ChangeKind,
    /// Commit time, RFC 3339 UTC.
    pub timestamp: String,
    /// The value written: present for `create` and `update` unless
    /// `values=false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>, nullable = false)]
    pub value: Option<&'a RawValue>,
}

impl<'a> From<&'a crate::Change> for ChangeEntry<'a> {
    fn from(c: &'a crate::Change) -> Self {
        ChangeEntry {
            revision: c.revision,
            key: &c.key,
            version: c.version,
            operation: c.operation.into(),
            timestamp: c.timestamp(),
            value: c.value.as_deref(),
        }
    }
}

/// What a change did: `create` (a version where the key had no live one),
/// `update`, `delete` (a tombstone), `purge` (every version removed) or
/// `expire` (the tombstone of an expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A version where the key had no live one.
    Create,
    /// A version over a live one.
    Update,
    /// A tombstone.
    Delete,
    /// Every version removed for good.
    Purge,
    /// The tombstone of an expiry (a TTL or lease ran out, or the lease
    /// was revoked).
    Expire,
}

impl From<crate::ChangeOperation> for ChangeKind {
    fn from(o: crate::ChangeOperation) -> Self {
        match o {
            crate::ChangeOperation::Create => ChangeKind::Create,
            crate::ChangeOperation::Update => ChangeKind::Update,
            crate::ChangeOperation::Delete => ChangeKind::Delete,
            crate::ChangeOperation::Purge => ChangeKind::Purge,
            crate::ChangeOperation::Expire => ChangeKind::Expire,
        }
    }
}

/// Answer of `GET /changes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangesResponse<'a> {
    /// The changes, in revision order (batch order within a revision).
    pub changes: Vec<ChangeEntry<'a>>,
    /// The store's revision this answer covers.
    pub revision: u64,
    /// Pass as `after` next: the last change's revision when `limit` cut
    /// the answer, else `revision`.
    pub next_after: u64,
}

/// A stream's progress mark, and a long poll's answer when nothing came.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressMark {
    /// The store's revision seen so far.
    pub revision: u64,
}

/// Answer `410` of `GET /changes`: changes after `after` were removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangesGoneResponse {
    /// What went wrong, for humans.
    pub detail: String,
    /// The smallest `after` the feed answers now (re-list with `/keys` and
    /// resume from its `revision`).
    pub oldest_revision: u64,
}

/// One put of `POST /batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchPut<'a> {
    /// The key (not percent-encoded).
    pub key: String,
    /// Any JSON value: object, array, string, number, boolean or null.
    #[serde(borrow)]
    #[schema(value_type = Value)]
    pub value: &'a RawValue,
    /// Write only if the latest version is this (0: only if absent).
    pub if_version: Option<u64>,
    /// The key expires this long after the batch commits: a duration
    /// (`"30s"`) or seconds (`30`), 1 s to 30 days. Not with `lease`.
    pub ttl: Option<crate::http::lifetime::TtlValue>,
    /// The key expires with this lease. Not with `ttl`.
    pub lease: Option<u64>,
}

/// Body of `POST /batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"puts": [
    {"key": "user/1", "value": {"name": "Ada"}},
    {"key": "user/2", "value": {"name": "Grace"}, "if_version": 0}
]}))]
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

/// Body of `POST /leases`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ttl": "10s"}))]
pub struct LeaseRequest {
    /// How long the lease lasts without a keepalive: a duration (`"10s"`)
    /// or seconds (`10`), 1 s to 30 days.
    pub ttl: crate::http::lifetime::TtlValue,
}

/// A lease: `POST /leases`, `POST /leases/{id}/keepalive`, `GET /leases`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": 7, "ttl": "10s", "ttl_seconds": 10.0, "expires_at": "2026-11-26T10:00:10.000Z"}))]
pub struct LeaseResponse {
    /// The lease's id, for `?lease=` and its own paths; never reused.
    pub id: u64,
    /// Its TTL, as a duration.
    pub ttl: String,
    /// Its TTL in seconds.
    pub ttl_seconds: f64,
    /// When it runs out unless kept alive (RFC 3339 UTC).
    pub expires_at: String,
}

/// Answer of `GET /leases/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseDetail {
    /// The lease.
    #[serde(flatten)]
    pub lease: LeaseResponse,
    /// Milliseconds until it runs out unless kept alive.
    pub remaining_ms: u64,
    /// Keys attached to it, in byte order (at most `limit`).
    pub keys: Vec<String>,
    /// Whether more keys are attached than listed.
    pub more_keys: bool,
}

/// Answer of `GET /leases`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeasesResponse {
    /// Every live lease, by id.
    pub leases: Vec<LeaseResponse>,
}

/// Answer of `DELETE /leases/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeResponse {
    /// The lease revoked.
    pub id: u64,
    /// The keys that expired with it (each got a tombstone marked as an
    /// expiry, in one transaction).
    pub expired_keys: u64,
}
