//! Token policy: expiry, how many tokens a subject keeps, and when a use is written down.

/// A device keeps only its newest few tokens (older ones are revoked when a new one is issued).
pub const DEVICE_TOKENS_KEPT: u64 = 4;

/// A personal access token's last use is written at most this often (µs), so that polling
/// tools do not turn reads into writes.
pub const PAT_USE_INTERVAL_US: i64 = 60_000_000;

/// A device's check-in time is written at most this often (µs): polls stay reads.
pub const CHECK_IN_INTERVAL_US: i64 = 5_000_000;

/// Whether a token that expires at `expires` (µs; `None`: never) is still honoured at `now`.
pub fn honoured(expires: Option<i64>, now: i64) -> bool {
    expires.is_none_or(|e| e > now)
}

/// Whether a use of a personal access token at `now` is written down.
pub fn record_pat_use(last_used: Option<i64>, now: i64) -> bool {
    last_used.is_none_or(|l| now - l > PAT_USE_INTERVAL_US)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_use_recording() {
        let cases = [
            (None, 10, true),
            (Some(11), 10, true),
            (Some(10), 10, false),
            (Some(9), 10, false),
        ];
        for (expires, now, want) in cases {
            assert_eq!(honoured(expires, now), want, "{expires:?} at {now}");
        }
        let cases = [
            (None, 0, true),
            (Some(0), PAT_USE_INTERVAL_US, false),
            (Some(0), PAT_USE_INTERVAL_US + 1, true),
        ];
        for (last, now, want) in cases {
            assert_eq!(record_pat_use(last, now), want, "{last:?} at {now}");
        }
    }
}
