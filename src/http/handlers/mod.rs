//! One handler module per endpoint family.
pub mod docs;
pub mod kv;
pub mod stats;
