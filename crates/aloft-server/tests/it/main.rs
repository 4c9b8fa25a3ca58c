//! Integration tests of aloft-server: a real server on loopback, real clients.

mod aloftctl;
mod attacker;
mod browser;
mod cluster;
mod common;
mod daemon;
mod database;
mod delta;
mod demo;
mod deployments;
mod dynamic;
mod gates;
mod hostile;
mod hostile_server;
mod management;
mod mender_client;
mod replicas;
mod rollouts;
mod s3;
mod serve;
mod vm;
mod windows;
