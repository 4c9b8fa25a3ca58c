//! Rate limits: token buckets by key (a client address, an account, "all"), kept in this
//! process's memory. With several replicas each one applies its own limits, so a fleet-wide
//! bound is the per-process bound times the number of replicas.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests allowed at once (a full bucket).
    pub burst: f64,
    /// Requests per second it refills by.
    pub per_sec: f64,
}

impl Rate {
    /// `burst` at once, refilled by `per_sec` per second.
    pub const fn new(burst: f64, per_sec: f64) -> Self {
        Self { burst, per_sec }
    }
}

/// A bucket: its tokens at an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Refills `bucket` (a missing one is full) to `now` and takes one token; otherwise, how long
/// until one is there.
fn take(bucket: Option<Bucket>, rate: Rate, now: Instant) -> Result<Bucket, Duration> {
    let tokens = bucket.map_or(rate.burst, |b| {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * rate.per_sec).min(rate.burst)
    });
    if tokens >= 1.0 {
        Ok(Bucket {
            tokens: tokens - 1.0,
            at: now,
        })
    } else {
        Err(Duration::from_secs_f64((1.0 - tokens) / rate.per_sec))
    }
}

/// Keys beyond this many are forgotten (full buckets first), so the map stays bounded.
const MAX_KEYS: usize = 65_536;

/// Token buckets by key, with one rate.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// A limiter with `rate` for every key.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `key`, or says how long to wait.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        let b = take(map.get(key).copied(), self.rate, now)?;
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let rate = self.rate;
            map.retain(|_, b| take(Some(*b), rate, now).is_ok_and(|t| t.tokens + 1.0 < rate.burst));
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        map.insert(key.to_owned(), b);
        Ok(())
    }

    /// Takes one token of the client's key, then one of `second`'s; refused (429 with
    /// `Retry-After` and `what` as the error, logged) if either is empty, and then nothing is
    /// taken.
    pub fn take_both(
        &self,
        client: &ClientKey,
        second: (&Self, &str),
        what: &str,
    ) -> Result<(), crate::error::ApiError> {
        let refused = |wait| {
            tracing::warn!(client = %client.0, "throttled: {what}");
            crate::error::ApiError::too_many(format!("{what}; try again later"), wait)
        };
        self.take(&client.0).map_err(refused)?;
        second.0.take(second.1).map_err(|wait| {
            self.refund(&client.0);
            refused(wait)
        })
    }

    /// Gives back a token taken for a request that turned out legitimate (a good password).
    pub fn refund(&self, key: &str) {
        if let Ok(mut map) = self.buckets.lock()
            && let Some(b) = map.get_mut(key)
        {
            b.tokens = (b.tokens + 1.0).min(self.rate.burst);
        }
    }
}

/// The key of the client a request came from: its IP address, IPv6 by its /64 (one host's
/// share). Behind a proxy this is the proxy: forwarded headers are not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey(pub String);

impl ClientKey {
    /// The key of an address.
    pub fn of(ip: IpAddr) -> Self {
        Self(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(
                || {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                },
                |v4| v4.to_string(),
            ),
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientKey {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| Self("unknown".into()), |c| Self::of(c.0.ip())))
    }
}

/// The server's rate limits.
#[derive(Debug)]
pub struct Throttles {
    /// Failed logins per client address.
    pub login_client: Limiter,
    /// Failed logins per account (e-mail address).
    pub login_account: Limiter,
    /// Identities never seen before, per client address.
    pub new_identity_client: Limiter,
    /// Identities never seen before, from everyone.
    pub new_identity_all: Limiter,
}

impl Default for Throttles {
    fn default() -> Self {
        Self {
            login_client: Limiter::new(Rate::new(10.0, 0.2)),
            login_account: Limiter::new(Rate::new(20.0, 0.2)),
            new_identity_client: Limiter::new(Rate::new(100.0, 10.0)),
            new_identity_all: Limiter::new(Rate::new(1000.0, 100.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_their_rate_up_to_their_burst() {
        let rate = Rate {
            burst: 2.0,
            per_sec: 1.0,
        };
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let full = take(None, rate, t0).unwrap();
        assert!((full.tokens - 1.0).abs() < 1e-9);
        let empty = take(Some(full), rate, t0).unwrap();
        // (bucket, seconds later, allowed?, wait when refused)
        let cases = [
            (empty, 0, false, Some(s(1))),
            (empty, 1, true, None),
            (empty, 100, true, None),
        ];
        for (b, later, ok, wait) in cases {
            let r = take(Some(b), rate, t0 + s(later));
            assert_eq!(r.is_ok(), ok, "{later}s later");
            if let Some(w) = wait {
                assert_eq!(r.unwrap_err(), w);
            }
        }
        // A long pause refills to the burst, not beyond.
        let after = take(Some(empty), rate, t0 + s(100)).unwrap();
        assert!((after.tokens - 1.0).abs() < 1e-9);
    }

    #[test]
    fn clients_are_keyed_by_address_and_ipv6_by_its_64() {
        for (ip, key) in [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ] {
            assert_eq!(ClientKey::of(ip.parse().unwrap()).0, key, "{ip}");
        }
    }

    #[test]
    fn keys_are_limited_apart_and_refunds_give_back() {
        let l = Limiter::new(Rate::new(1.0, 0.001));
        assert!(l.take("a").is_ok());
        assert!(l.take("a").is_err());
        assert!(l.take("b").is_ok());
        l.refund("a");
        assert!(l.take("a").is_ok());
    }
}
