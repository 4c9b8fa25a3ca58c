//! What a server (or whoever sits in between) can send the daemon: deployment instructions,
//! and the `key=value` output format shared with the identity and inventory helpers. Neither
//! may panic, and instructions that pass must be safe to use.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let aloft_daemon::api::Next::Deployment(d) = aloft_daemon::api::parse_instructions(data) {
        assert!(aloft_daemon::api::valid_id(&d.id));
        assert!(d.artifact.source.uri.starts_with("http"));
        assert!(!d.artifact.device_types_compatible.is_empty());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = aloft_daemon::identity::parse_pairs(text);
    }
});
