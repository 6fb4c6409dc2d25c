//! The request handler the connection loop calls: route, check the bearer
//! token (when authentication is on), call the handler (which answers now
//! or defers to a worker what may block), turn errors into responses,
//! count and log. The log line names method, path and status only: never a
//! header (tokens), a query or a body (values).

use std::sync::Arc;
use std::time::Instant;

use super::api_error::ApiError;
use super::auth::{AuthTokens, Scope};
use super::completion::{Deferred, Lane, Reply};
use super::cors;
use super::cross_site::{HostPolicy, Origins, check_write};
use super::handlers::docs::{self, Docs};
use super::handlers::{backup, batch, changes, kv, leases, listing, stats, ui, whoami};
use super::message::{HttpRequest, HttpResponse};
use super::metrics::Metrics;
use super::router::{Route, resolve, route};
use crate::Store;

/// Everything a worker needs to answer requests.
pub struct App {
    store: Store,
    docs: Docs,
    metrics: Arc<Metrics>,
    max_batch_puts: usize,
    /// When set, every route but `/health` and the docs needs a bearer token.
    auth: Option<Arc<AuthTokens>>,
    /// The `Host` values answered (DNS rebinding).
    hosts: HostPolicy,
    /// Origins trusted besides the request's own: for writes
    /// (`--allowed-origins`) and CORS (`--cors-origins`).
    origins: Origins,
}

impl App {
    /// An app serving `store`; a batch holds at most `max_batch_puts` puts.
    pub fn new(store: Store, max_batch_puts: usize) -> Self {
        App {
            store,
            docs: Docs::new(),
            metrics: Arc::default(),
            max_batch_puts,
            auth: None,
            hosts: HostPolicy::default(),
            origins: Origins::default(),
        }
    }

    /// Trusts `origins` for cross-origin writes and CORS.
    pub fn with_origins(mut self, origins: Origins) -> Self {
        self.origins = origins;
        self
    }

    /// Answers only the `Host` values `hosts` allows.
    pub fn with_hosts(mut self, hosts: HostPolicy) -> Self {
        self.hosts = hosts;
        self
    }

    /// Requires bearer tokens from `auth` (`None`: open to all).
    pub fn with_auth(mut self, auth: Option<Arc<AuthTokens>>) -> Self {
        self.auth = auth;
        self
    }

    /// Checks the request's token for `need` (`None`: an open route).
    fn authorize(&self, req: &HttpRequest, need: Option<Scope>) -> Result<(), ApiError> {
        match (&self.auth, need) {
            (Some(tokens), Some(need)) => {
                tokens.authorize(req.header("authorization"), need)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Refuses what a web page could make a browser send (see
    /// `cross_site`): a `Host` this server does not answer for, and a write
    /// (a route needing the write scope) whose body is not declared JSON or
    /// whose `Origin` is another site.
    fn admit(&self, req: &HttpRequest, need: Option<Scope>) -> Result<(), ApiError> {
        let host = req.header("host");
        self.hosts.check(host)?;
        if need == Some(Scope::Write) {
            check_write(
                req.header("content-type"),
                req.header("origin"),
                host,
                &self.origins,
            )?;
        }
        Ok(())
    }

    /// Takes one request on the connection loop's thread (see
    /// [`Service::handle`]): routes it, checks `Host`, `Origin` and
    /// `Content-Type`, the token and the query's parameters, once; then its
    /// handler answers it now or defers what may block to a worker (see
    /// [`App::dispatch`]). Counted and logged when answered. Never panics on
    /// bad input; errors become JSON.
    ///
    /// [`Service::handle`]: super::completion::Service::handle
    pub fn handle(self: &Arc<Self>, req: &HttpRequest) -> Reply {
        let start = Instant::now();
        if req.method == "OPTIONS" {
            return self.options(req, start);
        }
        let method = if req.method == "HEAD" {
            "GET"
        } else {
            req.method.as_str()
        };
        let routed = route(method, req.path());
        // An unknown path or method also needs a valid token: without one,
        // 404 and 405 would map the API for anyone.
        let need = routed.as_ref().map_or(Some(Scope::Read), Route::scope);
        let allowed = self
            .admit(req, need)
            .and_then(|()| self.authorize(req, need))
            .and_then(|()| routed.as_ref().map_or(Ok(()), |r| known_params(*r, req)));
        let (name, reply) = match (routed, allowed) {
            (Ok(r), Ok(())) => (r.name(), self.dispatch(r, req)),
            (Ok(r), Err(e)) => (r.name(), Err(e)),
            (Err(_), Err(e)) | (Err(e), Ok(())) => ("unknown", Err(e)),
        };
        let reply = reply.unwrap_or_else(|e| e.into_response().into());
        self.finish_reply(name, req, start, reply)
    }

    /// `reply` with what every answer gets when it is sent (CORS headers,
    /// the count and the log line), whichever thread makes it.
    fn finish_reply(
        self: &Arc<Self>,
        name: &'static str,
        req: &HttpRequest,
        start: Instant,
        reply: Reply,
    ) -> Reply {
        match reply {
            Reply::Ready(mut r) => {
                cors::decorate(&self.origins, req.header("origin"), &mut r);
                finish(
                    &self.metrics,
                    name,
                    &req.method,
                    req.path(),
                    r.status,
                    start,
                );
                Reply::Ready(r)
            }
            // Counted and logged when the answer is sent, with its real status.
            Reply::Later(later) => {
                let metrics = Arc::clone(&self.metrics);
                let (method, path) = (req.method.clone(), req.path().to_string());
                let (origins, origin) = (
                    self.origins.clone(),
                    req.header("origin").map(str::to_string),
                );
                Reply::Later(Box::new(move |responder| {
                    let responder = responder
                        .with_edit(move |r| cors::decorate(&origins, origin.as_deref(), r))
                        .with_hook(move |r| {
                            finish(&metrics, name, &method, &path, r.status, start);
                        });
                    later(responder);
                }))
            }
            Reply::Defer(work) => {
                let app = Arc::clone(self);
                Reply::Defer(Deferred::new(work.lane, move |req| {
                    let reply = work.run(req);
                    app.finish_reply(name, req, start, reply)
                }))
            }
        }
    }

    /// `OPTIONS` on any route: a CORS preflight, or the methods (see
    /// `cors`). Open without a token (a browser sends none with a
    /// preflight); the `Host` is checked as for any request.
    fn options(&self, req: &HttpRequest, start: Instant) -> Reply {
        let path = req.path();
        let answer = match resolve(path) {
            None => Err(ApiError::no_route(path)),
            Some((allow, _)) => self
                .hosts
                .check(req.header("host"))
                .map_err(ApiError::from)
                .and_then(|()| cors::options(&self.origins, req, allow)),
        };
        let mut r = answer.unwrap_or_else(ApiError::into_response);
        if r.header("access-control-allow-origin").is_none() {
            cors::decorate(&self.origins, req.header("origin"), &mut r);
        }
        finish(&self.metrics, "options", &req.method, path, r.status, start);
        Reply::Ready(r)
    }

    /// The request metrics (the connection layer and the worker pool count
    /// the answers they send themselves into them too).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// What the loop's thread does with a routed, admitted request: a
    /// `GET` of a key is parsed and answered here when it can be without
    /// blocking (see [`kv::get`]); every other route may block, so it is
    /// deferred to a worker (`/health` and `/metrics` to the probes').
    fn dispatch(self: &Arc<Self>, route: Route<'_>, req: &HttpRequest) -> Result<Reply, ApiError> {
        let lane = match route {
            Route::Get(key) => return kv::get(&self.store, req, key),
            // A put only checks its request and queues it for the writer,
            // whose commit callback answers it: no worker needs to see it
            // (one hand-off between threads fewer), unless the writer's
            // queue is so full that queueing could wait.
            Route::Put(key) if self.store.writes_have_room() => {
                return kv::put(&self.store, req, key);
            }
            Route::Health | Route::Metrics => Lane::Probes,
            _ => Lane::Workers,
        };
        let (app, route) = (Arc::clone(self), route.detach());
        Ok(Reply::Defer(Deferred::new(lane, move |req| {
            app.run(route.route(), req)
                .unwrap_or_else(|e| e.into_response().into())
        })))
    }

    /// Runs the handler of `route` (on a worker).
    fn run(&self, route: Route<'_>, req: &HttpRequest) -> Result<Reply, ApiError> {
        let s = &self.store;
        let response: HttpResponse = match route {
            Route::Get(key) => return kv::get(s, req, key),
            Route::Put(key) => return kv::put(s, req, key),
            Route::Delete(key) => kv::delete(s, req, key)?,
            Route::History(key) => listing::history(s, req, key)?,
            Route::Keys => listing::keys(s, req)?,
            Route::Changes => return changes::changes(s, req, &self.metrics),
            Route::Batch => return batch::batch(s, req, self.max_batch_puts),
            Route::Metrics => stats::metrics(&self.metrics, s),
            Route::CacheStats => stats::cache_stats(s)?,
            Route::DbStats => stats::db_stats(s)?,
            Route::Health => stats::health(s)?,
            Route::OpenApi => self.docs.openapi(),
            Route::Docs(file) => self.docs.swagger(file, req.header("accept-encoding"))?,
            Route::Backup => backup::backup(s, req)?,
            Route::WhoAmI => whoami::whoami(self.auth.as_deref(), req)?,
            Route::Ui(file) => ui::serve(file, req.header("accept-encoding"))?,
            Route::Favicon => docs::favicon(),
            Route::Leases => leases::list(s)?,
            Route::Grant => leases::grant(s, req)?,
            Route::Lease(id) => leases::lease(s, req, id)?,
            Route::Revoke(id) => leases::revoke(s, id)?,
            Route::Keepalive(id) => leases::keepalive(s, id)?,
        };
        Ok(response.into())
    }
}

/// Refuses a query parameter `route` does not take (see [`Route::params`]).
fn known_params(route: Route<'_>, req: &HttpRequest) -> Result<(), ApiError> {
    super::query::Query::parse(req.query())?.only(route.params())
}

/// Counts and logs one answered request.
/// The line names method and path only: never headers (tokens), queries
/// or bodies (values).
fn finish(
    metrics: &Metrics,
    route: &'static str,
    method: &str,
    path: &str,
    status: u16,
    start: Instant,
) {
    let elapsed = start.elapsed();
    metrics.record(route, status, elapsed);
    log::info!("{method} {path} {status} {}us", elapsed.as_micros());
}
