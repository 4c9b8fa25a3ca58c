//! The aloft device daemon: the device side of Mender's device protocol, driving the
//! install engine of `aloft-device`.
//!
//! Owns: the key pair and identity ([`identity`]), the server conversation ([`api`]), the
//! resumable download ([`download`]), the deployment journal and log ([`journal`]), the boot
//! count sent as inventory ([`boots`]), the control socket ([`control`]) and the loop that ties
//! them together ([`daemon`]). Must not: reach an async runtime, an HTTP server or a database
//! (blocking I/O, one thread plus the socket's); install a byte the artifact library did not
//! verify; trust anything the server says beyond what the protocol lets it decide.

#![forbid(unsafe_code)]

pub mod api;
pub mod boots;
pub mod control;
pub mod daemon;
pub mod download;
pub mod health;
pub mod hook;
pub mod identity;
pub mod journal;
