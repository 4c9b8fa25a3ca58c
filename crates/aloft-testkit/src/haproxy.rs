//! `HAProxy` (Debian's package) in front of several server replicas for tests: TCP mode (TLS
//! passes through to the replicas), round robin, a replica that stops answering is taken out
//! within a second and a refused connection is retried on another.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running load balancer, stopped when dropped.
pub struct Haproxy {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// A free loopback port (for a process started later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Haproxy {
    /// Starts it for `backends` and waits until it accepts connections.
    pub fn start(backends: &[SocketAddr]) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let mut cfg = format!(
            "global\n    maxconn 4096\n\
             defaults\n    mode tcp\n    retries 3\n    option redispatch\n    \
             timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n\
             frontend devices\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
             backend replicas\n    balance roundrobin\n"
        );
        for (i, b) in backends.iter().enumerate() {
            let _ = writeln!(
                cfg,
                "    server r{} {b} check inter 300ms fall 1 rise 2",
                i + 1
            );
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("haproxy (Debian package haproxy): {e}"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return Err("haproxy did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            child,
            addr,
            _dir: dir,
        })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
