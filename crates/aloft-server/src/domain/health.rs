//! The health gate of a rollout: the devices it updated compared with its devices not yet
//! updated (the control cohort). A device is unhealthy when its health probe fails (the aloft
//! daemon's `aloft.health` inventory attribute), when it has not checked in for the gate's
//! offline time (any client, stock Mender ones too), or when it rebooted while it was measured
//! ([`rebooted`]: aloft daemons report their boots).

/// One cohort's devices and how many of them are unhealthy, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cohort {
    /// Devices.
    pub devices: u64,
    /// Of which fail their health probe.
    pub failing: u64,
    /// Of which did not check in for the offline time (and do not fail their probe).
    pub offline: u64,
    /// Of which rebooted while measured (and are neither failing nor offline).
    pub rebooted: u64,
}

impl Cohort {
    /// Unhealthy devices.
    pub fn unhealthy(&self) -> u64 {
        self.failing + self.offline + self.rebooted
    }

    /// Counts one device, unhealthy for its first reason only.
    pub fn add(&mut self, failing: bool, offline: bool, rebooted: bool) {
        self.devices += 1;
        if failing {
            self.failing += 1;
        } else if offline {
            self.offline += 1;
        } else if rebooted {
            self.rebooted += 1;
        }
    }
}

/// What a device reported about its boots (aloft daemons; nothing from stock Mender clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Boots {
    /// `aloft.boots_since_update`: boots since the device last committed an update.
    pub since_update: Option<u64>,
    /// When the server stored that count (UNIX µs): a count stored before the device's update
    /// finished is from its previous update.
    pub since_update_at: Option<i64>,
    /// `aloft.booted_at`: when its current boot started, UNIX seconds by its own clock.
    pub booted_at: Option<i64>,
}

/// Slack for the device's clock against the server's when a boot time is compared (µs).
pub const CLOCK_SLACK_US: i64 = 60_000_000;

/// Whether a device rebooted while measured, from `measured_from` (UNIX µs): an updated
/// device's finished update, or the rollout's start for a device not yet updated. An updated
/// device: it booted again after the boot that committed the update (its count, stored since
/// then; no device clock involved). A device not yet updated: its current boot started after
/// `measured_from`, beyond the clock slack. Without a report it never counts.
pub fn rebooted(updated: bool, boots: Boots, measured_from: i64) -> bool {
    if updated {
        boots.since_update.is_some_and(|n| n > 0)
            && boots.since_update_at.is_some_and(|at| at >= measured_from)
    } else {
        boots.booted_at.is_some_and(|s| {
            s.saturating_mul(1_000_000) > measured_from.saturating_add(CLOCK_SLACK_US)
        })
    }
}

fn percent(n: u64, of: u64) -> u64 {
    n * 100 / of.max(1)
}

/// Why the rollout must stop, when the updated cohort's unhealthy share exceeds the control
/// cohort's by more than `margin` percentage points (`u/U − c/C > margin/100`, exactly, in
/// integers); `None` while either cohort is empty.
pub fn compare(updated: Cohort, control: Cohort, margin: u32) -> Option<String> {
    if updated.devices == 0 || control.devices == 0 {
        return None;
    }
    let (u, un) = (i128::from(updated.unhealthy()), i128::from(updated.devices));
    let (c, cn) = (i128::from(control.unhealthy()), i128::from(control.devices));
    if 100 * (u * cn - c * un) <= i128::from(margin) * un * cn {
        return None;
    }
    Some(format!(
        "health: {} of {} updated devices are unhealthy ({}%: {} fail their health probe, {} are offline, {} rebooted) against {} of {} not yet updated ({}%), worse by more than {margin} points",
        updated.unhealthy(),
        updated.devices,
        percent(updated.unhealthy(), updated.devices),
        updated.failing,
        updated.offline,
        updated.rebooted,
        control.unhealthy(),
        control.devices,
        percent(control.unhealthy(), control.devices),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cohort(devices: u64, failing: u64, offline: u64) -> Cohort {
        Cohort {
            devices,
            failing,
            offline,
            rebooted: 0,
        }
    }

    #[test]
    fn the_updated_cohort_must_be_worse_by_more_than_the_margin() {
        let cases = [
            ("equal health", cohort(10, 1, 0), cohort(10, 1, 0), 0, false),
            ("both healthy", cohort(10, 0, 0), cohort(90, 0, 0), 0, false),
            (
                "exactly at the margin",
                cohort(10, 2, 0),
                cohort(10, 0, 0),
                20,
                false,
            ),
            (
                "just above it",
                cohort(10, 2, 1),
                cohort(10, 0, 0),
                20,
                true,
            ),
            ("offline counts", cohort(4, 0, 2), cohort(4, 0, 0), 20, true),
            (
                "reboots count",
                Cohort {
                    rebooted: 2,
                    ..cohort(4, 0, 0)
                },
                cohort(4, 0, 0),
                20,
                true,
            ),
            (
                "the control is as sick",
                cohort(4, 2, 0),
                cohort(8, 4, 0),
                20,
                false,
            ),
            (
                "no control cohort",
                cohort(4, 4, 0),
                cohort(0, 0, 0),
                0,
                false,
            ),
            (
                "nothing updated yet",
                cohort(0, 0, 0),
                cohort(4, 0, 0),
                0,
                false,
            ),
            (
                "rates, not counts",
                cohort(3, 1, 0),
                cohort(300, 10, 0),
                20,
                true,
            ),
        ];
        for (what, u, c, margin, stops) in cases {
            assert_eq!(compare(u, c, margin).is_some(), stops, "{what}");
        }
        assert_eq!(
            compare(cohort(2, 2, 0), cohort(4, 0, 0), 20).unwrap(),
            "health: 2 of 2 updated devices are unhealthy (100%: 2 fail their health probe, 0 are offline, 0 rebooted) against 0 of 4 not yet updated (0%), worse by more than 20 points"
        );
    }

    #[test]
    fn a_device_is_counted_once_for_its_first_reason() {
        let mut c = Cohort::default();
        c.add(true, true, true);
        c.add(false, true, true);
        c.add(false, false, true);
        c.add(false, false, false);
        assert_eq!(
            c,
            Cohort {
                rebooted: 1,
                ..cohort(4, 1, 1)
            }
        );
        assert_eq!(c.unhealthy(), 3);
    }

    #[test]
    fn reboots_count_after_the_update_or_after_the_rollout_started() {
        let start = 1_000_000_000_000_000; // UNIX µs
        // Counts stored after the update finished at `start`, unless a case says otherwise.
        let boots = |since_update, booted_at| Boots {
            since_update,
            since_update_at: Some(start + 1),
            booted_at,
        };
        let s = start / 1_000_000;
        let cases = [
            (
                "updated, the update's own boot",
                true,
                boots(Some(0), Some(s + 600)),
                false,
            ),
            (
                "updated, booted again",
                true,
                boots(Some(1), Some(s + 600)),
                true,
            ),
            (
                "updated, the count from before its update",
                true,
                Boots {
                    since_update_at: Some(start - 1),
                    ..boots(Some(1), Some(s - 600))
                },
                false,
            ),
            ("updated, a Mender client", true, boots(None, None), false),
            (
                "updated, boot time alone",
                true,
                boots(None, Some(s + 600)),
                false,
            ),
            (
                "control, booted before the start",
                false,
                boots(Some(3), Some(s - 600)),
                false,
            ),
            (
                "control, within the clock slack",
                false,
                boots(None, Some(s + 60)),
                false,
            ),
            (
                "control, booted after the start",
                false,
                boots(None, Some(s + 61)),
                true,
            ),
            ("control, a Mender client", false, boots(None, None), false),
        ];
        for (what, updated, b, want) in cases {
            assert_eq!(rebooted(updated, b, start), want, "{what}");
        }
    }
}
