//! Bulk load through the library: `versions` versions of each of `keys`
//! keys, written as batches of 1,000 puts (one savepoint each, many per
//! transaction through the group commit).
//!
//! ```text
//! cargo run --release --example bulk_load -- --db big.db --keys 100000 --versions 10
//! ```

use std::time::Instant;

use serde_json::value::to_raw_value;
use vkv::{PutItem, Store, StoreConfig, SyncMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut db = String::from("bulk.db");
    let (mut keys, mut versions, mut value_bytes) = (100_000u64, 10u64, 64usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or("every flag takes a value")?;
        match flag.as_str() {
            "--db" => db = value,
            "--keys" => keys = value.parse()?,
            "--versions" => versions = value.parse()?,
            "--value-bytes" => value_bytes = value.parse()?,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; flags: --db --keys --versions --value-bytes"
                )
                .into());
            }
        }
    }
    let mut config = StoreConfig::new(&db);
    config.sync = SyncMode::Normal;
    let store = Store::open(config)?;
    let start = Instant::now();
    let payload = "x".repeat(value_bytes.saturating_sub(24));
    let mut batch = Vec::with_capacity(1000);
    let mut raw_bytes = 0u64;
    // Key-major order appends to the (key, version) B-tree instead of
    // rewriting every leaf page once per version.
    for k in 0..keys {
        for v in 1..=versions {
            let value = to_raw_value(&serde_json::json!({"v": v, "p": payload}))?;
            raw_bytes += value.get().len() as u64;
            batch.push(PutItem {
                key: format!("key/{k:08}"),
                value,
                expect: None,
                lifetime: Default::default(),
            });
            if batch.len() == 1000 {
                store.batch(std::mem::take(&mut batch))?;
            }
        }
    }
    if !batch.is_empty() {
        store.batch(batch)?;
    }
    store.close();
    let secs = start.elapsed().as_secs_f64();
    let stats = store.db_stats()?;
    println!(
        "{} versions over {} keys in {secs:.1} s ({:.0} versions/s); file {} bytes = {:.0} bytes/version for {:.0} bytes of raw JSON/version",
        stats.total_versions,
        stats.total_keys,
        stats.total_versions as f64 / secs,
        stats.file_size_bytes,
        stats.file_size_bytes as f64 / stats.total_versions as f64,
        raw_bytes as f64 / stats.total_versions as f64,
    );
    Ok(())
}
