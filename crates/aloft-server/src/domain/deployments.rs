//! Deployment rules: a deployment's status from its devices' statuses, which devices a
//! dynamic deployment still takes, and which status reports a device deployment accepts (and
//! when a failed device starts over).

use aloft_api::status;

/// Counts of a deployment's device deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Devices targeted.
    pub total: u64,
    /// Devices that ended (a final status).
    pub done: u64,
    /// Devices that picked the deployment up or reported.
    pub touched: u64,
    /// Whether more devices may join.
    pub members: Members,
}

/// Who a deployment's devices are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Members {
    /// The devices it was created with.
    #[default]
    Fixed,
    /// A dynamic deployment's: devices matching its filter join while it runs, up to `max`.
    Open {
        /// The most devices it takes.
        max: Option<u64>,
    },
}

impl Members {
    /// Whether one more device may join a deployment that has `total` devices.
    #[must_use]
    pub fn may_join(self, total: u64) -> bool {
        match self {
            Self::Fixed => false,
            Self::Open { max } => max.is_none_or(|m| total < m),
        }
    }
}

/// A deployment's status: `finished` once every device ended and no more may join (a
/// dynamic deployment without `max_devices` runs until it is aborted), `inprogress` once one
/// picked it up, else `pending`.
pub fn status_of(t: Tally) -> &'static str {
    if t.total > 0 && t.done == t.total && !t.members.may_join(t.total) {
        "finished"
    } else if t.touched > 0 {
        "inprogress"
    } else {
        "pending"
    }
}

/// What a status report of a device does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Recorded; `finished` when it ends the device deployment.
    Record {
        /// The status is final.
        finished: bool,
    },
    /// A failure with retries left: the device starts over (back to `pending`, its artifact
    /// chosen again on its next poll, through the rollout's gates).
    Retry,
    /// The same final status again (a retried report): acknowledged, nothing changes.
    Repeat,
    /// The operator aborted it (or decommissioned the device): the device must stop.
    Stop,
    /// Refused: it already ended otherwise.
    Refuse(String),
}

/// Where a device deployment stands in its attempts (Mender's `retries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attempts {
    /// How many times it started over so far.
    pub retried: u32,
    /// How many times it may (the deployment's `retries`).
    pub retries: u32,
    /// Whether the current attempt was handed out (an artifact assigned since the last start).
    pub handed_out: bool,
}

/// The most `retries` a deployment may have.
pub const MAX_RETRIES: u32 = 100;

/// A device reports `new` on a device deployment whose status is `current`.
pub fn on_report(current: &str, new: &str, a: Attempts) -> Report {
    if current == status::ABORTED || current == status::DECOMMISSIONED {
        return Report::Stop;
    }
    if status::is_final(current) {
        if current == new {
            return Report::Repeat;
        }
        return Report::Refuse(format!(
            "the deployment already ended with status {current}"
        ));
    }
    // Started over and not handed out again: a final report can only be the last attempt's,
    // sent again (its answer was lost). It must not end the new attempt.
    if current == status::PENDING && a.retried > 0 && !a.handed_out && status::is_final(new) {
        return Report::Repeat;
    }
    if new == status::FAILURE && a.retried < a.retries {
        return Report::Retry;
    }
    Report::Record {
        finished: status::is_final(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_status_from_its_devices() {
        let fixed = Members::Fixed;
        let open = Members::Open { max: None };
        let cap3 = Members::Open { max: Some(3) };
        let cap4 = Members::Open { max: Some(4) };
        let cases = [
            ((0, 0, 0, fixed), "pending"),
            ((3, 0, 0, fixed), "pending"),
            ((3, 0, 1, fixed), "inprogress"),
            ((3, 2, 3, fixed), "inprogress"),
            ((3, 3, 3, fixed), "finished"),
            // A dynamic deployment waits for more devices, unless its cap is reached.
            ((3, 3, 3, open), "inprogress"),
            ((3, 3, 3, cap4), "inprogress"),
            ((3, 3, 3, cap3), "finished"),
            ((3, 2, 3, cap3), "inprogress"),
            ((1, 0, 0, open), "pending"),
        ];
        for ((total, done, touched, members), want) in cases {
            let t = Tally {
                total,
                done,
                touched,
                members,
            };
            assert_eq!(status_of(t), want, "{t:?}");
        }
    }

    #[test]
    fn who_may_join() {
        let cases = [
            (Members::Fixed, 0, false),
            (Members::Open { max: None }, 1_000_000, true),
            (Members::Open { max: Some(2) }, 1, true),
            (Members::Open { max: Some(2) }, 2, false),
            (Members::Open { max: Some(0) }, 0, false),
        ];
        for (members, total, want) in cases {
            assert_eq!(members.may_join(total), want, "{members:?} with {total}");
        }
    }

    #[test]
    fn which_reports_are_accepted() {
        let rec = |finished| Report::Record { finished };
        let cases = [
            ("pending", "downloading", rec(false)),
            ("downloading", "installing", rec(false)),
            ("installing", "success", rec(true)),
            ("rebooting", "failure", rec(true)),
            ("success", "success", Report::Repeat),
            ("failure", "failure", Report::Repeat),
            (
                "success",
                "failure",
                Report::Refuse("the deployment already ended with status success".into()),
            ),
            ("aborted", "success", Report::Stop),
            ("decommissioned", "downloading", Report::Stop),
        ];
        for (current, new, want) in cases {
            assert_eq!(
                on_report(current, new, Attempts::default()),
                want,
                "{current} -> {new}"
            );
        }
    }

    #[test]
    fn a_failed_device_starts_over_while_retries_are_left() {
        let rec = |finished| Report::Record { finished };
        let at = |retried, retries, handed_out| Attempts {
            retried,
            retries,
            handed_out,
        };
        let cases = [
            // (current, new, attempts, what happens)
            ("installing", "failure", at(0, 1, true), Report::Retry),
            ("rebooting", "failure", at(1, 2, true), Report::Retry),
            ("installing", "failure", at(1, 1, true), rec(true)),
            ("installing", "failure", at(0, 0, true), rec(true)),
            ("installing", "success", at(0, 3, true), rec(true)),
            // Handed out again and failed before its first progress report.
            ("pending", "failure", at(1, 3, true), Report::Retry),
            ("pending", "failure", at(3, 3, true), rec(true)),
            // The last attempt's report again, before the next attempt was handed out.
            ("pending", "failure", at(1, 3, false), Report::Repeat),
            ("pending", "success", at(1, 3, false), Report::Repeat),
            ("pending", "downloading", at(1, 3, false), rec(false)),
            // Nothing brings back an ended or aborted one.
            ("failure", "failure", at(0, 3, true), Report::Repeat),
            ("aborted", "failure", at(0, 3, true), Report::Stop),
        ];
        for (current, new, attempts, want) in cases {
            assert_eq!(
                on_report(current, new, attempts),
                want,
                "{current} -> {new} {attempts:?}"
            );
        }
    }
}
