//! The update state that survives power cuts, and the pure decision of what to do with it when
//! the client starts again.
//!
//! Owns: the persisted records (`state.json`: the update in progress and the last outcome;
//! `provides.json`: what is installed) written atomically (temporary file, fsync, rename, fsync
//! of the folder), and [`decide`]: a pure function of (stored phase, what the bootloader and the
//! boot id say) → next step, tested as a table. Must not: do I/O in [`decide`].
//!
//! Write-ahead rule: the phase is persisted **before** the action it names, and every action is
//! idempotent, so a cut anywhere repeats at most the last action.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::boot::control::{BootState, SlotId};

/// Where an update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Writing the payload (slot or module download); nothing is armed yet.
    Installing,
    /// Rootfs written, verified, bootloader armed (or about to be): reboot into it.
    Installed,
    /// Health check passed; committing (bootloader, then provides).
    Committing,
    /// Going back to the old slot; a reboot into it is needed.
    RollingBack,
}

/// The update in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Phase.
    pub phase: Phase,
    /// Artifact being installed.
    pub artifact_name: String,
    /// Its group.
    pub artifact_group: Option<String>,
    /// Its payload type.
    pub payload_type: String,
    /// Provides to store on commit (header-info and type-info merged).
    pub provides: BTreeMap<String, String>,
    /// Clears patterns to apply on commit.
    pub clears: Option<Vec<String>>,
    /// Slot the device ran when the update started.
    pub from_slot: Option<SlotId>,
    /// Slot being installed.
    pub to_slot: Option<SlotId>,
    /// Boot id when the phase was entered (tells whether a reboot happened since).
    pub boot_id: String,
    /// Why a rollback is happening.
    pub reason: Option<String>,
    /// Update Modules: `ArtifactInstall` was called (a failure now needs rollback or leaves
    /// the device inconsistent).
    #[serde(default)]
    pub install_started: bool,
    /// Update Modules: the answer to `SupportsRollback`.
    #[serde(default)]
    pub supports_rollback: Option<bool>,
}

/// How the last update ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The artifact.
    pub artifact_name: String,
    /// Installed and committed.
    pub success: bool,
    /// Why it failed.
    pub reason: Option<String>,
}

/// `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The update in progress.
    pub pending: Option<Pending>,
    /// The last finished update.
    pub last: Option<Outcome>,
}

/// `provides.json`: what the device runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// Current artifact name.
    pub artifact_name: String,
    /// Current artifact group.
    pub artifact_group: Option<String>,
    /// Type-info provides.
    pub provides: BTreeMap<String, String>,
}

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// I/O.
    #[error("i/o error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A state file that does not parse (never written half: it is replaced by rename).
    #[error("corrupt state file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

/// Reads a JSON record, `Default` when the file does not exist.
pub fn load<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(StateError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Moves a record that does not parse out of the way, as `<name>.corrupt` (replacing an older
/// one), so that it is kept for forensics and never read again; returns the new path.
pub fn set_aside(path: &Path) -> Result<PathBuf, StateError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".corrupt");
    let kept = path.with_file_name(name);
    std::fs::rename(path, &kept).map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(kept)
}

/// Writes a JSON record atomically.
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).expect("state serialises");
    crate::boot::replace_file(path, &bytes).map_err(|e| match e {
        crate::boot::EnvError::Io { path, source } => StateError::Io { path, source },
        other => StateError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

/// What the client should do at start (or on `commit`/`resume`) with a pending rootfs update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing pending.
    Idle,
    /// No reboot since the phase was entered: redo the phase's action (idempotent) and wait
    /// for the reboot.
    AwaitReboot,
    /// The new slot booted on trial: run the health check, then commit or roll back.
    Verify,
    /// Finish a commit that was cut short.
    FinishCommit,
    /// The bootloader returned to the old slot by itself: record the failure.
    FellBack,
    /// The rollback reboot landed on the old slot: record the failure with its reason.
    RollbackDone,
    /// The rollback has not taken effect: point the bootloader back again and reboot.
    RedoRollback,
    /// The write was interrupted before anything was armed: drop it and record the failure.
    Abandon,
}

/// The pure decision, from the stored record, the current boot id and the bootloader variables
/// (`booted`: the slot running now).
pub fn decide(
    pending: Option<&Pending>,
    boot_id: &str,
    booted: SlotId,
    env: BootState,
) -> Decision {
    let Some(p) = pending else {
        return Decision::Idle;
    };
    let rebooted = p.boot_id != boot_id;
    match p.phase {
        Phase::Installing => Decision::Abandon,
        Phase::Installed | Phase::RollingBack if !rebooted => Decision::AwaitReboot,
        Phase::Installed => {
            if Some(booted) == p.to_slot && env.upgrade_available {
                Decision::Verify
            } else if Some(booted) == p.to_slot {
                // Someone (an operator with fw_setenv, an earlier cut commit) already made it permanent.
                Decision::FinishCommit
            } else {
                Decision::FellBack
            }
        }
        Phase::Committing => Decision::FinishCommit,
        Phase::RollingBack => {
            if Some(booted) == p.from_slot {
                Decision::RollbackDone
            } else {
                Decision::RedoRollback
            }
        }
    }
}

/// Applies `clears` then the new provides to the stored ones, as the Mender client does on
/// commit: with no clears list, every stored type-info provide is replaced.
pub fn merge_provides(
    stored: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    clears: Option<&[String]>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = match clears {
        None | Some([]) => BTreeMap::new(),
        Some(patterns) => stored
            .iter()
            .filter(|(k, _)| !patterns.iter().any(|p| wildcard_match(p, k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    out.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// `*` matches any run of characters, `\` makes the next one literal; the whole key must match.
fn wildcard_match(pattern: &str, key: &str) -> bool {
    fn go(p: &[char], k: &[char]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some(('*', rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
            Some(('\\', rest)) if !rest.is_empty() => {
                k.first() == Some(&rest[0]) && go(&rest[1..], &k[1..])
            }
            Some((c, rest)) => k.first() == Some(c) && go(rest, &k[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let k: Vec<char> = key.chars().collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(phase: Phase) -> Pending {
        Pending {
            phase,
            artifact_name: "new".into(),
            artifact_group: None,
            payload_type: "rootfs-image".into(),
            provides: BTreeMap::new(),
            clears: None,
            from_slot: Some(SlotId::A),
            to_slot: Some(SlotId::B),
            boot_id: "boot-1".into(),
            reason: None,
            install_started: false,
            supports_rollback: None,
        }
    }

    fn env(upgrade_available: bool) -> BootState {
        BootState {
            slot: None,
            upgrade_available,
            bootcount: 0,
        }
    }

    #[test]
    fn decisions_after_every_phase_and_boot() {
        use Decision::*;
        use Phase::*;
        let cases = [
            (None, "boot-1", SlotId::A, false, Idle),
            (Some(Installing), "boot-1", SlotId::A, false, Abandon),
            (Some(Installing), "boot-2", SlotId::B, true, Abandon),
            (Some(Installed), "boot-1", SlotId::A, true, AwaitReboot),
            (Some(Installed), "boot-2", SlotId::B, true, Verify),
            (Some(Installed), "boot-2", SlotId::B, false, FinishCommit),
            (Some(Installed), "boot-2", SlotId::A, false, FellBack),
            (Some(Committing), "boot-2", SlotId::B, true, FinishCommit),
            (Some(RollingBack), "boot-2", SlotId::B, true, AwaitReboot),
            (Some(RollingBack), "boot-3", SlotId::A, false, RollbackDone),
            (Some(RollingBack), "boot-3", SlotId::B, false, RedoRollback),
        ];
        for (phase, boot_id, booted, ua, want) in cases {
            let mut p = phase.map(pending);
            if let Some(p) = &mut p
                && p.phase == RollingBack
            {
                p.boot_id = "boot-2".into();
            }
            assert_eq!(
                decide(p.as_ref(), boot_id, booted, env(ua)),
                want,
                "{phase:?} {boot_id} {booted}"
            );
        }
    }

    #[test]
    fn clears_follow_mender_semantics() {
        let stored: BTreeMap<String, String> = [
            ("rootfs-image.version", "1"),
            ("rootfs-image.checksum", "c1"),
            ("app.version", "7"),
            ("a*b", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let new: BTreeMap<String, String> =
            [("rootfs-image.version".to_owned(), "2".to_owned())].into();
        let merged = merge_provides(&stored, &new, Some(&["rootfs-image.*".to_owned()]));
        assert_eq!(merged.get("app.version").map(String::as_str), Some("7"));
        assert!(!merged.contains_key("rootfs-image.checksum"));
        assert_eq!(merged["rootfs-image.version"], "2");
        assert_eq!(
            merge_provides(&stored, &new, None),
            new,
            "no clears: replace all"
        );
        assert!(!merge_provides(&stored, &new, Some(&["a\\*b".to_owned()])).contains_key("a*b"));
        assert!(
            merge_provides(&stored, &new, Some(&["a\\*b".to_owned()])).contains_key("app.version")
        );
    }
}
