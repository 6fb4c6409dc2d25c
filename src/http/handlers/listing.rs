//! `GET /history/{key}` and `GET /keys`: cursor-paginated listings.

use super::kv::json;
use crate::http::api_error::ApiError;
use crate::http::delimit::{self, Entry};
use crate::http::message::{HttpRequest, HttpResponse};
use crate::http::query::{AFTER, BEFORE, DELIMITER, LIMIT, PREFIX, Query, VALUES};
use crate::http::wire::{
    ChangeKind, ErrorResponse, HistoryEntry, HistoryResponse, KeyEntry, KeysResponse,
};
use crate::key::decode_key;
use crate::version::rfc3339_ms;
use crate::{KeyInfo, Store};

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
                operation: ChangeKind::from(r.operation()),
                size_bytes: r.size_bytes,
                revision: r.revision,
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
        ("delimiter" = Option<String>, Query, description = "List one level of a tree, as folders split at this string (like S3's ListObjects): `keys` holds the keys with no delimiter after the prefix, `prefixes` each folder once (the prefix, then the rest of some key up to and including the first delimiter). `limit` counts keys and folders; `after` a folder skips that whole folder"),
        ("values" = Option<bool>, Query, description = "true: each key with its latest value (not with delimiter)"),
    ),
    responses(
        (status = 200, description = "A page of live keys in byte order (with `delimiter`, of keys and folders), and the store's revision it shows: list, then follow `GET /changes?after=` it", body = KeysResponse),
        (status = 422, description = "Invalid parameter", body = ErrorResponse),
    )
)]
pub fn keys(store: &Store, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(req.query())?;
    let limit = limit(&query)?;
    let prefix = query.get(PREFIX.name).unwrap_or("");
    let values = query.boolean(VALUES)?;
    if let Some(delimiter) = query.get(DELIMITER.name) {
        if values {
            return Err(ApiError::unprocessable(
                "values=true lists keys with their values: it cannot be combined with delimiter",
            ));
        }
        return keys_level(store, prefix, delimiter, query.get(AFTER.name), limit);
    }
    let page = store.keys_page(prefix, query.get(AFTER.name), limit, values)?;
    let next_after = if page.more {
        page.keys.last().map(|r| r.key.clone())
    } else {
        None
    };
    json(&KeysResponse {
        keys: page.keys.into_iter().map(key_entry).collect(),
        prefixes: None,
        next_after,
        revision: page.revision,
    })
}

/// `GET /keys?delimiter=D`: one level of the tree under `prefix`.
fn keys_level(
    store: &Store,
    prefix: &str,
    delimiter: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<HttpResponse, ApiError> {
    if delimiter.is_empty() {
        return Err(ApiError::unprocessable("delimiter must not be empty"));
    }
    // The revision of the first page read: a level read in several pages
    // is not one snapshot, so it names the oldest of them.
    let mut revision = None;
    let (entries, more) = delimit::level(prefix, delimiter, after, limit, |after, n| {
        let page = store.keys_page(prefix, after, n, false)?;
        revision.get_or_insert(page.revision);
        Ok::<_, crate::StoreError>((page.keys, page.more))
    })?;
    let next_after = if more {
        entries.last().map(|e| e.name().to_string())
    } else {
        None
    };
    let mut keys = Vec::new();
    let mut prefixes = Vec::new();
    for entry in entries {
        match entry {
            Entry::Key(k) => keys.push(key_entry(k)),
            Entry::Folder(f) => prefixes.push(f),
        }
    }
    json(&KeysResponse {
        keys,
        prefixes: Some(prefixes),
        next_after,
        revision: revision.unwrap_or(0),
    })
}

fn key_entry(k: KeyInfo) -> KeyEntry {
    KeyEntry {
        key: k.key,
        version: k.version,
        timestamp: rfc3339_ms(k.timestamp_ms),
        value: k.value,
    }
}
