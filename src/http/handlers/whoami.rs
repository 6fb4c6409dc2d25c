//! `GET /auth/whoami`: what the request's token may do, so that a client
//! (the key browser at `/ui`) can offer only what it is allowed.

use super::kv::json;
use crate::http::api_error::ApiError;
use crate::http::auth::{AuthTokens, Scope};
use crate::http::message::{HttpRequest, HttpResponse};
use crate::http::wire::WhoAmIResponse;

/// The scope of the request's token.
#[utoipa::path(
    get,
    path = "/auth/whoami",
    responses(
        (status = 200, description = "The token's scope (`admin` when the server runs without --auth-tokens)", body = WhoAmIResponse),
    )
)]
pub fn whoami(auth: Option<&AuthTokens>, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    // `App::handle` has checked the token for the read scope already; this
    // asks again for its scope, which it does not keep.
    let scope = match auth {
        Some(tokens) => tokens.authorize(req.header("authorization"), Scope::Read)?,
        None => Scope::Admin,
    };
    json(&WhoAmIResponse {
        scope: scope.as_str(),
        auth: auth.is_some(),
    })
}
