//! `aloft-server`: device admission, inventory, artifacts and deployments behind Mender's device
//! and management APIs, on embedded `SQLite` and local files, over TLS.
//!
//! The map: [`server`] starts everything; [`http`] holds one module per resource with thin
//! handlers that call [`service`], the only code that changes state or publishes events; [`store`] is the metadata behind the [`store::Store`] trait; [`blobs`] keeps
//! artifact files; [`auth`] issues and checks every credential.

pub mod auth;
pub mod blobs;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod demo;
pub mod domain;
pub mod error;
pub mod events;
pub mod files;
pub mod http;
pub mod server;
pub mod service;
pub mod store;
pub mod throttle;
pub mod time;
pub mod tls;
