//! `aloftctl` as an operator uses it against a server: login (token kept 0600), accept a
//! device, upload an artifact, deploy, watch the deployment to completion; `--json` outputs
//! are parsed here as a script would.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{ADMIN, PASSWORD, TestApp, mender_single_file, wait_for};
use crate::daemon::{SimDaemon, bin};

/// Runs aloftctl with its credentials in `config`.
fn run(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("aloftctl"))
        .args(args)
        .env("ALOFT_CONFIG_DIR", config)
        .output()
        .unwrap()
}

fn ctl(config: &Path, args: &[&str]) -> Value {
    let out = run(config, args);
    assert!(
        out.status.success(),
        "aloftctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "aloftctl {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn aloftctl_logs_in_uploads_deploys_and_watches_to_completion() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("config");
    let server = format!("https://127.0.0.1:{}", app.addr.port());

    // A wrong password is refused; the right one is kept with mode 0600.
    let login = |password: &str| {
        let mut child = Command::new(bin("aloftctl"))
            .args([
                "login",
                &server,
                "--user",
                ADMIN,
                "--password-stdin",
                "--ca-cert",
            ])
            .arg(&app.cert)
            .env("ALOFT_CONFIG_DIR", &config)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let refused = login("not the password");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("wrong e-mail or password"));
    assert!(login(PASSWORD).status.success());
    let mode = std::fs::metadata(config.join("credentials.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A device asks to be admitted; accept it.
    let mut dev = SimDaemon::create(&app, &work.path().join("dev"), "sim-board", "");
    dev.start();
    let mac = dev.mac();
    let id = wait_for(60, "the pending device", || {
        let list = ctl(
            &config,
            &["devices", "list", "--status", "pending", "--json"],
        );
        list.as_array()?
            .iter()
            .find(|d| d["identity_data"]["mac"] == mac.as_str())
            .and_then(|d| d["id"].as_str().map(str::to_owned))
    });
    let accepted = ctl(&config, &["devices", "accept", &id, "--json"]);
    assert_eq!(accepted["status"], "accepted");

    // Upload, list, show.
    let dest = work.path().join("installed");
    let artifact = mender_single_file(work.path(), "app-2", "sim-board", &dest, b"v2\n");
    let uploaded = ctl(
        &config,
        &["artifacts", "upload", artifact.to_str().unwrap(), "--json"],
    );
    assert!(
        uploaded["id"].as_str().is_some_and(|s| s.len() == 36),
        "{uploaded}"
    );
    let listed = ctl(&config, &["artifacts", "list", "--json"]);
    assert_eq!(listed[0]["name"], "app-2");
    let shown = ctl(&config, &["artifacts", "show", "app-2", "--json"]);
    assert_eq!(shown["id"], uploaded["id"]);

    // Deploy and watch to the end.
    let created = ctl(
        &config,
        &[
            "deployments",
            "create",
            "--artifact",
            "app-2",
            "--device",
            &id,
            "--json",
        ],
    );
    let deployment = created["id"].as_str().unwrap().to_owned();
    let watched = ctl(
        &config,
        &["deployments", "show", &deployment, "--watch", "--json"],
    );
    assert_eq!(watched["deployment"]["status"], "finished", "{watched}");
    assert_eq!(watched["deployment"]["statistics"]["status"]["success"], 1);
    assert_eq!(watched["devices"][0]["status"], "success");
    assert_eq!(std::fs::read(dest.join("payload.txt")).unwrap(), b"v2\n");
    let list = ctl(&config, &["deployments", "list", "--json"]);
    assert_eq!(list[0]["id"], deployment.as_str());
    let shown = ctl(&config, &["devices", "show", &id, "--json"]);
    assert_eq!(shown["device"]["status"], "accepted");

    // Logout revokes the token at the server and forgets it here.
    let creds: Value =
        serde_json::from_slice(&std::fs::read(config.join("credentials.json")).unwrap()).unwrap();
    let token = creds["servers"][&server]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = run(&config, &["logout"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = app.call(
        "GET",
        "/api/management/v1/deployments/deployments",
        &[("authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(revoked.status, 401);
    let after = run(&config, &["devices", "list"]);
    assert!(String::from_utf8_lossy(&after.stderr).contains("not logged in"));
}
