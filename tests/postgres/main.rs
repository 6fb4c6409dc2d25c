//! PostgreSQL-only tests (feature `postgres`): several vkv replicas on one
//! database, start-up refusals, a database that goes away at run time,
//! moving data in and out (`vkv copy`, `vkv check`, `GET /backup`).
//! They need a PostgreSQL server: `VKV_TEST_PG` is its admin URL, as
//! `scripts/pg-cluster.sh start DIR` prints (see the README, "Scaling out").
//! The API tests run on PostgreSQL through the same variable
//! (`tests/support`).

mod client;
#[path = "../support/mod.rs"]
mod common;
mod ended;
mod feed;
mod leases;
mod moving;
mod outage;
mod replicas;
mod startup;
mod tls;
mod ttl;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The admin URL; the tests cannot run without it.
pub fn admin() -> String {
    common::pg_admin_url().expect(
        "these tests need PostgreSQL: set VKV_TEST_PG to an admin URL \
         (scripts/pg-cluster.sh start DIR prints one)",
    )
}

/// A fresh, empty database: its name and its URL.
pub fn fresh_database() -> (String, PathBuf) {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let admin = admin();
    let name = format!(
        "vkvp_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    common::psql(&admin, &format!("CREATE DATABASE {name}"));
    let url = common::pg_url_for(&admin, &name);
    (name, PathBuf::from(url))
}
