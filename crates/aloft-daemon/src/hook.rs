//! Configured shell commands the daemon asks (the health probe, the consent hook): run with
//! `sh -c`, no input, killed after a timeout; the exit status answers, the first line of
//! standard output says why.

use std::io::{Read as _, Seek as _};
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
    // Output goes to an unlinked file, not a pipe: a hook that prints much never blocks on a
    // full pipe, and one whose background child keeps the output open never hangs the read.
    let mut out_file = tempfile::tempfile().map_err(|e| {
        refused(
            None,
            format!("{what}: cannot make a file for its output: {e}"),
        )
    })?;
    let stdout = out_file
        .try_clone()
        .map_err(|e| refused(None, format!("{what}: cannot share its output file: {e}")))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| refused(None, format!("{what} did not start: {e}")))?;
    // A timeout too large for the clock waits as long as it may.
    let started = Instant::now();
    let deadline = started.checked_add(timeout);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => {
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
    if out_file.rewind().is_ok() {
        let _ = out_file.take(4096).read_to_end(&mut out);
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
        // Much output, and a background child that keeps it open, neither block nor hang.
        let loud = "head -c 200000 /dev/zero | tr '\\0' x; echo; exit 3";
        let e = run("the hook", loud, &[], t).unwrap_err();
        assert_eq!(e.code, Some(3), "{e:?}");
        let lingering = run("the hook", "(sleep 30 &) ; echo busy; exit 1", &[], t).unwrap_err();
        assert!(lingering.reason.ends_with(": busy"), "{lingering:?}");
        assert!(run("the hook", "true", &[], Duration::MAX).is_ok());
        let slow = run("the hook", "sleep 5", &[], Duration::from_millis(200)).unwrap_err();
        assert_eq!(slow.code, None);
        assert!(slow.reason.contains("longer than"), "{slow:?}");
    }
}
