//! The one place where errors become HTTP: status code, `{"detail": ...}`
//! body and any extra header. Handlers return `Result<_, ApiError>` and
//! never build error responses themselves.

use super::auth::AuthError;
use super::cross_site::CrossSiteError;
use super::message::HttpResponse;
use crate::backup::BackupError;
use crate::error::StoreError;

/// An error answer: status, human-readable detail, extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// The `detail` of the JSON body.
    pub detail: String,
    /// Extra headers, such as `Allow` for `405`.
    pub headers: Vec<(&'static str, String)>,
    /// Extra body fields besides `detail`, such as `current_version`.
    pub fields: Vec<(&'static str, serde_json::Value)>,
}

impl ApiError {
    /// An error with `status` and `detail`.
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
            headers: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// `422`: the request is well-formed HTTP but its content is invalid.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        ApiError::new(422, detail)
    }

    /// `404` for a path that no route serves.
    pub fn no_route(path: &str) -> Self {
        // The path is echoed in the JSON body (escaped), never in a header.
        ApiError::new(404, format!("no such endpoint: {path}"))
    }

    /// `405` with the `Allow` header listing what the path accepts:
    /// `allow`, and `OPTIONS`, which every path answers.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let allow = format!("{allow}, OPTIONS");
        let mut e = ApiError::new(405, format!("method not allowed; allowed: {allow}"));
        e.headers.push(("Allow", allow));
        e
    }

    /// Turns the error into the response sent.
    pub fn into_response(self) -> HttpResponse {
        let mut r = if self.fields.is_empty() {
            HttpResponse::error(self.status, &self.detail)
        } else {
            let mut body = serde_json::Map::new();
            body.insert("detail".into(), self.detail.into());
            for (k, v) in self.fields {
                body.insert(k.into(), v);
            }
            HttpResponse::json(self.status, serde_json::to_vec(&body).unwrap_or_default())
        };
        r.headers = self.headers;
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::KeyNotFound(_)
            | StoreError::VersionNotFound { .. }
            | StoreError::Deleted { .. }
            | StoreError::Expired { .. }
            | StoreError::LeaseNotFound(_) => 404,
            StoreError::Gone { .. } | StoreError::ChangesGone { .. } => 410,
            StoreError::Conflict { .. } => 409,
            StoreError::InvalidKey(_)
            | StoreError::InvalidValue(_)
            | StoreError::InvalidLifetime(_) => 422,
            StoreError::StorageFull(_) => 507,
            StoreError::Unavailable(_)
            | StoreError::OutcomeUnknown(_)
            | StoreError::Corrupt(_)
            | StoreError::Closed
            | StoreError::TooManyWatchers(_) => 503,
            StoreError::Internal(_) => 500,
        };
        if status == 500 {
            log::error!("internal error: {e}");
        }
        let mut api = ApiError::new(status, e.to_string());
        match e {
            StoreError::Conflict { key, current, .. } => {
                api.fields.push(("key", key.into()));
                api.fields.push(("current_version", current.into()));
            }
            StoreError::ChangesGone { oldest, .. } => {
                api.fields.push(("oldest_revision", oldest.into()));
            }
            StoreError::Deleted { key, version } => {
                api.fields.push(("key", key.into()));
                api.fields.push(("deleted_version", version.into()));
            }
            StoreError::Expired { key, version } => {
                api.fields.push(("key", key.into()));
                api.fields.push(("expired_version", version.into()));
            }
            StoreError::LeaseNotFound(id) => {
                api.fields.push(("lease", id.into()));
            }
            StoreError::TooManyWatchers(_) | StoreError::Unavailable(_) => {
                api.headers.push(("Retry-After", "1".into()))
            }
            // Not "try again": the write may have been applied. Clients
            // that try the next replica on a 503 must stop here.
            StoreError::OutcomeUnknown(_) => {
                api.fields.push(("outcome", "unknown".into()));
                api.headers.push(("Vkv-Outcome", "unknown".into()));
            }
            _ => {}
        }
        api
    }
}

impl From<AuthError> for ApiError {
    /// `401` with a `WWW-Authenticate: Bearer` challenge (RFC 6750) for a
    /// missing or unknown token, `403` for a token without the scope.
    fn from(e: AuthError) -> Self {
        let (status, challenge) = match &e {
            AuthError::Missing => (401, "Bearer realm=\"vkv\"".to_string()),
            AuthError::InvalidToken => (
                401,
                "Bearer realm=\"vkv\", error=\"invalid_token\"".to_string(),
            ),
            AuthError::InsufficientScope { need } => (
                403,
                format!(
                    "Bearer realm=\"vkv\", error=\"insufficient_scope\", scope=\"{}\"",
                    need.as_str()
                ),
            ),
        };
        let mut api = ApiError::new(status, e.to_string());
        api.headers.push(("WWW-Authenticate", challenge));
        api
    }
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Busy => {
                let mut api = ApiError::new(503, e.to_string());
                api.headers.push(("Retry-After", "5".into()));
                api
            }
            BackupError::Store(e) => e.into(),
        }
    }
}

impl From<CrossSiteError> for ApiError {
    /// `415` for a body declared as something other than JSON; `403` for a
    /// `Host` not answered or a write from another origin.
    fn from(e: CrossSiteError) -> Self {
        let status = match e {
            CrossSiteError::NotJson(_) => 415,
            CrossSiteError::HostNotAllowed(_) | CrossSiteError::CrossOrigin(_) => 403,
        };
        ApiError::new(status, e.to_string())
    }
}
