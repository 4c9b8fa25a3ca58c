//! Wire types of the APIs aloft speaks, shared by the server (`aloft-server`) and the device
//! daemon. They follow Mender's device protocol and core management API field by field, so the
//! JSON they produce is what Mender's own clients and tools expect.
//!
//! This crate holds data only: serde types, a few constants and the RFC 3339 formatting both
//! sides use; no I/O.

pub mod device;
pub mod management;
pub mod time;

/// Every status a device deployment can be in, in Mender's spelling.
pub mod status {
    /// The device has not reported yet.
    pub const PENDING: &str = "pending";
    /// Downloading the artifact.
    pub const DOWNLOADING: &str = "downloading";
    /// Waiting (update control map) before install.
    pub const PAUSE_BEFORE_INSTALLING: &str = "pause_before_installing";
    /// Installing.
    pub const INSTALLING: &str = "installing";
    /// Waiting before the reboot.
    pub const PAUSE_BEFORE_REBOOTING: &str = "pause_before_rebooting";
    /// Rebooting into the new software.
    pub const REBOOTING: &str = "rebooting";
    /// Waiting before the commit.
    pub const PAUSE_BEFORE_COMMITTING: &str = "pause_before_committing";
    /// Final: installed and committed.
    pub const SUCCESS: &str = "success";
    /// Final: failed (and rolled back where possible).
    pub const FAILURE: &str = "failure";
    /// Final: the device already ran the artifact.
    pub const ALREADY_INSTALLED: &str = "already-installed";
    /// Final: no compatible artifact for the device.
    pub const NOARTIFACT: &str = "noartifact";
    /// Final: the deployment was aborted.
    pub const ABORTED: &str = "aborted";
    /// Final: the device was decommissioned.
    pub const DECOMMISSIONED: &str = "decommissioned";

    /// The statuses a device may report.
    pub const REPORTABLE: [&str; 9] = [
        DOWNLOADING,
        PAUSE_BEFORE_INSTALLING,
        INSTALLING,
        PAUSE_BEFORE_REBOOTING,
        REBOOTING,
        PAUSE_BEFORE_COMMITTING,
        SUCCESS,
        FAILURE,
        ALREADY_INSTALLED,
    ];

    /// All 13 statistics keys, in Mender's order.
    pub const ALL: [&str; 13] = [
        SUCCESS,
        PENDING,
        DOWNLOADING,
        REBOOTING,
        INSTALLING,
        FAILURE,
        NOARTIFACT,
        ALREADY_INSTALLED,
        ABORTED,
        DECOMMISSIONED,
        PAUSE_BEFORE_INSTALLING,
        PAUSE_BEFORE_COMMITTING,
        PAUSE_BEFORE_REBOOTING,
    ];

    /// Whether `s` ends a device deployment.
    pub fn is_final(s: &str) -> bool {
        matches!(
            s,
            SUCCESS | FAILURE | ALREADY_INSTALLED | NOARTIFACT | ABORTED | DECOMMISSIONED
        )
    }
}
