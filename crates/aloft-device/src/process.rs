//! Running a helper program with a time limit, collecting one of its outputs (the health
//! check, the reboot command, the daemon's identity and inventory scripts).

use std::io::Read as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Which output of the child is collected.
#[derive(Debug, Clone, Copy)]
pub enum Collect {
    /// Standard output (stderr is dropped).
    Stdout,
    /// Standard error (stdout is dropped).
    Stderr,
}

/// The most collected; the rest is read and dropped so the child never blocks on a full pipe.
const MAX_COLLECTED: u64 = 1 << 20;

/// Runs `cmd` with no standard input, killing it after `limit`. Returns its exit status and
/// the collected output; `Err` when it could not start or ran out of time.
pub fn run_limited(
    cmd: &mut Command,
    collect: Collect,
    limit: Duration,
) -> Result<(ExitStatus, Vec<u8>), String> {
    cmd.stdin(Stdio::null());
    match collect {
        Collect::Stdout => cmd.stdout(Stdio::piped()).stderr(Stdio::null()),
        Collect::Stderr => cmd.stdout(Stdio::null()).stderr(Stdio::piped()),
    };
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let pipe: Box<dyn std::io::Read + Send> = match collect {
        Collect::Stdout => Box::new(child.stdout.take().expect("piped")),
        Collect::Stderr => Box::new(child.stderr.take().expect("piped")),
    };
    let collector = std::thread::spawn(move || {
        let mut pipe = pipe;
        let mut out = Vec::new();
        let _ = (&mut pipe).take(MAX_COLLECTED).read_to_end(&mut out);
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        out
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok((status, collector.join().unwrap_or_default()))
}
