//! Time as the store keeps it (UNIX microseconds) and as JSON shows it (RFC 3339, UTC, `Z`);
//! the functions live in `aloft_api::time`, shared with the device daemon.

pub use aloft_api::time::{now_us, rfc3339, rfc3339_opt};
