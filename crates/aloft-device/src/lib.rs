//! The aloft device engine.
//!
//! Built so far: [`boot`], the bootloader environments that A/B updates are steered through,
//! read and written natively and byte-compatible with the tools a device already has
//! (`fw_printenv`/`fw_setenv` from libubootenv, `grub-editenv`).
//!
//! Blocking I/O only: no async runtime, HTTP stack or database belongs here (ARCHITECTURE.md).
#![forbid(unsafe_code)]

pub mod boot;
