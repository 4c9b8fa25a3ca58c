//! Deployment rules: a deployment's status from its devices' statuses, and which status
//! reports a device deployment accepts.

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
}

/// A deployment's status: `finished` once every device ended, `inprogress` once one picked
/// it up, else `pending`.
pub fn status_of(t: Tally) -> &'static str {
    if t.total > 0 && t.done == t.total {
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
    /// The same final status again (a retried report): acknowledged, nothing changes.
    Repeat,
    /// The operator aborted it (or decommissioned the device): the device must stop.
    Stop,
    /// Refused: it already ended otherwise.
    Refuse(String),
}

/// A device reports `new` on a device deployment whose status is `current`.
pub fn on_report(current: &str, new: &str) -> Report {
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
    Report::Record {
        finished: status::is_final(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_status_from_its_devices() {
        let cases = [
            ((0, 0, 0), "pending"),
            ((3, 0, 0), "pending"),
            ((3, 0, 1), "inprogress"),
            ((3, 2, 3), "inprogress"),
            ((3, 3, 3), "finished"),
        ];
        for ((total, done, touched), want) in cases {
            let t = Tally {
                total,
                done,
                touched,
            };
            assert_eq!(status_of(t), want, "{t:?}");
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
            assert_eq!(on_report(current, new), want, "{current} -> {new}");
        }
    }
}
