//! Several replicas on one `PostgreSQL` database: what one replica does, the others see.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{SimDevice, TestApp, mender_single_file, wait_for};

/// The live events of `app`, as a channel.
pub(crate) fn listen(app: &TestApp) -> Receiver<Value> {
    use std::io::BufRead as _;
    let response = app
        .agent
        .get(app.url("/api/management/v1/events"))
        .header("authorization", format!("Bearer {}", app.token))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines().map_while(Result::ok) {
            if let Some(data) = line.strip_prefix("data:")
                && tx.send(serde_json::from_str(data.trim()).unwrap()).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// The next event of `kind` for which `check` holds, within 10 s.
pub(crate) fn expect_event(
    rx: &Receiver<Value>,
    kind: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {kind} event arrived"));
        if e["type"] == kind && check(&e) {
            return e;
        }
    }
}

#[test]
fn replicas_share_live_events_deployments_aborts_and_revocations() {
    let a = TestApp::start_shared();
    let b = a.replica();
    let events_on_a = listen(&a);

    // Admitted through replica B: the listener on A sees it.
    let mut dev = SimDevice::new("02:00:00:00:0f:01");
    let id = dev.admit(&b);
    expect_event(&events_on_a, "device", |e| {
        e["id"] == id.as_str() && e["status"] == "accepted"
    });

    // The device polls A (A caches its token and that it has nothing to do); a deployment
    // made on B reaches it on its next poll.
    dev.next(&a, "app-1").expect(204);
    dev.next(&a, "app-1").expect(204);
    let work = tempfile::tempdir().unwrap();
    let art = mender_single_file(work.path(), "app-2", "test-device", "/opt".as_ref(), b"two");
    a.upload_ok(&art);
    let d = b.deploy("on b", "app-2", &[&id]);
    let next = wait_for(
        3,
        "the deployment made on B reaches a device polling A",
        || {
            let r = dev.next(&a, "app-1");
            (r.status == 200).then(|| r.json())
        },
    );
    assert_eq!(next["id"], d.as_str());

    // Progress reported to A shows on a listener of B, and the reverse.
    let events_on_b = listen(&b);
    dev.status(&a, &d, "downloading").expect(204);
    expect_event(&events_on_b, "device_deployment", |e| {
        e["status"] == "downloading"
    });
    dev.status(&b, &d, "installing").expect(204);
    expect_event(&events_on_a, "device_deployment", |e| {
        e["status"] == "installing"
    });

    // Aborted on B: the device reporting to A is told to stop.
    b.put(
        &format!("/api/management/v1/deployments/deployments/{d}/status"),
        &json!({"status": "aborted"}),
    )
    .expect(204);
    dev.status(&a, &d, "rebooting").expect(409);

    // Rejected on B: A refuses the device's (cached) token within the feed's bound.
    dev.next(&a, "app-1").expect(204);
    let set = b
        .get(&format!("/api/management/v2/devauth/devices/{id}"))
        .expect(200)
        .json()["auth_sets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = Instant::now();
    b.put(
        &format!("/api/management/v2/devauth/devices/{id}/auth/{set}/status"),
        &json!({"status": "rejected"}),
    )
    .expect(204);
    wait_for(3, "replica A refuses the revoked token", || {
        (dev.next(&a, "app-1").status == 401).then_some(())
    });
    let took = revoked.elapsed();
    assert!(
        took <= aloft_server::cluster::POLL * 2,
        "the revocation took {took:?} to reach replica A"
    );
}

#[test]
fn a_replica_with_other_keys_is_refused_at_start() {
    let a = TestApp::start_shared();
    let url = a.database_url().to_owned();
    let fresh = tempfile::tempdir().unwrap();
    let Err(e) = TestApp::try_replica(fresh.path(), &url) else {
        panic!("a replica with its own keys started beside A");
    };
    let message = format!("{e:#}");
    assert!(
        message.contains("give every replica the same keys"),
        "{message}"
    );
    // The same keys are welcome.
    let b = a.replica();
    b.get("/api/management/v1/deployments/deployments")
        .expect(200);
}
