//! End to end with the real Mender client (Debian `mender-client` 3.4): its daemon runs in a
//! private mount namespace where its fixed paths (identity and inventory scripts, Update
//! Modules, `/etc/mender`) are this test's own folders.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::common::{TestApp, mender_module_artifact, mender_single_file, wait_for};

pub(crate) struct MenderDevice {
    child: Child,
    pub(crate) root: PathBuf,
}

impl Drop for MenderDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MenderDevice {
    pub(crate) fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("mender.log")).unwrap_or_default()
    }

    /// What the slow module was asked to do, in order.
    fn slow_calls(&self) -> String {
        std::fs::read_to_string(self.root.join("slow-calls")).unwrap_or_default()
    }
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub(crate) fn start_mender(app: &TestApp, root: &Path) -> MenderDevice {
    start_mender_as(app, root, "02:00:00:00:00:01")
}

/// A Mender client with its own MAC address (its identity).
pub(crate) fn start_mender_as(app: &TestApp, root: &Path, mac: &str) -> MenderDevice {
    start_mender_with(app, root, mac, None)
}

/// [`start_mender_as`], where the client sees its own `root/installed` at `dest`: several
/// clients then install one file artifact side by side, each into its own folder, as separate
/// devices would (Debian's single-file module on one shared folder races with itself).
pub(crate) fn start_mender_with(
    app: &TestApp,
    root: &Path,
    mac: &str,
    dest: Option<&Path>,
) -> MenderDevice {
    for d in [
        "identity",
        "inventory",
        "etc",
        "modules",
        "data",
        "installed",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    script(
        &root.join("identity/mender-device-identity"),
        &format!(
            "#!/bin/sh\necho mac={mac}\necho serial=SN-00{}\n",
            mac.rsplit(':').next().unwrap_or("0001")
        ),
    );
    script(
        &root.join("inventory/mender-inventory-test"),
        "#!/bin/sh\necho os=TestOS 1.0\necho kernel=6.1.0\n",
    );
    std::fs::write(
        root.join("etc/artifact_info"),
        "artifact_name=initial-artifact\n",
    )
    .unwrap();
    std::fs::write(root.join("data/device_type"), "device_type=test-device\n").unwrap();
    std::fs::copy(
        "/usr/share/mender/modules/v3/single-file",
        root.join("modules/single-file"),
    )
    .expect("Debian's single-file Update Module (package mender-client)");
    let calls = root.join("fail-calls");
    // Fails its install, as a broken application update would.
    script(
        &root.join("modules/fail-module"),
        &format!(
            "#!/bin/sh\necho \"$1\" >> {c}\ncase \"$1\" in\n  SupportsRollback) echo Yes ;;\n  NeedsArtifactReboot) echo No ;;\n  \
             ArtifactInstall) echo 'simulated install failure: disk full' >&2; exit 1 ;;\nesac\nexit 0\n",
            c = calls.display()
        ),
    );
    // Takes its time to install, so that an operator can abort it.
    script(
        &root.join("modules/slow-module"),
        &format!(
            "#!/bin/sh\necho \"$1\" >> {c}\ncase \"$1\" in\n  SupportsRollback) echo Yes ;;\n  NeedsArtifactReboot) echo No ;;\n  \
             ArtifactInstall) sleep 6 ;;\nesac\nexit 0\n",
            c = root.join("slow-calls").display()
        ),
    );
    let conf = json!({
        "ServerURL": app.base(),
        "ServerCertificate": app.cert,
        "UpdatePollIntervalSeconds": 2,
        "InventoryPollIntervalSeconds": 5,
        "RetryPollIntervalSeconds": 1,
        "DBus": {"Enabled": false},
    });
    std::fs::write(root.join("mender.conf"), conf.to_string()).unwrap();
    if let Some(d) = dest {
        std::fs::create_dir_all(d).unwrap();
    }
    let r = root.display();
    let private_dest = dest.map_or(String::new(), |d| {
        format!("mount --bind {r}/installed {}; ", d.display())
    });
    let sh = format!(
        "set -e; {private_dest}mount --bind {r}/identity /usr/share/mender/identity; \
         mount --bind {r}/inventory /usr/share/mender/inventory; \
         mount --bind {r}/etc /etc/mender; \
         mount --bind {r}/modules /usr/share/mender/modules/v3; \
         exec mender --no-syslog --log-level debug --config {r}/mender.conf --fallback-config {r}/none.conf --data {r}/data daemon"
    );
    let log = std::fs::File::create(root.join("mender.log")).unwrap();
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &sh])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("unshare and mender run (root, Debian mender-client)");
    MenderDevice {
        child,
        root: root.to_owned(),
    }
}

fn inventory_value(app: &TestApp, device: &str, name: &str) -> Option<String> {
    let r = app.get(&format!("/api/management/v1/inventory/devices/{device}"));
    if r.status != 200 {
        return None;
    }
    r.json()["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name && a["scope"] == "inventory")
        .and_then(|a| a["value"].as_str().map(str::to_owned))
}

pub(crate) fn wait_finished(
    app: &TestApp,
    dev: &MenderDevice,
    deployment: &str,
) -> serde_json::Value {
    wait_for(90, "the deployment to finish", || {
        dev.signal("-USR1");
        let d = app
            .get(&format!(
                "/api/management/v1/deployments/deployments/{deployment}"
            ))
            .expect(200)
            .json();
        (d["status"] == "finished").then_some(d)
    })
}

#[test]
fn real_mender_client_is_admitted_updated_failed_and_aborted() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("device");
    let dev = start_mender(&app, &root);

    // 1. The device asks to be admitted and shows up pending.
    let pending = wait_for(60, "the Mender client's auth request", || {
        let list = app
            .get("/api/management/v2/devauth/devices?status=pending")
            .expect(200)
            .json();
        list.as_array().and_then(|l| l.first().cloned())
    });
    assert_eq!(
        pending["identity_data"]["mac"], "02:00:00:00:00:01",
        "{pending}"
    );
    assert_eq!(pending["identity_data"]["serial"], "SN-0001");
    let device = pending["id"].as_str().unwrap().to_owned();
    let auth_set = pending["auth_sets"][0]["id"].as_str().unwrap().to_owned();
    assert!(
        pending["auth_sets"][0]["pubkey"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );

    // 2. Accepting it lets it authenticate; its inventory arrives.
    app.put(
        &format!("/api/management/v2/devauth/devices/{device}/auth/{auth_set}/status"),
        &json!({"status": "accepted"}),
    )
    .expect(204);
    let name = wait_for(60, "the device's inventory", || {
        dev.signal("-USR2");
        inventory_value(&app, &device, "artifact_name")
    });
    assert_eq!(name, "initial-artifact");
    assert_eq!(
        inventory_value(&app, &device, "device_type").as_deref(),
        Some("test-device")
    );
    assert_eq!(
        inventory_value(&app, &device, "kernel").as_deref(),
        Some("6.1.0")
    );
    let listed = app
        .get("/api/management/v2/devauth/devices?status=accepted")
        .expect(200)
        .json();
    assert_eq!(listed[0]["id"], device.as_str());
    assert!(listed[0]["check_in_time"].is_string(), "{listed}");

    // 3. An artifact made by mender-artifact is uploaded and deployed; the device installs it.
    let installed = root.join("installed");
    let art = mender_single_file(
        work.path(),
        "release-2",
        "test-device",
        &installed,
        b"hello from release 2\n",
    );
    app.upload_ok(&art);
    let d1 = app.deploy("rollout-2", "release-2", &[&device]);
    let done = wait_finished(&app, &dev, &d1);
    assert_eq!(
        done["statistics"]["status"]["success"],
        1,
        "{done}\n{}",
        dev.log()
    );
    assert_eq!(done["device_count"], 1);
    assert_eq!(done["max_devices"], 1);
    assert_eq!(
        std::fs::read(installed.join("payload.txt")).unwrap(),
        b"hello from release 2\n"
    );
    let name = wait_for(60, "the new artifact name in the inventory", || {
        dev.signal("-USR2");
        inventory_value(&app, &device, "artifact_name").filter(|n| n == "release-2")
    });
    assert_eq!(name, "release-2");
    let stats = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d1}/statistics"
        ))
        .expect(200)
        .json();
    assert_eq!(stats.as_object().unwrap().len(), 13);
    assert_eq!(stats["success"], 1);

    // 4. A deployment whose module fails ends as failure, with the device's log kept.
    let broken = mender_module_artifact(
        work.path(),
        "release-3",
        "test-device",
        "fail-module",
        &installed,
        b"x",
    );
    app.upload_ok(&broken);
    let d2 = app.deploy("rollout-3", "release-3", &[&device]);
    let done = wait_finished(&app, &dev, &d2);
    assert_eq!(done["statistics"]["status"]["failure"], 1, "{done}");
    let log = wait_for(30, "the failure log", || {
        let r = app.get(&format!(
            "/api/management/v1/deployments/deployments/{d2}/devices/{device}/log"
        ));
        (r.status == 200).then(|| r.text())
    });
    assert!(
        log.contains("simulated install failure: disk full"),
        "{log}"
    );
    let list = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d2}/devices/list"
        ))
        .expect(200)
        .json();
    assert_eq!(list[0]["status"], "failure");
    assert_eq!(list[0]["log"], true);
    assert_eq!(list[0]["image"]["name"], "release-3");
    assert_eq!(
        inventory_value(&app, &device, "artifact_name").as_deref(),
        Some("release-2")
    );

    // 5. Aborting a deployment while the device installs makes it stop: no commit.
    let slow = mender_module_artifact(
        work.path(),
        "release-4",
        "test-device",
        "slow-module",
        &installed,
        b"y",
    );
    app.upload_ok(&slow);
    let d3 = app.deploy("rollout-4", "release-4", &[&device]);
    wait_for(60, "the slow install to start", || {
        dev.signal("-USR1");
        dev.slow_calls().contains("ArtifactInstall").then_some(())
    });
    app.put(
        &format!("/api/management/v1/deployments/deployments/{d3}/status"),
        &json!({"status": "aborted"}),
    )
    .expect(204);
    wait_for(60, "the client to roll the aborted update back", || {
        dev.slow_calls().contains("ArtifactRollback").then_some(())
    });
    let calls = dev.slow_calls();
    assert!(
        !calls.contains("ArtifactCommit"),
        "an aborted update must not commit: {calls}"
    );
    let d = app
        .get(&format!("/api/management/v1/deployments/deployments/{d3}"))
        .expect(200)
        .json();
    assert_eq!(d["status"], "finished");
    assert_eq!(d["statistics"]["status"]["aborted"], 1, "{d}");
    assert_eq!(
        inventory_value(&app, &device, "artifact_name").as_deref(),
        Some("release-2")
    );
    // Aborting again is refused: the deployment is finished.
    app.put(
        &format!("/api/management/v1/deployments/deployments/{d3}/status"),
        &json!({"status": "aborted"}),
    )
    .expect(422);

    // 6. The device's history, newest first.
    let history = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/devices/{device}"
        ))
        .expect(200)
        .json();
    let statuses: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["device"]["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["aborted", "failure", "success"], "{history}");
    drop(dev);
}
