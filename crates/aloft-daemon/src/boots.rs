//! The boot count, sent as inventory so that a rollout's health gate can count the reboots after
//! an update: `aloft.booted_at` (this boot's start, Unix seconds, fixed for the daemon's life)
//! and `aloft.boots_since_update` (boots since the last committed update: 0 right after it).
//! Both are left out when the boot id cannot be read.
//!
//! Owns: `boots.json` in the daemon's folder (the boot id last seen and the count, written
//! atomically) and [`on_boot`], the pure rule that advances it. Must not: guess a boot without
//! a boot id, or touch the engine's state.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aloft_api::device::InventoryAttribute;
use serde::{Deserialize, Serialize};

/// The inventory attribute with the current boot's start, in Unix seconds.
pub const BOOTED_AT: &str = "aloft.booted_at";
/// The inventory attribute with the number of boots since the last committed update.
pub const BOOTS: &str = "aloft.boots_since_update";

/// `boots.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    /// The boot id last seen (empty: none yet).
    pub boot_id: String,
    /// Boots since the last committed update.
    pub boots_since_update: u32,
}

/// The state after the daemon starts under `boot_id`: the same boot keeps the count, another one
/// adds one, and nothing stored starts at 0.
pub fn on_boot(stored: &BootState, boot_id: &str) -> BootState {
    let boots_since_update = if stored.boot_id.is_empty() {
        0
    } else if stored.boot_id == boot_id {
        stored.boots_since_update
    } else {
        stored.boots_since_update.saturating_add(1)
    };
    BootState {
        boot_id: boot_id.to_owned(),
        boots_since_update,
    }
}

/// The boot id in `path`, trimmed; `None` when it cannot be read or is empty.
pub fn read_boot_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// The start of the boot, in whole Unix seconds (rounded down): `now` less the first field of
/// `/proc/uptime`'s text.
pub fn booted_at(now: SystemTime, uptime: &str) -> Option<u64> {
    let up = uptime.split_whitespace().next()?.parse::<f64>().ok()?;
    let up = Duration::try_from_secs_f64(up).ok()?;
    let since_epoch = now.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(since_epoch.checked_sub(up)?.as_secs())
}

/// The boot count of this daemon process.
#[derive(Debug)]
pub struct Boots {
    path: PathBuf,
    /// `None`: no boot id, nothing is reported.
    state: Option<BootState>,
    booted_at: Option<u64>,
}

impl Boots {
    /// Loads `boots.json` from `dir` and counts this boot (`boot_id` as the daemon read it at
    /// start; `None`: unreadable, both attributes are left out). A corrupt file counts as none
    /// and is overwritten.
    pub fn start(dir: &Path, boot_id: Option<&str>, booted_at: Option<u64>) -> Self {
        let path = dir.join("boots.json");
        let Some(boot_id) = boot_id else {
            tracing::debug!("no boot id: the boot count is not reported");
            return Self {
                path,
                state: None,
                booted_at: None,
            };
        };
        let stored = aloft_device::state::load::<BootState>(&path).unwrap_or_else(|e| {
            tracing::warn!(
                error = %aloft_artifact::error_chain(&e),
                "the boot count is unreadable; counting from 0 again"
            );
            BootState::default()
        });
        let state = on_boot(&stored, boot_id);
        let mut boots = Self {
            path,
            state: None,
            booted_at,
        };
        if state != stored {
            tracing::info!(
                boot.id = %state.boot_id,
                boots_since_update = state.boots_since_update,
                "counted a boot"
            );
            boots.store(&state);
        }
        boots.state = Some(state);
        boots
    }

    /// An update was committed on this boot: the count starts again at 0.
    pub fn committed(&mut self) {
        let Some(state) = &self.state else {
            return;
        };
        let fresh = BootState {
            boot_id: state.boot_id.clone(),
            boots_since_update: 0,
        };
        if fresh != *state {
            self.store(&fresh);
            self.state = Some(fresh);
        }
    }

    /// Writes `state`; a failure is logged (the count in memory is still reported).
    fn store(&self, state: &BootState) {
        if let Err(e) = aloft_device::state::save(&self.path, state) {
            tracing::warn!(error = %aloft_artifact::error_chain(&e), "cannot store the boot count");
        }
    }

    /// The inventory attributes ([`BOOTED_AT`] when known, [`BOOTS`]); none without a boot id.
    pub fn attributes(&self) -> Vec<InventoryAttribute> {
        let Some(state) = &self.state else {
            return Vec::new();
        };
        let attribute = |name: &str, value: serde_json::Value| InventoryAttribute {
            name: name.into(),
            value,
            description: None,
        };
        let mut attributes = Vec::with_capacity(2);
        if let Some(at) = self.booted_at {
            attributes.push(attribute(BOOTED_AT, at.into()));
        }
        attributes.push(attribute(BOOTS, state.boots_since_update.into()));
        attributes
    }
}

/// [`booted_at`] from the system clock and `/proc/uptime`.
pub fn booted_at_now() -> Option<u64> {
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    booted_at(SystemTime::now(), &uptime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(boot_id: &str, boots_since_update: u32) -> BootState {
        BootState {
            boot_id: boot_id.into(),
            boots_since_update,
        }
    }

    #[test]
    fn a_new_boot_id_counts_a_boot() {
        let cases = [
            // (stored, seen, want)
            (state("", 0), "a", state("a", 0)),
            (state("a", 0), "a", state("a", 0)),
            (state("a", 2), "a", state("a", 2)),
            (state("a", 0), "b", state("b", 1)),
            (state("a", 3), "b", state("b", 4)),
            (state("a", u32::MAX), "b", state("b", u32::MAX)),
        ];
        for (stored, seen, want) in cases {
            assert_eq!(on_boot(&stored, seen), want, "{stored:?} {seen}");
        }
    }

    #[test]
    fn booted_at_is_now_less_uptime_rounded_down() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_100_700);
        assert_eq!(booted_at(now, "100.20 345.67\n"), Some(1_700_000_000));
        assert_eq!(booted_at(now, "100.90 1.0"), Some(1_699_999_999));
        assert_eq!(booted_at(now, ""), None);
        assert_eq!(booted_at(now, "soon 1.0"), None);
        assert_eq!(booted_at(now, "-5 1.0"), None);
        assert_eq!(booted_at(now, "9e12 1.0"), None);
    }

    fn values(boots: &Boots) -> Vec<(String, serde_json::Value)> {
        boots
            .attributes()
            .into_iter()
            .map(|a| (a.name, a.value))
            .collect()
    }

    fn stored(dir: &Path) -> BootState {
        aloft_device::state::load(&dir.join("boots.json")).unwrap()
    }

    #[test]
    fn the_count_survives_restarts_and_resets_at_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let boots = Boots::start(dir.path(), Some("a"), Some(1_700_000_000));
        let want = vec![
            (BOOTED_AT.to_owned(), serde_json::json!(1_700_000_000)),
            (BOOTS.to_owned(), serde_json::json!(0)),
        ];
        assert_eq!(values(&boots), want);
        // Integers, not strings, in the inventory's JSON.
        let text = serde_json::to_string(&boots.attributes()).unwrap();
        assert!(text.contains(r#""value":1700000000"#), "{text}");
        assert!(text.contains(r#""value":0"#), "{text}");

        // The daemon restarts within the boot, then after two reboots.
        let boots = Boots::start(dir.path(), Some("a"), Some(1_700_000_000));
        assert_eq!(values(&boots)[1].1, serde_json::json!(0));
        Boots::start(dir.path(), Some("b"), None);
        let mut boots = Boots::start(dir.path(), Some("c"), Some(1_700_000_500));
        assert_eq!(
            values(&boots),
            vec![
                (BOOTED_AT.to_owned(), serde_json::json!(1_700_000_500)),
                (BOOTS.to_owned(), serde_json::json!(2)),
            ]
        );
        assert_eq!(stored(dir.path()), state("c", 2));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("boots.json"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        boots.committed();
        assert_eq!(values(&boots)[1].1, serde_json::json!(0));
        assert_eq!(stored(dir.path()), state("c", 0));
        let boots = Boots::start(dir.path(), Some("d"), None);
        assert_eq!(
            values(&boots),
            vec![(BOOTS.to_owned(), serde_json::json!(1))]
        );
    }

    #[test]
    fn a_corrupt_count_starts_again_and_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("boots.json"), b"{\"boot_id\": 7").unwrap();
        let boots = Boots::start(dir.path(), Some("a"), None);
        assert_eq!(
            values(&boots),
            vec![(BOOTS.to_owned(), serde_json::json!(0))]
        );
        assert_eq!(stored(dir.path()), state("a", 0));
    }

    #[test]
    fn without_a_boot_id_nothing_is_reported_or_written() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_boot_id(&dir.path().join("missing")), None);
        std::fs::write(dir.path().join("empty"), b" \n").unwrap();
        assert_eq!(read_boot_id(&dir.path().join("empty")), None);
        std::fs::write(dir.path().join("boot_id"), b"1b2c-3d\n").unwrap();
        assert_eq!(
            read_boot_id(&dir.path().join("boot_id")).as_deref(),
            Some("1b2c-3d")
        );

        let mut boots = Boots::start(dir.path(), None, Some(1_700_000_000));
        boots.committed();
        assert!(boots.attributes().is_empty());
        assert!(!dir.path().join("boots.json").exists());
    }
}
