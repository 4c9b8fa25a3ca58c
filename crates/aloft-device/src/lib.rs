//! The aloft device engine.
//!
//! Built so far: [`boot`], the bootloader environments that A/B updates are steered through,
//! read and written natively and byte-compatible with the tools a device already has
//! (`fw_printenv`/`fw_setenv` from libubootenv, `grub-editenv`); [`config`]; [`slot`] (write and
//! verify an image); [`state`] (persisted update state and the pure restart decision); and
//! [`engine`], which installs rootfs-image and bootstrap artifacts through them.
//!
//! Blocking I/O only: no async runtime, HTTP stack or database belongs here (ARCHITECTURE.md).
#![forbid(unsafe_code)]

pub mod boot;
pub mod config;
mod crash;
pub mod delta;
pub mod engine;
pub mod fetch;
pub mod lock;
pub mod module;
pub mod process;
pub mod scripts;
#[cfg(feature = "sim")]
pub mod sim;
pub mod slot;
pub mod state;
