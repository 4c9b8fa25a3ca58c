//! The server's business rules as pure functions, each table-tested without a database. The
//! store and the services apply them; no rule is written a second time in SQL or a handler.

pub mod admission;
pub mod artifacts;
pub mod deployments;
pub mod filters;
pub mod health;
pub mod rollouts;
pub mod tokens;
pub mod windows;
