//! Mender's A/B boot protocol on top of an [`EnvStore`]: the variables existing Mender U-Boot
//! and GRUB boot scripts read.
//!
//! - try a slot once: `mender_boot_part=<part>`, `mender_boot_part_hex=<hex>`,
//!   `upgrade_available=1`, `bootcount=0`; the bootloader counts the boot and falls back to the
//!   other slot on the next one if nobody committed;
//! - commit: `upgrade_available=0`, `bootcount=0`;
//! - revert: point `mender_boot_part` back, `upgrade_available=0`, `bootcount=0`.

use serde::{Deserialize, Serialize};

use super::{EnvStore, Result};

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotId {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl SlotId {
    /// The other slot.
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

impl std::fmt::Display for SlotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::A => "a",
            Self::B => "b",
        })
    }
}

/// What the bootloader environment says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootState {
    /// The slot `mender_boot_part` names (`None` if it names neither).
    pub slot: Option<SlotId>,
    /// `upgrade_available=1`: a slot is on trial.
    pub upgrade_available: bool,
    /// `bootcount`.
    pub bootcount: u32,
}

/// Mender's variables over a bootloader environment.
pub struct BootControl {
    env: Box<dyn EnvStore + Send + Sync>,
    parts: [u32; 2],
}

impl BootControl {
    /// `parts`: the partition numbers of slots A and B.
    pub fn new(env: Box<dyn EnvStore + Send + Sync>, parts: [u32; 2]) -> Self {
        Self { env, parts }
    }

    fn part(&self, slot: SlotId) -> u32 {
        self.parts[usize::from(slot == SlotId::B)]
    }

    /// Reads the boot variables.
    pub fn state(&self) -> Result<BootState> {
        let vars = self.env.load()?;
        let part: Option<u32> = vars
            .get("mender_boot_part")
            .and_then(|p| p.trim().parse().ok());
        let slot = part.and_then(|p| {
            if p == self.parts[0] {
                Some(SlotId::A)
            } else if p == self.parts[1] {
                Some(SlotId::B)
            } else {
                None
            }
        });
        Ok(BootState {
            slot,
            upgrade_available: vars
                .get("upgrade_available")
                .is_some_and(|v| v.trim() == "1"),
            bootcount: vars
                .get("bootcount")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
        })
    }

    fn point(&self, slot: SlotId, trial: bool) -> Result<()> {
        let part = self.part(slot);
        self.env
            .update(&mut |v| {
                v.insert("mender_boot_part".into(), part.to_string());
                v.insert("mender_boot_part_hex".into(), format!("{part:x}"));
                v.insert(
                    "upgrade_available".into(),
                    if trial { "1" } else { "0" }.into(),
                );
                v.insert("bootcount".into(), "0".into());
            })
            .map(drop)
    }

    /// Boots `slot` once on trial at the next reboot.
    pub fn try_slot(&self, slot: SlotId) -> Result<()> {
        self.point(slot, true)
    }

    /// Makes the slot on trial permanent.
    pub fn commit(&self) -> Result<()> {
        self.env
            .update(&mut |v| {
                v.insert("upgrade_available".into(), "0".into());
                v.insert("bootcount".into(), "0".into());
            })
            .map(drop)
    }

    /// Points the bootloader back at `slot`, permanently.
    pub fn revert(&self, slot: SlotId) -> Result<()> {
        self.point(slot, false)
    }
}
