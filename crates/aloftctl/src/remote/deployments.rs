//! `aloftctl deployments ...`: plan, create, follow and steer deployments and their rollouts.

use std::io::{BufRead as _, IsTerminal as _};
use std::time::Duration;

use aloft_api::event::Envelope;
use aloft_api::management::{
    Deployment, DeploymentPlan, DeploymentStatistics, DeviceDeployment, PlannedOutcome,
};
use aloft_api::status::{DeploymentStatus, DeploymentSummary, Outcome};
use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{Remote, agent, deployment_id, device_id};
use crate::cli::{DeploymentSpec, DeploymentsCommand, ServerArgs};

/// `aloftctl deployments ...`.
pub(crate) fn deployments(args: &ServerArgs, command: DeploymentsCommand) -> Result<()> {
    let r = Remote::open(args)?;
    match command {
        DeploymentsCommand::Create { spec, expect_plan } => {
            let (mut body, target) = deployment_body(&r, &spec)?;
            if let Some(digest) = expect_plan {
                body["expect_plan"] = json!(digest);
            }
            let path = match target {
                Target::Listed => "/v1/deployments/deployments".to_owned(),
                Target::Group(g) => format!("/v1/deployments/deployments/group/{g}"),
                Target::Dynamic => "/v2/deployments/deployments".to_owned(),
            };
            let (_, _, location) = r.call("POST", &path, Some(&body))?;
            let id = location
                .as_deref()
                .and_then(|l| l.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            r.done(
                &json!({"id": id, "name": body["name"]}),
                &format!("deployment {id} created"),
            )
        }
        DeploymentsCommand::Plan { spec } => {
            let (mut body, target) = deployment_body(&r, &spec)?;
            let path = match target {
                Target::Dynamic => "/v2/deployments/deployments/plan",
                Target::Group(g) => {
                    // The plan takes device ids: the group's, as the group endpoint would.
                    let ids: Value =
                        r.get_as(&format!("/v1/inventory/groups/{g}/devices?per_page=500"))?;
                    body["devices"] = ids;
                    "/v1/deployments/deployments/plan"
                }
                Target::Listed => "/v1/deployments/deployments/plan",
            };
            let plan: DeploymentPlan = r.call_as("POST", path, &body)?;
            r.print(&plan, || plan_rows(&plan))
        }
        DeploymentsCommand::List => {
            let list: Vec<Deployment> = r.get_as("/v1/deployments/deployments?per_page=100")?;
            r.print(&list, || {
                let mut rows = vec![vec![
                    "ID".into(),
                    "NAME".into(),
                    "ARTIFACT".into(),
                    "STATUS".into(),
                    "DEVICES".into(),
                    "CREATED".into(),
                ]];
                for d in &list {
                    rows.push(vec![
                        d.id.clone(),
                        d.name.clone(),
                        d.artifact_name.clone(),
                        verdict(d),
                        d.max_devices.map(|n| n.to_string()).unwrap_or_default(),
                        d.created.clone(),
                    ]);
                }
                rows
            })
        }
        DeploymentsCommand::Show { id, watch } => {
            let id = deployment_id(&r, &id)?;
            if watch {
                return watch_deployment(&r, &id);
            }
            show_deployment(&r, &id)
        }
        DeploymentsCommand::Pause { id, reason } => {
            let id = deployment_id(&r, &id)?;
            r.call(
                "POST",
                &format!("/v1/deployments/deployments/{id}/pause"),
                Some(&json!({"reason": reason})),
            )?;
            r.done(
                &json!({"id": id, "paused": true}),
                &format!("deployment {id} paused"),
            )
        }
        DeploymentsCommand::Resume { id } => rollout_command(&r, &id, "resume", "resumed"),
        DeploymentsCommand::Advance { id } => rollout_command(&r, &id, "advance", "advanced"),
        DeploymentsCommand::Release { id } => rollout_command(&r, &id, "release", "released"),
        DeploymentsCommand::Halt { reason, status } => {
            if !status {
                r.call(
                    "PUT",
                    "/v1/deployments/halt",
                    Some(&json!({"halted": true, "reason": reason})),
                )?;
            }
            let h: Value = r.get_as("/v1/deployments/halt")?;
            let text = match h["reason"].as_str() {
                Some(why) => format!("every deployment is held: {why}"),
                None => "no halt holds".to_owned(),
            };
            r.done(&h, &text)
        }
        DeploymentsCommand::Unhalt => {
            r.call(
                "PUT",
                "/v1/deployments/halt",
                Some(&json!({"halted": false})),
            )?;
            r.done(&json!({"halted": false}), "the halt is released")
        }
        DeploymentsCommand::Abort { id } => {
            let id = deployment_id(&r, &id)?;
            r.call(
                "PUT",
                &format!("/v1/deployments/deployments/{id}/status"),
                Some(&json!({"status": "aborted"})),
            )?;
            r.done(
                &json!({"id": id, "status": "aborted"}),
                &format!("deployment {id} aborted"),
            )
        }
    }
}

/// Where a deployment's devices come from.
enum Target {
    /// Listed, or all.
    Listed,
    /// A static group.
    Group(String),
    /// A dynamic group (`filter_id` in the body).
    Dynamic,
}

/// The create body of `spec` (its plan file merged in), and where its devices come from.
fn deployment_body(r: &Remote, spec: &DeploymentSpec) -> Result<(Value, Target)> {
    let name = spec.name.clone().unwrap_or_else(|| spec.artifact.clone());
    let mut body = json!({"name": name, "artifact_name": spec.artifact});
    if let Some(n) = spec.retries {
        body["retries"] = json!(n);
    }
    if let Some(path) = &spec.plan {
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let plan: Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let Value::Object(fields) = plan else {
            bail!("{} must hold a JSON object", path.display());
        };
        for (k, v) in fields {
            if k != "phases" && k != "rollout" {
                bail!("{}: unknown key {k:?} (phases, rollout)", path.display());
            }
            body[k] = v;
        }
    }
    if let Some(cron) = &spec.window {
        let mut window = json!({"cron": cron, "duration_seconds": spec.window_duration});
        if let Some(tz) = &spec.time_zone {
            window["time_zone"] = json!(tz);
        }
        rollout_field(&mut body, "window", window)?;
    }
    if let Some(policy) = &spec.install {
        rollout_field(&mut body, "install", json!(policy))?;
    }
    if let Some(g) = &spec.group {
        return Ok((body, Target::Group(g.clone())));
    }
    if let Some(name) = &spec.dynamic {
        body["filter_id"] = json!(super::groups::dynamic_id(r, name)?);
        if let Some(n) = spec.max_devices {
            body["max_devices"] = json!(n);
        }
        return Ok((body, Target::Dynamic));
    }
    if spec.all {
        body["all_devices"] = json!(true);
    } else if spec.device.is_empty() {
        bail!("say which devices: --all, --group NAME, --dynamic NAME or --device ID");
    } else {
        let ids = spec
            .device
            .iter()
            .map(|d| device_id(r, d))
            .collect::<Result<Vec<_>>>()?;
        body["devices"] = json!(ids);
    }
    Ok((body, Target::Listed))
}

/// Sets `rollout.<key>` of a create body, refusing a plan file that set it too.
fn rollout_field(body: &mut Value, key: &str, value: Value) -> Result<()> {
    if body["rollout"].is_null() {
        body["rollout"] = json!({});
    }
    if !body["rollout"].is_object() {
        bail!("rollout must be a JSON object");
    }
    if !body["rollout"][key].is_null() {
        bail!("rollout.{key} is given twice: by an option and by the plan file");
    }
    body["rollout"][key] = value;
    Ok(())
}

/// A plan as a table: one row per phase, then each skipped device with why, then totals.
fn plan_rows(plan: &DeploymentPlan) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "PHASE".into(),
        "DEVICES".into(),
        "UPDATES".into(),
        "BYTES".into(),
        "OPENS".into(),
    ]];
    for p in &plan.phases {
        rows.push(vec![
            p.id.clone(),
            p.device_count.to_string(),
            p.updates.to_string(),
            p.bytes.to_string(),
            p.earliest_start
                .clone()
                .unwrap_or_else(|| "when advanced".into()),
        ]);
    }
    for d in plan
        .devices
        .iter()
        .filter(|d| d.outcome != PlannedOutcome::Update)
    {
        rows.push(vec![
            format!("skip {}", d.phase),
            d.id.clone(),
            format!("{:?}", d.outcome).to_lowercase(),
            String::new(),
            d.reason.clone().unwrap_or_default(),
        ]);
    }
    let t = &plan.totals;
    rows.push(vec![
        "total".into(),
        t.devices.to_string(),
        t.updates.to_string(),
        t.bytes.to_string(),
        format!("{} skipped; digest {}", t.skipped, plan.digest),
    ]);
    rows
}

/// `POST .../deployments/{id}/{command}` of a phased deployment.
fn rollout_command(r: &Remote, id: &str, command: &str, done: &str) -> Result<()> {
    let id = deployment_id(r, id)?;
    r.call(
        "POST",
        &format!("/v1/deployments/deployments/{id}/{command}"),
        Some(&json!({})),
    )?;
    let d: Value = r.get_as(&format!("/v1/deployments/deployments/{id}"))?;
    r.done(
        &json!({"id": id, "rollout": d["rollout"]}),
        &format!(
            "deployment {id} {done}: phase {} of {}",
            d["rollout"]["phase"], d["rollout"]["phases"]
        ),
    )
}

/// A deployment's status while it runs, the server's verdict once it finished.
fn verdict(d: &Deployment) -> String {
    match (&d.summary, d.status.is_final()) {
        (Some(m), true) => format!("finished: {}", outcome_word(m.outcome)),
        _ => d.status.to_string(),
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pending => "pending",
        Outcome::InProgress => "in progress",
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Aborted => "aborted",
        Outcome::Incomplete => "incomplete",
    }
}

fn show_deployment(r: &Remote, id: &str) -> Result<()> {
    let d: Deployment = r.get_as(&format!("/v1/deployments/deployments/{id}"))?;
    let devices: Vec<DeviceDeployment> =
        r.get_as(&format!("/v1/deployments/deployments/{id}/devices"))?;
    let all = json!({"deployment": d, "devices": devices});
    r.print(&all, || {
        let mut rows = vec![vec!["DEVICE".into(), "STATUS".into(), "DETAIL".into()]];
        rows.push(vec![
            format!("deployment {} ({})", d.name, d.artifact_name),
            verdict(&d),
            counters(&d.statistics),
        ]);
        if let Some(info) = &d.rollout {
            for (what, text) in [
                ("paused", &info.paused),
                ("installs held", &info.install_held),
            ] {
                if let Some(text) = text {
                    rows.push(vec![what.into(), String::new(), text.clone()]);
                }
            }
        }
        for x in &devices {
            let mut detail = x.substate.clone().unwrap_or_default();
            if x.retried > 0 {
                let sep = if detail.is_empty() { "" } else { " " };
                detail = format!("{detail}{sep}(started over {}×)", x.retried);
            }
            rows.push(vec![x.id.clone(), x.status.to_string(), detail]);
        }
        rows
    })
}

/// The non-zero counters, e.g. `failure 1, success 4`.
fn counters(stats: &DeploymentStatistics) -> String {
    stats
        .status
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bars of `--watch`: one per group of the server's summary.
const WATCH_GROUPS: [&str; 5] = ["success", "failure", "skipped", "in progress", "pending"];

fn group_counts(m: &DeploymentSummary) -> [u64; 5] {
    let c = &m.counts;
    [c.success, c.failure, c.skipped, c.in_progress, c.pending]
}

/// Follows a deployment over the live events until it finishes: one progress bar per group
/// on a terminal, a line per change otherwise, the final state as JSON with `--json`. Each
/// event carries the deployment's new summary, so nothing is fetched again until the end.
fn watch_deployment(r: &Remote, id: &str) -> Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let tty = std::io::stderr().is_terminal() && !r.json;
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len}")
        .expect("a valid template")
        .progress_chars("=> ");
    let bars: Vec<ProgressBar> = WATCH_GROUPS
        .iter()
        .map(|g| {
            let b = if tty {
                multi.add(ProgressBar::new(0))
            } else {
                ProgressBar::hidden()
            };
            b.set_style(style.clone());
            b.set_prefix(*g);
            b
        })
        .collect();
    let mut last = String::new();
    let mut update =
        |status: DeploymentStatus, m: &DeploymentSummary, stats: &DeploymentStatistics| {
            for (b, v) in bars.iter().zip(group_counts(m)) {
                b.set_length(m.counts.total);
                b.set_position(v);
            }
            let line = counters(stats);
            if !tty && !r.json && line != last {
                eprintln!("{status}: {line}");
                last = line;
            }
        };
    loop {
        // Subscribe first, then read the state: no change falls in between.
        let events = agent(r.ca_cert.as_deref(), Some(Duration::from_secs(60)))?
            .get(format!("{}/api/management/v1/events", r.base))
            .header("Authorization", format!("Bearer {}", r.token))
            .call()
            .with_context(|| format!("cannot follow the events of {}", r.base))?;
        if events.status() != 200 {
            bail!(
                "the server has no live events (answered {}); use `deployments show` instead",
                events.status()
            );
        }
        let d: Deployment = r.get_as(&format!("/v1/deployments/deployments/{id}"))?;
        let summary = d
            .summary
            .unwrap_or_else(|| DeploymentSummary::of(d.status, &d.statistics.status));
        update(d.status, &summary, &d.statistics);
        if d.status.is_final() {
            return finish_watch(r, id, &bars);
        }
        let reader = std::io::BufReader::new(events.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { break }; // a stall or a cut: subscribe again
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(e) = serde_json::from_str::<Envelope>(data.trim()) else {
                continue; // an event this version does not know
            };
            if let Some(p) = e.event.deployment().filter(|p| p.id == id) {
                update(p.status, &p.summary, &p.statistics);
                if p.status.is_final() {
                    return finish_watch(r, id, &bars);
                }
            }
        }
    }
}

fn finish_watch(r: &Remote, id: &str, bars: &[indicatif::ProgressBar]) -> Result<()> {
    // `abandon` keeps each bar where it is (`finish` would draw every bar full).
    for b in bars {
        b.abandon();
    }
    show_deployment(r, id)
}
