//! End to end with aloft's own daemon: simulated A/B devices made by `aloftctl sim create
//! --server`, each running `aloft --config DIR/aloft.toml daemon` against a real server on
//! loopback with TLS. The binaries are the workspace's own (`cargo test --workspace` builds
//! them before the tests run).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aloft_server::http::Settings;
use serde_json::{Value, json};

use crate::common::{TestApp, mender_single_file, wait_for};

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
        let out = Command::new(bin("aloftctl"))
            .args(["sim", "create"])
            .arg(dir)
            .args(["--device-type", device_type, "--slot-size", "16M"])
            .args(["--server", &format!("https://127.0.0.1:{}", app.addr.port())])
            .arg("--server-cert")
            .arg(&app.cert)
            .args(["--poll-seconds", "1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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

    /// `kill -9`.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
        let script = std::fs::read_to_string(self.dir.join("identity/mender-device-identity")).unwrap();
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
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
            .get(&format!("/api/management/v1/deployments/deployments/{deployment}/devices"))
            .expect(200)
            .json();
        let s = list
            .as_array()?
            .iter()
            .find(|d| d["id"] == device)?["status"]
            .as_str()?
            .to_owned();
        aloft_api::status::is_final(&s).then_some(s)
    })
}

fn device_log(app: &TestApp, deployment: &str, device: &str) -> String {
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
    assert_eq!(inventory(&app, &device, "device_type"), Some(json!("sim-board")));
    assert_eq!(inventory(&app, &device, "kernel"), Some(json!("aloft-sim")));

    // 1. A rootfs update: download, install into slot B, reboot through the simulator,
    //    health check, commit, success.
    let v2 = rootfs_artifact(work.path(), "release-2", "sim-board", 3 << 20);
    app.upload_ok(&v2);
    let d1 = app.deploy("rootfs", "release-2", &[&device]);
    assert_eq!(final_status(&app, &d1, &device, 120), "success", "{}", dev.log());
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
    let module = mender_single_file(work.path(), "app-3", "sim-board", &dest, b"hello from app-3\n");
    app.upload_ok(&module);
    let d2 = app.deploy("module", "app-3", &[&device]);
    assert_eq!(final_status(&app, &d2, &device, 60), "success", "{}", dev.log());
    assert_eq!(std::fs::read(dest.join("payload.txt")).unwrap(), b"hello from app-3\n");
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
    assert_eq!(final_status(&app, &d3, &device, 120), "failure", "{}", dev.log());
    let log = device_log(&app, &d3, &device);
    assert!(log.contains("did not boot"), "{log}");
    assert!(log.contains("release-4"), "{log}");
    let status = dev.status();
    assert_eq!(status["artifact_name"], "app-3");
    assert_eq!(status["booted_slot"], "b");
    let history = app
        .get(&format!("/api/management/v1/deployments/deployments/devices/{device}"))
        .expect(200)
        .json();
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["device"]["status"].as_str().unwrap_or(""))
        .collect();
    assert!(statuses.contains(&"failure") && statuses.iter().filter(|s| **s == "success").count() == 2, "{history}");
    assert!(dev.running());
}
