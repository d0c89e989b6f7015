//! `src/allocator.rs` sets mimalloc's purge delay by the option's number in mimalloc's enum; this
//! pins that number to the option: the value read before tuning is purge_delay's documented
//! default (1000 ms in mimalloc v3; 14 and 16, the neighbours, default to 1 and 0), and tuning
//! changes it.

#[path = "../../src/allocator.rs"]
#[allow(dead_code)]
mod allocator;

#[test]
fn the_purge_delay_option_is_the_one_tuned() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        assert_eq!(
            allocator::purge_delay(),
            1000,
            "mimalloc's default purge delay"
        );
    }
    allocator::tune();
    assert_eq!(allocator::purge_delay(), allocator::PURGE_DELAY_MS);
}

/// `small_pages` turns mimalloc's huge-page option off (its number pinned: it read 1, its
/// default, before) and the process's, as the kernel reports it.
#[cfg(target_os = "linux")]
#[test]
fn small_pages_turns_transparent_huge_pages_off_for_the_process() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    let thp = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_owned()))
    };
    assert!(
        allocator::allow_thp(),
        "mimalloc's default allows huge pages"
    );
    assert!(allocator::small_pages());
    assert!(!allocator::allow_thp());
    // Kernels before 5.0 do not report it.
    if let Some(v) = thp() {
        assert_eq!(v, "0");
    }
}
