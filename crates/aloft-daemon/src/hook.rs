//! Configured shell commands the daemon asks (the health probe, the consent hook): run with
//! `sh -c`, no input, killed after a timeout; the exit status answers, the first line of
//! standard output says why.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Most characters of a hook's output kept as its reason.
const MAX_REASON: usize = 512;

/// How a hook ended when it did not say yes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The exit code, when it exited (none: it did not start, was killed or timed out).
    pub code: Option<i32>,
    /// What happened, with the first line of its output when it printed one.
    pub reason: String,
}

/// Runs `command` with `env` set; `Ok` when it exits with status 0 within `timeout`. `what`
/// names it in the reasons ("the health probe").
pub fn run(
    what: &str,
    command: &str,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), Refusal> {
    let refused = |code, reason: String| Refusal { code, reason };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| refused(None, format!("{what} did not start: {e}")))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(refused(
                    None,
                    format!("{what} took longer than {} s", timeout.as_secs()),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(refused(None, format!("cannot wait for {what}: {e}"))),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(4096).read_to_end(&mut out);
    }
    let first = String::from_utf8_lossy(&out)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(MAX_REASON).collect::<String>());
    let mut reason = format!("{what} ended with {status}");
    if let Some(line) = first {
        reason.push_str(": ");
        reason.push_str(&line);
    }
    Err(refused(status.code(), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_status_answers_and_the_output_says_why() {
        let t = Duration::from_secs(5);
        assert_eq!(run("the hook", "true", &[], t), Ok(()));
        let e = run("the hook", "echo; echo '  not now  '; exit 75", &[], t).unwrap_err();
        assert_eq!(e.code, Some(75));
        assert_eq!(e.reason, "the hook ended with exit status: 75: not now");
        assert_eq!(
            run(
                "the hook",
                "test \"$WHEN\" = reboot",
                &[("WHEN", "reboot")],
                t
            ),
            Ok(())
        );
        let slow = run("the hook", "sleep 5", &[], Duration::from_millis(200)).unwrap_err();
        assert_eq!(slow.code, None);
        assert!(slow.reason.contains("longer than"), "{slow:?}");
    }
}
