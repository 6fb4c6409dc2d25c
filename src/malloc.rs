//! Gives memory from large requests back to the system (glibc malloc).
//!
//! glibc serves allocations of 128 KiB and more with their own `mmap`, and
//! `free` unmaps them, but its threshold is dynamic: once such a block is
//! freed, the threshold rises to its size (up to 32 MiB), and from then on
//! 1 MiB bodies and values come from the heap arenas, which keep freed
//! memory and fragment across threads. Measured with
//! `scripts/rss_large_values.py` (300 puts of 1 MB values over 8
//! connections, then 300 reads, then idle; docs/design.md): RSS idle
//! after it 78.5 MiB with glibc's default, 40.7 MiB with the threshold
//! fixed (the cache holds 33 MiB of it). `M_ARENA_MAX=2` changed nothing
//! measurable (76.8), a periodic `malloc_trim` gave back only part (57.6).
//! Fixing the threshold costs an `mmap` and page faults per large request,
//! nothing for small ones, and no dependency (an allocator crate would add
//! a C build and binary size).

/// Fixes glibc's mmap threshold at its default (128 KiB), which disables
/// its dynamic increase. Called once, first thing in `main`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    // SAFETY: mallopt only changes an allocator parameter; it is called
    // before any other thread exists.
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    if ok != 1 {
        eprintln!("warning: mallopt(M_MMAP_THRESHOLD) failed; large requests may keep memory");
    }
}

/// Other allocators (musl) return large blocks on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
