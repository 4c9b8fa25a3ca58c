//! Wire types of the APIs aloft speaks, shared by the server (`aloft-server`) and the device
//! daemon. They follow Mender's device protocol and core management API field by field, so the
//! JSON they produce is what Mender's own clients and tools expect.
//!
//! This crate holds data only: serde types, a few constants and the RFC 3339 formatting both
//! sides use; no I/O.

pub mod device;
pub mod event;
pub mod management;
pub mod time;

pub mod status;
