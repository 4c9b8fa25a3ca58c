//! End to end with aloft's own daemon: simulated A/B devices made by `aloftctl sim create
//! --server`, each running `aloft --config DIR/aloft.toml daemon` against a real server on
//! loopback with TLS. The binaries are the workspace's own (`cargo test --workspace` builds
//! them before the tests run).

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aloft_server::http::Settings;
use serde_json::{Value, json};

use crate::common::{FakeServer, TestApp, mender_single_file, wait_for};

/// A binary of this workspace, next to the test executable's folder.
pub(crate) fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace, or run cargo test --workspace)",
        path.display()
    );
    path
}

/// A simulated device and its daemon.
pub(crate) struct SimDaemon {
    pub(crate) dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Drop for SimDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

impl SimDaemon {
    /// Makes the device (`aloftctl sim create --server`) without starting its daemon.
    pub(crate) fn create(app: &TestApp, dir: &Path, device_type: &str, extra_toml: &str) -> Self {
        let server = FakeServer {
            addr: app.addr,
            cert: app.cert.clone(),
        };
        Self::create_for(&server, dir, device_type, extra_toml)
    }

    /// The same for any server.
    pub(crate) fn create_for(
        server: &FakeServer,
        dir: &Path,
        device_type: &str,
        extra_toml: &str,
    ) -> Self {
        let out = Command::new(bin("aloftctl"))
            .args(["sim", "create"])
            .arg(dir)
            .args(["--device-type", device_type, "--slot-size", "16M"])
            .args([
                "--server",
                &format!("https://127.0.0.1:{}", server.addr.port()),
            ])
            .arg("--server-cert")
            .arg(&server.cert)
            .args(["--poll-seconds", "1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !extra_toml.is_empty() {
            let path = dir.join("aloft.toml");
            let mut toml = std::fs::read_to_string(&path).unwrap();
            for line in extra_toml.lines() {
                let key = line.split('=').next().unwrap().trim();
                // Replace the key if the section has it already.
                let kept: Vec<&str> = toml
                    .lines()
                    .filter(|l| l.split('=').next().unwrap().trim() != key)
                    .collect();
                toml = kept.join("\n") + "\n" + line + "\n";
            }
            std::fs::write(&path, toml).unwrap();
        }
        Self {
            dir: std::fs::canonicalize(dir).unwrap(),
            child: None,
            starts: 0,
        }
    }

    pub(crate) fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let child = Command::new(bin("aloft"))
            .arg("--config")
            .arg(self.dir.join("aloft.toml"))
            .arg("daemon")
            .env("ALOFT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The last lines of the daemon's log, for a failure message.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `kill -9`.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub(crate) fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub(crate) fn mac(&self) -> String {
        let script =
            std::fs::read_to_string(self.dir.join("identity/mender-device-identity")).unwrap();
        script
            .lines()
            .find_map(|l| l.strip_prefix("echo mac="))
            .unwrap()
            .to_owned()
    }

    /// `aloft status --json`.
    pub(crate) fn status(&self) -> Value {
        let out = Command::new(bin("aloft"))
            .arg("--config")
            .arg(self.dir.join("aloft.toml"))
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The download record of the daemon.
    pub(crate) fn partial(&self) -> Value {
        std::fs::read(self.dir.join("data/daemon/download.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }
}

/// Accepts the pending device whose identity has `mac`; returns its id.
pub(crate) fn accept(app: &TestApp, mac: &str) -> String {
    let device = wait_for(60, "the daemon's auth request", || {
        let list = app
            .get("/api/management/v2/devauth/devices?status=pending&per_page=500")
            .expect(200)
            .json();
        list.as_array()?
            .iter()
            .find(|d| d["identity_data"]["mac"] == mac)
            .cloned()
    });
    let id = device["id"].as_str().unwrap().to_owned();
    let auth_set = device["auth_sets"][0]["id"].as_str().unwrap();
    app.put(
        &format!("/api/management/v2/devauth/devices/{id}/auth/{auth_set}/status"),
        &json!({"status": "accepted"}),
    )
    .expect(204);
    id
}

pub(crate) fn inventory(app: &TestApp, device: &str, name: &str) -> Option<Value> {
    let r = app.get(&format!("/api/management/v1/inventory/devices/{device}"));
    if r.status != 200 {
        return None;
    }
    r.json()["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name && a["scope"] == "inventory")
        .map(|a| a["value"].clone())
}

/// A rootfs artifact of `size` random bytes, written by aloftctl.
pub(crate) fn rootfs_artifact(dir: &Path, name: &str, device_type: &str, size: usize) -> PathBuf {
    let image = dir.join(format!("{name}.img"));
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ name.len() as u64;
    for b in &mut data {
        // xorshift: incompressible enough that the artifact is about `size` bytes.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&image, &data).unwrap();
    let out = dir.join(format!("{name}.mender"));
    let status = Command::new(bin("aloftctl"))
        .args(["artifact", "write", "rootfs-image", "--no-progress", "-f"])
        .arg(&image)
        .args(["-n", name, "-t", device_type, "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// The device's status in a deployment, once final.
pub(crate) fn final_status(app: &TestApp, deployment: &str, device: &str, secs: u64) -> String {
    wait_for(secs, "the device's final status", || {
        let list = app
            .get(&format!(
                "/api/management/v1/deployments/deployments/{deployment}/devices"
            ))
            .expect(200)
            .json();
        let s = list.as_array()?.iter().find(|d| d["id"] == device)?["status"]
            .as_str()?
            .to_owned();
        aloft_api::status::is_final(&s).then_some(s)
    })
}

pub(crate) fn device_log(app: &TestApp, deployment: &str, device: &str) -> String {
    app.get(&format!(
        "/api/management/v1/deployments/deployments/{deployment}/devices/{device}/log"
    ))
    .expect(200)
    .text()
}

#[test]
fn daemon_installs_a_rootfs_and_a_module_and_reports_a_failed_boot() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let mut dev = SimDaemon::create(&app, &work.path().join("dev1"), "sim-board", "");
    dev.start();
    let device = accept(&app, &dev.mac());
    let name = wait_for(60, "the daemon's inventory", || {
        inventory(&app, &device, "artifact_name")
    });
    assert_eq!(name, "factory-1");
    assert_eq!(
        inventory(&app, &device, "device_type"),
        Some(json!("sim-board"))
    );
    assert_eq!(inventory(&app, &device, "kernel"), Some(json!("aloft-sim")));

    // 1. A rootfs update: download, install into slot B, reboot through the simulator,
    //    health check, commit, success.
    let v2 = rootfs_artifact(work.path(), "release-2", "sim-board", 3 << 20);
    app.upload_ok(&v2);
    let d1 = app.deploy("rootfs", "release-2", &[&device]);
    assert_eq!(
        final_status(&app, &d1, &device, 120),
        "success",
        "{}",
        dev.log()
    );
    let status = dev.status();
    assert_eq!(status["artifact_name"], "release-2");
    assert_eq!(status["booted_slot"], "b");
    assert_eq!(
        std::fs::read(dev.dir.join("slot-b.img")).unwrap()[..(3 << 20)],
        std::fs::read(work.path().join("release-2.img")).unwrap()[..]
    );
    wait_for(30, "the new artifact in the inventory", || {
        (inventory(&app, &device, "artifact_name")? == "release-2").then_some(())
    });
    assert!(dev.running(), "the daemon keeps running after the reboot");

    // 2. An Update Module (single-file, made by mender-artifact) without a reboot.
    let dest = work.path().join("installed");
    std::fs::create_dir_all(&dest).unwrap();
    let module = mender_single_file(
        work.path(),
        "app-3",
        "sim-board",
        &dest,
        b"hello from app-3\n",
    );
    app.upload_ok(&module);
    let d2 = app.deploy("module", "app-3", &[&device]);
    assert_eq!(
        final_status(&app, &d2, &device, 60),
        "success",
        "{}",
        dev.log()
    );
    assert_eq!(
        std::fs::read(dest.join("payload.txt")).unwrap(),
        b"hello from app-3\n"
    );
    assert_eq!(dev.status()["artifact_name"], "app-3");

    // 3. A new slot that does not boot: the bootloader falls back, the daemon says so.
    let v4 = rootfs_artifact(work.path(), "release-4", "sim-board", 2 << 20);
    app.upload_ok(&v4);
    let broken = Command::new(bin("aloftctl"))
        .args(["sim", "break"])
        .arg(&dev.dir)
        .arg("a")
        .status()
        .unwrap();
    assert!(broken.success());
    let d3 = app.deploy("broken", "release-4", &[&device]);
    assert_eq!(
        final_status(&app, &d3, &device, 120),
        "failure",
        "{}",
        dev.log()
    );
    let log = device_log(&app, &d3, &device);
    assert!(log.contains("did not boot"), "{log}");
    assert!(log.contains("release-4"), "{log}");
    let status = dev.status();
    assert_eq!(status["artifact_name"], "app-3");
    assert_eq!(status["booted_slot"], "b");
    let history = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/devices/{device}"
        ))
        .expect(200)
        .json();
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["device"]["status"].as_str().unwrap_or(""))
        .collect();
    assert!(
        statuses.contains(&"failure") && statuses.iter().filter(|s| **s == "success").count() == 2,
        "{history}"
    );
    assert!(dev.running());
}

/// What the proxy does to one download request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Closes the connection after this share of the body.
    Cut(f64),
    /// Stops sending after this share of the body and holds the connection for 4 s.
    Stall(f64),
    /// Answers 503.
    Unavailable,
}

/// A plain-HTTP proxy for the download links (the server's public URL points at it) that
/// forwards to the server over TLS and breaks the downloads as scheduled.
struct FaultyProxy {
    sent: Arc<AtomicU64>,
    requests: Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

impl FaultyProxy {
    fn bind() -> (TcpListener, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    fn start(listener: TcpListener, app: &TestApp, faults: Vec<Fault>) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let faults = Arc::new(faults);
        let next = Arc::new(AtomicUsize::new(0));
        let agent = app.agent.clone();
        let upstream = format!("https://127.0.0.1:{}", app.addr.port());
        let (sent2, requests2) = (sent.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (agent, upstream, sent, requests, faults, next) = (
                    agent.clone(),
                    upstream.clone(),
                    sent2.clone(),
                    requests2.clone(),
                    faults.clone(),
                    next.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(stream, &agent, &upstream, &sent, &requests, &faults, &next);
                });
            }
        });
        Self { sent, requests }
    }
}

fn serve(
    mut stream: TcpStream,
    agent: &ureq::Agent,
    upstream: &str,
    sent: &AtomicU64,
    requests: &std::sync::Mutex<Vec<Option<String>>>,
    faults: &[Fault],
    next: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (mut range, mut if_range) = (None, None);
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((&h, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "range" => range = Some(v.trim().to_owned()),
            "if-range" => if_range = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    requests.lock().unwrap().push(range.clone());
    let fault = faults.get(next.fetch_add(1, Ordering::SeqCst)).copied();
    if let Some(Fault::Unavailable) = fault {
        stream.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let mut req = agent.get(format!("{upstream}{path}"));
    if let Some(r) = &range {
        req = req.header("Range", r);
    }
    if let Some(r) = &if_range {
        req = req.header("If-Range", r);
    }
    let mut resp = req.call().unwrap();
    let mut head = format!(
        "HTTP/1.1 {}\r\nConnection: close\r\n",
        resp.status().as_u16()
    );
    for name in ["content-length", "content-range", "etag", "accept-ranges"] {
        if let Some(v) = resp.headers().get(name) {
            let _ = write!(head, "{name}: {}\r\n", v.to_str().unwrap());
        }
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let len = resp.body().content_length().unwrap_or(0);
    let limit = match fault {
        Some(Fault::Cut(f) | Fault::Stall(f)) => (len as f64 * f) as u64,
        _ => u64::MAX,
    };
    let mut body = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 16 * 1024];
    let mut written = 0u64;
    while written < limit {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let n = n.min(usize::try_from(limit - written).unwrap_or(n));
        stream.write_all(&buf[..n])?;
        written += n as u64;
        sent.fetch_add(n as u64, Ordering::SeqCst);
    }
    if let Some(Fault::Stall(_)) = fault {
        std::thread::sleep(Duration::from_secs(4));
    }
    stream.shutdown(std::net::Shutdown::Both)
}

/// A pseudo-random share in [0.05, 0.95), from a seed printed by the test.
fn share(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    0.05 + (*seed >> 11) as f64 / (1u64 << 53) as f64 * 0.9
}

#[test]
fn downloads_survive_cuts_stalls_and_5xx_within_1_2x_the_artifact() {
    let (listener, port) = FaultyProxy::bind();
    let app = TestApp::start_with(Settings {
        public_url: Some(format!("http://127.0.0.1:{port}")),
        ..Settings::default()
    });
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("fault seed {seed}");
    let faults = vec![
        Fault::Cut(share(&mut seed)),
        Fault::Unavailable,
        Fault::Stall(share(&mut seed)),
        Fault::Cut(share(&mut seed)),
        Fault::Unavailable,
        Fault::Cut(share(&mut seed)),
        Fault::Stall(share(&mut seed)),
    ];
    let proxy = FaultyProxy::start(listener, &app, faults);
    let work = tempfile::tempdir().unwrap();
    let mut dev = SimDaemon::create(
        &app,
        &work.path().join("dev"),
        "sim-board",
        "download_stall_timeout_seconds = 1\nallow_plain_http = true",
    );
    dev.start();
    let device = accept(&app, &dev.mac());
    let artifact = rootfs_artifact(work.path(), "release-2", "sim-board", 4 << 20);
    let size = std::fs::metadata(&artifact).unwrap().len();
    app.upload_ok(&artifact);
    let d = app.deploy("flaky", "release-2", &[&device]);
    assert_eq!(
        final_status(&app, &d, &device, 180),
        "success",
        "{}",
        dev.log()
    );
    assert_eq!(dev.status()["artifact_name"], "release-2");
    let fetched = proxy.sent.load(Ordering::SeqCst);
    let requests = proxy.requests.lock().unwrap().clone();
    assert!(requests.len() >= 8, "every fault was met: {requests:?}");
    assert!(
        requests.iter().flatten().all(|r| r.starts_with("bytes=")),
        "{requests:?}"
    );
    #[allow(clippy::cast_precision_loss)]
    let ratio = fetched as f64 / size as f64;
    eprintln!(
        "artifact {size} bytes, fetched {fetched} bytes ({ratio:.3}x) in {} requests",
        requests.len()
    );
    assert!(ratio <= 1.2, "fetched {ratio:.3}x the artifact");
    assert!(dev.log().contains("download interrupted; resuming"));
}

#[test]
fn kill_9_during_download_install_and_reboot_resumes_and_reports_the_truth() {
    let (listener, port) = FaultyProxy::bind();
    // Download links last 3 s: the restarted daemon finds its link expired.
    let app = TestApp::start_with(Settings {
        public_url: Some(format!("http://127.0.0.1:{port}")),
        download_link_secs: 3,
        ..Settings::default()
    });
    let proxy = FaultyProxy::start(listener, &app, Vec::new());
    let work = tempfile::tempdir().unwrap();
    let mut dev = SimDaemon::create(
        &app,
        &work.path().join("dev"),
        "sim-board",
        "download_rate_limit = \"1M\"\nallow_plain_http = true",
    );
    // State scripts that mark where the install is and give the test time to kill there.
    let marks = work.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let scripts = work.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    for (state, mark) in [
        ("ArtifactInstall_Leave_50_slow", "install"),
        ("ArtifactReboot_Enter_50_slow", "reboot"),
    ] {
        std::fs::write(
            scripts.join(state),
            format!("#!/bin/sh\ntouch '{}/{mark}'\nsleep 2\n", marks.display()),
        )
        .unwrap();
    }
    let image = work.path().join("release-2.img");
    let data: Vec<u8> = (0..(6u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&image, &data).unwrap();
    let artifact = work.path().join("release-2.mender");
    let status = Command::new(bin("aloftctl"))
        .args([
            "artifact",
            "write",
            "rootfs-image",
            "--no-progress",
            "--compression",
            "none",
            "-f",
        ])
        .arg(&image)
        .args(["-n", "release-2", "-t", "sim-board", "-o"])
        .arg(&artifact)
        .arg("-s")
        .arg(scripts.join("ArtifactInstall_Leave_50_slow"))
        .arg("-s")
        .arg(scripts.join("ArtifactReboot_Enter_50_slow"))
        .status()
        .unwrap();
    assert!(status.success());
    let size = std::fs::metadata(&artifact).unwrap().len();
    dev.start();
    let device = accept(&app, &dev.mac());
    app.upload_ok(&artifact);
    let d = app.deploy("killed", "release-2", &[&device]);

    // 1. Killed during the download: it goes on from the persisted offset.
    wait_for(60, "2 MiB downloaded", || {
        (dev.partial()["offset"].as_u64()? >= 2 << 20).then_some(())
    });
    dev.kill();
    let offset = dev.partial()["offset"].as_u64().unwrap();
    assert!(offset >= 1 << 20, "{offset}");
    // `aloft status` on the device tells where the deployment stands.
    let on_device = dev.status();
    assert_eq!(
        on_device["deployment"]["step"], "downloading",
        "{on_device}"
    );
    assert_eq!(on_device["deployment"]["downloaded"], offset);
    assert_eq!(on_device["deployment"]["size"], size);
    let before = proxy.requests.lock().unwrap().len();
    std::thread::sleep(Duration::from_secs(4));
    dev.start();
    wait_for(60, "the resumed request", || {
        proxy.requests.lock().unwrap().get(before).cloned()
    });
    let resumed = proxy.requests.lock().unwrap()[before].clone();
    assert_eq!(
        resumed,
        Some(format!("bytes={offset}-")),
        "resumed where the record said"
    );

    // 2. Killed while the install runs (the slot is written, ArtifactInstall_Leave runs).
    wait_for(60, "the install", || {
        marks.join("install").exists().then_some(())
    });
    dev.kill();
    std::fs::remove_file(marks.join("install")).unwrap();
    dev.start();

    // 3. Killed when the reboot is about to happen.
    wait_for(60, "the reboot", || {
        marks.join("reboot").exists().then_some(())
    });
    dev.kill();
    dev.start();

    assert_eq!(
        final_status(&app, &d, &device, 120),
        "success",
        "{}",
        dev.log()
    );
    let status = dev.status();
    assert_eq!(status["artifact_name"], "release-2");
    assert_eq!(status["booted_slot"], "b");
    assert!(status["pending"].is_null(), "{status}");
    assert!(status["deployment"].is_null(), "{status}");
    let deployment = app
        .get(&format!("/api/management/v1/deployments/deployments/{d}"))
        .expect(200)
        .json();
    assert_eq!(deployment["status"], "finished");
    let log = dev.log();
    assert!(log.contains("resuming the download"), "{log}");
    assert!(
        log.contains("got a new one"),
        "the expired link was renewed: {log}"
    );
    assert!(
        log.contains("installing again from the downloaded artifact"),
        "{log}"
    );
    let fetched = proxy.sent.load(Ordering::SeqCst);
    #[allow(clippy::cast_precision_loss)]
    let ratio = fetched as f64 / size as f64;
    // A kill loses what sat in the socket buffers (up to a few MiB on loopback) and the bytes
    // after the last persisted offset; never the whole download.
    assert!(
        ratio < 2.0,
        "fetched {ratio:.2}x the artifact across the kills"
    );
    assert!(dev.running());
}

#[test]
fn ten_daemons_take_one_deployment_in_parallel() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let mut devices = Vec::new();
    for i in 0..10 {
        let mut dev =
            SimDaemon::create(&app, &work.path().join(format!("dev{i}")), "sim-board", "");
        dev.start();
        devices.push(dev);
    }
    let ids: Vec<String> = devices.iter().map(|d| accept(&app, &d.mac())).collect();
    // A rootfs: each device writes its own slot and reboots (a file module would have all ten
    // write one shared destination on this one machine).
    let artifact = rootfs_artifact(work.path(), "release-2", "sim-board", 1 << 20);
    app.upload_ok(&artifact);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let d = app.deploy("fleet", "release-2", &refs);
    let deployment = wait_for(180, "the fleet deployment to finish", || {
        let d = app
            .get(&format!("/api/management/v1/deployments/deployments/{d}"))
            .expect(200)
            .json();
        (d["status"] == "finished").then_some(d)
    });
    assert_eq!(
        deployment["statistics"]["status"]["success"], 10,
        "{deployment}"
    );
    for dev in &mut devices {
        let status = dev.status();
        assert_eq!(status["artifact_name"], "release-2");
        assert_eq!(status["booted_slot"], "b");
        assert!(dev.running());
    }
}

#[test]
fn check_update_and_signals_reach_a_daemon_that_polls_hourly() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let mut dev = SimDaemon::create(
        &app,
        &work.path().join("dev"),
        "sim-board",
        "update_poll_interval_seconds = 3600\ninventory_poll_interval_seconds = 3600",
    );
    dev.start();
    let device = accept(&app, &dev.mac());
    wait_for(60, "the first inventory", || {
        inventory(&app, &device, "artifact_name")
    });
    // Its first successful update check (retried every second while it was pending) is over.
    std::thread::sleep(Duration::from_secs(3));
    let dest = work.path().join("installed");
    let module = mender_single_file(work.path(), "app-2", "sim-board", &dest, b"now\n");
    app.upload_ok(&module);
    let d = app.deploy("on-request", "app-2", &[&device]);
    std::thread::sleep(Duration::from_secs(3));
    let pending = app
        .get(&format!("/api/management/v1/deployments/deployments/{d}"))
        .expect(200)
        .json();
    assert_eq!(pending["statistics"]["status"]["pending"], 1, "{pending}");
    // `aloft check-update` over the control socket.
    let out = Command::new(bin("aloft"))
        .arg("--config")
        .arg(dev.dir.join("aloft.toml"))
        .arg("check-update")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        final_status(&app, &d, &device, 60),
        "success",
        "{}",
        dev.log()
    );

    // SIGUSR2, as for Mender's daemon: the changed inventory is sent at once.
    std::fs::write(
        dev.dir.join("inventory/mender-inventory-extra"),
        "#!/bin/sh\necho rack=B7\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(dev.dir.join("inventory/mender-inventory-extra"))
        .status()
        .unwrap();
    let pid = dev.pid();
    Command::new("kill")
        .args(["-USR2", &pid.to_string()])
        .status()
        .unwrap();
    let rack = wait_for(30, "the new inventory attribute", || {
        inventory(&app, &device, "rack")
    });
    assert_eq!(rack, json!("B7"));
    // The control socket is the owner's only.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dev.dir.join("data/aloft.sock"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_abort_during_a_module_install_rolls_it_back_before_the_commit() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let mut dev = SimDaemon::create(&app, &work.path().join("dev"), "sim-board", "");
    // A slow Update Module of the device's own, that records its calls and can roll back.
    let calls = work.path().join("calls");
    let modules = dev.dir.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::write(
        modules.join("slow-app"),
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\ncase \"$1\" in\n  SupportsRollback) echo Yes ;;\n  \
             NeedsArtifactReboot) echo No ;;\n  ArtifactInstall) sleep 4 ;;\nesac\nexit 0\n",
            calls.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(modules.join("slow-app"))
        .status()
        .unwrap();
    let toml = std::fs::read_to_string(dev.dir.join("aloft.toml")).unwrap();
    std::fs::write(
        dev.dir.join("aloft.toml"),
        format!("modules_dir = \"modules\"\n{toml}"),
    )
    .unwrap();
    dev.start();
    let device = accept(&app, &dev.mac());
    let payload = work.path().join("app.conf");
    std::fs::write(&payload, b"v2\n").unwrap();
    let artifact = work.path().join("app-2.mender");
    let made = Command::new(bin("aloftctl"))
        .args([
            "artifact",
            "write",
            "module-image",
            "--no-progress",
            "-T",
            "slow-app",
            "-f",
        ])
        .arg(&payload)
        .args(["-n", "app-2", "-t", "sim-board", "-o"])
        .arg(&artifact)
        .status()
        .unwrap();
    assert!(made.success());
    app.upload_ok(&artifact);
    let d = app.deploy("aborted", "app-2", &[&device]);
    wait_for(60, "the module install", || {
        std::fs::read_to_string(&calls)
            .ok()?
            .contains("ArtifactInstall")
            .then_some(())
    });
    app.put(
        &format!("/api/management/v1/deployments/deployments/{d}/status"),
        &json!({"status": "aborted"}),
    )
    .expect(204);
    wait_for(60, "the rollback", || {
        std::fs::read_to_string(&calls)
            .ok()?
            .contains("ArtifactRollback")
            .then_some(())
    });
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert!(!calls.contains("ArtifactCommit"), "{calls}");
    assert_eq!(final_status(&app, &d, &device, 30), "aborted");
    wait_for(30, "the daemon to record the failure", || {
        (dev.status()["last"]["success"] == json!(false)).then_some(())
    });
    let status = dev.status();
    assert_eq!(status["artifact_name"], "factory-1", "{status}");
    assert!(
        status["last"]["reason"]
            .as_str()
            .unwrap()
            .contains("aborted"),
        "{status}"
    );
    assert!(dev.running());
}

#[test]
fn a_second_daemon_on_the_same_device_refuses_to_start() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let mut dev = SimDaemon::create(&app, &work.path().join("dev"), "sim-board", "");
    dev.start();
    let socket = dev.dir.join("data/aloft.sock");
    wait_for(30, "the first daemon's socket", || {
        socket.exists().then_some(())
    });
    let second = Command::new(bin("aloft"))
        .arg("--config")
        .arg(dev.dir.join("aloft.toml"))
        .arg("daemon")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another aloft daemon runs on"), "{err}");
    assert!(
        err.contains(&dev.pid().to_string()),
        "names the first one: {err}"
    );
    // The first keeps its socket and its device.
    assert!(dev.running());
    let ask = Command::new(bin("aloft"))
        .arg("--config")
        .arg(dev.dir.join("aloft.toml"))
        .arg("check-update")
        .output()
        .unwrap();
    assert!(
        ask.status.success(),
        "{}",
        String::from_utf8_lossy(&ask.stderr)
    );
    // A daemon killed with -9 leaves no lock behind.
    dev.kill();
    dev.start();
    wait_for(30, "the restarted daemon", || {
        dev.log().matches("aloft daemon started").nth(1).map(drop)
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(dev.running(), "{}", dev.log());
}
