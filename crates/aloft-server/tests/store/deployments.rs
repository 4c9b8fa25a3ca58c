//! Deployments and status reports.

use aloft_server::domain::health::Cohort;
use aloft_server::store::{
    DeploymentQuery, DeploymentRow, HealthSample, InventoryQuery, SavedFilterRow, StatusOutcome,
    Store as _, StoreError,
};

use serde_json::json;

use crate::Db;
use crate::admission::{accepted, deployment};
use crate::artifacts::artifact;

async fn one_device(db: &Db) -> String {
    db.insert_artifact(&artifact("a1", "rel", &["pi"], None))
        .await
        .unwrap();
    let dev = accepted(db, "a").await;
    db.create_deployment(
        &deployment("d1", "rel"),
        std::slice::from_ref(&dev),
        &[],
        "fp",
    )
    .await
    .unwrap();
    dev
}

pub(crate) async fn duplicate_active_deployments_conflict(db: Db) {
    let dev = one_device(&db).await;
    let again = db
        .create_deployment(
            &deployment("d2", "rel"),
            std::slice::from_ref(&dev),
            &[],
            "fp",
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert!(db.deployment("d2").await.unwrap().is_none());
    db.abort_deployment("d1", 60).await.unwrap();
    db.create_deployment(&deployment("d2", "rel"), &[dev], &[], "fp")
        .await
        .unwrap();
}

pub(crate) async fn reports_move_devices_and_finish_the_deployment(db: Db) {
    let dev = one_device(&db).await;
    let open = db.open_device_deployments(&dev).await.unwrap();
    assert_eq!(open.len(), 1);
    db.assign(&open[0].id, Some("a1"), None, 50).await.unwrap();
    assert_eq!(
        db.deployment("d1").await.unwrap().unwrap().status,
        "inprogress"
    );
    for st in ["downloading", "installing", "rebooting"] {
        assert_eq!(
            db.report_status("d1", &dev, st, Some("step"), 51)
                .await
                .unwrap(),
            StatusOutcome::Recorded
        );
    }
    assert_eq!(
        db.deployment("d1").await.unwrap().unwrap().status,
        "inprogress"
    );
    db.report_status("d1", &dev, "success", None, 52)
        .await
        .unwrap();
    let d = db.deployment("d1").await.unwrap().unwrap();
    assert_eq!((d.status.as_str(), d.finished), ("finished", Some(52)));
    assert!(db.open_device_deployments(&dev).await.unwrap().is_empty());
    let (hist, total) = db.device_history(&dev, None, 1, 10).await.unwrap();
    assert_eq!(
        (
            hist[0].status.as_str(),
            hist[0].artifact_id.as_deref(),
            total
        ),
        ("success", Some("a1"), 1)
    );
    assert!(matches!(
        db.report_status("nope", &dev, "success", None, 53).await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn final_statuses_are_kept(db: Db) {
    let dev = one_device(&db).await;
    db.report_status("d1", &dev, "failure", None, 51)
        .await
        .unwrap();
    // A retried final report is acknowledged; another final status is refused.
    assert_eq!(
        db.report_status("d1", &dev, "failure", None, 52)
            .await
            .unwrap(),
        StatusOutcome::Recorded
    );
    assert!(matches!(
        db.report_status("d1", &dev, "success", None, 53).await,
        Err(StoreError::Rule(_))
    ));
    // Server-decided outcomes end it too.
    let other = accepted(&db, "b").await;
    db.create_deployment(
        &deployment("d2", "rel"),
        std::slice::from_ref(&other),
        &[],
        "fp2",
    )
    .await
    .unwrap();
    let open = db.open_device_deployments(&other).await.unwrap();
    db.assign(&open[0].id, None, Some("noartifact"), 54)
        .await
        .unwrap();
    assert_eq!(
        db.deployment("d2").await.unwrap().unwrap().status,
        "finished"
    );
    let (dds, _) = db.device_deployments("d2", None, 0, 0).await.unwrap();
    assert_eq!(
        (dds[0].status.as_str(), dds[0].finished),
        ("noartifact", Some(54))
    );
}

pub(crate) async fn a_failed_device_starts_over_while_retries_are_left(db: Db) {
    db.insert_artifact(&artifact("a1", "rel", &["pi"], None))
        .await
        .unwrap();
    let dev = accepted(&db, "a").await;
    let d = aloft_server::store::DeploymentRow {
        retries: 1,
        ..deployment("d1", "rel")
    };
    db.create_deployment(&d, std::slice::from_ref(&dev), &[], "fp")
        .await
        .unwrap();
    let handed_out = |at| {
        let db = &db;
        let dev = &dev;
        async move {
            let open = db.open_device_deployments(dev).await.unwrap();
            assert_eq!(open.len(), 1, "the deployment is open for the device");
            db.assign(&open[0].id, Some("a1"), None, at).await.unwrap();
        }
    };
    handed_out(50).await;
    db.report_status("d1", &dev, "installing", None, 51)
        .await
        .unwrap();
    // The first failure: pending again, the artifact to be chosen again, the reason kept.
    assert_eq!(
        db.report_status("d1", &dev, "failure", Some("boot failed"), 52)
            .await
            .unwrap(),
        StatusOutcome::Retried
    );
    let (dds, _) = db.device_deployments("d1", None, 0, 0).await.unwrap();
    let dd = &dds[0];
    assert_eq!(
        (
            dd.status.as_str(),
            dd.substate.as_deref(),
            dd.artifact_id.as_deref(),
            dd.finished,
            dd.retried
        ),
        ("pending", Some("boot failed"), None, None, 1)
    );
    assert_eq!(
        db.deployment("d1").await.unwrap().unwrap().status,
        "inprogress"
    );
    // That failure's report sent again changes nothing.
    assert_eq!(
        db.report_status("d1", &dev, "failure", None, 53)
            .await
            .unwrap(),
        StatusOutcome::Recorded
    );
    assert_eq!(
        db.device_deployments("d1", None, 0, 0).await.unwrap().0[0].retried,
        1
    );
    // The second attempt fails too: no retry is left, the failure is final.
    handed_out(54).await;
    assert_eq!(
        db.report_status("d1", &dev, "failure", None, 55)
            .await
            .unwrap(),
        StatusOutcome::Recorded
    );
    let d = db.deployment("d1").await.unwrap().unwrap();
    assert_eq!((d.status.as_str(), d.finished), ("finished", Some(55)));
    let (dds, _) = db.device_deployments("d1", None, 0, 0).await.unwrap();
    assert_eq!((dds[0].status.as_str(), dds[0].retried), ("failure", 1));
}

pub(crate) async fn aborting_stops_devices(db: Db) {
    let dev = one_device(&db).await;
    db.report_status("d1", &dev, "downloading", None, 51)
        .await
        .unwrap();
    db.abort_deployment("d1", 52).await.unwrap();
    assert_eq!(
        db.report_status("d1", &dev, "installing", None, 53)
            .await
            .unwrap(),
        StatusOutcome::Aborted
    );
    assert!(matches!(
        db.abort_deployment("d1", 54).await,
        Err(StoreError::Rule(_))
    ));
    assert!(matches!(
        db.abort_deployment("none", 54).await,
        Err(StoreError::NotFound(_))
    ));
    let q = DeploymentQuery {
        status: Some("aborted".into()),
        page: 1,
        per_page: 10,
        ..DeploymentQuery::default()
    };
    assert_eq!(db.deployments(&q).await.unwrap().1, 1);
    // Aborting one device ends only that device's deployments.
    let other = accepted(&db, "b").await;
    db.create_deployment(
        &deployment("d2", "rel"),
        &[dev.clone(), other.clone()],
        &[],
        "fp2",
    )
    .await
    .unwrap();
    db.abort_device(&dev, 55).await.unwrap();
    let (dds, _) = db
        .device_deployments("d2", Some("aborted"), 0, 0)
        .await
        .unwrap();
    assert_eq!(
        dds.iter().map(|d| d.device_id.as_str()).collect::<Vec<_>>(),
        [dev.as_str()]
    );
    assert_eq!(db.open_device_deployments(&other).await.unwrap().len(), 1);
    db.delete_device_history(&dev, 90).await.unwrap();
    assert_eq!(db.device_history(&dev, None, 0, 0).await.unwrap().1, 0);
}

/// Many devices of one deployment report their last status at the same time: the deployment
/// must end `finished` (on `PostgreSQL`, each report counts the others' under a row lock).
pub(crate) async fn concurrent_reports_finish_the_deployment(db: Db) {
    db.insert_artifact(&artifact("a1", "rel", &["pi"], None))
        .await
        .unwrap();
    let mut devs = Vec::new();
    for i in 0..12 {
        devs.push(accepted(&db, &format!("dev{i}")).await);
    }
    db.create_deployment(&deployment("d1", "rel"), &devs, &[], "fp")
        .await
        .unwrap();
    for dev in &devs {
        db.report_status("d1", dev, "installing", None, 50)
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for (i, dev) in devs.iter().enumerate() {
        let (db, dev) = (db.clone(), dev.clone());
        let st = if i % 4 == 0 { "failure" } else { "success" };
        tasks.push(tokio::spawn(async move {
            db.report_status("d1", &dev, st, None, 60).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        db.deployment("d1").await.unwrap().unwrap().status,
        "finished"
    );
    let stats = db.deployment_stats("d1").await.unwrap();
    assert_eq!(
        (stats.by_status["success"], stats.by_status["failure"]),
        (9, 3)
    );
}

pub(crate) async fn status_groups_filter_device_deployments(db: Db) {
    db.insert_artifact(&artifact("a1", "rel", &["pi"], None))
        .await
        .unwrap();
    let devs = [
        accepted(&db, "a").await,
        accepted(&db, "b").await,
        accepted(&db, "c").await,
    ];
    db.create_deployment(&deployment("d1", "rel"), &devs, &[], "fp")
        .await
        .unwrap();
    db.report_status("d1", &devs[0], "pause_before_rebooting", None, 50)
        .await
        .unwrap();
    db.report_status("d1", &devs[1], "success", None, 51)
        .await
        .unwrap();
    let count = |st: &'static str| {
        let db = db.clone();
        async move { db.device_deployments("d1", Some(st), 0, 0).await.unwrap().1 }
    };
    assert_eq!(count("pause").await, 1);
    assert_eq!(count("active").await, 2);
    assert_eq!(count("finished").await, 1);
    assert_eq!(count("pending").await, 1);
    let (page, total) = db.device_deployments("d1", None, 2, 2).await.unwrap();
    assert_eq!((page.len(), total), (1, 3));
}

pub(crate) async fn statistics_count_every_status(db: Db) {
    let dev = one_device(&db).await;
    let open = db.open_device_deployments(&dev).await.unwrap();
    db.assign(&open[0].id, Some("a1"), None, 50).await.unwrap();
    db.report_status("d1", &dev, "downloading", None, 51)
        .await
        .unwrap();
    let stats = db.deployment_stats("d1").await.unwrap();
    assert_eq!(
        stats.by_status.len(),
        13,
        "every status is counted, zeros too"
    );
    assert_eq!(
        (
            stats.by_status["downloading"],
            stats.max_devices,
            stats.device_count
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (stats.artifacts.clone(), stats.total_size),
        (vec!["a1".to_owned()], 1000)
    );
    let counts = db.deployment_counts().await.unwrap();
    assert_eq!(counts.get("inprogress"), Some(&1));
    let q = DeploymentQuery {
        search: Some("DEPLOY".into()),
        page: 1,
        per_page: 10,
        ..DeploymentQuery::default()
    };
    assert_eq!(
        db.deployments(&q).await.unwrap().1,
        1,
        "search ignores case"
    );
}

pub(crate) async fn logs_are_kept_per_device(db: Db) {
    let dev = one_device(&db).await;
    assert_eq!(db.log("d1", &dev).await.unwrap(), None);
    let (dds, _) = db.device_deployments("d1", None, 0, 0).await.unwrap();
    assert!(!dds[0].has_log);
    db.put_log("d1", &dev, "line 1\nline 2").await.unwrap();
    assert_eq!(
        db.log("d1", &dev).await.unwrap().as_deref(),
        Some("line 1\nline 2")
    );
    let (dds, _) = db.device_deployments("d1", None, 0, 0).await.unwrap();
    assert!(dds[0].has_log);
    assert!(matches!(
        db.put_log("d1", "other", "x").await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn list_statistics_load_in_one_batch(db: Db) {
    let dev = one_device(&db).await;
    let other = accepted(&db, "b").await;
    db.create_deployment(
        &deployment("d2", "rel"),
        &[dev.clone(), other.clone()],
        &[],
        "fp2",
    )
    .await
    .unwrap();
    let open = db.open_device_deployments(&dev).await.unwrap();
    db.assign(&open[0].id, Some("a1"), None, 50).await.unwrap();
    db.report_status("d2", &other, "downloading", None, 51)
        .await
        .unwrap();
    let ids = ["d1".to_owned(), "d2".to_owned(), "none".to_owned()];
    let all = db.deployment_stats_of(&ids).await.unwrap();
    for id in ["d1", "d2"] {
        let one = db.deployment_stats(id).await.unwrap();
        let batch = &all[id];
        assert_eq!(
            (
                &batch.by_status,
                batch.max_devices,
                batch.device_count,
                &batch.artifacts,
                batch.total_size
            ),
            (
                &one.by_status,
                one.max_devices,
                one.device_count,
                &one.artifacts,
                one.total_size
            ),
            "{id}"
        );
    }
    assert_eq!(
        (all["d2"].max_devices, all["d2"].by_status["downloading"]),
        (2, 1)
    );
    assert_eq!(all["none"].max_devices, 0);
}

pub(crate) async fn rollout_states_change_by_compare_and_set(db: Db) {
    let mut devs = Vec::new();
    for mac in ["p0", "p1", "p2"] {
        devs.push(accepted(&db, mac).await);
    }
    let mut d = deployment("r1", "rel");
    d.rollout = Some("{}".into());
    d.rollout_state = Some("s0".into());
    db.create_deployment(&d, &devs, &[0, 1, 1], "fp")
        .await
        .unwrap();
    for (dev, want) in devs.iter().zip([0, 1, 1]) {
        let dd = db.open_device_deployments(dev).await.unwrap();
        assert_eq!(dd[0].phase, want, "{dev}");
    }
    // Of two replicas deciding from the same state, only the first wins.
    assert!(db.set_rollout_state("r1", "s0", "s1").await.unwrap());
    assert!(!db.set_rollout_state("r1", "s0", "s1b").await.unwrap());
    let row = db.deployment("r1").await.unwrap().unwrap();
    assert_eq!(row.rollout_state.as_deref(), Some("s1"));
    assert_eq!(db.active_rollouts().await.unwrap().len(), 1);
    db.assign(
        &db.open_device_deployments(&devs[0]).await.unwrap()[0].id,
        Some("a"),
        None,
        50,
    )
    .await
    .unwrap();
    assert_eq!(db.started_since("r1", 50).await.unwrap(), 1);
    assert_eq!(db.started_since("r1", 51).await.unwrap(), 0);
    db.report_status("r1", &devs[0], "failure", None, 51)
        .await
        .unwrap();
    let mut counts = db.phase_counts("r1").await.unwrap();
    counts.sort_by(|a, b| (a.phase, &a.status).cmp(&(b.phase, &b.status)));
    let got: Vec<(u32, &str, bool, u64)> = counts
        .iter()
        .map(|c| (c.phase, c.status.as_str(), c.started, c.count))
        .collect();
    assert_eq!(got, [(0, "failure", true, 1), (1, "pending", false, 2)]);
    // The health gate's view: the failed device is left out; contact times and verdicts.
    db.check_in_many(&[(devs[1].clone(), 77)]).await.unwrap();
    db.put_inventory(
        &devs[1],
        &[("aloft.health".into(), json!("failing"))],
        false,
        78,
    )
    .await
    .unwrap();
    let mut health = db.rollout_health("r1").await.unwrap();
    health.sort_by_key(|h| h.check_in_time);
    let got: Vec<(&str, Option<i64>, bool)> = health
        .iter()
        .map(|h| (h.status.as_str(), h.check_in_time, h.failing))
        .collect();
    assert_eq!(got[1..], [("pending", Some(78), true)][..], "{got:?}");
    assert_eq!(got.len(), 2, "{got:?}");
    db.abort_deployment("r1", 60).await.unwrap();
    assert!(db.active_rollouts().await.unwrap().is_empty());
}

pub(crate) async fn switches_engage_and_release(db: Db) {
    assert_eq!(db.switch("halt").await.unwrap(), None);
    db.set_switch("halt", Some("incident 42"), 1).await.unwrap();
    db.set_switch("halt", Some("incident 43"), 2).await.unwrap();
    assert_eq!(
        db.switch("halt").await.unwrap().as_deref(),
        Some("incident 43")
    );
    db.set_switch("halt", None, 3).await.unwrap();
    assert_eq!(db.switch("halt").await.unwrap(), None);
}

pub(crate) async fn saved_filter_names_are_unique(db: Db) {
    let f = |id: &str, name: &str| SavedFilterRow {
        id: id.into(),
        name: name.into(),
        terms: r#"[{"scope":"inventory","attribute":"site","type":"$eq","value":"oslo"}]"#.into(),
        created: 1,
    };
    db.insert_saved_filter(&f("f1", "oslo")).await.unwrap();
    db.insert_saved_filter(&f("f2", "bergen")).await.unwrap();
    let again = db.insert_saved_filter(&f("f3", "oslo")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let names: Vec<String> = db
        .saved_filters()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["bergen", "oslo"]);
    assert_eq!(db.saved_filter("f1").await.unwrap(), Some(f("f1", "oslo")));
    assert!(db.delete_saved_filter("f1").await.unwrap());
    assert!(!db.delete_saved_filter("f1").await.unwrap());
    assert_eq!(db.saved_filter("f1").await.unwrap(), None);
}

pub(crate) async fn devices_join_a_dynamic_deployment_up_to_its_cap(db: Db) {
    db.insert_artifact(&artifact("a1", "rel", &["pi"], None))
        .await
        .unwrap();
    let (first, second, third) = (
        accepted(&db, "a").await,
        accepted(&db, "b").await,
        accepted(&db, "c").await,
    );
    let dynamic = DeploymentRow {
        filter: Some(r#"{"id":"f1","name":"all","terms":[]}"#.into()),
        max_devices: Some(2),
        ..deployment("d1", "rel")
    };
    db.create_deployment(&dynamic, std::slice::from_ref(&first), &[], "fp")
        .await
        .unwrap();
    assert_eq!(db.active_dynamic().await.unwrap().len(), 1);
    // Devices already in it are skipped; the cap stops the rest, in the order given.
    let joined = db
        .join_deployment(
            "d1",
            &[(first.clone(), 0), (second.clone(), 1), (third.clone(), 1)],
            60,
        )
        .await
        .unwrap();
    assert_eq!(joined, std::slice::from_ref(&second));
    let (dds, total) = db.device_deployments("d1", None, 0, 0).await.unwrap();
    assert_eq!(total, 2);
    let joined_row = dds.iter().find(|d| d.device_id == second).unwrap();
    assert_eq!(
        (joined_row.status.as_str(), joined_row.phase),
        ("pending", 1)
    );
    // The search for devices still outside it finds only the third.
    let outside = InventoryQuery {
        not_in_deployment: Some("d1".into()),
        ..InventoryQuery::default()
    };
    assert_eq!(
        db.search_inventory(&outside).await.unwrap().0,
        std::slice::from_ref(&third)
    );
    // Both members finish: with the cap reached, so does the deployment.
    for dev in [&first, &second] {
        let open = db.open_device_deployments(dev).await.unwrap();
        db.assign(&open[0].id, Some("a1"), None, 61).await.unwrap();
        db.report_status("d1", dev, "success", None, 62)
            .await
            .unwrap();
    }
    let d = db.deployment("d1").await.unwrap().unwrap();
    assert_eq!((d.status.as_str(), d.finished), ("finished", Some(62)));
    assert!(db.active_dynamic().await.unwrap().is_empty());
    assert!(
        db.join_deployment("d1", &[(third.clone(), 0)], 63)
            .await
            .unwrap()
            .is_empty(),
        "a finished deployment takes no one"
    );

    // Without a cap, a dynamic deployment whose devices all ended waits for more.
    let open = DeploymentRow {
        filter: Some(r#"{"id":"f1","name":"all","terms":[]}"#.into()),
        ..deployment("d2", "rel")
    };
    db.create_deployment(&open, std::slice::from_ref(&first), &[], "fp2")
        .await
        .unwrap();
    let dd = db.open_device_deployments(&first).await.unwrap();
    db.assign(&dd[0].id, Some("a1"), None, 70).await.unwrap();
    db.report_status("d2", &first, "success", None, 71)
        .await
        .unwrap();
    assert_eq!(
        db.deployment("d2").await.unwrap().unwrap().status,
        "inprogress"
    );
    assert_eq!(
        db.join_deployment("d2", &[(third.clone(), 0)], 72)
            .await
            .unwrap(),
        [third]
    );
}

pub(crate) async fn health_samples_keep_the_latest_per_bucket_newest_last(db: Db) {
    let at = |ts, failing| HealthSample {
        ts,
        updated: Cohort {
            devices: 2,
            failing,
            offline: 0,
            rebooted: 1,
        },
        control: Cohort {
            devices: 4,
            failing: 0,
            offline: 1,
            rebooted: 2,
        },
    };
    for s in [at(30, 0), at(60, 1), at(90, 2)] {
        db.add_health_sample("d1", &s).await.unwrap();
    }
    // The same bucket again (a later tick, another replica): the latest stands.
    db.add_health_sample("d1", &at(60, 9)).await.unwrap();
    db.add_health_sample("d2", &at(60, 5)).await.unwrap();
    assert_eq!(
        db.health_samples("d1", 10).await.unwrap(),
        [at(30, 0), at(60, 9), at(90, 2)]
    );
    assert_eq!(
        db.health_samples("d1", 2).await.unwrap(),
        [at(60, 9), at(90, 2)],
        "the newest, oldest first"
    );
    assert!(db.health_samples("d3", 10).await.unwrap().is_empty());
}
