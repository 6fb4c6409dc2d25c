//! Integration tests over real HTTP against the real `vkv` binary and a
//! real SQLite file. One test binary, one module per concern.

mod batch;
mod cache;
mod changes;
#[path = "../support/mod.rs"]
mod common;
mod concurrency;
mod conditions;
mod docs;
mod errors;
mod flags;
mod health_probe;
mod io_threads;
mod kv;
mod lease;
mod lock;
mod logs;
mod metrics;
mod persistence;
mod readme;
mod reference;
mod streams;
mod ttl;
mod ui;
mod values;
mod versioning;
mod watch;
mod workers;
