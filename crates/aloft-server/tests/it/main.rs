//! Integration tests of aloft-server: a real server on loopback, real clients.

mod aloftctl;
mod browser;
mod common;
mod daemon;
mod demo;
mod deployments;
mod hostile;
mod hostile_server;
mod management;
mod mender_client;
mod vm;
