//! Rollouts end to end: phased deployments with aloft daemons on simulated devices (threshold
//! boundaries, a pause that holds later phases, resume and advance by hand), a real Mender
//! client in a phase made through Mender Enterprise's `phases`, the fleet-wide halt, Mender's
//! `retries` (a failed device starts over), and bad input refused with nothing created.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{SimDevice, TestApp, mender_single_file, wait_for};
use crate::daemon::{SimDaemon, accept, bin, device_log, inventory, rootfs_artifact};
use crate::mender_client::start_mender_with;

pub(crate) fn deployment(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/management/v1/deployments/deployments/{id}"))
        .expect(200)
        .json()
}

fn create(app: &TestApp, body: &Value) -> String {
    app.create_deployment(body)
}

/// Each device's status in a deployment.
pub(crate) fn statuses(app: &TestApp, id: &str) -> std::collections::BTreeMap<String, String> {
    app.get(&format!(
        "/api/management/v1/deployments/deployments/{id}/devices"
    ))
    .expect(200)
    .json()
    .as_array()
    .unwrap()
    .iter()
    .map(|d| {
        (
            d["id"].as_str().unwrap().to_owned(),
            d["status"].as_str().unwrap().to_owned(),
        )
    })
    .collect()
}

/// `n` simulated devices with running daemons (extra `aloft.toml` lines from their folder),
/// accepted; their ids in the same order.
fn fleet(
    app: &TestApp,
    work: &std::path::Path,
    n: usize,
    extra: impl Fn(&std::path::Path) -> String,
) -> (Vec<SimDaemon>, Vec<String>) {
    let daemons: Vec<SimDaemon> = (0..n)
        .map(|i| {
            let dir = work.join(format!("dev{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let dir = std::fs::canonicalize(&dir).unwrap();
            let mut d = SimDaemon::create(app, &dir, "sim-board", &extra(&dir));
            d.start();
            d
        })
        .collect();
    let ids = daemons.iter().map(|d| accept(app, &d.mac())).collect();
    (daemons, ids)
}

fn break_slot_b(dev: &SimDaemon) {
    let ok = Command::new(bin("aloftctl"))
        .args(["sim", "break"])
        .arg(&dev.dir)
        .arg("b")
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A device's row in a deployment's device list.
pub(crate) fn device_row(app: &TestApp, deployment: &str, device: &str) -> Value {
    app.get(&format!(
        "/api/management/v1/deployments/deployments/{deployment}/devices"
    ))
    .expect(200)
    .json()
    .as_array()
    .unwrap()
    .iter()
    .find(|d| d["id"] == device)
    .cloned()
    .unwrap()
}

#[test]
fn a_failed_device_starts_over_under_retries_and_its_last_failure_stands() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let (daemons, ids) = fleet(&app, work.path(), 3, |_| String::new());
    // Device 0 never boots the new slot; device 1 boots it once repaired after its first
    // failure; device 2 is healthy.
    break_slot_b(&daemons[0]);
    break_slot_b(&daemons[1]);
    app.upload_ok(&rootfs_artifact(
        work.path(),
        "release-2",
        "sim-board",
        1 << 20,
    ));
    let too_many = app.post(
        "/api/management/v1/deployments/deployments",
        &json!({"name": "r", "artifact_name": "release-2", "devices": ids, "retries": 101}),
    );
    assert_eq!(too_many.status, 400, "{}", too_many.text());
    let d = create(
        &app,
        &json!({"name": "retry", "artifact_name": "release-2", "devices": ids, "retries": 2}),
    );
    wait_for(
        120,
        "device 1 to start over after its first failure",
        || (device_row(&app, &d, &ids[1])["retried"].as_u64()? >= 1).then_some(()),
    );
    let repaired = Command::new(bin("aloftctl"))
        .args(["sim", "break", "--repair"])
        .arg(&daemons[1].dir)
        .arg("b")
        .status()
        .unwrap();
    assert!(repaired.success());
    let done = wait_for(240, "the deployment to finish", || {
        let v = deployment(&app, &d);
        (v["status"] == "finished").then_some(v)
    });
    assert_eq!(done["retries"], 2, "{done}");
    let rows: Vec<Value> = ids.iter().map(|id| device_row(&app, &d, id)).collect();
    // Three attempts, three failures: the last one stands, with its log.
    assert_eq!(
        (&rows[0]["status"], &rows[0]["retried"]),
        (&json!("failure"), &json!(2)),
        "{}",
        rows[0]
    );
    assert!(
        device_log(&app, &d, &ids[0]).contains("boot"),
        "the failure's log is kept"
    );
    // A failure, then success on a later attempt.
    assert_eq!(rows[1]["status"], "success", "{}", rows[1]);
    assert!(
        matches!(rows[1]["retried"].as_u64(), Some(1 | 2)),
        "{}",
        rows[1]
    );
    assert_eq!(rows[2]["status"], "success", "{}", rows[2]);
    assert!(rows[2].get("retried").is_none(), "{}", rows[2]);
    assert_eq!(done["statistics"]["status"]["failure"], 1, "{done}");
    assert_eq!(done["statistics"]["status"]["success"], 2, "{done}");
}

#[test]
fn phases_advance_at_the_success_threshold_and_pause_just_above_the_failure_threshold() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let (mut daemons, ids) = fleet(&app, work.path(), 10, |_| String::new());
    // Phase 1: devices 0-3 (one fails: 25%, exactly at the failure threshold; three succeed:
    // 75%, exactly at the success threshold). Phase 2: devices 4-7 (two fail: 50%, above
    // it). Phase 3: devices 8 and 9.
    for i in [0, 4, 5] {
        break_slot_b(&daemons[i]);
    }
    app.upload_ok(&rootfs_artifact(
        work.path(),
        "release-2",
        "sim-board",
        1 << 20,
    ));
    let d = create(
        &app,
        &json!({
            "name": "waves", "artifact_name": "release-2", "devices": ids,
            "phases": [{"devices": 4}, {"devices": 4}, {}],
            "rollout": {
                "canaries": ids,
                "advance": "auto", "success_threshold": 75,
                "failure_threshold": 25,
            },
        }),
    );
    let v = deployment(&app, &d);
    let counts: Vec<u64> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["device_count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [4, 4, 2], "{v}");
    assert_eq!(v["rollout"]["phase"], 1, "{v}");

    // Phase 1 ends at both boundaries: it advances, and phase 2 pauses it.
    let paused = wait_for(180, "the rollout to pause", || {
        let v = deployment(&app, &d);
        v["rollout"]["paused"].is_string().then_some(v)
    });
    assert_eq!(paused["rollout"]["phase"], 2, "{paused}");
    assert_eq!(
        paused["rollout"]["paused"],
        "phase 2: 2 of 4 devices failed (50%), above the failure threshold of 25%",
        "{paused}"
    );
    // Phase 2's devices end (one that had not started when the pause came stays pending).
    let s = wait_for(120, "phase 2 to end", || {
        let s = statuses(&app, &d);
        ids[4..8]
            .iter()
            .all(|id| ["success", "failure", "pending"].contains(&s[id].as_str()))
            .then_some(s)
    });
    let want = |id: usize| match id {
        0 | 4 | 5 => "failure",
        _ => "success",
    };
    for (i, id) in ids.iter().enumerate().take(8) {
        let held = i >= 6 && s[id] == "pending";
        assert!(s[id] == want(i) || held, "device {i}: {}", s[id]);
    }
    // Paused: the devices of phase 3 poll every second and are not offered it.
    std::thread::sleep(Duration::from_secs(5));
    let s = statuses(&app, &d);
    for (i, dev) in daemons.iter().enumerate().skip(8) {
        assert_eq!(s[&ids[i]], "pending", "device {i}");
        assert_eq!(dev.status()["artifact_name"], "factory-1", "device {i}");
    }

    // Bad commands change nothing: a second pause, resuming what runs.
    let base = format!("/api/management/v1/deployments/deployments/{d}");
    app.post(&format!("{base}/pause"), &json!({})).expect(422);
    // Resume: the failures seen are acknowledged; phase 2 has 50% success, below 75%, so it
    // waits; the operator advances by hand and phase 3 takes the update.
    app.post(&format!("{base}/resume"), &json!({})).expect(204);
    std::thread::sleep(Duration::from_secs(3));
    let v = deployment(&app, &d);
    assert_eq!(
        (
            v["rollout"]["phase"].as_u64(),
            v["rollout"]["paused"].as_str()
        ),
        (Some(2), None),
        "{v}"
    );
    app.post(&format!("{base}/resume"), &json!({})).expect(422);
    app.post(&format!("{base}/advance"), &json!({})).expect(204);
    let done = wait_for(120, "the rollout to finish", || {
        let v = deployment(&app, &d);
        (v["status"] == "finished").then_some(v)
    });
    assert_eq!(done["statistics"]["status"]["success"], 7, "{done}");
    assert_eq!(done["statistics"]["status"]["failure"], 3, "{done}");
    for (i, dev) in daemons.iter().enumerate().skip(8) {
        assert_eq!(dev.status()["artifact_name"], "release-2", "device {i}");
    }
    // A finished rollout takes no command.
    app.post(&format!("{base}/advance"), &json!({})).expect(422);
    for dev in &mut daemons {
        dev.kill();
    }
}

#[test]
fn a_real_mender_client_takes_part_in_mender_phases_and_the_halt_holds_everyone() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("installed");
    std::fs::create_dir_all(&dest).unwrap();
    let menders: Vec<_> = (1..=2)
        .map(|i| {
            start_mender_with(
                &app,
                &work.path().join(format!("mender{i}")),
                &format!("02:00:00:00:0d:0{i}"),
                Some(&dest),
            )
        })
        .collect();
    let ids: Vec<String> = (1..=2)
        .map(|i| accept(&app, &format!("02:00:00:00:0d:0{i}")))
        .collect();
    app.upload_ok(&mender_single_file(
        work.path(),
        "app-2",
        "test-device",
        &dest,
        b"two",
    ));
    // Mender Enterprise's body: half now, the rest at a start time.
    let second = aloft_api::time::now_us() + 20_000_000;
    let d = create(
        &app,
        &json!({
            "name": "phased", "artifact_name": "app-2", "devices": ids,
            "phases": [{"batch_size": 50}, {"start_ts": aloft_api::time::rfc3339(second)}],
        }),
    );
    let first = wait_for(90, "phase 1's device to succeed", || {
        let s = statuses(&app, &d);
        s.iter()
            .find(|(_, st)| *st == "success")
            .map(|(id, _)| id.clone())
    });
    let other = ids.iter().find(|id| **id != first).unwrap().clone();
    assert_eq!(statuses(&app, &d)[&other], "pending");
    // The halt holds the second phase past its start time.
    app.put(
        "/api/management/v1/deployments/halt",
        &json!({"halted": true, "reason": "incident 42"}),
    )
    .expect(204);
    let h = app
        .get("/api/management/v1/deployments/halt")
        .expect(200)
        .json();
    assert_eq!(h, json!({"halted": true, "reason": "incident 42"}));
    while aloft_api::time::now_us() < second + 6_000_000 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let v = deployment(&app, &d);
    assert_eq!(
        v["rollout"]["phase"], 2,
        "the phase opened at its time: {v}"
    );
    assert_eq!(v["rollout"]["halted"], true, "{v}");
    assert_eq!(statuses(&app, &d)[&other], "pending", "held by the halt");
    app.put(
        "/api/management/v1/deployments/halt",
        &json!({"halted": false}),
    )
    .expect(204);
    wait_for(90, "phase 2's device to succeed", || {
        (statuses(&app, &d)[&other] == "success").then_some(())
    });
    for m in &menders {
        assert_eq!(
            std::fs::read(m.root.join("installed/payload.txt")).unwrap(),
            b"two"
        );
    }
}

#[test]
fn bad_rollouts_get_clear_4xx_and_create_nothing() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let mut dev = SimDaemon::create(&app, &work.path().join("dev"), "sim-board", "");
    dev.start();
    let id = accept(&app, &dev.mac());
    app.upload_ok(&rootfs_artifact(
        work.path(),
        "release-2",
        "sim-board",
        1 << 16,
    ));
    let body = |phases: Value, rollout: Value| {
        let mut b =
            json!({"name": "bad", "artifact_name": "release-2", "devices": [id], "phases": phases});
        if !rollout.is_null() {
            b["rollout"] = rollout;
        }
        b
    };
    let cases = [
        (
            body(json!([{"devices": 1}, {}]), json!({"advance": "manual"})),
            400,
            "phase 2 would have no device",
        ),
        (
            body(
                json!([{"batch_size": 60}, {"batch_size": 60, "start_ts": "2030-01-01T00:00:00Z"}]),
                Value::Null,
            ),
            400,
            "add up to 120%",
        ),
        (
            body(
                json!([{"batch_size": 50, "start_ts": "2030-01-02T00:00:00Z"}, {"start_ts": "2030-01-01T00:00:00Z"}]),
                Value::Null,
            ),
            400,
            "before the previous",
        ),
        (
            body(
                json!([{"batch_size": 50}, {"start_ts": "next tuesday"}]),
                Value::Null,
            ),
            400,
            "not RFC 3339",
        ),
        (
            body(
                json!([{"batch_size": 50}, {}]),
                json!({"advance": "auto", "failure_threshold": 101}),
            ),
            400,
            "from 0 to 100",
        ),
        (
            body(
                json!([{"batch_size": 50}, {}]),
                json!({"advance": "sideways"}),
            ),
            400,
            "sideways",
        ),
        (
            body(
                json!([{"batch_size": 50}, {}]),
                json!({"advance": "auto", "canaries": ["not-a-device"]}),
            ),
            400,
            "not among",
        ),
    ];
    for (b, code, text) in cases {
        let r = app
            .post("/api/management/v1/deployments/deployments", &b)
            .expect(code);
        let msg = String::from_utf8_lossy(&r.body).into_owned();
        assert!(msg.contains(text), "{b}: {msg}");
    }
    let list = app
        .get("/api/management/v1/deployments/deployments")
        .expect(200)
        .json();
    assert_eq!(list, json!([]), "nothing was created");
    // Commands on a plain deployment or an unknown one.
    let plain = app.deploy("plain", "release-2", &[&id]);
    let base = "/api/management/v1/deployments/deployments";
    app.post(&format!("{base}/{plain}/pause"), &json!({}))
        .expect(422);
    app.post(
        &format!("{base}/00000000-0000-4000-8000-000000000000/advance"),
        &json!({}),
    )
    .expect(404);
    app.put(
        "/api/management/v1/deployments/halt",
        &json!({"halted": "yes"}),
    )
    .expect(400);
    dev.kill();
}

/// A device of the plan test: its protocol client and what it provides.
pub(crate) struct Planned {
    pub(crate) dev: SimDevice,
    pub(crate) id: String,
    provides: Value,
}

impl Planned {
    pub(crate) fn new(app: &TestApp, n: u8, device_type: &str, extra: &[(&str, &str)]) -> Self {
        let mut dev = SimDevice::new(&format!("02:00:00:00:0f:{n:02x}"));
        dev.device_type = device_type.into();
        let id = dev.admit(app);
        let mut me = Self {
            dev,
            id,
            provides: json!({}),
        };
        me.set(app, extra);
        me
    }

    /// Reports these provides (with `device_type`) as inventory.
    pub(crate) fn set(&mut self, app: &TestApp, provides: &[(&str, &str)]) {
        let mut attrs = vec![("device_type", self.dev.device_type.as_str())];
        attrs.extend_from_slice(provides);
        self.dev.inventory(app, &attrs).expect(200);
        self.provides = attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }

    /// Polls with its provides: the artifact id it is handed, if any.
    pub(crate) fn next(&self, app: &TestApp) -> Option<String> {
        let r = self.dev.call(
            app,
            "POST",
            "/api/devices/v2/deployments/device/deployments/next",
            Some(&json!({"device_provides": self.provides, "update_control_map": false})),
        );
        match r.status {
            200 => Some(r.json()["artifact"]["id"].as_str()?.to_owned()),
            204 => None,
            other => panic!("next answered {other}: {}", r.text()),
        }
    }
}

pub(crate) fn artifact_with(
    work: &std::path::Path,
    name: &str,
    device_type: &str,
    depends: &[&str],
) -> std::path::PathBuf {
    let image = work.join(format!("{device_type}.img"));
    std::fs::write(&image, vec![7u8; 4096]).unwrap();
    let out = work.join(format!("{name}-{device_type}.mender"));
    let mut cmd = Command::new(bin("aloftctl"));
    cmd.args(["artifact", "write", "rootfs-image", "--no-progress", "-f"])
        .arg(&image)
        .args(["-n", name, "-t", device_type, "-o"])
        .arg(&out);
    for d in depends {
        cmd.args(["-d", d]);
    }
    assert!(cmd.status().unwrap().success());
    out
}

#[test]
fn a_plan_lists_every_device_with_its_outcome_and_the_rollout_does_what_it_said() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let board_a = app.upload_ok(&artifact_with(work.path(), "release-2", "board-a", &[]));
    let board_b = app.upload_ok(&artifact_with(
        work.path(),
        "release-2",
        "board-b",
        &["board.rev:2"],
    ));
    let old = [("artifact_name", "release-1")];
    let mut fleet = [
        Planned::new(&app, 1, "board-a", &old),
        Planned::new(&app, 2, "board-a", &old),
        Planned::new(&app, 3, "board-a", &[("artifact_name", "release-2")]),
        Planned::new(&app, 4, "board-c", &old),
        Planned::new(
            &app,
            5,
            "board-b",
            &[("artifact_name", "release-1"), ("board.rev", "1")],
        ),
        Planned::new(
            &app,
            6,
            "board-b",
            &[("artifact_name", "release-1"), ("board.rev", "2")],
        ),
        Planned::new(&app, 7, "board-a", &old),
    ];
    let ids: Vec<&str> = fleet.iter().map(|p| p.id.as_str()).collect();
    let mut body = json!({
        "name": "planned", "artifact_name": "release-2", "devices": ids,
        "phases": [{"batch_size": 50}, {}], "rollout": {"advance": "manual"},
    });
    let plan = app
        .post("/api/management/v1/deployments/deployments/plan", &body)
        .expect(200)
        .json();
    // Creation order, 4 (50 % of 7, rounded up) then 3.
    let row = |i: usize| {
        plan["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == fleet[i].id.as_str())
            .cloned()
            .unwrap()
    };
    let want: [(u64, &str, Option<&str>, &str); 7] = [
        (1, "update", Some(&board_a), ""),
        (1, "update", Some(&board_a), ""),
        (1, "already-installed", None, "it runs release-2 already"),
        (
            1,
            "noartifact",
            None,
            "no artifact of release-2 is for device type \"board-c\"",
        ),
        (
            2,
            "noartifact",
            None,
            "the depends of release-2's artifacts for \"board-b\" do not hold",
        ),
        (2, "update", Some(&board_b), ""),
        (2, "update", Some(&board_a), ""),
    ];
    for (i, (phase, outcome, artifact, reason)) in want.iter().enumerate() {
        let r = row(i);
        assert_eq!(r["phase"], *phase, "device {i}: {r}");
        assert_eq!(r["outcome"], *outcome, "device {i}: {r}");
        assert_eq!(r["artifact_id"].as_str(), *artifact, "device {i}: {r}");
        assert!(
            r["reason"].as_str().unwrap_or_default().contains(reason),
            "device {i}: {r}"
        );
        assert_eq!(
            r["bytes"].as_u64().unwrap() > 0,
            artifact.is_some(),
            "device {i}: {r}"
        );
    }
    assert_eq!(plan["totals"]["devices"], 7, "{plan}");
    assert_eq!(plan["totals"]["updates"], 4, "{plan}");
    assert_eq!(plan["totals"]["skipped"], 3, "{plan}");
    assert_eq!(plan["phases"][0]["device_count"], 4, "{plan}");
    assert_eq!(plan["phases"][1]["updates"], 2, "{plan}");
    assert!(plan["phases"][0]["earliest_start"].is_string(), "{plan}");
    assert!(
        plan["phases"][1]["earliest_start"].is_null(),
        "manual: {plan}"
    );

    // The fleet changes after the plan: creating from it is refused, and nothing is made.
    body["expect_plan"] = plan["digest"].clone();
    fleet[5].set(&app, &[("artifact_name", "release-1"), ("board.rev", "1")]);
    let r = app
        .post("/api/management/v1/deployments/deployments", &body)
        .expect(409);
    assert!(
        r.text().contains("the fleet changed since the plan"),
        "{}",
        r.text()
    );
    assert_eq!(
        app.get("/api/management/v1/deployments/deployments")
            .expect(200)
            .json(),
        json!([])
    );
    fleet[5].set(&app, &[("artifact_name", "release-1"), ("board.rev", "2")]);
    let d = create(&app, &body);

    // The rollout does what the plan said: phase 1 now, phase 2 once advanced.
    let planned_status = |i: usize| match want[i].1 {
        "update" => "pending", // handed out, not reported yet
        other => other,
    };
    for (i, p) in fleet.iter().enumerate() {
        let open = want[i].0 == 1;
        let got = p.next(&app);
        assert_eq!(
            got.as_deref(),
            if open { want[i].2 } else { None },
            "device {i}"
        );
    }
    let s = statuses(&app, &d);
    for (i, p) in fleet.iter().enumerate() {
        let open = want[i].0 == 1;
        assert_eq!(
            s[&p.id],
            if open { planned_status(i) } else { "pending" },
            "device {i}"
        );
    }
    app.post(
        &format!("/api/management/v1/deployments/deployments/{d}/advance"),
        &json!({}),
    )
    .expect(204);
    for (i, p) in fleet.iter().enumerate().skip(4) {
        assert_eq!(p.next(&app).as_deref(), want[i].2, "device {i}");
    }
    let s = statuses(&app, &d);
    for (i, p) in fleet.iter().enumerate() {
        assert_eq!(s[&p.id], planned_status(i), "device {i}");
    }
    let phases: Vec<u64> = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d}/devices"
        ))
        .expect(200)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["phase"].as_u64().unwrap())
        .collect();
    assert_eq!(phases.iter().filter(|p| **p == 2).count(), 3);
}

#[test]
fn the_concurrency_cap_and_the_rate_limit_hold_devices_back_over_a_moved_clock() {
    let app = crate::windows::movable();
    let work = tempfile::tempdir().unwrap();
    app.upload_ok(&artifact_with(work.path(), "release-2", "board-a", &[]));
    let old = [("artifact_name", "release-1")];
    let fleet: Vec<Planned> = (1..=4)
        .map(|n| Planned::new(&app, 0x20 + n, "board-a", &old))
        .collect();
    let ids: Vec<&str> = fleet.iter().map(|p| p.id.as_str()).collect();
    // One phase of all four; at most two installing at once, three a minute.
    let d = create(
        &app,
        &json!({
            "name": "paced", "artifact_name": "release-2", "devices": ids,
            "phases": [{}], "rollout": {"advance": "manual", "max_installing": 2, "max_per_minute": 3},
        }),
    );
    let handed: Vec<bool> = fleet.iter().map(|p| p.next(&app).is_some()).collect();
    assert_eq!(handed, [true, true, false, false], "two at once");
    // One ends: a third may start; the fourth waits for the minute (three started in it).
    let r = fleet[0].dev.status(&app, &d, "success");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(fleet[2].next(&app).is_some(), "a place came free");
    let r = fleet[1].dev.status(&app, &d, "success");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(fleet[3].next(&app).is_none(), "three started this minute");
    assert_eq!(statuses(&app, &d)[&fleet[3].id], "pending");
    // 59 seconds on, the minute still holds it; a minute on, it starts (one installs now).
    crate::windows::move_clock(&app, 59);
    assert!(fleet[3].next(&app).is_none(), "still within the minute");
    crate::windows::move_clock(&app, 2);
    assert!(fleet[3].next(&app).is_some(), "the minute passed");
    // A limit that may not apply to a plain deployment is refused.
    let bad = app
        .post(
            "/api/management/v1/deployments/deployments",
            &json!({"name": "x", "artifact_name": "release-2", "devices": ids,
                    "phases": [{}], "rollout": {"rate_doubling": 2}}),
        )
        .expect(400);
    assert!(
        bad.text().contains("goes with max_per_minute"),
        "{}",
        bad.text()
    );
}

#[test]
fn the_health_gate_pauses_when_updated_devices_fail_their_probe_and_not_before_then_rolls_back() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    // Each device is healthy while its folder holds no `sick` file.
    let (mut daemons, ids) = fleet(&app, work.path(), 6, |dir| {
        format!(
            "health_probe = \"test ! -e {}\"\nhealth_interval_seconds = 1",
            dir.join("sick").display()
        )
    });
    app.upload_ok(&rootfs_artifact(
        work.path(),
        "release-2",
        "sim-board",
        1 << 20,
    ));
    // What the simulated devices run at first: the roll-back's release.
    app.upload_ok(&rootfs_artifact(
        work.path(),
        "factory-1",
        "sim-board",
        1 << 20,
    ));
    wait_for(30, "every device's inventory", || {
        ids.iter()
            .all(|id| inventory(&app, id, "artifact_name") == Some(json!("factory-1")))
            .then_some(())
    });
    let d = create(
        &app,
        &json!({
            "name": "watched", "artifact_name": "release-2", "devices": ids,
            "phases": [{"devices": 2}, {}],
            "rollout": {"advance": "manual",
                        "health": {"margin": 20, "offline_after_seconds": 30, "roll_back": true}},
        }),
    );
    wait_for(120, "phase 1 to succeed", || {
        let v = deployment(&app, &d);
        (v["phases"][0]["summary"]["success"] == 2).then_some(())
    });
    // Healthy like the rest: the gate lets it be (the job looks every 2 s).
    std::thread::sleep(Duration::from_secs(6));
    let v = deployment(&app, &d);
    assert!(v["rollout"]["paused"].is_null(), "{v}");
    // The updated devices start failing their probe; the control cohort stays healthy.
    let updated: Vec<usize> = {
        let s = statuses(&app, &d);
        (0..6).filter(|i| s[&ids[*i]] == "success").collect()
    };
    assert_eq!(updated.len(), 2);
    for i in &updated {
        std::fs::write(daemons[*i].dir.join("sick"), b"").unwrap();
    }
    let paused = wait_for(60, "the health gate to pause the rollout", || {
        let v = deployment(&app, &d);
        v["rollout"]["paused"].is_string().then_some(v)
    });
    // The first sick device is enough (50% against 0%): the gate may stop at one or two.
    let why = paused["rollout"]["paused"].as_str().unwrap();
    let reason = |n: u32| {
        format!(
            "health: {n} of 2 updated devices are unhealthy ({}%: {n} fail their health probe, 0 are offline, 0 rebooted) against 0 of 4 not yet updated (0%), worse by more than 20 points",
            n * 50
        )
    };
    let (why, rolled) = why.split_once("; ").unwrap();
    assert!(why == reason(1) || why == reason(2), "{paused}");
    // It rolled the updated devices back to what they ran before, in a deployment of its own.
    let back = rolled
        .strip_prefix("rolling 2 updated devices back to factory-1 (deployment ")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{paused}"))
        .to_owned();
    let b = deployment(&app, &back);
    assert_eq!(
        (b["name"].as_str(), b["artifact_name"].as_str()),
        (Some("roll back watched"), Some("factory-1")),
        "{b}"
    );
    for i in &updated {
        assert_eq!(
            crate::daemon::final_status(&app, &back, &ids[*i], 120),
            "success",
            "{}",
            daemons[*i].log_tail()
        );
        assert_eq!(daemons[*i].status()["artifact_name"], "factory-1");
    }
    assert_eq!(statuses(&app, &back).len(), 2, "only the updated devices");
    // The comparison over time, for the chart: the last sample has the sick cohort.
    let h = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d}/health"
        ))
        .expect(200)
        .json();
    assert_eq!(h["margin"], 20, "{h}");
    let samples = h["samples"].as_array().unwrap();
    assert!(!samples.is_empty(), "{h}");
    let sick = samples
        .iter()
        .find(|x| x["updated"]["failing"].as_u64() > Some(0))
        .unwrap_or_else(|| panic!("no sample saw the sick devices: {h}"));
    assert_eq!(sick["updated"]["devices"], 2, "{h}");
    assert_eq!(sick["control"]["devices"], 4, "{h}");
    assert_eq!(sick["control"]["failing"], 0, "{h}");
    let plain = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{back}/health"
        ))
        .expect(422);
    assert!(plain.text().contains("no health gate"), "{}", plain.text());
    // Each sick device says so in its inventory (the gate may have acted on the first one).
    for i in &updated {
        wait_for(30, "the sick device's health in its inventory", || {
            (inventory(&app, &ids[*i], "aloft.health") == Some(json!("failing"))).then_some(())
        });
    }
    for dev in &mut daemons {
        dev.kill();
    }
}

#[test]
fn the_health_gate_pauses_when_updated_devices_reboot_again() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    let (mut daemons, ids) = fleet(&app, work.path(), 6, |_| String::new());
    app.upload_ok(&rootfs_artifact(
        work.path(),
        "release-2",
        "sim-board",
        1 << 20,
    ));
    let reboot = |dev: &mut SimDaemon| {
        dev.kill();
        let ok = Command::new(bin("aloftctl"))
            .args(["sim", "reboot"])
            .arg(&dev.dir)
            .status()
            .unwrap();
        assert!(ok.success());
        dev.start();
    };
    // Every device rebooted once since its last update: the count it reports before this
    // rollout's update is no reboot after it.
    for dev in &mut daemons {
        reboot(dev);
    }
    for id in &ids {
        wait_for(30, "the boot count before the rollout", || {
            (inventory(&app, id, "aloft.boots_since_update") == Some(json!(1))).then_some(())
        });
    }
    let d = create(
        &app,
        &json!({
            "name": "watched", "artifact_name": "release-2", "devices": ids,
            "phases": [{"devices": 2}, {}],
            "rollout": {"advance": "manual", "health": {"margin": 20, "offline_after_seconds": 60}},
        }),
    );
    wait_for(120, "phase 1 to succeed", || {
        let v = deployment(&app, &d);
        (v["phases"][0]["summary"]["success"] == 2).then_some(())
    });
    let updated: Vec<usize> = {
        let s = statuses(&app, &d);
        (0..6).filter(|i| s[&ids[*i]] == "success").collect()
    };
    // The update's own reboot is not a reboot after it: each reports 0 and the gate lets it be.
    for i in &updated {
        wait_for(30, "the boot count after the update", || {
            (inventory(&app, &ids[*i], "aloft.boots_since_update") == Some(json!(0))).then_some(())
        });
    }
    std::thread::sleep(Duration::from_secs(6));
    let v = deployment(&app, &d);
    assert!(v["rollout"]["paused"].is_null(), "{v}");
    // Both updated devices go down and boot again (the control cohort runs on).
    for i in &updated {
        reboot(&mut daemons[*i]);
    }
    let paused = wait_for(60, "the health gate to pause the rollout", || {
        let v = deployment(&app, &d);
        v["rollout"]["paused"].is_string().then_some(v)
    });
    let why = paused["rollout"]["paused"].as_str().unwrap();
    let reason = |n: u32| {
        format!(
            "health: {n} of 2 updated devices are unhealthy ({}%: 0 fail their health probe, 0 are offline, {n} rebooted) against 0 of 4 not yet updated (0%), worse by more than 20 points",
            n * 50
        )
    };
    assert!(why == reason(1) || why == reason(2), "{paused}");
    for i in &updated {
        assert_eq!(
            inventory(&app, &ids[*i], "aloft.boots_since_update"),
            Some(json!(1))
        );
    }
    let h = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d}/health"
        ))
        .expect(200)
        .json();
    let last = h["samples"].as_array().unwrap().last().cloned().unwrap();
    assert!(last["updated"]["rebooted"].as_u64() > Some(0), "{h}");
    assert_eq!(
        last["updated"]["unhealthy"], last["updated"]["rebooted"],
        "{h}"
    );
    assert_eq!(last["control"]["unhealthy"], 0, "{h}");
    // No device of phase 2 was handed the update.
    let s = statuses(&app, &d);
    assert_eq!(s.values().filter(|x| *x == "success").count(), 2, "{s:?}");
    for dev in &mut daemons {
        dev.kill();
    }
}

#[test]
fn a_rollout_stored_by_an_older_version_still_takes_commands_and_advances() {
    use aloft_server::store::Store as _;
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    app.upload_ok(&artifact_with(work.path(), "release-2", "board-a", &[]));
    let old = [("artifact_name", "release-1")];
    let fleet: Vec<Planned> = (1..=2)
        .map(|n| Planned::new(&app, 0x70 + n, "board-a", &old))
        .collect();
    let d = create(
        &app,
        &json!({"name": "old", "artifact_name": "release-2", "devices": [fleet[0].id, fleet[1].id],
                "phases": [{"devices": 1}, {}], "rollout": {"advance": "manual"}}),
    );
    // The state as a version without the newer fields wrote it.
    let url = app.config.as_ref().unwrap().database_url.clone();
    app.rt.block_on(async {
        let store = aloft_server::server::open_store_url(&app.data_dir(), Some(&url))
            .await
            .unwrap();
        let row = store.deployment(&d).await.unwrap().unwrap();
        let now = row.rollout_state.clone().unwrap();
        let mut v: Value = serde_json::from_str(&now).unwrap();
        for newer in [
            "released",
            "gate_held",
            "gate_checked",
            "acknowledged_unhealthy",
        ] {
            v.as_object_mut().unwrap().remove(newer);
        }
        assert!(
            store
                .set_rollout_state(&d, &now, &v.to_string())
                .await
                .unwrap()
        );
        store.close().await;
    });
    for command in ["pause", "resume", "advance"] {
        app.post(
            &format!("/api/management/v1/deployments/deployments/{d}/{command}"),
            &json!({}),
        )
        .expect(204);
    }
    assert_eq!(deployment(&app, &d)["rollout"]["phase"], 2);
    assert!(fleet[1].next(&app).is_some(), "phase 2 is open");
}
