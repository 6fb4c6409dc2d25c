//! `GET /backup`: a consistent snapshot of the database, streamed from a
//! temporary file.

use crate::Store;
use crate::http::api_error::ApiError;
use crate::http::message::{FileBody, HttpRequest, HttpResponse};
use crate::http::wire::{BackupFile, ErrorResponse};

/// A consistent SQLite snapshot of the whole database, taken while writes
/// go on (it holds every write acknowledged before the request). Restore it
/// with `vkv restore FILE --db DB`. Needs the `admin` scope when
/// authentication is on.
#[utoipa::path(
    get,
    path = "/backup",
    responses(
        (status = 200, description = "The snapshot, a SQLite database file (Content-Disposition: attachment; filename=\"vkv-backup.db\"); application/octet-stream when Accept names it and not application/vnd.sqlite3", content(
            (BackupFile = "application/vnd.sqlite3"),
            (BackupFile = "application/octet-stream"),
        )),
        (status = 401, description = "Authentication is on and no valid token was sent", body = ErrorResponse),
        (status = 403, description = "The token lacks the admin scope", body = ErrorResponse),
        (status = 503, description = "Another backup is being taken, or the database is unavailable", body = ErrorResponse),
        (status = 507, description = "No room for the snapshot next to the database", body = ErrorResponse),
    )
)]
pub fn backup(store: &Store, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let content_type = media_type(req.header("accept"));
    let response = if req.method == "HEAD" {
        // A snapshot is a full copy of the database: a HEAD (a link
        // checker, a proxy) must not cost one. Its length is unknown, so
        // none is sent.
        HttpResponse::json(200, Vec::new())
            .with_header("Content-Type", content_type)
            .length_unknown()
    } else {
        let snapshot = crate::backup::snapshot(store.path())?;
        HttpResponse::file(
            200,
            content_type,
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

/// The snapshot's media type: `application/vnd.sqlite3`, or the generic
/// `application/octet-stream` for a client whose `Accept` names that and
/// not the former (generated clients that know only generic binary types).
/// The bytes are the same.
fn media_type(accept: Option<&str>) -> &'static str {
    let named = |media: &str| {
        accept.is_some_and(|a| {
            a.split(',').any(|entry| {
                let mut parts = entry.split(';');
                let name = parts.next().unwrap_or_default().trim();
                let refused = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        == Some(0.0)
                });
                name.eq_ignore_ascii_case(media) && !refused
            })
        })
    };
    if named("application/octet-stream") && !named("application/vnd.sqlite3") {
        "application/octet-stream"
    } else {
        "application/vnd.sqlite3"
    }
}

#[cfg(test)]
mod tests {
    use super::media_type;

    #[test]
    fn octet_stream_only_when_asked_for() {
        let sqlite = "application/vnd.sqlite3";
        let octets = "application/octet-stream";
        assert_eq!(media_type(None), sqlite);
        assert_eq!(media_type(Some("*/*")), sqlite);
        assert_eq!(media_type(Some("application/octet-stream")), octets);
        assert_eq!(
            media_type(Some("application/json, application/octet-stream;q=0.5")),
            octets
        );
        assert_eq!(media_type(Some("application/octet-stream;q=0")), sqlite);
        assert_eq!(
            media_type(Some("application/vnd.sqlite3, application/octet-stream")),
            sqlite
        );
    }
}
