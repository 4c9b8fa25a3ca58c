//! The control socket: `aloft check-update` and `aloft send-inventory` ask the running daemon
//! to act now. A Unix socket, owner-only (mode 0600), one line per request, one line back.
//! `SIGUSR1` and `SIGUSR2` do the same, as for Mender's daemon.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::time::Duration;

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Check for an update now.
    CheckUpdate,
    /// Send the inventory now.
    SendInventory,
}

impl Request {
    /// The line sent on the socket.
    pub fn word(self) -> &'static str {
        match self {
            Self::CheckUpdate => "check-update",
            Self::SendInventory => "send-inventory",
        }
    }
}

/// Binds `path` (a stale socket is replaced) and serves it on a thread; requests go to `tx`.
pub fn listen(path: &Path, tx: Sender<Request>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket that answers belongs to a running daemon: never take it over.
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("another aloft daemon answers on {}", path.display()),
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Owner-only from the start: no window in which others could connect.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(&stream, &tx);
            }
        })?;
    Ok(())
}

fn serve(stream: &UnixStream, tx: &Sender<Request>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(std::io::Read::take(stream, 256)).read_line(&mut line)?;
    let answer = match line.trim() {
        "check-update" => tx.send(Request::CheckUpdate).map(|()| "ok"),
        "send-inventory" => tx.send(Request::SendInventory).map(|()| "ok"),
        _ => Ok("error: unknown request"),
    }
    .unwrap_or("error: the daemon is stopping");
    let mut writer = stream;
    writer.write_all(format!("{answer}\n").as_bytes())
}

/// Forwards `SIGUSR1` (check for an update) and `SIGUSR2` (send the inventory) to `tx`, as
/// Mender's daemon understands them.
pub fn forward_signals(tx: Sender<Request>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGUSR1, SIGUSR2};
    let mut signals = signal_hook::iterator::Signals::new([SIGUSR1, SIGUSR2])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let request = if signal == SIGUSR1 {
                    Request::CheckUpdate
                } else {
                    Request::SendInventory
                };
                if tx.send(request).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

/// Sends `request` to the daemon at `path`; its answer.
pub fn send(path: &Path, request: Request) -> Result<String, String> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach the daemon at {}: {e} (is `aloft daemon` running?)",
            path.display()
        )
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{}\n", request.word()).as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    let answer = answer.trim().to_owned();
    if answer == "ok" {
        Ok(answer)
    } else {
        Err(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn requests_reach_the_daemon_through_an_owner_only_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aloft.sock");
        let (tx, rx) = std::sync::mpsc::channel();
        listen(&path, tx).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        send(&path, Request::CheckUpdate).unwrap();
        send(&path, Request::SendInventory).unwrap();
        assert_eq!(rx.recv().unwrap(), Request::CheckUpdate);
        assert_eq!(rx.recv().unwrap(), Request::SendInventory);
        assert!(
            send(&dir.path().join("none.sock"), Request::CheckUpdate)
                .unwrap_err()
                .contains("is `aloft daemon` running")
        );
    }
}
