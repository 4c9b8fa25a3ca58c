//! The health probe: a configured shell command whose exit status says whether the device is
//! healthy. Its verdict goes to the server as inventory (`aloft.health`), where a rollout
//! compares the devices it updated with those it did not yet.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Runs `command` with `sh -c`; a probe still running after `timeout` is killed and fails.
pub fn probe(command: &str, timeout: Duration) -> Health {
    let mut child = match Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Health::Failing(format!("the health probe did not start: {e}")),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Health::Ok,
            Ok(Some(status)) => {
                return Health::Failing(format!("the health probe ended with {status}"));
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Health::Failing(format!(
                    "the health probe took longer than {} s",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Health::Failing(format!("cannot wait for the health probe: {e}")),
        }
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
