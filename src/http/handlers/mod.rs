//! One handler module per endpoint family.
pub mod backup;
pub mod batch;
pub mod changes;
pub mod docs;
pub mod feed_stream;
pub mod kv;
pub mod leases;
pub mod listing;
pub mod stats;
pub mod ui;
pub mod whoami;
