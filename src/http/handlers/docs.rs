//! `GET /openapi.json` and the Swagger UI under `/docs`, whose assets are
//! compiled into the binary (no download at build or run time).

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{backup, batch, changes, kv, leases, listing, stats, whoami};
use crate::http::api_error::ApiError;
use crate::http::auth::Scope;
use crate::http::message::HttpResponse;
use crate::http::query::{Kind, Param};
use crate::http::router::route;
use crate::http::wire;

/// The OpenAPI document, generated from the handlers and wire types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "vkv",
        description = "A versioned key-value store: every write keeps a new numbered version.\n\n\
            When the server runs with `--auth-tokens`, every endpoint but /health (and this document, /docs and the key browser /ui) needs \
            `Authorization: Bearer <token>` (401 without a valid one, 403 without the scope): \
            reads need `read`, put/delete/batch `write`, /backup `admin`."
    ),
    // Relative: the server that served this document (Swagger UI and
    // generated clients call the same host).
    servers((url = "/", description = "The server this document came from")),
    modifiers(&BearerAuth, &NoEmptyLicense),
    // By use: what a client calls first comes first (Swagger UI keeps this
    // order, and the tags' order below).
    paths(
        kv::put,
        kv::get,
        kv::delete,
        listing::keys,
        listing::history,
        changes::changes,
        batch::batch,
        stats::health,
        stats::metrics,
        stats::db_stats,
        stats::cache_stats,
        backup::backup,
        whoami::whoami,
        leases::grant,
        leases::keepalive,
        leases::lease,
        leases::list,
        leases::revoke
    ),
    tags(
        (name = "kv", description = "Keys and values: put, get (also a version, a long poll), delete"),
        (name = "listing", description = "Keys by prefix, a key's versions"),
        (name = "changes", description = "The change feed: what changed under a prefix since a revision (a page, a long poll, or a stream)"),
        (name = "batch", description = "Several puts, all or none"),
        (name = "stats", description = "Health, metrics and statistics"),
        (name = "backup", description = "A consistent snapshot of the database"),
        (name = "leases", description = "Leases: keys that expire together unless kept alive (locks, service registration)"),
    ),
    components(schemas(
        wire::PutRequest,
        wire::PutResponse,
        wire::WriteOperation,
        wire::BackupFile,
        wire::GetResponse,
        wire::HealthResponse,
        wire::ErrorResponse,
        wire::NotFoundResponse,
        wire::ConflictResponse,
        wire::DeleteResponse,
        wire::PurgeResponse,
        wire::DeleteOrPurge,
        wire::HistoryEntry,
        wire::HistoryResponse,
        wire::KeyEntry,
        wire::KeysResponse,
        wire::ChangeEntry,
        wire::ChangeKind,
        wire::ChangesResponse,
        wire::ChangesGoneResponse,
        wire::ProgressMark,
        wire::BatchPut,
        wire::BatchRequest,
        wire::BatchResponse,
        wire::WhoAmIResponse,
        wire::LeaseRequest,
        wire::LeaseResponse,
        wire::LeaseDetail,
        wire::LeasesResponse,
        wire::RevokeResponse,
        crate::http::lifetime::TtlValue,
        crate::CacheStats,
        crate::DbStats
    ))
)]
pub struct ApiDoc;

/// utoipa copies Cargo.toml's `license`, which vkv does not set, as a
/// license without a name: linters (redocly) reject that; say nothing.
struct NoEmptyLicense;

impl Modify for NoEmptyLicense {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if openapi
            .info
            .license
            .as_ref()
            .is_some_and(|l| l.name.is_empty())
        {
            openapi.info.license = None;
        }
    }
}

/// Declares the optional bearer authentication (so that Swagger UI offers
/// an "Authorize" button and sends the token with the calls it makes): a
/// token, or nothing when auth is off. The rest of each operation's
/// contract that the server decides before or around its handler comes
/// from the rules the server applies, so the document cannot promise
/// another: security, `401`/`403` from the router's `Route::scope`, `415`
/// for writes, `413` for a body, `422` and `503` everywhere, and the query
/// parameters with their bounds from `Route::params`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
        let optional_bearer = vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::default(),
        ];
        openapi.security = Some(optional_bearer);
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("GET", &mut item.get),
                ("POST", &mut item.post),
                ("DELETE", &mut item.delete),
            ];
            for (method, op) in operations {
                let Some(op) = op.as_mut() else { continue };
                let Ok(route) = route(method, path) else {
                    continue;
                };
                let scope = route.scope();
                if scope.is_none() {
                    // Open to all, also with --auth-tokens.
                    op.security = Some(Vec::new());
                }
                let write = scope == Some(Scope::Write);
                document_refusals(op, scope.map(Scope::as_str), write);
                document_params(op, route.params());
                document_key(op, method == "DELETE");
                if TOMBSTONE_404.contains(&(method, path.as_str())) {
                    document_tombstone_404(op);
                }
            }
        }
    }
}

/// Adds the refusals that come before the handler: `401`/`403` for an
/// operation that needs `scope` (with `--auth-tokens`), `403` for a `Host`
/// not answered, `415` for a write not declared JSON (`cross_site`), `413`
/// for a body over the limit (the connection layer), `422` for a query
/// parameter the route does not take (`App::handle`) and `503` for a full
/// worker queue (`workers`).
fn document_refusals(op: &mut Operation, scope: Option<&str>, write: bool) {
    let mut forbidden = "The Host is not answered here (a loopback server answers loopback names and --allowed-hosts)".to_string();
    if write {
        forbidden.push_str(
            "; the Origin is another site not listed in --allowed-origins or --cors-origins",
        );
    }
    let mut answers = Vec::new();
    if let Some(scope) = scope {
        answers.push((
            "401",
            "With --auth-tokens: no valid `Authorization: Bearer` token (with `WWW-Authenticate: Bearer`)"
                .to_string(),
        ));
        forbidden.push_str(&format!(
            "; with --auth-tokens: the token lacks the '{scope}' scope"
        ));
    }
    answers.push(("403", forbidden));
    if write {
        answers.push((
            "415",
            "Content-Type is present and not application/json (or */*+json)".to_string(),
        ));
    }
    if op.request_body.is_some() {
        answers.push(("413", "The body is over --max-body-bytes".to_string()));
    }
    for (status, description) in answers {
        // Replaces a hand-written one: this list is what the server does.
        op.responses
            .responses
            .insert(status.to_string(), error_response(&description));
    }
    // Added to what the handler documents for these statuses.
    for (status, also) in [
        (
            "422",
            "a query parameter this operation does not take, or one given twice (named)",
        ),
        (
            "503",
            "overloaded: the worker queue is full (with Retry-After)",
        ),
    ] {
        match op.responses.responses.get_mut(status) {
            Some(RefOr::T(answer)) => {
                answer.description = format!("{}; {also}", answer.description);
            }
            _ => {
                let mut first = also.to_string();
                first[..1].make_ascii_uppercase();
                op.responses
                    .responses
                    .insert(status.to_string(), error_response(&first));
            }
        }
    }
}

/// An error answer: `description` and an `ErrorResponse` body.
fn error_response(description: &str) -> RefOr<Response> {
    let error = Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorResponse"))));
    ResponseBuilder::new()
        .description(description)
        .content("application/json", error)
        .build()
        .into()
}

/// Gives each documented query parameter the type and bounds the server
/// applies (`Route::params`); its description stays the handler's.
fn document_params(op: &mut Operation, params: &[Param]) {
    for p in op.parameters.iter_mut().flatten() {
        let RefOr::T(p) = p else { continue };
        if p.parameter_in != ParameterIn::Query {
            continue;
        }
        let Some(rule) = params.iter().find(|r| r.name == p.name) else {
            continue;
        };
        let schema = match rule.kind {
            Kind::Integer { min, max } => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(min))
                .maximum(Some(max)),
            Kind::Boolean => ObjectBuilder::new().schema_type(Type::Boolean),
            Kind::Text => ObjectBuilder::new().schema_type(Type::String),
        };
        p.schema = Some(RefOr::T(Schema::Object(schema.build())));
    }
}

/// The operations whose `404` may be a key's tombstone (the store's
/// `Deleted` and `Expired` errors, which `ApiError` answers with `key` and
/// `deleted_version` or `expired_version`).
const TOMBSTONE_404: [(&str, &str); 2] = [("GET", "/get/{key}"), ("DELETE", "/delete/{key}")];

/// Describes the `key` path parameter with the rules `crate::key` applies:
/// a key with a dot segment is refused (`422`), except by a delete, which
/// takes one to remove a key an older vkv stored.
fn document_key(op: &mut Operation, removes: bool) {
    let dots = if removes {
        "A key with a '.' or '..' segment is taken too, to remove one an older vkv stored"
    } else {
        "A key with a '.' or '..' segment between slashes (x/../y, ./a, also as %2E) is \
         refused with 422: browsers and curl resolve those before sending, so no ordinary \
         client could reach it. Dots inside a segment (v1.2, .a) are ordinary"
    };
    let description = format!(
        "The key, percent-encoded: 1 to {} bytes of UTF-8 after decoding, '/' allowed. {dots}.",
        crate::MAX_KEY_BYTES
    );
    for p in op.parameters.iter_mut().flatten() {
        if let RefOr::T(p) = p
            && p.parameter_in == ParameterIn::Path
            && p.name == "key"
        {
            p.description = Some(description.clone());
        }
    }
}

/// Gives a `404` that may be a tombstone its body: `NotFoundResponse`.
fn document_tombstone_404(op: &mut Operation) {
    if let Some(RefOr::T(answer)) = op.responses.responses.get_mut("404") {
        let body = Content::new(Some(RefOr::Ref(Ref::from_schema_name("NotFoundResponse"))));
        answer
            .content
            .insert("application/json".to_string(), RefOr::T(body));
        answer.description = format!(
            "{}; a deleted key's body has key and deleted_version",
            answer.description
        );
    }
}

/// The Swagger UI page; it loads the two embedded assets below.
const PAGE: &str = include_str!("docs.html");
/// Swagger UI's script and style sheet, gzip-compressed by `build.rs`.
const BUNDLE_JS_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js.gz"));
const CSS_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui.css.gz"));

/// The site icon browsers ask for (16x16, PNG in an ICO container).
const FAVICON: &[u8] = include_bytes!("favicon.ico");

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

    /// `GET /docs` and `GET /docs/{file}`; may be cached for a day. The
    /// assets are sent gzipped to clients whose `Accept-Encoding` allows it
    /// (every browser), inflated for the others; caches are told that the
    /// answer depends on that header.
    pub fn swagger(
        &self,
        file: &str,
        accept_encoding: Option<&str>,
    ) -> Result<HttpResponse, ApiError> {
        let (body, content_type, gzipped) = match file {
            "" | "index.html" => (PAGE.as_bytes(), "text/html; charset=utf-8", false),
            "swagger-ui-bundle.js" => (BUNDLE_JS_GZ, "text/javascript; charset=utf-8", true),
            "swagger-ui.css" => (CSS_GZ, "text/css; charset=utf-8", true),
            _ => return Err(ApiError::no_route(&format!("/docs/{file}"))),
        };
        let send_gzip = gzipped && accepts_gzip(accept_encoding);
        let body = if gzipped && !send_gzip {
            inflate(body)?
        } else {
            body.to_vec()
        };
        let mut r = HttpResponse::json(200, body)
            .with_header("Content-Type", content_type)
            .with_header("Cache-Control", "public, max-age=86400");
        if gzipped {
            r = r.with_header("Vary", "Accept-Encoding");
        }
        if send_gzip {
            r = r.with_header("Content-Encoding", "gzip");
        }
        Ok(r)
    }
}

/// `GET /favicon.ico`: open like the docs, cached for a day.
pub fn favicon() -> HttpResponse {
    HttpResponse::json(200, FAVICON.to_vec())
        .with_header("Content-Type", "image/x-icon")
        .with_header("Cache-Control", "public, max-age=86400")
}

impl Default for Docs {
    fn default() -> Self {
        Docs::new()
    }
}

/// Whether an `Accept-Encoding` value (RFC 9110, 12.5.3) allows gzip: a
/// `gzip` (or `x-gzip`) or `*` entry with a non-zero weight, gzip not
/// refused by name. Without the header, no: a plain `curl` would print
/// compressed bytes.
pub(super) fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let mut by_name = None;
    let mut any = false;
    for entry in accept_encoding.unwrap_or_default().split(',') {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => by_name = Some(weight > 0.0),
            "*" => any = weight > 0.0,
            _ => {}
        }
    }
    by_name.unwrap_or(any)
}

/// The embedded asset `gz`, inflated.
pub(super) fn inflate(gz: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(gz.len().saturating_mul(4));
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut out)
        .map_err(|e| ApiError::new(500, format!("cannot inflate an embedded asset: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn gzip_only_when_accept_encoding_allows_it() {
        for yes in [
            "gzip",
            "gzip, deflate, br",
            "br;q=1.0, GZIP;q=0.5",
            "x-gzip",
            "*",
            "identity, *;q=0.1",
        ] {
            assert!(accepts_gzip(Some(yes)), "{yes}");
        }
        for no in [
            "",
            "identity",
            "br, deflate",
            "gzip;q=0",
            "*, gzip;q=0",
            "*;q=0",
        ] {
            assert!(!accepts_gzip(Some(no)), "{no}");
        }
        assert!(!accepts_gzip(None));
    }
}
