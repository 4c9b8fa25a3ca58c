//! `aloft-server demo` as a new user runs it: it starts, prints how to log in, its devices
//! register (some accepted, some pending), its artifacts are there, a deployment to the
//! accepted devices succeeds, and Ctrl-C stops everything.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::wait_for;
use crate::daemon::bin;

/// A demo started as a user would, logged in.
struct Running {
    child: std::process::Child,
    url: String,
    token: String,
    agent: ureq::Agent,
    data: std::path::PathBuf,
    printed: String,
}

impl Running {
    fn start(work: &std::path::Path, args: &[&str]) -> Self {
        let data = work.join("demo");
        let mut child = Command::new(bin("aloft-server"))
            .args(["demo", "--listen", "127.0.0.1:0"])
            .args(args)
            .args(["--poll-seconds", "1", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut url, mut password, mut printed) = (String::new(), String::new(), String::new());
        for line in lines.by_ref() {
            let line = line.unwrap();
            printed += &line;
            printed.push('\n');
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["server", u] => (*u).clone_into(&mut url),
                ["login", _, "/", p] => (*p).clone_into(&mut password),
                _ => {}
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        let cert = data.join("server/tls/server.crt");
        let agent = crate::common::agent_for(&cert);
        let basic = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(format!("admin@aloft.demo:{password}"))
        };
        let token = agent
            .post(format!("{url}/api/management/v1/useradm/auth/login"))
            .header("Authorization", format!("Basic {basic}"))
            .send_empty()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        Self {
            child,
            url,
            token,
            agent,
            data,
            printed,
        }
    }

    fn get(&self, path: &str) -> serde_json::Value {
        self.agent
            .get(format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    }

    /// Ctrl-C: everything stops, no device daemon is left.
    fn stop(mut self) {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = wait_for(30, "the demo to stop", || self.child.try_wait().unwrap());
        assert!(status.success(), "{status}");
        std::thread::sleep(Duration::from_millis(300));
        let daemons = Command::new("pgrep")
            .args(["-f", &self.data.join("devices").display().to_string()])
            .output()
            .unwrap();
        assert!(daemons.stdout.is_empty(), "device daemons are left running");
    }
}

#[test]
fn demo_starts_and_its_devices_take_a_deployment() {
    let work = tempfile::tempdir().unwrap();
    let demo = Running::start(
        work.path(),
        &[
            "--devices",
            "3",
            "--pending",
            "1",
            "--no-rollout",
            "--download-rate",
            "0",
        ],
    );
    let (url, token, agent, data) = (&demo.url, &demo.token, &demo.agent, &demo.data);
    let get = |path: &str| demo.get(path);
    // It serves the web UI.
    let mut ui = agent.get(format!("{url}/ui/")).call().unwrap();
    assert!(
        ui.body_mut()
            .read_to_string()
            .unwrap()
            .contains("/ui/app.js")
    );
    let accepted = get("/api/management/v2/devauth/devices?status=accepted");
    assert_eq!(accepted.as_array().unwrap().len(), 2, "{accepted}");
    let pending = get("/api/management/v2/devauth/devices?status=pending");
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");
    let artifacts = get("/api/management/v1/deployments/artifacts");
    let names: Vec<&str> = artifacts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"demo-rootfs-2") && names.contains(&"demo-app-2"),
        "{names:?}"
    );

    // Deploys to every accepted device and waits for the deployment to finish.
    let deploy = |name: &str, artifact: &str| -> serde_json::Value {
        let resp = agent
            .post(format!("{url}/api/management/v1/deployments/deployments"))
            .header("Authorization", format!("Bearer {token}"))
            .send_json(json!({"name": name, "artifact_name": artifact, "all_devices": true}))
            .unwrap();
        let location = resp.headers()["location"].to_str().unwrap();
        let id = location.rsplit('/').next().unwrap().to_owned();
        wait_for(120, "the demo deployment", || {
            let d = get(&format!("/api/management/v1/deployments/deployments/{id}"));
            (d["status"] == "finished").then_some(d)
        })
    };
    // The rootfs: both accepted devices reboot, commit and report success.
    let done = deploy("demo", "demo-rootfs-2");
    assert_eq!(done["statistics"]["status"]["success"], 2, "{done}");
    // The application update lands in the devices' app/ folders.
    let done = deploy("app", "demo-app-2");
    assert_eq!(done["statistics"]["status"]["success"], 2, "{done}");
    let installed = std::fs::read_dir(data.join("devices"))
        .unwrap()
        .filter(|d| d.as_ref().unwrap().path().join("app/app.conf").exists())
        .count();
    assert_eq!(installed, 2);

    demo.stop();
}

#[test]
fn the_demo_rolls_out_in_phases_and_pauses_at_its_broken_device() {
    let work = tempfile::tempdir().unwrap();
    let demo = Running::start(
        work.path(),
        &[
            "--devices",
            "4",
            "--pending",
            "0",
            "--download-rate",
            "0",
            "--soak-seconds",
            "1",
        ],
    );
    assert!(
        demo.printed.contains("A rollout is under way"),
        "{}",
        demo.printed
    );
    let paused = wait_for(180, "the demo's rollout to pause", || {
        let list = demo.get("/api/management/v1/deployments/deployments");
        let d = list.as_array()?.first()?.clone();
        d["rollout"]["paused"].is_string().then_some(d)
    });
    assert_eq!(
        paused["rollout"]["paused"],
        "phase 2: 1 of 1 devices failed (100%), above the failure threshold of 10%",
        "{paused}"
    );
    assert_eq!(
        paused["phases"][0]["summary"]["success"], 1,
        "the canary: {paused}"
    );
    assert_eq!(
        paused["phases"][2]["summary"]["pending"], 2,
        "held: {paused}"
    );
    demo.stop();
}
