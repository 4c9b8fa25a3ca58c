//! A maintenance window as an operator's API request gives it (cron text, duration, time
//! zone): checking it, and asking where any instant stands against it, must never panic, and
//! an instant said to be inside must be before the closing time given.
#![no_main]

use aloft_api::management::MaintenanceWindow;
use libfuzzer_sys::fuzz_target;

// The server's own module, compiled here without the rest of the server.
#[path = "../../crates/aloft-server/src/domain/windows.rs"]
#[allow(dead_code)]
mod windows;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (head, text) = data.split_at(16);
    let duration = u64::from(u32::from_le_bytes(head[..4].try_into().unwrap()));
    let at = i64::from_le_bytes(head[4..12].try_into().unwrap()) >> 8;
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let (cron, zone) = text.split_once('|').unwrap_or((text, ""));
    let w = MaintenanceWindow {
        cron: cron.to_owned(),
        duration_seconds: duration,
        time_zone: (!zone.is_empty()).then(|| zone.to_owned()),
    };
    if let Ok(window) = windows::Window::parse(&w) {
        if let windows::Openness::Open { closes } = window.at(at) {
            assert!(closes > at, "{w:?} at {at}: closes at {closes}");
        }
        let _ = window.earliest_inside(at);
    }
});
