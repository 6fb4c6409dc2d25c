//! Integration tests over real HTTP against the real `vkv` binary and a
//! real SQLite file. One test binary, one module per concern.

mod common;
mod concurrency;
mod docs;
mod errors;
mod kv;
mod persistence;
mod workers;
