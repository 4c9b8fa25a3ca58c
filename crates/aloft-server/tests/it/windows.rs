//! Install control end to end, with aloft daemons on simulated devices and a server whose
//! rollout clock the test moves: outside a maintenance window devices download and verify but
//! do not install, a stock client is not even handed the update, and both install once the
//! moved clock enters the window; download-only waits for the operator's release; under the
//! soft policy a consent hook answering "later" defers the install and the reboot until it
//! says yes; bad windows and releases get a clear 4xx.

use std::time::Duration;

use aloft_server::http::Settings;
use serde_json::{Value, json};

use crate::common::{TestApp, wait_for};
use crate::daemon::{SimDaemon, accept, final_status, rootfs_artifact};
use crate::rollouts::{Planned, artifact_with, deployment, device_row};

pub(crate) fn movable() -> TestApp {
    TestApp::start_with(Settings {
        movable_clock: true,
        ..Settings::default()
    })
}

/// A server with a movable clock and the artifact `release-2` for `sim-board`.
fn with_release_2() -> (TestApp, tempfile::TempDir) {
    let app = movable();
    let work = tempfile::tempdir().unwrap();
    app.upload_ok(&rootfs_artifact(
        work.path(),
        "release-2",
        "sim-board",
        64 << 10,
    ));
    (app, work)
}

/// Moves the server's rollout clock forward.
pub(crate) fn move_clock(app: &TestApp, secs: u64) -> Value {
    app.put(
        "/api/management/v1/test/clock",
        &json!({"forward_seconds": secs}),
    )
    .expect(200)
    .json()
}

/// A device's row once its status is `status`.
fn row_when(app: &TestApp, dep: &str, device: &str, status: &str, secs: u64) -> Value {
    wait_for(secs, &format!("the device to report {status}"), || {
        let row = device_row(app, dep, device);
        (row["status"] == status).then_some(row)
    })
}

fn daemon(app: &TestApp, work: &std::path::Path, name: &str, extra: &str) -> (SimDaemon, String) {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut d = SimDaemon::create(app, &dir, "sim-board", extra);
    d.start();
    let id = accept(app, &d.mac());
    (d, id)
}

fn installed(d: &SimDaemon) -> String {
    let s = d.status();
    let name = s["artifact_name"].as_str().unwrap_or_default().to_owned();
    assert!(!name.is_empty(), "{s}");
    name
}

/// A daily window two hours ahead of the real time (UTC), and the seconds until it opens.
fn window_ahead() -> (Value, u64) {
    let now = aloft_api::time::now_us() / 1_000_000;
    let hour = (now / 3600 + 2) % 24;
    let opens = (now / 3600 + 2) * 3600;
    let window =
        json!({"cron": format!("0 {hour} * * *"), "duration_seconds": 3600, "time_zone": "UTC"});
    (window, u64::try_from(opens - now).unwrap())
}

#[test]
fn outside_the_window_devices_download_but_install_only_once_the_clock_enters_it() {
    let (app, work) = with_release_2();
    let (dev, id) = daemon(&app, work.path(), "dev", "");
    // A stock client (Mender's protocol, without aloft's extension) of the same deployment.
    let stock = Planned::new(&app, 0x41, "sim-board", &[("artifact_name", "release-1")]);
    let (window, until_open) = window_ahead();
    let d = app.create_deployment(&json!({
        "name": "nightly", "artifact_name": "release-2", "devices": [id, stock.id],
        "rollout": {"window": window},
    }));
    // The aloft daemon downloads, verifies and waits, saying why and until when.
    let row = row_when(&app, &d, &id, "pause_before_installing", 60);
    let why = row["substate"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("outside the maintenance window, which opens at"),
        "{row}"
    );
    assert_eq!(
        deployment(&app, &d)["rollout"]["install_held"].as_str(),
        Some(why),
        "the deployment says what holds its installs"
    );
    assert!(
        stock.next(&app).is_none(),
        "a stock client waits for the window"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        device_row(&app, &d, &id)["status"],
        "pause_before_installing",
        "{}",
        dev.log_tail()
    );
    assert_ne!(
        installed(&dev),
        "release-2",
        "nothing installed outside the window"
    );
    // Into the window: both go.
    let moved = move_clock(&app, until_open + 60);
    assert!(moved["ahead_seconds"].as_i64().unwrap() >= 3600, "{moved}");
    assert!(
        stock.next(&app).is_some(),
        "the stock client gets it in the window"
    );
    assert_eq!(
        final_status(&app, &d, &id, 90),
        "success",
        "{}",
        dev.log_tail()
    );
    assert_eq!(installed(&dev), "release-2");
    assert!(
        deployment(&app, &d)["rollout"]
            .get("install_held")
            .is_none()
    );
    // A clock never goes back, and a server without a movable clock refuses to move it.
    app.put(
        "/api/management/v1/test/clock",
        &json!({"forward_seconds": -1}),
    )
    .expect(400);
    let fixed = TestApp::start();
    let r = fixed
        .put(
            "/api/management/v1/test/clock",
            &json!({"forward_seconds": 60}),
        )
        .expect(403);
    assert!(r.text().contains("not movable"), "{}", r.text());
}

#[test]
fn download_only_waits_for_the_release_and_a_consent_hook_defers_until_it_agrees() {
    let (app, work) = with_release_2();
    // Download-only: downloaded and verified, installed once released.
    let (plain, plain_id) = daemon(&app, work.path(), "plain", "");
    let d = app.create_deployment(&json!({
        "name": "staged", "artifact_name": "release-2", "devices": [plain_id],
        "rollout": {"install": "download-only"},
    }));
    let row = row_when(&app, &d, &plain_id, "pause_before_installing", 60);
    assert_eq!(
        row["substate"], "download-only: waiting for the operator's release",
        "{row}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_ne!(installed(&plain), "release-2");
    app.post(
        &format!("/api/management/v1/deployments/deployments/{d}/release"),
        &json!({}),
    )
    .expect(204);
    let info = deployment(&app, &d)["rollout"].clone();
    assert!(info["released"].is_string(), "{info}");
    let again = app
        .post(
            &format!("/api/management/v1/deployments/deployments/{d}/release"),
            &json!({}),
        )
        .expect(422);
    assert!(
        again.text().contains("already released"),
        "{}",
        again.text()
    );
    assert_eq!(
        final_status(&app, &d, &plain_id, 90),
        "success",
        "{}",
        plain.log_tail()
    );

    // Soft: the device's consent hook answers "later" (printing why) until a file appears;
    // it is asked before the install and again before the reboot.
    let yes = work.path().join("yes");
    let asked = work.path().join("asked");
    let hook = format!(
        "consent_hook = \"echo $ALOFT_CONSENT >> {asked}; test -e {yes} || {{ echo 'the user is driving'; exit 1; }}\"",
        asked = asked.display(),
        yes = yes.display()
    );
    let (polite, polite_id) = daemon(&app, work.path(), "polite", &hook);
    let d = app.create_deployment(&json!({
        "name": "soft", "artifact_name": "release-2", "devices": [polite_id],
        "rollout": {"install": "soft"},
    }));
    let row = row_when(&app, &d, &polite_id, "pause_before_installing", 60);
    let why = row["substate"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("waiting for the device's consent to install")
            && why.ends_with("the user is driving"),
        "{row}"
    );
    // It keeps asking at each update check, and installs nothing meanwhile.
    wait_for(30, "the hook to be asked again", || {
        let n = std::fs::read_to_string(&asked).ok()?.lines().count();
        (n >= 3).then_some(())
    });
    assert_ne!(installed(&polite), "release-2");
    // Yes: it installs, is asked about the reboot, reboots and commits.
    std::fs::write(&yes, "").unwrap();
    assert_eq!(
        final_status(&app, &d, &polite_id, 90),
        "success",
        "{}",
        polite.log_tail()
    );
    assert_eq!(installed(&polite), "release-2");
    let questions = std::fs::read_to_string(&asked).unwrap();
    assert!(
        questions.lines().last() == Some("reboot") && questions.contains("install\n"),
        "{questions}"
    );
}

#[test]
fn bad_windows_and_releases_get_a_clear_4xx_and_change_nothing() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    app.upload_ok(&artifact_with(work.path(), "release-2", "board-a", &[]));
    let dev = Planned::new(&app, 0x51, "board-a", &[("artifact_name", "release-1")]);
    let before = app
        .get("/api/management/v1/deployments/deployments")
        .expect(200)
        .json();
    for (window, why) in [
        (
            json!({"cron": "0 22 * *", "duration_seconds": 3600}),
            "five fields",
        ),
        (
            json!({"cron": "0 25 * * *", "duration_seconds": 3600}),
            "not a cron expression",
        ),
        (
            json!({"cron": "0 0 30 2 *", "duration_seconds": 3600}),
            "never matches",
        ),
        (
            json!({"cron": "0 22 * * *", "duration_seconds": 10}),
            "duration_seconds",
        ),
        (
            json!({"cron": "0 22 * * *", "duration_seconds": 3600, "time_zone": "Europe/Atlantis"}),
            "IANA",
        ),
        (
            json!({"cron": "0 22 * * *", "duration_seconds": 3600, "tz": "UTC"}),
            "unknown field",
        ),
    ] {
        let r = app
            .post(
                "/api/management/v1/deployments/deployments",
                &json!({"name": "w", "artifact_name": "release-2", "devices": [dev.id],
                        "rollout": {"window": window}}),
            )
            .expect(400);
        assert!(r.text().contains(why), "{window}: {}", r.text());
    }
    let r = app
        .post(
            "/api/management/v1/deployments/deployments",
            &json!({"name": "w", "artifact_name": "release-2", "devices": [dev.id],
                    "rollout": {"install": "eventually"}}),
        )
        .expect(400);
    assert!(r.text().contains("unknown variant"), "{}", r.text());
    assert_eq!(
        app.get("/api/management/v1/deployments/deployments")
            .expect(200)
            .json(),
        before,
        "nothing was created"
    );
    // A forced rollout without a window has nothing to release; an unknown one is a 404.
    let d = app.create_deployment(&json!({
        "name": "plain", "artifact_name": "release-2", "devices": [dev.id],
        "phases": [{}], "rollout": {"advance": "manual"},
    }));
    let r = app
        .post(
            &format!("/api/management/v1/deployments/deployments/{d}/release"),
            &json!({}),
        )
        .expect(422);
    assert!(r.text().contains("nothing to release"), "{}", r.text());
    app.post(
        "/api/management/v1/deployments/deployments/00000000-0000-4000-8000-000000000000/release",
        &json!({}),
    )
    .expect(404);
    // Releasing a finished deployment is refused too.
    app.put(
        &format!("/api/management/v1/deployments/deployments/{d}/status"),
        &json!({"status": "aborted"}),
    )
    .expect(204);
    let staged = app.create_deployment(&json!({
        "name": "staged", "artifact_name": "release-2", "devices": [dev.id],
        "rollout": {"install": "download-only"},
    }));
    assert!(
        dev.next(&app).is_none(),
        "a stock client is not handed a download-only update"
    );
    app.put(
        &format!("/api/management/v1/deployments/deployments/{staged}/status"),
        &json!({"status": "aborted"}),
    )
    .expect(204);
    let r = app
        .post(
            &format!("/api/management/v1/deployments/deployments/{staged}/release"),
            &json!({}),
        )
        .expect(422);
    assert!(r.text().contains("finished"), "{}", r.text());
}
