//! The process allocator: mimalloc, with freed memory kept for reuse for a while.
//!
//! Included by the binary and the benchmarks (`#[path]`), not by the library, which forbids
//! `unsafe`. Decoder threads allocate what the engine thread frees and the engine's alerts are
//! freed by the writer; with mimalloc's default purge delay (1 s, 10 s for arenas) the freed
//! pages went back to the kernel and came back zero-filled on the next fault: `perf record` on a
//! replay put 17% of the engine thread in the kernel's `clear_page_erms`. Keeping freed memory
//! for a minute before purging avoids that churn and still hands memory back after a burst.
//!
//! The `override` feature (Cargo.toml) has mimalloc answer C's `malloc` and `free` too, so
//! librdkafka's messages come from it: with glibc's allocator, the kafka bench's dialer thread
//! spent half its time in `clear_page_erms` at 200,000 calls/s (glibc gave the top of its heap
//! back to the kernel as delivered messages were freed, and took it back zero-filled), about a
//! quarter of a core taken from the service it measures (`perf record`, 2026-12-05; with the
//! override, 12% of a core for the whole dialer thread). The service's own librdkafka messages
//! take the same path.

use std::os::raw::{c_int, c_long};

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (include/mimalloc.h).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// Milliseconds freed memory is kept before it is returned to the operating system.
pub const PURGE_DELAY_MS: c_long = 60_000;

/// `mi_option_allow_thp` in the same enum.
#[allow(dead_code)]
const MI_OPTION_ALLOW_THP: c_int = 43;

/// `PR_SET_THP_DISABLE` in `<linux/prctl.h>`.
#[cfg(target_os = "linux")]
#[allow(dead_code)]
const PR_SET_THP_DISABLE: c_int = 41;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_option_get(option: c_int) -> c_long;
    #[cfg(target_os = "linux")]
    #[allow(dead_code)]
    fn prctl(option: c_int, ...) -> c_int;
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

/// For every command: no transparent huge pages in this process, unless `MIMALLOC_ALLOW_THP` is
/// set (mimalloc's own variable; `1` keeps them). Returns whether they were turned off.
///
/// mimalloc asks for huge pages on its arenas, so the first touch of each 2 MiB faults in a whole
/// zeroed huge page (and, with the kernel's default `defrag = madvise`, may compact memory first):
/// the thread that touches it stalls for up to milliseconds while the state grows. Measured with
/// `cargo bench --bench kafka` (checks at 2,000/s while 50,000 calls/s are ingested), turning
/// them off took the check latency's p99 from 8–14 ms to 2.5–3.6 ms. Replay, a throughput job,
/// kept them until its pipeline stopped waiting on locks (2026-12-02): since then it has run
/// faster without them on this project's machine (reference rules, 6 interleaved rounds: median
/// 509,000 against 449,000 calls/s; a quarter less resident memory). Most of that cost is the
/// machine's, not the kernel's zeroing: a VM whose hypervisor takes free memory back (free page
/// reporting) must back each huge page again on its first touch — 2.4–2.6 ms a MiB there,
/// against 0.15 ms a MiB for memory just freed. On memory the host has backed (measured here
/// on memory warmed first, as a server's stays), huge pages made replay 11–20% faster (fewer
/// TLB misses in the engine's ~90 MiB of state read at random): docs/operations.md, "Huge pages";
/// docs/performance.md, "Huge pages on memory the host has backed".
#[allow(dead_code)]
pub fn small_pages() -> bool {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return false;
    }
    // SAFETY: a setter of mimalloc's option table (read on each later OS allocation), and
    // `prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)`, which only sets a flag on this process's memory.
    unsafe {
        mi_option_set(MI_OPTION_ALLOW_THP, 0);
        #[cfg(target_os = "linux")]
        {
            use std::os::raw::c_ulong;
            prctl(
                PR_SET_THP_DISABLE,
                1 as c_ulong,
                0 as c_ulong,
                0 as c_ulong,
                0 as c_ulong,
            ) == 0
        }
        #[cfg(not(target_os = "linux"))]
        {
            true
        }
    }
}

/// Whether mimalloc may use transparent huge pages (for the check that the option number is
/// the right one).
#[allow(dead_code)]
pub fn allow_thp() -> bool {
    // SAFETY: a getter of mimalloc's option table.
    unsafe { mi_option_get(MI_OPTION_ALLOW_THP) != 0 }
}
