//! `aloftctl` as an operator uses it against a server: login (token kept 0600), accept a
//! device, upload an artifact, deploy, watch the deployment to completion; `--json` outputs
//! are parsed here as a script would.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

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
    let deploy_to = |device: &str| {
        run(
            &config,
            &[
                "deployments",
                "create",
                "--artifact",
                "app-2",
                "--json",
                "--device",
                device,
            ],
        )
    };
    let created: Value = serde_json::from_slice(&deploy_to(&id).stdout).unwrap();
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
    // The 8 characters the UI shows are enough; the server's summary is shown too.
    let short = ctl(
        &config,
        &["deployments", "show", &deployment[..8], "--json"],
    );
    assert_eq!(short["deployment"]["id"], deployment.as_str());
    assert_eq!(short["deployment"]["summary"]["outcome"], "succeeded");
    let shown = ctl(&config, &["devices", "show", &id[..8], "--json"]);
    assert_eq!(shown["device"]["id"], id.as_str());
    // A device id nobody has is refused, not turned into a deployment that waits forever.
    let unknown = deploy_to("deadbeef");
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no device has an id starting with"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let whole = deploy_to("00000000-0000-4000-8000-000000000000");
    assert!(
        String::from_utf8_lossy(&whole.stderr).contains("no device has the id"),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );

    // The fleet-wide halt holds a phased deployment made from a plan file (its device runs
    // app-2 already, and would end it at once), which is paused and resumed meanwhile.
    let held = ctl(
        &config,
        &["deployments", "halt", "--reason", "incident 7", "--json"],
    );
    assert_eq!(held, json!({"halted": true, "reason": "incident 7"}));
    let plan = work.path().join("plan.json");
    std::fs::write(
        &plan,
        r#"{"phases": [{"devices": 1}], "rollout": {"advance": "manual"}}"#,
    )
    .unwrap();
    // The plan first: its device runs app-2, so it would be skipped, and says why.
    let planned = ctl(
        &config,
        &[
            "deployments",
            "plan",
            "--artifact",
            "app-2",
            "--device",
            &id,
            "--plan",
            plan.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(
        planned["devices"][0]["outcome"], "already-installed",
        "{planned}"
    );
    assert_eq!(planned["totals"]["skipped"], 1, "{planned}");
    let digest = planned["digest"].as_str().unwrap().to_owned();
    let phased = ctl(
        &config,
        &[
            "deployments",
            "create",
            "--expect-plan",
            &digest,
            "--name",
            "phased",
            "--artifact",
            "app-2",
            "--device",
            &id,
            "--plan",
            plan.to_str().unwrap(),
            "--json",
        ],
    );
    let phased = phased["id"].as_str().unwrap().to_owned();
    let paused = ctl(
        &config,
        &[
            "deployments",
            "pause",
            &phased,
            "--reason",
            "checking",
            "--json",
        ],
    );
    assert_eq!(paused["paused"], true);
    let d = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{phased}"
        ))
        .expect(200)
        .json();
    assert_eq!(d["rollout"]["paused"], "checking", "{d}");
    let resumed = ctl(&config, &["deployments", "resume", &phased, "--json"]);
    assert_eq!(resumed["rollout"]["phase"], 1, "{resumed}");
    let beyond = run(&config, &["deployments", "advance", &phased]);
    assert!(
        String::from_utf8_lossy(&beyond.stderr).contains("the last phase is already open"),
        "{}",
        String::from_utf8_lossy(&beyond.stderr)
    );
    // Install control (while the halt holds the device back): a window in a time zone and
    // download-only, shown with what holds it, released once.
    let staged = |window: &str| {
        run(
            &config,
            &[
                "deployments",
                "create",
                "--artifact",
                "app-2",
                "--device",
                &id,
                "--window",
                window,
                "--window-duration",
                "3600",
                "--time-zone",
                "Europe/Oslo",
                "--install",
                "download-only",
                "--json",
            ],
        )
    };
    let bad = staged("every night");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("must have five fields"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let out = staged("0 3 * * *");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let staged: Value = serde_json::from_slice(&out.stdout).unwrap();
    let staged = staged["id"].as_str().unwrap().to_owned();
    let d = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{staged}"
        ))
        .expect(200)
        .json();
    let options = &d["rollout"]["options"];
    assert_eq!(options["install"], "download-only", "{d}");
    assert_eq!(
        options["window"],
        json!({"cron": "0 3 * * *", "duration_seconds": 3600, "time_zone": "Europe/Oslo"})
    );
    let shown = run(&config, &["deployments", "show", &staged]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.contains("installs held"), "{shown}");
    ctl(&config, &["deployments", "release", &staged, "--json"]);
    let again = run(&config, &["deployments", "release", &staged]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already released"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    ctl(&config, &["deployments", "abort", &staged, "--json"]);
    ctl(&config, &["deployments", "unhalt", "--json"]);
    let free = ctl(&config, &["deployments", "halt", "--status", "--json"]);
    assert_eq!(free["halted"], false, "{free}");

    // Static groups: add by a prefix, move (a device is in one group), show, remove, dissolve.
    let added = ctl(&config, &["groups", "add", "canary", &id[..8], "--json"]);
    assert_eq!(added["devices"][0]["from"], Value::Null, "{added}");
    let moved = ctl(&config, &["groups", "add", "site-2", &id, "--json"]);
    assert_eq!(moved["devices"][0]["from"], "canary", "{moved}");
    let listed = ctl(&config, &["groups", "list", "--json"]);
    assert_eq!(listed, json!([{"name": "site-2", "devices": 1}]));
    let group = app.get(&format!("/api/management/v1/inventory/devices/{id}/group"));
    assert_eq!(group.json()["group"], "site-2");
    let shown = ctl(&config, &["groups", "show", "site-2", "--json"]);
    assert_eq!(shown["devices"], json!([id]));
    let bad = run(&config, &["groups", "add", "no spaces", &id]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid group name"));
    assert_eq!(ctl(&config, &["groups", "list", "--json"]), listed);
    ctl(&config, &["groups", "remove", "site-2", &id, "--json"]);
    assert_eq!(ctl(&config, &["groups", "list", "--json"]), json!([]));
    let again = run(&config, &["groups", "remove", "site-2", &id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("could not leave site-2"));
    ctl(&config, &["groups", "add", "lab", &id, "--json"]);
    let dissolved = ctl(&config, &["groups", "delete", "lab", "--json"]);
    assert_eq!(dissolved["devices_released"], 1, "{dissolved}");
    let group = app.get(&format!("/api/management/v1/inventory/devices/{id}/group"));
    assert_eq!(group.json()["group"], Value::Null);

    // Dynamic groups: define by terms, list with what matches, plan a deployment, delete.
    let defined = ctl(
        &config,
        &[
            "groups",
            "define",
            "boards",
            "device_type=sim-board",
            "--json",
        ],
    );
    assert_eq!(defined["devices"], 1, "{defined}");
    let bad = run(&config, &["groups", "define", "x", "device_type"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("has no operator"));
    let dynamic = ctl(&config, &["groups", "dynamic", "--json"]);
    assert_eq!(dynamic[0]["name"], "boards", "{dynamic}");
    assert_eq!(dynamic[0]["devices"], 1, "{dynamic}");
    let plan = ctl(
        &config,
        &[
            "deployments",
            "plan",
            "--artifact",
            "app-2",
            "--dynamic",
            "boards",
            "--json",
        ],
    );
    assert_eq!(plan["devices"][0]["id"], id.as_str(), "{plan}");
    ctl(&config, &["groups", "undefine", "boards", "--json"]);
    assert_eq!(ctl(&config, &["groups", "dynamic", "--json"]), json!([]));

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
