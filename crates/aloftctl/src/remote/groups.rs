//! `aloftctl groups ...`: static groups, over Mender's inventory API (a device is in at most
//! one group, so adding it to a group moves it there; what moved is said), and dynamic groups,
//! over Mender Enterprise's saved filters.

use aloft_api::management::{FilterTerm, GroupBody, SavedFilter, is_group_name};
use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

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
        GroupsCommand::Define { name, terms } => {
            checked(&name)?;
            let terms = terms.iter().map(|t| term(t)).collect::<Result<Vec<_>>>()?;
            let (_, _, location) = r.call(
                "POST",
                "/v2/inventory/filters",
                Some(&json!({"name": name, "terms": terms})),
            )?;
            let id = location
                .as_deref()
                .and_then(|l| l.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            let matching = matching(&r, &id)?;
            r.done(
                &json!({"id": id, "name": name, "devices": matching}),
                &format!("dynamic group {name} defined ({matching} devices match now)"),
            )
        }
        GroupsCommand::Dynamic => {
            let list: Vec<SavedFilter> = r.get_as("/v2/inventory/filters")?;
            let mut listed = Vec::with_capacity(list.len());
            for f in &list {
                listed.push(json!({"id": f.id, "name": f.name, "terms": f.terms,
                                   "devices": matching(&r, &f.id)?}));
            }
            r.print(&listed, || {
                let mut rows = vec![vec!["GROUP".into(), "TERMS".into(), "DEVICES".into()]];
                rows.extend(list.iter().zip(&listed).map(|(f, l)| {
                    let terms: Vec<String> = f.terms.iter().map(show_term).collect();
                    vec![f.name.clone(), terms.join(" "), l["devices"].to_string()]
                }));
                rows
            })
        }
        GroupsCommand::Undefine { name } => {
            let list: Vec<SavedFilter> = r.get_as("/v2/inventory/filters")?;
            let Some(f) = list.iter().find(|f| f.name == name) else {
                bail!("no dynamic group is named {name:?}");
            };
            r.call("DELETE", &format!("/v2/inventory/filters/{}", f.id), None)?;
            r.done(
                &json!({"id": f.id, "name": name}),
                &format!("dynamic group {name} deleted"),
            )
        }
    }
}

/// The id of the dynamic group `name`.
pub(crate) fn dynamic_id(r: &Remote, name: &str) -> Result<String> {
    let list: Vec<SavedFilter> = r.get_as("/v2/inventory/filters")?;
    list.into_iter()
        .find(|f| f.name == name)
        .map(|f| f.id)
        .with_context(|| {
            format!("no dynamic group is named {name:?} (see `aloftctl groups dynamic`)")
        })
}

/// How many devices a saved filter matches now.
fn matching(r: &Remote, id: &str) -> Result<usize> {
    let all: Vec<Value> = r.get_all(&format!("/v2/inventory/filters/{id}/search"))?;
    Ok(all.len())
}

/// The operators of a term as written, longest first (so `>=` is not read as `>`).
const OPERATORS: [(&str, &str); 6] = [
    ("!=", "$ne"),
    ("<=", "$lte"),
    (">=", "$gte"),
    ("=", "$eq"),
    ("<", "$lt"),
    (">", "$gt"),
];

/// A term `[SCOPE/]ATTRIBUTE OP VALUE`.
fn term(text: &str) -> Result<FilterTerm> {
    let Some((at, (op, name))) = OPERATORS
        .iter()
        .filter_map(|(op, name)| text.find(op).map(|at| (at, (*op, *name))))
        .min_by_key(|(at, (op, _))| (*at, std::cmp::Reverse(op.len())))
    else {
        bail!("term {text:?} has no operator (=, !=, <, <=, >, >=)");
    };
    let (key, value) = (&text[..at], &text[at + op.len()..]);
    let (scope, attribute) = match key.split_once('/') {
        Some((s, a)) => (s, a),
        None => ("inventory", key),
    };
    if attribute.is_empty() || value.is_empty() {
        bail!("term {text:?} needs an attribute and a value");
    }
    let value = value
        .parse::<i64>()
        .map(Value::from)
        .or_else(|_| value.parse::<f64>().map(Value::from))
        .unwrap_or_else(|_| Value::from(value));
    Ok(FilterTerm {
        scope: scope.into(),
        attribute: attribute.into(),
        op: name.into(),
        value,
    })
}

/// A term as `term` reads it.
fn show_term(t: &FilterTerm) -> String {
    let op = OPERATORS
        .iter()
        .find(|(_, name)| *name == t.op)
        .map_or(t.op.as_str(), |(op, _)| op);
    let value = match &t.value {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    format!("{}/{}{op}{value}", t.scope, t.attribute)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{show_term, term};

    #[test]
    fn terms_read_scope_operator_and_value() {
        let table = [
            (
                "site=oslo",
                Some(("inventory", "site", "$eq", json!("oslo"))),
            ),
            (
                "tags/ring!=beta",
                Some(("tags", "ring", "$ne", json!("beta"))),
            ),
            ("cpus>=4", Some(("inventory", "cpus", "$gte", json!(4)))),
            ("load<0.5", Some(("inventory", "load", "$lt", json!(0.5)))),
            (
                "identity/mac=02:00:00:00:00:01",
                Some(("identity", "mac", "$eq", json!("02:00:00:00:00:01"))),
            ),
            ("a=b=c", Some(("inventory", "a", "$eq", json!("b=c")))),
            ("site", None),
            ("=oslo", None),
            ("site=", None),
        ];
        for (text, want) in table {
            let got = term(text).ok();
            let got = got.as_ref().map(|t| {
                (
                    t.scope.as_str(),
                    t.attribute.as_str(),
                    t.op.as_str(),
                    t.value.clone(),
                )
            });
            assert_eq!(got, want, "{text}");
        }
        let t = term("cpus>=4").unwrap();
        assert_eq!(show_term(&t), "inventory/cpus>=4");
    }
}
