//! Heap per retained call, measured with a counting allocator: live bytes allocated while the
//! engine ingests 1,000,000 calls, divided by the calls it retains at the end.
//! `cargo bench --bench memory`

use dialguard::engine::Engine;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

#[path = "common.rs"]
mod common;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench --list` probes every bench binary
    }
    for (name, file, days, contacts_topic) in [
        ("cn-default", "dialguard.toml", 14, false),
        // The default policy with a contacts topic: its contact rule holds the calls it
        // matched for contacts arriving late.
        ("cn-default+contacts", "dialguard.toml", 14, true),
        ("bench", "bench.toml", 14, false),
        ("all-packs", "bench-all-packs.toml", 14, false),
    ] {
        let mut settings = common::settings(file);
        if contacts_topic {
            settings.reference.contacts_topic = Some("compliance.contacts".into());
        }
        // What the service keeps with this configuration.
        settings.follow_reference_topics();
        let calls = common::calls(&settings, 1_000_000, days);
        let before = LIVE.load(Ordering::Relaxed);
        let mut engine = Engine::new(settings.rules.clone(), settings.engine.clone());
        let mut out = Vec::new();
        for c in &calls {
            out.clear();
            engine.ingest(c, &mut out);
        }
        drop(out);
        let live = LIVE.load(Ordering::Relaxed) - before;
        let retained = engine.retained_calls();
        println!(
            "{name}: {} calls, {} retained, {} window keys, heap {:.1} MiB measured ({:.1} MiB estimated): {:.0} bytes per retained call",
            calls.len(),
            retained,
            engine.window_keys(),
            live as f64 / 1048576.0,
            engine.heap_bytes() as f64 / 1048576.0,
            live as f64 / retained as f64
        );
        let parts: Vec<String> = engine
            .heap()
            .iter()
            .map(|(what, b)| format!("{what} {:.0}", *b as f64 / retained as f64))
            .collect();
        println!("  estimated bytes per retained call: {}", parts.join(", "));
    }
}
