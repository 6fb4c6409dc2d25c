//! Fault injection against the real `vkv` binary: crashes, full and
//! read-only disks, bad schemas, hostile HTTP, stalled clients, overload.

mod bad_input;
#[path = "../support/mod.rs"]
mod common;
mod corrupt;
mod crash;
mod deleted_keys;
mod disk_full;
mod fsutil;
mod load;
mod memory;
mod schema;
mod unavailable;
