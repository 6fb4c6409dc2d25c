//! `GET /backup`: a consistent snapshot of the database, streamed from a
//! temporary file.

use crate::Store;
use crate::http::api_error::ApiError;
use crate::http::message::{FileBody, HttpRequest, HttpResponse};
use crate::http::wire::ErrorResponse;

/// A consistent SQLite snapshot of the whole database, taken while writes
/// go on (it holds every write acknowledged before the request). Restore it
/// with `vkv restore FILE --db DB`. Needs the `admin` scope when
/// authentication is on.
#[utoipa::path(
    get,
    path = "/backup",
    responses(
        (status = 200, description = "The snapshot, a SQLite database file", content_type = "application/vnd.sqlite3"),
        (status = 401, description = "Authentication is on and no valid token was sent", body = ErrorResponse),
        (status = 403, description = "The token lacks the admin scope", body = ErrorResponse),
        (status = 503, description = "Another backup is being taken, or the database is unavailable", body = ErrorResponse),
        (status = 507, description = "No room for the snapshot next to the database", body = ErrorResponse),
    )
)]
pub fn backup(store: &Store, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let response = if req.method == "HEAD" {
        // A snapshot is a full copy of the database: a HEAD (a link
        // checker, a proxy) must not cost one. Its length is unknown, so
        // none is sent.
        HttpResponse::json(200, Vec::new())
            .with_header("Content-Type", "application/vnd.sqlite3")
            .length_unknown()
    } else {
        let snapshot = crate::backup::snapshot(store.path())?;
        HttpResponse::file(
            200,
            "application/vnd.sqlite3",
            FileBody::new(snapshot.file, snapshot.len),
        )
    };
    Ok(response
        .with_header(
            "Content-Disposition",
            "attachment; filename=\"vkv-backup.db\"",
        )
        .with_header("Cache-Control", "no-store"))
}
