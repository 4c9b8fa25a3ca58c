//! Webhook gates end to end: a real HTTP endpoint on loopback stands for a monitoring system.
//! While it answers 503 the next phase stays closed (its devices are not handed the update),
//! the deployment says why without the URL's token, and the endpoint got the rollout's
//! standing; once it answers 200 and the retry time passed (a moved clock), the phase opens.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::common::wait_for;
use crate::rollouts::{Planned, artifact_with, deployment};
use crate::windows::{movable, move_clock};

/// A one-route HTTP server answering every request with the current `status`; keeps the
/// bodies it was sent.
struct Monitor {
    url: String,
    status: Arc<AtomicU16>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Monitor {
    fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/check", listener.local_addr().unwrap());
        let status = Arc::new(AtomicU16::new(status));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (answer, kept) = (status.clone(), bodies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    kept.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                }
                let code = answer.load(Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Self {
            url,
            status,
            bodies,
        }
    }
}

#[test]
fn a_webhook_gate_keeps_the_next_phase_closed_until_it_answers_2xx() {
    let app = movable();
    let work = tempfile::tempdir().unwrap();
    app.upload_ok(&artifact_with(work.path(), "release-2", "board-a", &[]));
    let old = [("artifact_name", "release-1")];
    let canary = Planned::new(&app, 0x61, "board-a", &old);
    let later = Planned::new(&app, 0x62, "board-a", &old);
    let monitor = Monitor::start(503);
    let gate = format!("{}?token=s3cret", monitor.url);
    // A gate on an operator-driven rollout is refused: nothing would ask it.
    let r = app
        .post(
            "/api/management/v1/deployments/deployments",
            &json!({"name": "g", "artifact_name": "release-2", "devices": [canary.id, later.id],
                    "phases": [{"devices": 1}, {}], "rollout": {"advance": "manual", "gates": [{"url": gate}]}}),
        )
        .expect(400);
    assert!(r.text().contains("gates go with advance"), "{}", r.text());
    let d = app.create_deployment(&json!({
        "name": "gated", "artifact_name": "release-2", "devices": [canary.id, later.id],
        "phases": [{"devices": 1}, {}],
        "rollout": {"advance": "auto", "canaries": [canary.id], "gates": [{"url": gate, "timeout_seconds": 5}]},
    }));
    assert!(canary.next(&app).is_some());
    let r = canary.dev.status(&app, &d, "success");
    assert_eq!(r.status, 204, "{}", r.text());
    // The phase met its threshold; the job asks the gate, which refuses.
    let held = wait_for(20, "the gate's refusal on the deployment", || {
        deployment(&app, &d)["rollout"]["gate_held"]
            .as_str()
            .map(str::to_owned)
    });
    assert_eq!(held, format!("gate {} answered 503", monitor.url));
    assert!(!held.contains("s3cret"), "no token shown: {held}");
    let shown = deployment(&app, &d)["rollout"]["options"]["gates"][0]["url"].clone();
    assert_eq!(shown, json!(monitor.url), "the options hide the token too");
    assert_eq!(deployment(&app, &d)["rollout"]["phase"], 1);
    assert!(later.next(&app).is_none(), "phase 2 stays closed");
    let asked = monitor.bodies.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "asked once, not at every tick: {asked:?}");
    let q = &asked[0];
    assert_eq!(q["deployment_id"], d.as_str(), "{q}");
    assert_eq!(
        (q["phase"].clone(), q["phases"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(q["open_phases"][0]["success"], 1, "{q}");
    // It answers 200: after the retry time the phase opens.
    monitor.status.store(200, Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        deployment(&app, &d)["rollout"]["phase"],
        1,
        "not before the retry time"
    );
    move_clock(&app, 31);
    wait_for(20, "the next phase to open", || {
        (deployment(&app, &d)["rollout"]["phase"] == 2).then_some(())
    });
    let info = deployment(&app, &d)["rollout"].clone();
    assert!(info.get("gate_held").is_none(), "{info}");
    assert!(
        later.next(&app).is_some(),
        "phase 2's device gets the update"
    );
    assert_eq!(monitor.bodies.lock().unwrap().len(), 2);
}
