//! Live events for the management side: device and deployment changes, as server-sent events
//! (`GET /api/management/v1/events`, an aloft extension). A broadcast channel: a slow
//! listener misses events (it is told so, and reloads) instead of slowing the server down.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The sending side, shared by the handlers.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<str>>,
    closed: tokio_util::sync::CancellationToken,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
            closed: tokio_util::sync::CancellationToken::new(),
        }
    }
}

impl Events {
    /// Publishes `{"type": kind, ...fields}` to every listener (none listening is fine).
    pub fn publish(&self, kind: &str, mut fields: Value) {
        if let Some(map) = fields.as_object_mut() {
            map.insert("type".into(), json!(kind));
            map.insert(
                "ts".into(),
                json!(crate::time::rfc3339(crate::time::now_us())),
            );
        }
        let _ = self.tx.send(Arc::from(fields.to_string()));
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// Ends every stream (at shutdown, so that open browsers do not hold it up).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Resolves when [`Events::close`] was called.
    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }
}
