//! Live events for the management side: device and deployment changes, as server-sent events
//! (`GET /api/management/v1/events`, an aloft extension). A broadcast channel: a slow
//! listener misses events (it is told so, and reloads) instead of slowing the server down.

use std::sync::{Arc, OnceLock};

use aloft_api::event::{Envelope, Event};
use tokio::sync::{broadcast, mpsc};

/// The sending side, shared by the handlers.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<str>>,
    closed: tokio_util::sync::CancellationToken,
    /// Where this replica's events also go, for the other replicas (`crate::cluster`).
    forward: Arc<OnceLock<mpsc::Sender<Arc<str>>>>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
            closed: tokio_util::sync::CancellationToken::new(),
            forward: Arc::default(),
        }
    }
}

impl Events {
    /// Publishes an event, stamped with the current time, to every listener (none listening
    /// is fine). Only services call this.
    pub fn publish(&self, event: Event) {
        let envelope = Envelope {
            ts: crate::time::rfc3339(crate::time::now_us()),
            event,
        };
        let text = match serde_json::to_string(&envelope) {
            Ok(text) => Arc::<str>::from(text),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a live event");
                return;
            }
        };
        if let Some(forward) = self.forward.get()
            && forward.try_send(text.clone()).is_err()
        {
            tracing::warn!("the other replicas miss a live event: their queue is full");
        }
        let _ = self.tx.send(text);
    }

    /// Also sends every event published from now on to `forward` (once; later calls are
    /// ignored).
    pub fn forward_to(&self, forward: mpsc::Sender<Arc<str>>) {
        let _ = self.forward.set(forward);
    }

    /// Delivers an event another replica published to this replica's listeners.
    pub fn deliver(&self, event: &str) {
        let _ = self.tx.send(Arc::from(event));
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
