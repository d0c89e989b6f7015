//! The process allocator: mimalloc, with freed memory kept for reuse for a while.
//!
//! Included by the binary and the benchmarks (`#[path]`), not by the library, which forbids
//! `unsafe`. Decoder threads allocate what the engine thread frees and the engine's alerts are
//! freed by the writer; with mimalloc's default purge delay (1 s, 10 s for arenas) the freed
//! pages went back to the kernel and came back zero-filled on the next fault: `perf record` on a
//! replay put 17% of the engine thread in the kernel's `clear_page_erms`. Keeping freed memory
//! for a minute before purging avoids that churn and still hands memory back after a burst.

use std::os::raw::{c_int, c_long};

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (include/mimalloc.h).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// Milliseconds freed memory is kept before it is returned to the operating system.
pub const PURGE_DELAY_MS: c_long = 60_000;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_option_get(option: c_int) -> c_long;
}

/// The global allocator.
pub type Global = mimalloc::MiMalloc;

/// Applies the options above; call first thing in `main`.
pub fn tune() {
    // SAFETY: plain setters of mimalloc's option table, safe to call at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}

/// The purge delay in force (for the check that the option number is the right one).
#[allow(dead_code)]
pub fn purge_delay() -> c_long {
    // SAFETY: a getter of mimalloc's option table.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
}
