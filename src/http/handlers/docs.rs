//! `GET /openapi.json` and the Swagger UI under `/docs`, whose assets are
//! compiled into the binary (no download at build or run time).

use std::sync::Arc;

use utoipa::OpenApi;

use super::{batch, kv, listing, stats};
use crate::http::api_error::ApiError;
use crate::http::message::HttpResponse;
use crate::http::wire;

/// The OpenAPI document, generated from the handlers and wire types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "vkv",
        description = "A versioned key-value store: every write keeps a new numbered version."
    ),
    paths(
        kv::put,
        kv::get,
        kv::delete,
        listing::history,
        listing::keys,
        batch::batch,
        stats::metrics,
        stats::cache_stats,
        stats::db_stats,
        stats::health
    ),
    components(schemas(
        wire::PutRequest,
        wire::PutResponse,
        wire::GetResponse,
        wire::HealthResponse,
        wire::ErrorResponse,
        wire::ConflictResponse,
        wire::DeleteResponse,
        wire::PurgeResponse,
        wire::HistoryEntry,
        wire::HistoryResponse,
        wire::KeyEntry,
        wire::KeysResponse,
        wire::BatchPut,
        wire::BatchRequest,
        wire::BatchResponse,
        crate::CacheStats,
        crate::DbStats
    ))
)]
pub struct ApiDoc;

/// What the docs endpoints serve, built once at start-up.
pub struct Docs {
    openapi_json: Vec<u8>,
    swagger: Arc<utoipa_swagger_ui::Config<'static>>,
}

impl Docs {
    /// Renders the OpenAPI document and the Swagger UI configuration.
    pub fn new() -> Self {
        Docs {
            openapi_json: ApiDoc::openapi().to_json().unwrap_or_default().into_bytes(),
            swagger: Arc::new(utoipa_swagger_ui::Config::from("/openapi.json")),
        }
    }

    /// `GET /openapi.json`.
    pub fn openapi(&self) -> HttpResponse {
        HttpResponse::json(200, self.openapi_json.clone())
    }

    /// `GET /docs/{file}`; `""` is the page. The page links its assets
    /// relatively, so it is rewritten to work at `/docs` as well as `/docs/`.
    pub fn swagger(&self, file: &str) -> Result<HttpResponse, ApiError> {
        let served = utoipa_swagger_ui::serve(file, Arc::clone(&self.swagger))
            .map_err(|e| ApiError::new(500, format!("swagger ui: {e}")))?
            .ok_or_else(|| ApiError::no_route(&format!("/docs/{file}")))?;
        let mut body = served.bytes.into_owned();
        if file.is_empty() || file == "index.html" {
            body = String::from_utf8_lossy(&body)
                .replace("\"./", "\"/docs/")
                .into_bytes();
        }
        let mut r = HttpResponse::json(200, body)
            .with_header("Content-Type", served.content_type)
            .with_header("Cache-Control", "public, max-age=3600");
        if served.gzpipped {
            r = r.with_header("Content-Encoding", "gzip");
        }
        Ok(r)
    }
}

impl Default for Docs {
    fn default() -> Self {
        Docs::new()
    }
}
