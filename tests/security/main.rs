//! Security and operations features over real HTTP against the real `vkv`
//! binary: bearer-token authentication, online backups with `vkv restore`
//! and `vkv check`, `vkv copy`, and (feature `tls`) HTTPS.
//!
//! `cargo test --test security` runs all but the TLS tests;
//! `cargo test --features tls --test security` runs them too.

mod auth;
mod backup;
#[path = "../support/mod.rs"]
mod common;
mod copy;
mod cors;
mod cross_site;
mod proxy;
mod tls;
mod token_reload;
