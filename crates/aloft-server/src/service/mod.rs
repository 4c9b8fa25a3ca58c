//! The services: the only code that changes state, moves a cache epoch or publishes a live
//! event. A handler parses its request, calls one service function and maps the result to the
//! wire format; a second device protocol would call the same functions.
//!
//! Every function takes a [`Ctx`]: the store, the caches, the event channel and the rollout
//! clock of the process.

pub mod admission;
pub mod artifacts;
pub mod deltas;
pub mod deployments;
pub mod dynamic;
pub mod gates;
pub mod inventory;
pub mod plans;
pub mod rollouts;
pub mod scheduling;

use std::sync::Arc;

use crate::cache::Caches;
use crate::events::Events;
use crate::store::{Store, StoreError};
use crate::time::Clock;

/// What a service works with.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// Metadata.
    pub store: &'a dyn Store,
    /// The per-process caches and their epochs.
    pub caches: &'a Caches,
    /// Live events.
    pub events: &'a Events,
    /// The clock rollout decisions read ([`Ctx::now`]).
    pub clock: &'a Clock,
}

impl Ctx<'_> {
    /// Now (UNIX µs) for rollout decisions: the server's [`Clock`].
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// What a [`Ctx`] is made of, owned: for background jobs and the HTTP state.
#[derive(Clone, Default)]
pub struct Shared {
    /// The per-process caches.
    pub caches: Arc<Caches>,
    /// Live events.
    pub events: Events,
    /// The rollout clock.
    pub clock: Arc<Clock>,
}

impl Shared {
    /// A context on `store`.
    pub fn ctx<'a>(&'a self, store: &'a dyn Store) -> Ctx<'a> {
        Ctx {
            store,
            caches: &self.caches,
            events: &self.events,
            clock: &self.clock,
        }
    }
}

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A rule forbids it.
    #[error("{0}")]
    Rule(String),
    /// It contradicts the current state (a plan that no longer holds).
    #[error("{0}")]
    Conflict(String),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value is not what the code knows (a status text, say).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// Result of a service call.
pub type ServiceResult<T> = Result<T, ServiceError>;

impl From<ServiceError> for crate::error::ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(m) => Self::bad_request(m),
            ServiceError::NotFound(m) => Self::not_found(m),
            ServiceError::Rule(m) => Self::unprocessable(m),
            ServiceError::Conflict(m) => Self::conflict(m),
            ServiceError::Store(e) => e.into(),
            ServiceError::Corrupt(m) => Self::internal(m),
        }
    }
}

/// Parses a status read from the store.
pub(crate) fn stored<T: std::str::FromStr>(text: &str) -> ServiceResult<T>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| ServiceError::Corrupt(e.to_string()))
}
