//! Keeps freed memory in the process for reuse instead of handing it back to the kernel.
//!
//! libtorch allocates every activation with malloc. glibc serves blocks above its mmap threshold
//! (at most 32 MiB) with a fresh mmap and unmaps them on free, and it trims the heap top when
//! much is free: each training step then page-faults its activations in again, one 4 KiB page at
//! a time. Measured with `wmae bench` on 2 cores, that was over half the run in the kernel
//! (22 s of system time in a 36 s run) and halved inference at batch 1,000. With mmap off and
//! trimming off, the freed blocks are reused as they are, at a cost in peak memory: 609 MB
//! against 409 to 422 MB of RSS for one `wmae bench --steps 5` run.

/// Environment variable that keeps glibc's defaults (set to 1), e.g. to measure the difference.
pub const KEEP_DEFAULTS_VAR: &str = "WMAE_MALLOC_DEFAULTS";

static APPLIED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns glibc's mmap of large blocks and heap trimming off, unless WMAE_MALLOC_DEFAULTS=1; call
/// before libtorch allocates.
pub fn keep_freed_memory() {
    if std::env::var_os(KEEP_DEFAULTS_VAR).is_some_and(|v| v == "1") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before other threads start.
    unsafe {
        let mmap_off = libc::mallopt(libc::M_MMAP_MAX, 0) == 1;
        let trim_off = libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1;
        APPLIED.store(mmap_off && trim_off, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether [`keep_freed_memory`] changed glibc's settings in this process.
pub fn keeps_freed_memory() -> bool {
    APPLIED.load(std::sync::atomic::Ordering::Relaxed)
}
