//! Giving freed heap memory back to the OS, and asking the CPU to fetch
//! memory ahead of its use.
//!
//! The skiff binary allocates with mimalloc, which returns freed pages to
//! the OS after a delay, and only when some thread next calls into the
//! allocator and finds the delay expired. A burst of temporary allocations
//! (start-up: building the OpenAPI documents decodes megabytes of JSON into
//! trees) thus stays resident until the process happens to allocate again —
//! for an idle server, ten seconds and more.

/// Returns the memory the calling thread's heap and every arena hold free
/// to the OS now (mimalloc's `mi_collect(true)`). Call it on the thread
/// that did the temporary allocations, after dropping them; costs a walk of
/// the allocator's own structures (about a millisecond). Harmless when
/// mimalloc is not the process's allocator: its heaps are then empty.
pub fn release_free_memory() {
    // SAFETY: mi_collect takes no pointers and only walks mimalloc's own
    // structures, under their own synchronisation; any thread may call it.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Asks the CPU to start loading every cache line of `value` into its
/// caches, so that reading it a little later does not stall: for loops
/// that visit large, scattered structures one after another (the
/// scheduler's node infos), to overlap the next ones' misses with the
/// work on this one. A hint only: it never faults, changes nothing
/// observable, and is a no-op on architectures without the instruction.
#[inline]
pub fn prefetch<T>(value: &T) {
    prefetch_lines(
        std::ptr::from_ref(value).cast::<u8>(),
        std::mem::size_of::<T>(),
    );
}

/// [`prefetch`] for the first `max_lines` cache lines of a byte block
/// (for a structure that points to its data elsewhere).
#[inline]
pub fn prefetch_bytes(bytes: &[u8], max_lines: usize) {
    prefetch_lines(
        bytes.as_ptr(),
        bytes.len().min(max_lines.saturating_mul(LINE)),
    );
}

/// Cache line size assumed by the prefetches.
const LINE: usize = 64;

/// Prefetches each cache line of the `len` bytes at `start`.
#[inline]
fn prefetch_lines(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let mut offset = 0;
        while offset < len {
            // SAFETY: a prefetch is a hint that never faults and reads
            // nothing into the program; callers pass the address and size
            // of a value or slice they borrow, and SSE (which the
            // instruction needs) is part of x86_64's baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast::<i8>()) };
            offset += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rss_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn freed_mimalloc_blocks_go_back_to_the_os_at_once() {
        // 64 MiB of small blocks from mimalloc's heap (the test binary's
        // global allocator is the system's, so ask mimalloc directly),
        // touched so that they are resident.
        let blocks: Vec<*mut u8> = (0..16_384)
            .map(|_| {
                // SAFETY: a plain allocation of 4 KiB; null is checked.
                let p = unsafe { libmimalloc_sys::mi_malloc(4096) }.cast::<u8>();
                assert!(!p.is_null());
                // SAFETY: p points to 4096 writable bytes.
                unsafe { std::ptr::write_bytes(p, 1, 4096) };
                p
            })
            .collect();
        let full = rss_anon_kib();
        for p in blocks {
            // SAFETY: each p came from mi_malloc and is freed once.
            unsafe { libmimalloc_sys::mi_free(p.cast()) };
        }
        release_free_memory();
        let after = rss_anon_kib();
        assert!(
            after + 32 * 1024 < full,
            "RssAnon {full} KiB with the blocks, {after} KiB after freeing and collecting"
        );
    }
}
