//! Device admission and its tokens.

use aloft_server::store::{DeploymentRow, Store as _, StoreError, TokenKind};
use serde_json::json;

use crate::Db;
use crate::users::token;

/// A device that asked to join with `key`; returns its id and auth set id.
pub(crate) async fn request(db: &Db, name: &str, key: &str) -> (String, String) {
    let out = db
        .auth_request(&format!("hash-{name}"), &json!({"mac": name}), key, 10)
        .await
        .unwrap();
    let dev = db.device(&out.device_id).await.unwrap().unwrap();
    let set = dev.auth_sets.iter().find(|s| s.pubkey == key).unwrap();
    (out.device_id, set.id.clone())
}

/// An accepted device with a device token `tok-NAME`.
pub(crate) async fn accepted(db: &Db, name: &str) -> String {
    let (id, set) = request(db, name, &format!("key-{name}")).await;
    db.set_auth_status(&id, &set, "accepted", 11).await.unwrap();
    db.insert_token(
        &token(&format!("tok-{name}"), TokenKind::Device, &id, 12),
        10,
        10,
    )
    .await
    .unwrap();
    id
}

pub(crate) async fn auth_requests_make_pending_devices_once(db: Db) {
    let a = db
        .auth_request("h", &json!({"mac": "a"}), "k1", 1)
        .await
        .unwrap();
    assert_eq!((a.status.as_str(), a.changed), ("pending", true));
    let again = db
        .auth_request("h", &json!({"mac": "a"}), "k1", 2)
        .await
        .unwrap();
    assert_eq!(
        (
            again.device_id.as_str(),
            again.status.as_str(),
            again.changed
        ),
        (a.device_id.as_str(), "pending", false)
    );
    let second_key = db
        .auth_request("h", &json!({"mac": "a"}), "k2", 3)
        .await
        .unwrap();
    assert_eq!(second_key.device_id, a.device_id);
    let dev = db.device(&a.device_id).await.unwrap().unwrap();
    assert_eq!(dev.status, "pending");
    assert_eq!(dev.auth_sets.len(), 2);
    assert_eq!(dev.identity, json!({"mac": "a"}));
    assert_eq!(db.count_devices(Some("pending")).await.unwrap(), 1);
    assert_eq!(db.device_counts().await.unwrap().get("pending"), Some(&1));
}

pub(crate) async fn accepting_a_key_rejects_the_other_and_revokes_tokens(db: Db) {
    let id = accepted(&db, "a").await;
    let (_, second) = request(&db, "a", "key-2").await;
    db.set_auth_status(&id, &second, "accepted", 20)
        .await
        .unwrap();
    let dev = db.device(&id).await.unwrap().unwrap();
    let mut statuses: Vec<_> = dev
        .auth_sets
        .iter()
        .map(|s| (s.pubkey.as_str(), s.status.as_str()))
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [("key-2", "accepted"), ("key-a", "rejected")]);
    assert!(
        db.use_token("tok-a", 21).await.unwrap().is_none(),
        "the old key's token still works"
    );
    // Rejecting the accepted key also ends its tokens.
    db.insert_token(&token("t2", TokenKind::Device, &id, 22), 10, 10)
        .await
        .unwrap();
    db.set_auth_status(&id, &second, "rejected", 23)
        .await
        .unwrap();
    assert!(db.use_token("t2", 24).await.unwrap().is_none());
    assert_eq!(db.device(&id).await.unwrap().unwrap().status, "rejected");
    assert!(matches!(
        db.set_auth_status(&id, "no-such-set", "accepted", 25).await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn preauthorized_rekey_revokes_the_old_keys_tokens(db: Db) {
    let id = accepted(&db, "a").await;
    // The operator preauthorizes a new key for the same identity; the device then uses it.
    let pre = db
        .preauthorize("hash-a", &json!({"mac": "a"}), "key-new", true, 30)
        .await
        .unwrap();
    assert_eq!(pre, Ok(id.clone()));
    let out = db
        .auth_request("hash-a", &json!({"mac": "a"}), "key-new", 31)
        .await
        .unwrap();
    assert_eq!((out.status.as_str(), out.changed), ("accepted", true));
    assert!(
        db.use_token("tok-a", 32).await.unwrap().is_none(),
        "the replaced key's token must be revoked"
    );
    let dev = db.device(&id).await.unwrap().unwrap();
    let old = dev.auth_sets.iter().find(|s| s.pubkey == "key-a").unwrap();
    assert_eq!(old.status, "rejected");
    // Without force, preauthorizing a known identity names the device instead.
    let again = db
        .preauthorize("hash-a", &json!({"mac": "a"}), "key-3", false, 33)
        .await
        .unwrap();
    assert_eq!(again, Err(id));
}

pub(crate) async fn preauthorized_sets_do_not_change_by_hand(db: Db) {
    let id = db
        .preauthorize("hash-p", &json!({"mac": "p"}), "key-p", false, 1)
        .await
        .unwrap()
        .unwrap();
    let dev = db.device(&id).await.unwrap().unwrap();
    assert_eq!(dev.status, "preauthorized");
    let set = &dev.auth_sets[0].id;
    assert!(matches!(
        db.set_auth_status(&id, set, "accepted", 2).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        db.set_auth_status(&id, set, "bogus", 2).await,
        Err(StoreError::Invalid(_))
    ));
}

pub(crate) async fn deleting_the_accepted_set_revokes_tokens(db: Db) {
    let id = accepted(&db, "a").await;
    let set = db.device(&id).await.unwrap().unwrap().auth_sets[0]
        .id
        .clone();
    db.delete_auth_set(&id, &set, 5).await.unwrap();
    assert!(db.use_token("tok-a", 6).await.unwrap().is_none());
    assert_eq!(db.device(&id).await.unwrap().unwrap().status, "noauth");
    assert!(matches!(
        db.delete_auth_set(&id, &set, 7).await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn decommissioning_ends_open_deployments(db: Db) {
    let id = accepted(&db, "a").await;
    let other = accepted(&db, "b").await;
    let d = deployment("d1", "release-1");
    db.create_deployment(&d, &[id.clone(), other.clone()], &[], "fp1")
        .await
        .unwrap();
    assert!(db.decommission(&id, 50).await.unwrap());
    assert!(db.device(&id).await.unwrap().is_none());
    assert!(db.use_token("tok-a", 51).await.unwrap().is_none());
    let (dds, _) = db.device_deployments("d1", None, 0, 0).await.unwrap();
    let mine = dds.iter().find(|dd| dd.device_id == id).unwrap();
    assert_eq!(mine.status, "decommissioned");
    assert_eq!(
        db.deployment("d1").await.unwrap().unwrap().status,
        "inprogress"
    );
    assert!(!db.decommission(&id, 52).await.unwrap());
}

/// A deployment row for `artifact_name`.
pub(crate) fn deployment(id: &str, artifact_name: &str) -> DeploymentRow {
    DeploymentRow {
        id: id.into(),
        name: format!("deploy {id}"),
        artifact_name: artifact_name.into(),
        created: 40,
        finished: None,
        status: "pending".into(),
        groups: Vec::new(),
        force_installation: false,
        all_devices: false,
        rollout: None,
        rollout_state: None,
        retries: 0,
        filter: None,
        max_devices: None,
    }
}

pub(crate) async fn the_admission_footprint_counts_a_devices_auth_sets(db: Db) {
    let id = json!({"mac": "x"});
    assert_eq!(
        db.admission_footprint("h", "k1").await.unwrap(),
        aloft_server::store::AdmissionFootprint::default()
    );
    db.auth_request("h", &id, "k1", 1).await.unwrap();
    db.auth_request("h", &id, "k2", 2).await.unwrap();
    let f = db.admission_footprint("h", "k2").await.unwrap();
    assert_eq!((f.device_exists, f.key_known, f.auth_sets), (true, true, 2));
    let f = db.admission_footprint("h", "k3").await.unwrap();
    assert_eq!(
        (f.device_exists, f.key_known, f.auth_sets),
        (true, false, 2)
    );
}

pub(crate) async fn contact_times_are_written_in_batches_and_never_go_back(db: Db) {
    let (a, b) = (accepted(&db, "a").await, accepted(&db, "b").await);
    let seen = [
        (a.clone(), 100),
        (b.clone(), 200),
        ("nobody".to_owned(), 300),
    ];
    db.check_in_many(&seen).await.unwrap();
    db.check_in_many(&[(a.clone(), 50)]).await.unwrap();
    let time = |id: String| {
        let db = db.clone();
        async move { db.device(&id).await.unwrap().unwrap().check_in_time }
    };
    assert_eq!((time(a).await, time(b).await), (Some(100), Some(200)));
    db.check_in_many(&[]).await.unwrap();
}
