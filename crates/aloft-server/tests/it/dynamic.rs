//! Dynamic groups end to end, through Mender Enterprise's APIs: saved filters, a phased
//! dynamic deployment that devices join while it runs (a new device, and one whose inventory
//! changes) in the next phase, `max_devices` in the plan, and bad input refused with nothing
//! created.

use serde_json::{Value, json};

use crate::common::TestApp;
use crate::rollouts::{Planned, artifact_with, deployment, device_row, statuses};

const FILTERS: &str = "/api/management/v2/inventory/filters";
const DYNAMIC: &str = "/api/management/v2/deployments/deployments";

fn site(value: &str) -> Value {
    json!([{"scope": "inventory", "attribute": "site", "type": "$eq", "value": value}])
}

/// Saves a filter; its id.
fn save(app: &TestApp, name: &str, terms: &Value) -> String {
    app.post(FILTERS, &json!({"name": name, "terms": terms}))
        .expect(201)
        .created_id()
}

fn deployment_count(app: &TestApp) -> usize {
    app.get("/api/management/v1/deployments/deployments")
        .expect(200)
        .json()
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn devices_that_come_to_match_a_dynamic_group_join_its_rollout_in_the_next_phase() {
    let app = TestApp::start();
    let work = tempfile::tempdir().unwrap();
    app.upload_ok(&artifact_with(work.path(), "release-2", "board-a", &[]));
    let at = |s: &'static str| [("artifact_name", "release-1"), ("site", s)];
    let oslo: Vec<Planned> = (1..=3)
        .map(|n| Planned::new(&app, 0x30 + n, "board-a", &at("oslo")))
        .collect();
    let mut bergen = Planned::new(&app, 0x3a, "board-a", &at("bergen"));

    let id = save(&app, "oslo", &site("oslo"));
    let listed = app.get(FILTERS).expect(200).json();
    assert_eq!(listed[0]["name"], "oslo");
    assert_eq!(listed[0]["terms"], site("oslo"));
    let found = app.get(&format!("{FILTERS}/{id}/search")).expect(200);
    assert_eq!(found.header("x-total-count"), Some("3"));

    // Bad input: each a clear 4xx, nothing created.
    let bad_filters = [
        (
            json!({"name": "x", "terms": [{"scope": "inventory", "attribute": "site", "type": "$regex", "value": "o.*"}]}),
            400,
            "unknown operator",
        ),
        (json!({"name": "x", "terms": []}), 400, "at least one term"),
        (
            json!({"name": "with space", "terms": site("oslo")}),
            400,
            "name",
        ),
        (
            json!({"name": "oslo", "terms": site("oslo")}),
            409,
            "exists",
        ),
    ];
    for (body, status, says) in bad_filters {
        let r = app.post(FILTERS, &body).expect(status);
        assert!(r.text().contains(says), "{body}: {}", r.text());
    }
    assert_eq!(
        app.get(FILTERS)
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let nowhere = save(&app, "nowhere", &site("nowhere"));
    let before = deployment_count(&app);
    let bad_deployments = [
        (
            json!({"name": "d", "artifact_name": "release-2", "filter_id": nowhere}),
            "No devices",
        ),
        (
            json!({"name": "d", "artifact_name": "release-2", "filter_id": "8f0e5c0e-0000-4000-8000-000000000000"}),
            "no saved filter",
        ),
        (
            json!({"name": "d", "artifact_name": "release-2", "filter_id": id, "max_devices": 0}),
            "at least 1",
        ),
        (
            json!({"name": "d", "artifact_name": "release-2", "filter_id": id, "phases": [{"devices": 3}, {}]}),
            "phase",
        ),
    ];
    for (body, says) in bad_deployments {
        let r = app.post(DYNAMIC, &body).expect(400);
        assert!(r.text().contains(says), "{body}: {}", r.text());
    }
    assert_eq!(deployment_count(&app), before);

    // The plan with a cap: the first two in admission order, the third left out.
    let plan = app
        .post(
            &format!("{DYNAMIC}/plan"),
            &json!({"name": "capped", "artifact_name": "release-2", "filter_id": id, "max_devices": 2}),
        )
        .expect(200)
        .json();
    let outcome = |dev: &Planned| {
        plan["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == dev.id.as_str())
            .map(|d| {
                (
                    d["outcome"].as_str().unwrap().to_owned(),
                    d["phase"].as_u64().unwrap(),
                )
            })
            .unwrap()
    };
    assert_eq!(outcome(&oslo[0]), ("update".into(), 1));
    assert_eq!(outcome(&oslo[1]), ("update".into(), 1));
    assert_eq!(outcome(&oslo[2]), ("over-max".into(), 0));
    assert_eq!(plan["totals"]["skipped"], 1);

    // A canary phase of one, then the rest, advanced by hand.
    let r = app
        .post(
            DYNAMIC,
            &json!({"name": "oslo waves", "artifact_name": "release-2", "filter_id": id,
                    "phases": [{"devices": 1}, {}], "rollout": {"advance": "manual"}}),
        )
        .expect(201);
    let d = r.created_id();
    let dep = deployment(&app, &d);
    assert_eq!(dep["filter"]["name"], "oslo");
    assert_eq!(dep["filter"]["terms"], site("oslo"));
    assert_eq!(statuses(&app, &d).len(), 3);

    // A new device in Oslo, and the Bergen device moving there: both join, in phase 2.
    let newcomer = Planned::new(&app, 0x3b, "board-a", &at("oslo"));
    bergen.set(&app, &at("oslo"));
    for dev in [&newcomer, &bergen] {
        assert_eq!(device_row(&app, &d, &dev.id)["phase"], 2, "{}", dev.id);
        assert!(dev.next(&app).is_none(), "phase 2 is not open yet");
    }
    assert_eq!(statuses(&app, &d).len(), 5);
    // Deleting the saved filter changes nothing for the deployment (it kept a copy).
    app.delete(&format!("{FILTERS}/{id}")).expect(204);
    app.get(&format!("{FILTERS}/{id}")).expect(404);
    assert_eq!(deployment(&app, &d)["filter"]["name"], "oslo");

    let canary = oslo
        .iter()
        .find(|p| device_row(&app, &d, &p.id)["phase"] == 1)
        .unwrap();
    assert!(canary.next(&app).is_some());
    let r = canary.dev.status(&app, &d, "success");
    assert_eq!(r.status, 204, "{}", r.text());
    app.post(
        &format!("/api/management/v1/deployments/deployments/{d}/advance"),
        &json!({}),
    )
    .expect(204);
    let rest: Vec<&Planned> = oslo
        .iter()
        .filter(|p| p.id != canary.id)
        .chain([&newcomer, &bergen])
        .collect();
    for dev in &rest {
        assert!(
            dev.next(&app).is_some(),
            "{} gets it once phase 2 opens",
            dev.id
        );
        let r = dev.dev.status(&app, &d, "success");
        assert_eq!(r.status, 204, "{}", r.text());
    }
    // Every device updated, but without a cap it waits for more until it is aborted.
    assert!(statuses(&app, &d).values().all(|s| s == "success"));
    assert_eq!(deployment(&app, &d)["status"], "inprogress");
    app.put(
        &format!("/api/management/v1/deployments/deployments/{d}/status"),
        &json!({"status": "aborted"}),
    )
    .expect(204);
    assert_eq!(deployment(&app, &d)["status"], "finished");
}
