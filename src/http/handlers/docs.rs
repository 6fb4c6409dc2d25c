//! `GET /openapi.json` and the Swagger UI under `/docs`, whose assets are
//! compiled into the binary (no download at build or run time).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{backup, batch, kv, listing, stats};
use crate::http::api_error::ApiError;
use crate::http::message::HttpResponse;
use crate::http::wire;

/// The OpenAPI document, generated from the handlers and wire types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "vkv",
        description = "A versioned key-value store: every write keeps a new numbered version.\n\n\
            When the server runs with `--auth-tokens`, every endpoint but /health needs \
            `Authorization: Bearer <token>` (401 without a valid one, 403 without the scope): \
            reads need `read`, put/delete/batch `write`, /backup `admin`."
    ),
    modifiers(&BearerAuth),
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
        stats::health,
        backup::backup
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

/// Declares the optional bearer authentication (so that Swagger UI offers
/// an "Authorize" button): a token, or nothing when auth is off.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
        openapi.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
    }
}

/// The Swagger UI page; it loads the two embedded assets below.
const PAGE: &str = include_str!("docs.html");
/// Swagger UI's script and style sheet, gzip-compressed by `build.rs`.
const BUNDLE_JS_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js.gz"));
const CSS_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui.css.gz"));

/// What the docs endpoints serve.
pub struct Docs {
    /// Rendered on first use: start-up and idle memory do not pay for a
    /// document most deployments never fetch.
    openapi_json: std::sync::OnceLock<Vec<u8>>,
}

impl Docs {
    /// The docs endpoints; the OpenAPI document is rendered on first use.
    pub fn new() -> Self {
        Docs {
            openapi_json: std::sync::OnceLock::new(),
        }
    }

    /// `GET /openapi.json`.
    pub fn openapi(&self) -> HttpResponse {
        let doc = self
            .openapi_json
            .get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default().into_bytes());
        HttpResponse::json(200, doc.clone())
    }

    /// `GET /docs` and `GET /docs/{file}`. The assets are served gzipped
    /// (every browser accepts it) and may be cached for a day.
    pub fn swagger(&self, file: &str) -> Result<HttpResponse, ApiError> {
        let (body, content_type, gzipped) = match file {
            "" | "index.html" => (PAGE.as_bytes(), "text/html; charset=utf-8", false),
            "swagger-ui-bundle.js" => (BUNDLE_JS_GZ, "text/javascript; charset=utf-8", true),
            "swagger-ui.css" => (CSS_GZ, "text/css; charset=utf-8", true),
            _ => return Err(ApiError::no_route(&format!("/docs/{file}"))),
        };
        let mut r = HttpResponse::json(200, body.to_vec())
            .with_header("Content-Type", content_type)
            .with_header("Cache-Control", "public, max-age=86400");
        if gzipped {
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
