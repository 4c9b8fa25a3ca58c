//! In-process caches that keep the hot device path (`next` polls) off the database, without
//! weakening revocation: every cached answer carries the epoch it was made in, and any change
//! that could alter it (a device token revoked; a deployment created, joined or aborted; a
//! rollout's stored state or the fleet-wide halt changed) moves the epoch on, so the next
//! request checks the store again. Only the services (`crate::service`) move an epoch.
//!
//! Each server process has its own caches; with several replicas the epochs also move when
//! another replica's change arrives through the feed (`crate::cluster`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Beyond this many entries a map is simply cleared (polls refill it).
const MAX_ENTRIES: usize = 200_000;
/// How often a device's contact time is written at most.
pub(crate) const CHECK_IN_EVERY_US: i64 = 30_000_000;

#[derive(Clone)]
struct TokenEntry {
    device_id: String,
    exp_us: i64,
    epoch: u64,
}

#[derive(Clone, Default)]
struct DeviceEntry {
    check_in_written_us: i64,
    idle_at: Option<u64>,
}

/// The caches of one server process.
#[derive(Default)]
pub struct Caches {
    revocations: AtomicU64,
    deployments: AtomicU64,
    tokens: Mutex<HashMap<String, TokenEntry>>,
    devices: Mutex<HashMap<String, DeviceEntry>>,
    /// The fleet-wide halt's reason (`None`: not engaged) as of a deployments epoch.
    halt: Mutex<Option<(u64, Option<String>)>>,
    /// Contact times not written yet: flushed in one transaction every second
    /// (`crate::server`), so that polls never wait on a write.
    check_ins: Mutex<HashMap<String, i64>>,
    /// When this process's last complete dynamic sweep started (UNIX µs; 0: none yet).
    swept_from: std::sync::atomic::AtomicI64,
}

fn insert_bounded<V>(map: &mut HashMap<String, V>, k: String, v: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(k, v);
}

impl Caches {
    /// A device token (its whole text) already checked, still valid and not revoked since.
    pub fn device_token(&self, token: &str, now_us: i64) -> Option<String> {
        let epoch = self.revocations.load(Ordering::Acquire);
        let map = self.tokens.lock().ok()?;
        let e = map.get(token)?;
        (e.epoch == epoch && e.exp_us > now_us).then(|| e.device_id.clone())
    }

    /// The current revocation epoch: read it before checking a token in the store.
    pub fn revocation_epoch(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }

    /// Remembers a device token checked against the store in `epoch`.
    pub fn remember_device_token(&self, token: &str, device_id: &str, exp_us: i64, epoch: u64) {
        if let Ok(mut map) = self.tokens.lock() {
            insert_bounded(
                &mut map,
                token.to_owned(),
                TokenEntry {
                    device_id: device_id.to_owned(),
                    exp_us,
                    epoch,
                },
            );
        }
    }

    /// Some device token may have been revoked: check every token again.
    pub fn revoked(&self) {
        self.revocations.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut map) = self.tokens.lock() {
            map.clear();
        }
    }

    /// The current deployments epoch: read it before asking the store for open deployments.
    pub fn deployment_epoch(&self) -> u64 {
        self.deployments.load(Ordering::Acquire)
    }

    /// Deployments were created, joined or aborted, or a rollout's state or the halt changed:
    /// every device must look again.
    pub fn deployments_changed(&self) {
        self.deployments.fetch_add(1, Ordering::AcqRel);
    }

    /// The fleet-wide halt as read in the current deployments epoch (outer `None`: not read).
    pub fn halt(&self) -> Option<Option<String>> {
        let epoch = self.deployment_epoch();
        let h = self.halt.lock().ok()?;
        h.as_ref()
            .filter(|(e, _)| *e == epoch)
            .map(|(_, r)| r.clone())
    }

    /// Remembers the halt read from the store in `epoch`.
    pub fn remember_halt(&self, epoch: u64, reason: Option<String>) {
        if let Ok(mut h) = self.halt.lock() {
            *h = Some((epoch, reason));
        }
    }

    /// Whether the device was found with nothing to be handed in the current epoch.
    pub fn is_idle(&self, device_id: &str) -> bool {
        let epoch = self.deployment_epoch();
        self.devices
            .lock()
            .ok()
            .and_then(|m| m.get(device_id).and_then(|e| e.idle_at))
            == Some(epoch)
    }

    /// Records that the device had nothing to be handed as of `epoch`, and will have nothing
    /// until the epoch moves: no open deployment, or one whose rollout holds it until a stored
    /// state changes (a closed phase, a pause, the halt).
    pub fn set_idle(&self, device_id: &str, epoch: u64) {
        if let Ok(mut map) = self.devices.lock() {
            if let Some(e) = map.get_mut(device_id) {
                e.idle_at = Some(epoch);
            } else {
                insert_bounded(
                    &mut map,
                    device_id.to_owned(),
                    DeviceEntry {
                        check_in_written_us: 0,
                        idle_at: Some(epoch),
                    },
                );
            }
        }
    }

    /// Whether the device's contact time is due to be written (and marks it written).
    pub fn check_in_due(&self, device_id: &str, now_us: i64) -> bool {
        let Ok(mut map) = self.devices.lock() else {
            return true;
        };
        match map.get_mut(device_id) {
            Some(e) if now_us - e.check_in_written_us < CHECK_IN_EVERY_US => false,
            Some(e) => {
                e.check_in_written_us = now_us;
                true
            }
            None => {
                insert_bounded(
                    &mut map,
                    device_id.to_owned(),
                    DeviceEntry {
                        check_in_written_us: now_us,
                        idle_at: None,
                    },
                );
                true
            }
        }
    }
}

impl Caches {
    /// Where the next dynamic sweep starts: devices changed since the start of this
    /// process's last complete sweep (`None`: every device, the first sweep of a process).
    pub fn sweep_since(&self) -> Option<i64> {
        let at = self.swept_from.load(Ordering::Acquire);
        (at > 0).then_some(at)
    }

    /// A sweep that started at `started_us` added every device it found.
    pub fn swept(&self, started_us: i64) {
        self.swept_from.store(started_us, Ordering::Release);
    }

    /// Notes a device's contact at `now_us`, for the next [`Caches::take_check_ins`].
    pub fn note_check_in(&self, device_id: &str, now_us: i64) {
        if let Ok(mut map) = self.check_ins.lock() {
            let latest = map.get(device_id).map_or(now_us, |t| (*t).max(now_us));
            // Bounded like the other maps: an overflow loses contact times, never memory.
            insert_bounded(&mut map, device_id.to_owned(), latest);
        }
    }

    /// The contacts noted since the last call, to be written.
    pub fn take_check_ins(&self) -> Vec<(String, i64)> {
        self.check_ins
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Caches;

    #[test]
    fn revocation_and_new_deployments_invalidate() {
        let c = Caches::default();
        let e = c.revocation_epoch();
        c.remember_device_token("t", "d", 100, e);
        assert_eq!(c.device_token("t", 50).as_deref(), Some("d"));
        assert_eq!(c.device_token("t", 100), None, "expired");
        c.revoked();
        assert_eq!(c.device_token("t", 50), None);
        // A token checked before a revocation but remembered after it is not trusted.
        c.remember_device_token("t", "d", 100, e);
        assert_eq!(c.device_token("t", 50), None);

        let e = c.deployment_epoch();
        c.set_idle("d", e);
        assert!(c.is_idle("d"));
        c.deployments_changed();
        assert!(!c.is_idle("d"));
        let e = c.deployment_epoch();
        assert_eq!(c.halt(), None, "not read yet");
        c.remember_halt(e, Some("incident".into()));
        assert_eq!(c.halt(), Some(Some("incident".into())));
        c.deployments_changed();
        assert_eq!(c.halt(), None, "read before the halt changed");
        assert!(c.check_in_due("d", 100_000_000));
        assert!(!c.check_in_due("d", 100_000_001));
        assert!(c.check_in_due("d", 140_000_000));
        c.note_check_in("d", 2);
        c.note_check_in("d", 1);
        c.note_check_in("e", 3);
        let mut taken = c.take_check_ins();
        taken.sort();
        assert_eq!(taken, [("d".to_owned(), 2), ("e".to_owned(), 3)]);
        assert!(c.take_check_ins().is_empty());
    }
}
