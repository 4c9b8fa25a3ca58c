//! `aloftctl sim`: simulated A/B devices (the library side is `aloft_device::sim`).

use std::io::Write as _;

use aloft_device::boot::control::SlotId;
use aloft_device::sim::{self, SimBootloader, SimOptions};
use anyhow::{Context as _, Result, bail};

use crate::cli::{SimCommand, SimLoader, SimSlot};

pub(crate) fn run(command: SimCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        SimCommand::Create {
            dir,
            device_type,
            bootloader,
            slot_size,
            artifact_name,
            on_boot,
            server,
            server_cert,
            poll_seconds,
        } => {
            let slot_size = sim::parse_size(&slot_size)
                .with_context(|| format!("--slot-size {slot_size:?} is not a size"))?;
            let options = SimOptions {
                device_type,
                bootloader: match bootloader {
                    SimLoader::Uboot => SimBootloader::Uboot,
                    SimLoader::Grub => SimBootloader::Grub,
                },
                slot_size,
                artifact_name,
                reboot_command: None,
                on_boot,
                server: server.map(|url| sim::SimServer {
                    url,
                    certificate: server_cert,
                    poll_seconds,
                }),
            };
            let config = sim::create(&dir, &options)
                .with_context(|| format!("cannot create a device in {}", dir.display()))?;
            writeln!(
                out,
                "created a simulated device; its client configuration is {}",
                config.display()
            )?;
        }
        SimCommand::Reboot { dir } => {
            let slot =
                sim::reboot(&dir).with_context(|| format!("cannot reboot {}", dir.display()))?;
            writeln!(out, "booted slot {slot}")?;
            out.flush()?;
            if let Some(cmd) = sim::on_boot_command(&dir) {
                let status = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(&cmd)
                    .status()?;
                if !status.success() {
                    bail!("the on-boot command `{cmd}` failed: {status}");
                }
            }
        }
        SimCommand::Break { dir, slot, repair } => {
            let slot = match slot {
                SimSlot::A => SlotId::A,
                SimSlot::B => SlotId::B,
            };
            sim::set_bootable(&dir, slot, repair)?;
            writeln!(
                out,
                "slot {slot} {}",
                if repair {
                    "boots again"
                } else {
                    "no longer boots"
                }
            )?;
        }
    }
    Ok(())
}
