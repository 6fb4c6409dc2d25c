//! The request handler the workers run: route, call the handler, turn
//! errors into responses, count and log.

use std::time::Instant;

use super::api_error::ApiError;
use super::handlers::docs::Docs;
use super::handlers::{batch, kv, listing, stats};
use super::message::{HttpRequest, HttpResponse};
use super::metrics::Metrics;
use super::router::{Route, route};
use super::workers::Reply;
use crate::Store;

/// Everything a worker needs to answer requests.
pub struct App {
    store: Store,
    docs: Docs,
    metrics: Metrics,
    max_batch_puts: usize,
}

impl App {
    /// An app serving `store`; a batch holds at most `max_batch_puts` puts.
    pub fn new(store: Store, max_batch_puts: usize) -> Self {
        App {
            store,
            docs: Docs::new(),
            metrics: Metrics::default(),
            max_batch_puts,
        }
    }

    /// Answers one request. Never panics on bad input; errors become JSON.
    pub fn handle(&self, req: &HttpRequest) -> Reply {
        let start = Instant::now();
        let method = if req.method == "HEAD" {
            "GET"
        } else {
            req.method.as_str()
        };
        let (name, reply) = match route(method, req.path()) {
            Ok(r) => (r.name(), self.dispatch(r, req)),
            Err(e) => ("unknown", Err(e)),
        };
        let reply = reply.unwrap_or_else(|e| e.into_response().into());
        // A parked reply is counted when parked; its status is not known yet.
        let status = match &reply {
            Reply::Ready(r) => r.status,
            Reply::Parked(_) => 0,
        };
        let elapsed = start.elapsed();
        self.metrics.record(name, status, elapsed);
        log::info!(
            "{} {} {} {}us",
            req.method,
            req.path(),
            status,
            elapsed.as_micros()
        );
        reply
    }

    fn dispatch(&self, route: Route<'_>, req: &HttpRequest) -> Result<Reply, ApiError> {
        let s = &self.store;
        let response: HttpResponse = match route {
            Route::Get(key) => return kv::get(s, req, key),
            Route::Put(key) => kv::put(s, req, key)?,
            Route::Delete(key) => kv::delete(s, req, key)?,
            Route::History(key) => listing::history(s, req, key)?,
            Route::Keys => listing::keys(s, req)?,
            Route::Batch => batch::batch(s, req, self.max_batch_puts)?,
            Route::Metrics => stats::metrics(&self.metrics, s),
            Route::CacheStats => stats::cache_stats(s)?,
            Route::DbStats => stats::db_stats(s)?,
            Route::Health => stats::health(s)?,
            Route::OpenApi => self.docs.openapi(),
            Route::Docs(file) => self.docs.swagger(file)?,
        };
        Ok(response.into())
    }
}
