//! Giving freed heap memory back to the OS.
//!
//! glibc returns memory on its own only from the top of the main heap, and
//! only above a threshold it raises each time the process frees a large
//! block; start-up (decoding, building discovery and OpenAPI documents)
//! leaves megabytes of free but resident heap behind. A server that then
//! sits idle keeps them unless it asks.

/// Releases free memory from every malloc arena to the OS (glibc's
/// `malloc_trim(0)`: trims each heap's top and drops the pages of free
/// chunks inside it). Returns true when memory was released; false, and
/// does nothing, with other C libraries.
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers; it walks the allocator's
        // own free lists under the allocator's locks.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
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

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_blocks_inside_the_heap_go_back_to_the_os() {
        // 32 MiB of small blocks, touched so they are resident; the last
        // one stays, so glibc cannot simply lower the heap's top.
        let mut blocks: Vec<Box<[u8; 4096]>> = (0..8192).map(|_| Box::new([1u8; 4096])).collect();
        let keep = blocks.pop();
        let before = rss_anon_kib();
        drop(blocks);
        assert!(trim_heap(), "nothing released");
        let after = rss_anon_kib();
        assert!(
            before.saturating_sub(after) >= 16 * 1024,
            "RssAnon {before} KiB -> {after} KiB"
        );
        drop(keep);
    }
}
