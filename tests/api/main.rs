//! Integration tests over real HTTP against the real `vkv` binary and a
//! real SQLite file. One test binary, one module per concern.

mod batch;
mod cache;
#[path = "../support/mod.rs"]
mod common;
mod concurrency;
mod docs;
mod errors;
mod flags;
mod health_probe;
mod io_threads;
mod kv;
mod metrics;
mod persistence;
mod reference;
mod ui;
mod values;
mod versioning;
mod watch;
mod workers;
