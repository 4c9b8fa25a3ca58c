//! A test hook for power-cut tests: `ALOFT_CRASH_AT=<n>:<before|after>` aborts the process
//! (no cleanup, no unwinding: like `kill -9` or a power cut) just before or just after the
//! n-th durable write of this process. Durable writes are every state-file write and every
//! bootloader-environment write, i.e. every state transition. Unset, it costs one atomic add
//! per durable write.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNT: AtomicU32 = AtomicU32::new(0);

fn target() -> Option<(u32, bool)> {
    static TARGET: OnceLock<Option<(u32, bool)>> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let v = std::env::var("ALOFT_CRASH_AT").ok()?;
        let (n, when) = v.split_once(':')?;
        Some((n.parse().ok()?, when == "before"))
    })
}

/// Runs one durable write `f`, crashing around it when the hook says so.
pub(crate) fn durable_write<T>(f: impl FnOnce() -> T) -> T {
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let t = target();
    if t == Some((n, true)) {
        std::process::abort();
    }
    let out = f();
    if t == Some((n, false)) {
        std::process::abort();
    }
    out
}
