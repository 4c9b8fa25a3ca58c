//! What replicas share through the store: the feed, job claims and the keys' fingerprint.

use aloft_server::store::{FEED_EVENT, FEED_REVOKED, Store as _, StoreError};

use crate::Db;
use crate::admission::accepted;

pub(crate) async fn exactly_one_replica_claims_a_job(db: Db) {
    let mut tasks = Vec::new();
    for r in 0..8 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.claim_job("prune", &format!("replica-{r}"), 1_000, 500)
                .await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "one claim per period");
    assert!(
        !db.claim_job("prune", "replica-0", 1_499, 500)
            .await
            .unwrap()
    );
    assert!(
        db.claim_job("prune", "replica-0", 1_500, 500)
            .await
            .unwrap(),
        "the lease ran out"
    );
    assert!(
        db.claim_job("other-job", "replica-0", 1_500, 500)
            .await
            .unwrap()
    );
}

pub(crate) async fn the_feed_carries_revocations_and_events(db: Db) {
    let since = aloft_server::time::now_us();
    let id = accepted(&db, "a").await;
    db.feed_append(FEED_EVENT, "replica-1", "{\"type\":\"x\"}", since + 1)
        .await
        .unwrap();
    let rows = db.feed_since(since, 100).await.unwrap();
    // Accepting the key revoked the device's (no) tokens in the same transaction.
    assert!(
        rows.iter().any(|r| r.kind == FEED_REVOKED && r.body == id),
        "{rows:?}"
    );
    let event = rows.iter().find(|r| r.kind == FEED_EVENT).unwrap();
    assert_eq!(
        (event.origin.as_str(), event.body.as_str()),
        ("replica-1", "{\"type\":\"x\"}")
    );
    // A refused change writes nothing.
    let before = db.feed_since(since, 100).await.unwrap().len();
    assert!(matches!(
        db.set_auth_status(&id, "no-such-set", "rejected", 1).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.feed_since(since, 100).await.unwrap().len(), before);
    assert_eq!(db.feed_since(since, 1).await.unwrap().len(), 1, "paged");
    assert_eq!(
        db.feed_prune(i64::MAX).await.unwrap(),
        u64::try_from(before).unwrap()
    );
    assert!(db.feed_since(0, 100).await.unwrap().is_empty());
}

pub(crate) async fn replicas_agree_on_keys_unless_the_old_ones_went_stale(db: Db) {
    assert_eq!(db.cluster_value("keys", "k1", 100, 0).await.unwrap(), "k1");
    // Another fingerprint while k1 was refreshed recently: k1 stays.
    assert_eq!(db.cluster_value("keys", "k2", 150, 50).await.unwrap(), "k1");
    assert_eq!(
        db.cluster_value("keys", "k1", 200, 150).await.unwrap(),
        "k1",
        "refreshed"
    );
    // Nobody refreshed k1 since 200: new keys take over.
    assert_eq!(
        db.cluster_value("keys", "k2", 400, 300).await.unwrap(),
        "k2"
    );
}
