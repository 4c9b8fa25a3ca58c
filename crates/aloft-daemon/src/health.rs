//! The health probe: a configured shell command whose exit status says whether the device is
//! healthy. Its verdict goes to the server as inventory (`aloft.health`), where a rollout
//! compares the devices it updated with those it did not yet.

use std::time::Duration;

/// The inventory attribute that carries the verdict: `ok` or `failing`.
pub const ATTRIBUTE: &str = "aloft.health";
/// The inventory attribute that says why it fails.
pub const DETAIL: &str = "aloft.health_detail";

/// What the probe said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Exit status 0.
    Ok,
    /// Anything else, and why.
    Failing(String),
}

impl Health {
    /// The value of [`ATTRIBUTE`].
    pub fn word(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failing(_) => "failing",
        }
    }
}

/// Runs `command` ([`crate::hook::run`]); a probe still running after `timeout` is killed and
/// fails.
pub fn probe(command: &str, timeout: Duration) -> Health {
    match crate::hook::run("the health probe", command, &[], timeout) {
        Ok(()) => Health::Ok,
        Err(refusal) => Health::Failing(refusal.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_and_timeouts_decide() {
        let t = Duration::from_secs(5);
        assert_eq!(probe("true", t), Health::Ok);
        assert!(
            matches!(probe("exit 3", t), Health::Failing(why) if why.contains("exit status: 3"))
        );
        let slow = probe("sleep 5", Duration::from_millis(200));
        assert!(
            matches!(&slow, Health::Failing(why) if why.contains("longer than")),
            "{slow:?}"
        );
    }
}
