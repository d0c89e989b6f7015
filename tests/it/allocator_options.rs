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
