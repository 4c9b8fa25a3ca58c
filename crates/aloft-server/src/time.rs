//! Time as the store keeps it (UNIX microseconds) and as JSON shows it (RFC 3339, UTC, `Z`);
//! the functions live in `aloft_api::time`, shared with the device daemon.
//!
//! Rollout decisions (phases' start times, soaks, rate limits, maintenance windows, the health
//! gate's offline times) read a server's [`Clock`] instead (`Ctx::now`), which a test can move
//! forward on a server started with a movable clock (`Settings::movable_clock`, then `PUT
//! /api/management/v1/test/clock`). Tokens,
//! download links and the cluster's leases keep the real time.

use std::sync::atomic::{AtomicI64, Ordering};

pub use aloft_api::time::{now_us, rfc3339, rfc3339_opt};

/// A server's clock for rollout decisions: the real time, plus how far a test moved it.
#[derive(Debug, Default)]
pub struct Clock {
    movable: bool,
    offset_us: AtomicI64,
}

impl Clock {
    /// A clock a test may move forward ([`Clock::move_forward`]).
    pub fn movable() -> Self {
        Self {
            movable: true,
            offset_us: AtomicI64::new(0),
        }
    }

    /// Now, in UNIX µs.
    pub fn now(&self) -> i64 {
        now_us().saturating_add(self.offset_us.load(Ordering::Relaxed))
    }

    /// Moves the clock forward by `by_us`; returns how far it is moved in all. Refused on a
    /// clock that is not movable, and backwards (decisions already taken stay taken).
    pub fn move_forward(&self, by_us: i64) -> Result<i64, String> {
        if !self.movable {
            return Err(
                "this server's clock is not movable (start it with --movable-clock)".into(),
            );
        }
        if by_us < 0 {
            return Err("the clock only moves forward".into());
        }
        Ok(self
            .offset_us
            .fetch_add(by_us, Ordering::Relaxed)
            .saturating_add(by_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_movable_clock_moves_and_only_forward() {
        let fixed = Clock::default();
        assert!(fixed.move_forward(1).is_err());
        let clock = Clock::movable();
        let before = clock.now();
        assert_eq!(clock.move_forward(3_600_000_000), Ok(3_600_000_000));
        assert!(clock.move_forward(-1).is_err());
        assert!(clock.now() >= before + 3_600_000_000);
    }
}
