//! Deployment semantics as Mender's, driven by protocol-level devices.

use serde_json::json;

use crate::common::{SimDevice, TestApp, mender_single_file};

fn upload(app: &TestApp, work: &std::path::Path, name: &str, device_type: &str) {
    let art = mender_single_file(
        work,
        name,
        device_type,
        std::path::Path::new("/opt"),
        name.as_bytes(),
    );
    app.upload_ok(&art);
}

#[test]
fn devices_get_the_oldest_deployment_once_and_statuses_survive_a_restart() {
    let mut app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    upload(&app, work.path(), "r1", "test-device");
    upload(&app, work.path(), "r2", "test-device");
    upload(&app, work.path(), "other", "another-type");
    let mut dev = SimDevice::with_key("02:00:00:00:00:01", aloft_artifact::KeyType::Ecdsa);
    let id = dev.admit(&app);

    // Nothing to do yet.
    dev.next(&app, "r0").expect(204);
    let d1 = app.deploy("first", "r1", &[&id]);
    let d2 = app.deploy("second", "r2", &[&id]);
    // The oldest unfinished deployment comes first, repeatedly until it ends.
    let n = dev.next(&app, "r0").expect(200).json();
    assert_eq!(n["id"], d1.as_str());
    assert_eq!(n["artifact"]["artifact_name"], "r1");
    assert_eq!(
        n["artifact"]["device_types_compatible"],
        json!(["test-device"])
    );
    assert_eq!(dev.next(&app, "r0").expect(200).json()["id"], d1.as_str());
    let dep = app
        .get(&format!("/api/management/v1/deployments/deployments/{d1}"))
        .expect(200)
        .json();
    assert_eq!(dep["device_count"], 1);
    assert_eq!(dep["status"], "inprogress");
    // The download link works without authorization and gives the uploaded artifact.
    let uri = n["artifact"]["source"]["uri"].as_str().unwrap();
    assert!(uri.contains("x-men-signature="));
    let body = app.call("GET", uri, &[], None).expect(200).body;
    assert_eq!(
        aloft_artifact::ArtifactReader::open(&body[..], &aloft_artifact::ReadOptions::default())
            .unwrap()
            .info()
            .name,
        "r1"
    );

    for s in ["downloading", "installing"] {
        dev.status(&app, &d1, s).expect(204);
    }
    // A restart in the middle of the deployment loses nothing.
    app.restart();
    let list = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d1}/devices/list"
        ))
        .expect(200)
        .json();
    assert_eq!(list[0]["status"], "installing");
    // Existing device tokens stay valid across the restart.
    dev.status(&app, &d1, "rebooting").expect(204);
    dev.status(&app, &d1, "success").expect(204);
    // The final status can be repeated (the client retries it), but not changed.
    dev.status(&app, &d1, "success").expect(204);
    dev.status(&app, &d1, "failure").expect(422);
    let dep = app
        .get(&format!("/api/management/v1/deployments/deployments/{d1}"))
        .expect(200)
        .json();
    assert_eq!(dep["status"], "finished");
    assert!(dep["finished"].is_string());
    assert_eq!(dep["statistics"]["status"]["success"], 1);

    // Never the same deployment twice: now the second one.
    assert_eq!(dev.next(&app, "r1").expect(200).json()["id"], d2.as_str());
    dev.status(&app, &d2, "failure").expect(204);
    dev.next(&app, "r1").expect(204);

    // already-installed when the device runs the artifact; noartifact for another device type.
    let d3 = app.deploy("third", "r1", &[&id]);
    dev.next(&app, "r1").expect(204);
    let s = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d3}/statistics"
        ))
        .expect(200)
        .json();
    assert_eq!(s["already-installed"], 1);
    let d4 = app.deploy("fourth", "other", &[&id]);
    dev.next(&app, "r1").expect(204);
    let s = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d4}/statistics"
        ))
        .expect(200)
        .json();
    assert_eq!(s["noartifact"], 1);

    // Abort: the device is told with 409 on its next report.
    let d5 = app.deploy("fifth", "r2", &[&id]);
    assert_eq!(dev.next(&app, "r1").expect(200).json()["id"], d5.as_str());
    dev.status(&app, &d5, "downloading").expect(204);
    app.put(
        &format!("/api/management/v1/deployments/deployments/{d5}/status"),
        &json!({"status": "aborted"}),
    )
    .expect(204);
    dev.status(&app, &d5, "installing").expect(409);
    dev.status(&app, &d5, "failure").expect(409);
    dev.next(&app, "r1").expect(204);

    // The v1 fallbacks give the same answer.
    let d6 = app.deploy("sixth", "r2", &[&id]);
    let r = dev.call(
        &app,
        "POST",
        "/api/devices/v1/deployments/device/deployments/next",
        Some(&json!({"artifact_name": "r1", "device_type": "test-device"})),
    );
    assert_eq!(r.expect(200).json()["id"], d6.as_str());
    let r = dev.call(&app, "GET", "/api/devices/v1/deployments/device/deployments/next?artifact_name=r1&device_type=test-device", None);
    assert_eq!(r.expect(200).json()["id"], d6.as_str());

    // History, newest first, with filters.
    let h = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/devices/{id}?status=finished"
        ))
        .expect(200);
    assert_eq!(h.header("x-total-count"), Some("5"));
    app.get(&format!(
        "/api/management/v1/deployments/deployments/devices/{id}?per_page=21"
    ))
    .expect(400);
}

#[test]
fn concurrent_status_reports_of_one_device_stay_consistent() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    upload(&app, work.path(), "r1", "test-device");
    let mut dev = SimDevice::new("02:00:00:00:00:09");
    let id = dev.admit(&app);
    let d = app.deploy("race", "r1", &[&id]);
    dev.next(&app, "r0").expect(200);
    std::thread::scope(|s| {
        for i in 0..8 {
            let (app, dev, d) = (&app, &dev, &d);
            s.spawn(move || {
                for _ in 0..5 {
                    let status = if i % 2 == 0 {
                        "downloading"
                    } else {
                        "installing"
                    };
                    let r = dev.status(app, d, status);
                    assert!(
                        r.status == 204 || r.status == 422,
                        "{} {}",
                        r.status,
                        r.text()
                    );
                }
                dev.status(app, d, "success");
            });
        }
    });
    let list = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d}/devices/list"
        ))
        .expect(200)
        .json();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "one record per device and deployment"
    );
    assert_eq!(list[0]["status"], "success");
    let s = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{d}/statistics"
        ))
        .expect(200)
        .json();
    assert_eq!(s["success"], 1);
    assert_eq!(
        s.as_object()
            .unwrap()
            .values()
            .filter_map(serde_json::Value::as_u64)
            .sum::<u64>(),
        1
    );
}

#[test]
fn admission_rules_preauthorize_reject_decommission() {
    let app = TestApp::start();
    // Preauthorized: admitted on its first request.
    let mut pre = SimDevice::with_key("02:00:00:00:00:20", aloft_artifact::KeyType::Rsa);
    let pem = pre.key.verifying_key().to_pem().unwrap();
    let r = app
        .post(
            "/api/management/v2/devauth/devices",
            &json!({"identity_data": {"mac": "02:00:00:00:00:20"}, "pubkey": pem}),
        )
        .expect(201);
    assert!(r.body.is_empty());
    let id = r
        .header("location")
        .unwrap()
        .strip_prefix("devices/")
        .unwrap()
        .to_owned();
    let r = app
        .post(
            "/api/management/v2/devauth/devices",
            &json!({"identity_data": {"mac": "02:00:00:00:00:20"}, "pubkey": pem}),
        )
        .expect(409);
    assert_eq!(
        r.json()["id"],
        id.as_str(),
        "409 answers the existing device"
    );
    assert_eq!(pre.auth(&app), 200);
    assert_eq!(
        app.get(&format!("/api/management/v2/devauth/devices/{id}"))
            .expect(200)
            .json()["status"],
        "accepted"
    );
    pre.inventory(
        &app,
        &[("device_type", "test-device"), ("artifact_name", "a1")],
    )
    .expect(200);

    // Rejecting revokes its token at once; accepting again lets it back in.
    let aid = app
        .get(&format!("/api/management/v2/devauth/devices/{id}"))
        .expect(200)
        .json()["auth_sets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status_url = format!("/api/management/v2/devauth/devices/{id}/auth/{aid}/status");
    app.put(&status_url, &json!({"status": "rejected"}))
        .expect(204);
    pre.inventory(&app, &[("artifact_name", "a1")]).expect(401);
    assert_eq!(pre.auth(&app), 401);
    app.put(&status_url, &json!({"status": "preauthorized"}))
        .expect(400);
    app.put(&status_url, &json!({"status": "accepted"}))
        .expect(204);
    assert_eq!(
        app.get(&status_url).expect(200).json()["status"],
        "accepted"
    );
    assert_eq!(pre.auth(&app), 200);

    // The same identity with a new key: a second, pending auth set.
    let mut rekeyed = SimDevice::new("02:00:00:00:00:20");
    assert_eq!(rekeyed.auth(&app), 401);
    let d = app
        .get(&format!("/api/management/v2/devauth/devices/{id}"))
        .expect(200)
        .json();
    assert_eq!(d["auth_sets"].as_array().unwrap().len(), 2);
    assert_eq!(d["status"], "accepted");

    // Inventory filters and groups.
    app.put(
        &format!("/api/management/v1/inventory/devices/{id}/group"),
        &json!({"group": "lab"}),
    )
    .expect(204);
    app.put(
        &format!("/api/management/v1/inventory/devices/{id}/group"),
        &json!({"group": "../etc"}),
    )
    .expect(400);
    let found = app
        .get("/api/management/v1/inventory/devices?artifact_name=a1&group=lab")
        .expect(200)
        .json();
    assert_eq!(found.as_array().unwrap().len(), 1);
    let none = app
        .get("/api/management/v1/inventory/devices?artifact_name=zzz")
        .expect(200)
        .json();
    assert_eq!(none.as_array().unwrap().len(), 0);
    let r = app
        .post(
            "/api/management/v2/inventory/filters/search",
            &json!({"filters": [{"scope": "identity", "attribute": "status", "type": "$eq", "value": "accepted"},
                                {"scope": "inventory", "attribute": "artifact_name", "type": "$in", "value": ["a1", "a2"]}]}),
        )
        .expect(200);
    assert_eq!(r.header("x-total-count"), Some("1"));
    app.post("/api/management/v2/inventory/filters/search", &json!({"filters": [{"scope": "inventory", "attribute": "x", "type": "$bogus", "value": 1}]}))
        .expect(400);

    // Decommission: gone, token dead, its open deployment decommissioned.
    let work = tempfile::tempdir().unwrap();
    upload(&app, work.path(), "a2", "test-device");
    let dep = app.deploy("d", "a2", &[&id]);
    app.delete(&format!("/api/management/v2/devauth/devices/{id}"))
        .expect(204);
    app.get(&format!("/api/management/v2/devauth/devices/{id}"))
        .expect(404);
    pre.inventory(&app, &[("artifact_name", "a1")]).expect(401);
    let s = app
        .get(&format!(
            "/api/management/v1/deployments/deployments/{dep}/statistics"
        ))
        .expect(200)
        .json();
    assert_eq!(s["decommissioned"], 1);
}

#[test]
fn events_stream_device_and_deployment_changes_to_authorised_listeners() {
    use std::io::BufRead as _;
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    // No token, or a device's token: refused.
    app.call("GET", "/api/management/v1/events", &[], None)
        .expect(401);
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let response = app
        .agent
        .get(app.url("/api/management/v1/events"))
        .header("authorization", format!("Bearer {}", app.token))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines().map_while(Result::ok) {
            if let Some(data) = line.strip_prefix("data:") {
                let _ = tx.send(serde_json::from_str(data.trim()).unwrap());
            }
        }
    });
    let next_of = |kind: &str| -> serde_json::Value {
        loop {
            let e = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no {kind} event"));
            if e["type"] == kind {
                return e;
            }
        }
    };
    let mut dev = SimDevice::new("02:00:00:00:0e:01");
    let id = dev.admit(&app);
    let pending = next_of("device");
    assert_eq!(pending["status"], "pending");
    let accepted = next_of("device");
    assert_eq!(
        (accepted["id"].as_str(), accepted["status"].as_str()),
        (Some(id.as_str()), Some("accepted"))
    );
    upload(&app, work.path(), "app-2", "test-device");
    let d = app.deploy("live", "app-2", &[&id]);
    let created = next_of("deployment");
    assert_eq!(
        (created["id"].as_str(), created["status"].as_str()),
        (Some(d.as_str()), Some("pending"))
    );
    dev.next(&app, "app-1").expect(200);
    dev.status(&app, &d, "downloading").expect(204);
    let e = next_of("device_deployment");
    assert_eq!(
        (
            e["deployment_id"].as_str(),
            e["device_id"].as_str(),
            e["status"].as_str()
        ),
        (Some(d.as_str()), Some(id.as_str()), Some("downloading"))
    );
    // The event carries the deployment's new counters and summary: no need to ask again.
    assert_eq!(e["deployment"]["statistics"]["status"]["downloading"], 1);
    assert_eq!(e["deployment"]["summary"]["in_progress"], 1);
    assert_eq!(e["deployment"]["status"], "inprogress");
    dev.status(&app, &d, "failure").expect(204);
    let e = next_of("device_deployment");
    assert_eq!(e["status"], "failure");
    assert_eq!(e["deployment"]["status"], "finished");
    assert_eq!(e["deployment"]["summary"]["outcome"], "failed");
    let served = app
        .get(&format!("/api/management/v1/deployments/deployments/{d}"))
        .expect(200)
        .json();
    assert_eq!(served["summary"]["outcome"], "failed");

    // Outcomes the server decides, and aborting one device, are published too.
    let d2 = app.deploy("again", "app-2", &[&id]);
    next_of("deployment");
    dev.next(&app, "app-2").expect(204);
    let e = next_of("device_deployment");
    assert_eq!(
        (e["deployment_id"].as_str(), e["status"].as_str()),
        (Some(d2.as_str()), Some("already-installed"))
    );
    assert_eq!(e["deployment"]["summary"]["outcome"], "succeeded");
    let d3 = app.deploy("third", "app-2", &[&id]);
    next_of("deployment");
    app.delete(&format!(
        "/api/management/v1/deployments/deployments/devices/{id}"
    ))
    .expect(204);
    let e = next_of("device_deployment");
    assert_eq!(
        (e["deployment_id"].as_str(), e["status"].as_str()),
        (Some(d3.as_str()), Some("aborted"))
    );
    assert_eq!(e["deployment"]["summary"]["outcome"], "aborted");
}
