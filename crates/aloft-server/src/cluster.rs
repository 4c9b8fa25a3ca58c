//! Several replicas on one database. Every replica follows the store's feed: cache
//! invalidations (written by the store in the transaction of the change) and live events
//! (written by the replica that published them). `PostgreSQL` wakes followers with
//! `NOTIFY aloft_feed`; a notification is lost while a listener is disconnected, so followers
//! also read the feed every [`POLL`] and catch up from the table. Periodic jobs are claimed
//! through the store, so each runs on one replica per period. All replicas must sign with the
//! same keys: the first start records their fingerprint, later starts with other keys refuse.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cache::Caches;
use crate::events::Events;
use crate::store::{FEED_DEPLOYMENTS, FEED_EVENT, FEED_REVOKED, FeedRow, Store};
use crate::time::now_us;

/// How often a follower reads the feed without being woken: the bound within which a
/// revocation made on one replica takes effect on every other (ARCHITECTURE.md).
pub const POLL: Duration = Duration::from_secs(1);
/// How far back each read looks: rows become visible in commit order, not id order, so a row
/// committed late is still seen if its transaction took less than this.
pub const WINDOW_US: i64 = 5_000_000;
/// Feed rows are kept this long (µs), then pruned.
pub const KEEP_US: i64 = 10 * 60 * 1_000_000;
/// Rows read at most per query (the follower pages on).
const PAGE: u64 = 1000;
/// Live events queued for the feed at most (more are dropped, with a warning).
const FORWARD_QUEUE: usize = 4096;

/// A replica refreshes its keys' fingerprint this often; one not refreshed for [`KEYS_STALE`]
/// belongs to no running replica and may be replaced (keys are rotated by restarting all).
pub const KEYS_REFRESH: Duration = Duration::from_secs(30);
/// See [`KEYS_REFRESH`].
pub const KEYS_STALE: Duration = Duration::from_secs(90);

/// Records this replica's keys' fingerprint, or refuses when a running replica uses others.
pub async fn check_keys(store: &dyn Store, fingerprint: &str) -> anyhow::Result<()> {
    let now = now_us();
    let stale = i64::try_from(KEYS_STALE.as_micros()).unwrap_or(i64::MAX);
    let stored = store
        .cluster_value("keys", fingerprint, now, now - stale)
        .await
        .context("recording the keys' fingerprint")?;
    anyhow::ensure!(
        stored == fingerprint,
        "this server's token key and URL secret (fingerprint {fingerprint}) differ from those \
         of the replicas running on this database ({stored}): give every replica the same keys"
    );
    Ok(())
}

/// What a follower does with one feed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Some device token was revoked: check tokens against the store again.
    Revoked,
    /// Deployments changed: devices idle until now may have work.
    Deployments,
    /// A live event from another replica, for this replica's listeners.
    Deliver(String),
    /// This replica's own event, or a kind this version does not know.
    Ignore,
}

/// The rule for one row, seen by replica `me`.
pub fn action(row: &FeedRow, me: &str) -> Action {
    match row.kind.as_str() {
        FEED_REVOKED => Action::Revoked,
        FEED_DEPLOYMENTS => Action::Deployments,
        FEED_EVENT if row.origin != me => Action::Deliver(row.body.clone()),
        _ => Action::Ignore,
    }
}

/// Follows the feed until `stop`: applies other replicas' changes to this replica's caches and
/// event listeners. `listen_url` is the `PostgreSQL` URL to take notifications from.
pub fn follow(
    store: Arc<dyn Store>,
    caches: Arc<Caches>,
    events: Events,
    me: String,
    listen_url: Option<String>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener = match &listen_url {
            Some(url) => connect_listener(url).await,
            None => None,
        };
        let mut seen: HashMap<i64, i64> = HashMap::new();
        let mut since = now_us();
        let mut gap = false;
        loop {
            let woken = wait(&mut listener, &stop).await;
            if stop.is_cancelled() {
                return;
            }
            if !woken
                && listener.is_none()
                && let Some(url) = &listen_url
            {
                listener = connect_listener(url).await;
            }
            let from = since.min(now_us() - WINDOW_US);
            match read(store.as_ref(), from).await {
                Ok(rows) => {
                    if gap {
                        // Rows may have been missed while the feed could not be read: check
                        // everything again rather than trust a stale cache.
                        caches.revoked();
                        caches.deployments_changed();
                        gap = false;
                    }
                    for row in rows {
                        if seen.insert(row.id, row.ts).is_some() {
                            continue;
                        }
                        match action(&row, &me) {
                            Action::Revoked => caches.revoked(),
                            Action::Deployments => caches.deployments_changed(),
                            Action::Deliver(body) => events.deliver(&body),
                            Action::Ignore => {}
                        }
                    }
                    since = now_us() - WINDOW_US;
                    seen.retain(|_, ts| *ts >= since - WINDOW_US);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the replicas' feed");
                    gap = true;
                }
            }
        }
    })
}

async fn connect_listener(url: &str) -> Option<sqlx::postgres::PgListener> {
    let mut l = match sqlx::postgres::PgListener::connect(url).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for the replicas' feed; reading it every second");
            return None;
        }
    };
    match l.listen("aloft_feed").await {
        Ok(()) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for the replicas' feed; reading it every second");
            None
        }
    }
}

/// Waits for a notification, [`POLL`], or `stop`; `true` when woken by a notification.
async fn wait(listener: &mut Option<sqlx::postgres::PgListener>, stop: &CancellationToken) -> bool {
    let notified = async {
        match listener.as_mut() {
            Some(l) => match l.recv().await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the replicas' feed notifications");
                    *listener = None;
                    false
                }
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        woken = notified => woken,
        () = tokio::time::sleep(POLL) => false,
        () = stop.cancelled() => false,
    }
}

async fn read(store: &dyn Store, mut from: i64) -> crate::store::StoreResult<Vec<FeedRow>> {
    let mut out = Vec::new();
    loop {
        let rows = store.feed_since(from, PAGE).await?;
        let full = rows.len() as u64 == PAGE;
        if let Some(last) = rows.last() {
            from = last.ts;
        }
        out.extend(rows);
        if !full {
            return Ok(out);
        }
    }
}

/// Sends this replica's live events to the feed, for the other replicas' listeners.
pub fn forward_events(
    store: Arc<dyn Store>,
    events: &Events,
    me: String,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(FORWARD_QUEUE);
    events.forward_to(tx);
    tokio::spawn(async move {
        while let Some(body) = rx.recv().await {
            if let Err(e) = store.feed_append(FEED_EVENT, &me, &body, now_us()).await {
                tracing::warn!(error = %e, "cannot pass a live event to the other replicas");
            }
        }
    })
}

/// Runs `job` every `period` on whichever replica claims it first, until `stop`.
pub fn every<F, Fut>(
    store: Arc<dyn Store>,
    name: &'static str,
    me: String,
    period: Duration,
    stop: CancellationToken,
    job: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Arc<dyn Store>) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    tokio::spawn(async move {
        let lease = i64::try_from(period.as_micros()).unwrap_or(i64::MAX);
        loop {
            match store.claim_job(name, &me, now_us(), lease).await {
                Ok(true) => {
                    if let Err(e) = job(store.clone()).await {
                        tracing::warn!(job = name, error = %format!("{e:#}"), "background job failed");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(job = name, error = %e, "cannot claim a background job"),
            }
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = stop.cancelled() => return,
            }
        }
    })
}

/// The feed-pruning job.
pub async fn prune_feed(store: Arc<dyn Store>) -> anyhow::Result<()> {
    let n = store
        .feed_prune(now_us() - KEEP_US)
        .await
        .context("pruning the feed")?;
    if n > 0 {
        tracing::debug!(rows = n, "pruned the replicas' feed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, origin: &str) -> FeedRow {
        FeedRow {
            id: 1,
            ts: 1,
            kind: kind.into(),
            origin: origin.into(),
            body: "{}".into(),
        }
    }

    #[test]
    fn followers_apply_invalidations_and_other_replicas_events() {
        let cases = [
            (row(FEED_REVOKED, "store"), Action::Revoked),
            (row(FEED_DEPLOYMENTS, "store"), Action::Deployments),
            (row(FEED_EVENT, "other"), Action::Deliver("{}".into())),
            (row(FEED_EVENT, "me"), Action::Ignore),
            (row("from-a-newer-version", "other"), Action::Ignore),
        ];
        for (r, want) in cases {
            assert_eq!(action(&r, "me"), want, "{r:?}");
        }
    }
}
