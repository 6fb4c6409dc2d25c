//! The request handler the workers run: route, call the handler, turn
//! errors into responses, log one line.

use std::time::Instant;

use super::api_error::ApiError;
use super::handlers::docs::Docs;
use super::handlers::{kv, stats};
use super::message::{HttpRequest, HttpResponse};
use super::router::{Route, route};
use crate::Store;

/// Everything a worker needs to answer requests.
pub struct App {
    store: Store,
    docs: Docs,
}

impl App {
    /// An app serving `store`.
    pub fn new(store: Store) -> Self {
        App {
            store,
            docs: Docs::new(),
        }
    }

    /// Answers one request. Never panics on bad input; errors become JSON.
    pub fn handle(&self, req: HttpRequest) -> HttpResponse {
        let start = Instant::now();
        let response = self.dispatch(&req).unwrap_or_else(ApiError::into_response);
        log::info!(
            "{} {} {} {}us",
            req.method,
            req.path(),
            response.status,
            start.elapsed().as_micros()
        );
        response
    }

    fn dispatch(&self, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
        let method = if req.method == "HEAD" {
            "GET"
        } else {
            req.method.as_str()
        };
        match route(method, req.path())? {
            Route::Put(key) => kv::put(&self.store, req, key),
            Route::Get(key) => kv::get(&self.store, req, key),
            Route::CacheStats => stats::cache_stats(&self.store),
            Route::DbStats => stats::db_stats(&self.store),
            Route::Health => stats::health(&self.store),
            Route::OpenApi => Ok(self.docs.openapi()),
            Route::Docs(file) => self.docs.swagger(file),
        }
    }
}
