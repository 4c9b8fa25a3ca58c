//! `aloftctl devices ...`: list, show, accept, reject and decommission devices.

use aloft_api::management::{Device, DeviceInventory};
use anyhow::{Result, anyhow};
use serde_json::json;

use super::{Remote, device_id, s};
use crate::cli::{DevicesCommand, ServerArgs};

/// `aloftctl devices ...`.
pub(crate) fn devices(args: &ServerArgs, command: DevicesCommand) -> Result<()> {
    let r = Remote::open(args)?;
    match command {
        DevicesCommand::List { status } => {
            let query = status.map_or_else(String::new, |s| format!("&status={s}"));
            let list: Vec<Device> =
                r.get_as(&format!("/v2/devauth/devices?per_page=500{query}"))?;
            r.print(&list, || {
                let mut rows = vec![vec![
                    "ID".into(),
                    "STATUS".into(),
                    "IDENTITY".into(),
                    "UPDATED".into(),
                ]];
                for d in &list {
                    let identity = d
                        .identity_data
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .map(|(k, v)| format!("{k}={}", s(v)))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    rows.push(vec![
                        d.id.clone(),
                        d.status.to_string(),
                        identity,
                        d.updated_ts.clone(),
                    ]);
                }
                rows
            })
        }
        DevicesCommand::Show { id } => {
            let id = device_id(&r, &id)?;
            let dev: Device = r.get_as(&format!("/v2/devauth/devices/{id}"))?;
            // Not accepted yet: no inventory.
            let inventory: Option<DeviceInventory> =
                r.get_as(&format!("/v1/inventory/devices/{id}")).ok();
            let all = json!({"device": dev, "inventory": inventory});
            r.print(&all, || {
                let mut rows = vec![vec!["FIELD".into(), "VALUE".into()]];
                rows.push(vec!["id".into(), dev.id.clone()]);
                rows.push(vec!["status".into(), dev.status.to_string()]);
                rows.push(vec!["identity".into(), dev.identity_data.to_string()]);
                for a in inventory.iter().flat_map(|i| &i.attributes) {
                    rows.push(vec![format!("{}:{}", a.scope, a.name), s(&a.value)]);
                }
                rows
            })
        }
        DevicesCommand::Accept { id } => set_status(&r, &device_id(&r, &id)?, "accepted"),
        DevicesCommand::Reject { id } => set_status(&r, &device_id(&r, &id)?, "rejected"),
        DevicesCommand::Decommission { id } => {
            let id = device_id(&r, &id)?;
            r.call("DELETE", &format!("/v2/devauth/devices/{id}"), None)?;
            r.done(
                &json!({"id": id, "status": "decommissioned"}),
                &format!("device {id} decommissioned"),
            )
        }
    }
}

fn set_status(r: &Remote, id: &str, status: &str) -> Result<()> {
    let dev: Device = r.get_as(&format!("/v2/devauth/devices/{id}"))?;
    // The newest auth set is the one the device uses now.
    let auth = dev
        .auth_sets
        .last()
        .map(|a| a.id.as_str())
        .ok_or_else(|| anyhow!("device {id} has no auth set"))?;
    r.call(
        "PUT",
        &format!("/v2/devauth/devices/{id}/auth/{auth}/status"),
        Some(&json!({"status": status})),
    )?;
    r.done(
        &json!({"id": id, "status": status}),
        &format!("device {id} {status}"),
    )
}
