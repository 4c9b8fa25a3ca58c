//! `aloftctl groups ...`: static groups, over Mender's inventory API. A device is in at most one
//! group, so adding it to a group moves it there; what moved is said.

use aloft_api::management::{GroupBody, is_group_name};
use anyhow::{Result, bail};
use serde_json::json;

use super::{Remote, device_id};
use crate::cli::{GroupsCommand, ServerArgs};

/// `aloftctl groups ...`.
pub(crate) fn groups(args: &ServerArgs, command: GroupsCommand) -> Result<()> {
    let r = Remote::open(args)?;
    match command {
        GroupsCommand::List => {
            let names: Vec<String> = r.get_as("/v1/inventory/groups")?;
            let mut listed = Vec::with_capacity(names.len());
            for name in names {
                let devices = members(&r, &name)?.len();
                listed.push(json!({"name": name, "devices": devices}));
            }
            r.print(&listed, || {
                let mut rows = vec![vec!["GROUP".into(), "DEVICES".into()]];
                rows.extend(
                    listed
                        .iter()
                        .map(|g| vec![super::s(&g["name"]), g["devices"].to_string()]),
                );
                rows
            })
        }
        GroupsCommand::Show { name } => {
            checked(&name)?;
            let ids = members(&r, &name)?;
            r.print(&json!({"name": name, "devices": ids}), || {
                let mut rows = vec![vec!["DEVICE".into()]];
                rows.extend(ids.iter().map(|id| vec![id.clone()]));
                rows
            })
        }
        GroupsCommand::Add { name, devices } => {
            checked(&name)?;
            let ids = resolve(&r, &devices)?;
            let mut moved = Vec::new();
            let mut lines = Vec::new();
            for id in &ids {
                let before: GroupBody = r.get_as(&format!("/v1/inventory/devices/{id}/group"))?;
                r.call(
                    "PUT",
                    &format!("/v1/inventory/devices/{id}/group"),
                    Some(&json!({"group": name})),
                )?;
                lines.push(match before.group.as_deref() {
                    Some(old) if old == name => format!("device {id} was in {name} already"),
                    Some(old) => format!("device {id} moved from {old} to {name}"),
                    None => format!("device {id} added to {name}"),
                });
                moved.push(json!({"id": id, "from": before.group, "to": name}));
            }
            r.done(&json!({"group": name, "devices": moved}), &lines.join("\n"))
        }
        GroupsCommand::Remove { name, devices } => {
            checked(&name)?;
            let ids = resolve(&r, &devices)?;
            for id in &ids {
                r.call(
                    "DELETE",
                    &format!("/v1/inventory/devices/{id}/group/{name}"),
                    None,
                )
                .map_err(|e| e.context(format!("device {id} could not leave {name}")))?;
            }
            let lines: Vec<String> = ids
                .iter()
                .map(|id| format!("device {id} removed from {name}"))
                .collect();
            r.done(&json!({"group": name, "removed": ids}), &lines.join("\n"))
        }
        GroupsCommand::Delete { name } => {
            checked(&name)?;
            let (_, text, _) = r.call("DELETE", &format!("/v1/inventory/groups/{name}"), None)?;
            let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let n = answer["updated_count"].as_u64().unwrap_or(0);
            r.done(
                &json!({"group": name, "devices_released": n}),
                &format!("group {name} dissolved ({n} devices now in no group)"),
            )
        }
    }
}

/// Refuses a name the server could not hold, before it goes into a URL.
fn checked(name: &str) -> Result<()> {
    if !is_group_name(name) {
        bail!("invalid group name {name:?}: use letters, digits, '-' and '_'");
    }
    Ok(())
}

/// The full ids of `given` (ids or unique prefixes), each checked before anything changes.
fn resolve(r: &Remote, given: &[String]) -> Result<Vec<String>> {
    given.iter().map(|g| device_id(r, g)).collect()
}

/// Every device id in group `name`, over all pages.
fn members(r: &Remote, name: &str) -> Result<Vec<String>> {
    r.get_all(&format!("/v1/inventory/groups/{name}/devices"))
}
