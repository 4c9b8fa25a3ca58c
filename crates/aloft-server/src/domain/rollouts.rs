//! Rollout rules: how a phased deployment's devices are dealt into phases, which device may
//! start now, and when a rollout advances, pauses or aborts. Pure functions with table tests;
//! `service::rollouts` applies what they decide.
//!
//! Semantics (ARCHITECTURE.md, "Rollouts"): a phase's *applicable* devices are all but those
//! the server skipped (`noartifact`, `aborted`, `decommissioned`). Its success threshold is
//! met when `successes × 100 ≥ threshold × applicable`; its failure threshold is crossed when
//! `failures × 100 > threshold × applicable` (strictly), over every open phase.

use aloft_api::management::{
    AdvanceMode, FailureAction, InstallPolicy, NewPhase, PhaseOrder, RolloutOptions,
};
use aloft_api::status::Counts;

use crate::domain::health::{Cohort, compare};
use crate::domain::windows::{Openness, Window};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most phases a rollout may have.
pub const MAX_PHASES: usize = 100;
/// Longest soak time (30 days).
pub const MAX_SOAK_SECONDS: u64 = 30 * 86_400;
/// Most canaries a rollout may list.
pub const MAX_CANARIES: usize = 10_000;
/// Most webhook gates a rollout may have.
pub const MAX_GATES: usize = 4;
/// Longest wait for a webhook gate's answer.
pub const GATE_TIMEOUT_MAX: u64 = 30;
/// The default wait for a webhook gate's answer.
pub const GATE_TIMEOUT_DEFAULT: u64 = 10;
/// How long after a refusing answer the webhook gates are asked again (µs).
pub const GATE_RETRY_US: i64 = 30_000_000;

/// How big a phase is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    /// A share of the deployment's devices.
    Percent(u32),
    /// A number of devices.
    Devices(u64),
    /// Whatever the phases before left (the last phase only).
    Rest,
}

/// One phase of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhasePlan {
    /// Its size.
    pub size: Size,
    /// UNIX µs: it opens no earlier.
    pub start_ts: Option<i64>,
}

/// A rollout: its phases and options, stored with the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The phases, at least two.
    pub phases: Vec<PhasePlan>,
    /// The options, as given (defaults filled in by the accessors below).
    pub options: RolloutOptions,
    /// The release most of its devices ran when it was made: what the health gate's
    /// `roll_back` deploys to the updated devices.
    #[serde(default)]
    pub previous: Option<String>,
}

/// Where a rollout stands; stored with the deployment and changed only by compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The last open phase, from 0.
    pub phase: u32,
    /// UNIX µs: when it opened.
    pub phase_ts: i64,
    /// UNIX µs: when it first met its success threshold.
    pub met_ts: Option<i64>,
    /// Why it is paused.
    pub paused: Option<String>,
    /// Failures an operator saw when resuming: the failure gate counts only failures beyond.
    pub acknowledged_failures: u64,
    /// Unhealthy updated devices an operator saw when resuming: the health gate stops again
    /// only when there are more.
    #[serde(default)]
    pub acknowledged_unhealthy: u64,
    /// UNIX µs: when an operator released the installs (whatever the window or the policy).
    #[serde(default)]
    pub released: Option<i64>,
    /// Why a webhook gate keeps the next phase closed (its last answer).
    #[serde(default)]
    pub gate_held: Option<String>,
    /// UNIX µs: when the webhook gates were last asked and refused.
    #[serde(default)]
    pub gate_checked: Option<i64>,
}

impl State {
    /// A rollout just created at `now`: its first phase open.
    pub fn start(now: i64) -> Self {
        Self {
            phase: 0,
            phase_ts: now,
            met_ts: None,
            paused: None,
            acknowledged_failures: 0,
            acknowledged_unhealthy: 0,
            released: None,
            gate_held: None,
            gate_checked: None,
        }
    }
}

impl Plan {
    /// Parses and checks a new deployment's `phases` and `rollout`; `None` for a plain
    /// deployment (no phases, or one phase without a start time, and no options). Options
    /// without phases make a rollout of one phase (a window or an install policy on a plain
    /// deployment).
    pub fn parse(
        phases: Option<&[NewPhase]>,
        options: Option<&RolloutOptions>,
        parse_ts: impl Fn(&str) -> Option<i64>,
    ) -> Result<Option<Self>, String> {
        let one = [NewPhase::default()];
        let phases = match phases.unwrap_or_default() {
            [] if options.is_none() => return Ok(None),
            [] => &one[..],
            p => p,
        };
        if phases.len() > MAX_PHASES {
            return Err(format!("at most {MAX_PHASES} phases"));
        }
        let last = phases.len() - 1;
        let mut out = Vec::with_capacity(phases.len());
        for (i, p) in phases.iter().enumerate() {
            let n = i + 1;
            let size = match (p.batch_size, p.devices) {
                (Some(_), Some(_)) => {
                    return Err(format!("phase {n}: give batch_size or devices, not both"));
                }
                (Some(pct), None) if (1..=100).contains(&pct) => Size::Percent(pct),
                (Some(pct), None) => {
                    return Err(format!(
                        "phase {n}: batch_size {pct} is not a percentage from 1 to 100"
                    ));
                }
                (None, Some(0)) => return Err(format!("phase {n}: devices must be at least 1")),
                (None, Some(k)) => Size::Devices(k),
                (None, None) if i == last => Size::Rest,
                (None, None) => {
                    return Err(format!(
                        "phase {n}: only the last phase may leave out its size (it takes the rest)"
                    ));
                }
            };
            let start_ts = match &p.start_ts {
                None => None,
                Some(t) => Some(
                    parse_ts(t)
                        .ok_or_else(|| format!("phase {n}: start_ts {t:?} is not RFC 3339"))?,
                ),
            };
            out.push(PhasePlan { size, start_ts });
        }
        let percents: Vec<u32> = out
            .iter()
            .filter_map(|p| match p.size {
                Size::Percent(x) => Some(x),
                _ => None,
            })
            .collect();
        let counts = out
            .iter()
            .filter(|p| matches!(p.size, Size::Devices(_)))
            .count();
        if !percents.is_empty() && counts > 0 {
            return Err("phases give either batch_size or devices, not a mix".into());
        }
        let sum: u32 = percents.iter().sum();
        let has_rest = out.last().is_some_and(|p| p.size == Size::Rest);
        if sum > 100 || (!has_rest && !percents.is_empty() && sum != 100) {
            return Err(format!(
                "the phases' batch_size add up to {sum}%: they must make 100%, or leave the last phase's out"
            ));
        }
        if has_rest && !percents.is_empty() && sum >= 100 {
            return Err("the phases before the last already take every device".into());
        }
        if out
            .windows(2)
            .any(|w| matches!((w[0].start_ts, w[1].start_ts), (Some(a), Some(b)) if b < a))
        {
            return Err("a phase's start_ts is before the previous phase's".into());
        }
        let options = options.cloned().unwrap_or_default();
        check_options(&options, &out)?;
        if out.len() == 1 && out[0].start_ts.is_none() && options == RolloutOptions::default() {
            return Ok(None);
        }
        Ok(Some(Self {
            phases: out,
            options,
            previous: None,
        }))
    }

    /// Percent that must succeed for `auto`.
    pub fn success_threshold(&self) -> u32 {
        self.options.success_threshold.unwrap_or(100)
    }

    /// Seconds of soak.
    pub fn soak_us(&self) -> i64 {
        i64::try_from(self.options.soak_seconds.unwrap_or(0))
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000)
    }
}

fn check_options(o: &RolloutOptions, phases: &[PhasePlan]) -> Result<(), String> {
    for (what, v) in [
        ("success_threshold", o.success_threshold),
        ("failure_threshold", o.failure_threshold),
    ] {
        if v.is_some_and(|v| v > 100) {
            return Err(format!("{what} must be a percentage from 0 to 100"));
        }
    }
    if o.soak_seconds.is_some_and(|s| s > MAX_SOAK_SECONDS) {
        return Err(format!("soak_seconds must be at most {MAX_SOAK_SECONDS}"));
    }
    if o.max_installing == Some(0) {
        return Err("max_installing must be at least 1".into());
    }
    if let Some(h) = o.health {
        if h.margin > 100 {
            return Err("health.margin must be a percentage from 0 to 100".into());
        }
        if h.offline_after_seconds == 0 || h.offline_after_seconds > MAX_SOAK_SECONDS {
            return Err(format!(
                "health.offline_after_seconds must be from 1 to {MAX_SOAK_SECONDS}"
            ));
        }
    }
    if o.max_per_minute == Some(0) {
        return Err("max_per_minute must be at least 1".into());
    }
    match (o.max_per_minute, o.rate_doubling) {
        (_, Some(0)) => return Err("rate_doubling must be at least 1".into()),
        (None, Some(_)) => return Err("rate_doubling goes with max_per_minute".into()),
        _ => {}
    }
    if let Some(w) = &o.window {
        Window::parse(w)?;
    }
    check_gates(o)?;
    if o.canaries.len() > MAX_CANARIES {
        return Err(format!("at most {MAX_CANARIES} canaries"));
    }
    match (o.order, &o.attribute, o.seed) {
        (PhaseOrder::Spread, None, _) => {
            return Err("the spread order needs an attribute".into());
        }
        (PhaseOrder::Spread, Some(a), _) if a.is_empty() || a.len() > 1024 => {
            return Err("attribute must have 1 to 1024 characters".into());
        }
        (PhaseOrder::Random, _, None) => {
            return Err("the random order needs a seed (it makes the order reproducible)".into());
        }
        (p, Some(_), _) if p != PhaseOrder::Spread => {
            return Err("attribute goes with the spread order".into());
        }
        (p, _, Some(_)) if p != PhaseOrder::Random => {
            return Err("seed goes with the random order".into());
        }
        _ => {}
    }
    if o.advance == AdvanceMode::Time
        && let Some(i) = phases.iter().skip(1).position(|p| p.start_ts.is_none())
    {
        return Err(format!(
            "phase {} has no start_ts: with advance \"time\" every phase after the first needs one (or use \"auto\" or \"manual\")",
            i + 2
        ));
    }
    if o.advance != AdvanceMode::Auto && (o.success_threshold.is_some() || o.soak_seconds.is_some())
    {
        return Err("success_threshold and soak_seconds go with advance \"auto\"".into());
    }
    Ok(())
}

fn check_gates(o: &RolloutOptions) -> Result<(), String> {
    if o.gates.len() > MAX_GATES {
        return Err(format!("at most {MAX_GATES} gates"));
    }
    if !o.gates.is_empty() && o.advance == AdvanceMode::Manual {
        return Err(
            "gates go with advance \"time\" or \"auto\" (an operator's advance asks none)".into(),
        );
    }
    for (i, g) in o.gates.iter().enumerate() {
        let n = i + 1;
        let scheme_ok = g.url.starts_with("https://") || g.url.starts_with("http://");
        let host = g.url.split_once("://").map_or("", |(_, rest)| {
            rest.split(['/', '?', '#']).next().unwrap_or_default()
        });
        if !scheme_ok
            || host.is_empty()
            || g.url.len() > 2048
            || g.url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "gates[{n}].url must be an http:// or https:// URL of at most 2048 characters"
            ));
        }
        if g.timeout_seconds
            .is_some_and(|t| t == 0 || t > GATE_TIMEOUT_MAX)
        {
            return Err(format!(
                "gates[{n}].timeout_seconds must be from 1 to {GATE_TIMEOUT_MAX}"
            ));
        }
    }
    Ok(())
}

/// A gate's URL as logs and operators see it: without credentials, query or fragment (where
/// a monitoring system's token would be).
pub fn shown_url(url: &str) -> String {
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..cut];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Options as the API shows them: webhook gates' URLs without their secrets ([`shown_url`]).
pub fn shown_options(o: &RolloutOptions) -> RolloutOptions {
    let mut shown = o.clone();
    for g in &mut shown.gates {
        g.url = shown_url(&g.url);
    }
    shown
}

/// Whether the webhook gates may be asked now: never asked, or refused long enough ago.
pub fn gate_due(state: &State, now: i64) -> bool {
    state
        .gate_checked
        .is_none_or(|t| now >= t.saturating_add(GATE_RETRY_US))
}

/// The gates' verdict from their answers in order (an HTTP status, or why there was none):
/// every one 2xx lets the phase open; the first other says why not.
pub fn gate_verdict(answers: &[(String, Result<u16, String>)]) -> Result<(), String> {
    for (url, answer) in answers {
        match answer {
            Ok(code) if (200..300).contains(code) => {}
            Ok(code) => return Err(format!("gate {} answered {code}", shown_url(url))),
            Err(why) => {
                return Err(format!("gate {} did not answer: {why}", shown_url(url)));
            }
        }
    }
    Ok(())
}

/// How many devices each phase gets out of `n`. Percentages are cumulative and rounded up
/// (`ceil(n × (p₁+…+pᵢ) / 100)` devices are in phases 1 to i), so a small canary share still
/// gets a device; a phase left with no device is an error, as is a count beyond `n`.
pub fn sizes(n: u64, phases: &[PhasePlan]) -> Result<Vec<u64>, String> {
    let mut out = Vec::with_capacity(phases.len());
    let (mut before, mut pct) = (0u64, 0u64);
    for (i, p) in phases.iter().enumerate() {
        let upto = match p.size {
            Size::Rest => n,
            Size::Percent(x) => {
                pct += u64::from(x);
                (n * pct).div_ceil(100).min(n)
            }
            Size::Devices(k) => before.saturating_add(k),
        };
        if upto > n {
            return Err(format!(
                "phase {} asks for more devices than the {n} of the deployment",
                i + 1
            ));
        }
        if upto <= before {
            return Err(format!(
                "phase {} would have no device (of {n}); use fewer or larger phases",
                i + 1
            ));
        }
        out.push(upto - before);
        before = upto;
    }
    if before < n {
        return Err(format!(
            "the phases take {before} of the {n} devices; leave the last phase's size out to take the rest"
        ));
    }
    Ok(out)
}

/// A device to deal into phases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its id.
    pub id: String,
    /// UNIX µs: when it was first seen.
    pub created: i64,
    /// The `spread` attribute's value (empty when it has none).
    pub value: String,
}

/// The order devices are dealt into phases: the canaries first (in their order), then the
/// rest by the plan's order. Stable: the same devices and options give the same order.
pub fn order(mut devices: Vec<Candidate>, options: &RolloutOptions) -> Vec<String> {
    let mut first = Vec::new();
    for c in &options.canaries {
        if let Some(i) = devices.iter().position(|d| &d.id == c) {
            first.push(devices.swap_remove(i).id);
        }
    }
    // Keys are unique (ids are), so an unstable sort gives the one order, faster.
    devices.sort_unstable_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    let rest: Vec<String> = match options.order {
        PhaseOrder::Creation => devices.into_iter().map(|d| d.id).collect(),
        PhaseOrder::Random => {
            let seed = options.seed.unwrap_or(0).to_le_bytes();
            let mut keyed: Vec<([u8; 32], String)> = devices
                .into_iter()
                .map(|d| {
                    let k: [u8; 32] = Sha256::new()
                        .chain_update(seed)
                        .chain_update(d.id.as_bytes())
                        .finalize()
                        .into();
                    (k, d.id)
                })
                .collect();
            keyed.sort_unstable();
            keyed.into_iter().map(|(_, id)| id).collect()
        }
        PhaseOrder::Spread => {
            // The k-th of a value's m devices sits at (2k+1)/2m of the way: each value is
            // spread evenly over the whole order, whatever its share.
            let mut groups: std::collections::BTreeMap<String, Vec<String>> =
                std::collections::BTreeMap::new();
            for d in devices {
                groups.entry(d.value).or_default().push(d.id);
            }
            let mut keyed: Vec<(u128, u128, String, String)> = Vec::new();
            for (value, ids) in groups {
                let m = ids.len() as u128;
                for (k, id) in ids.into_iter().enumerate() {
                    keyed.push((2 * k as u128 + 1, 2 * m, value.clone(), id));
                }
            }
            keyed.sort_by(|a, b| (a.0 * b.1).cmp(&(b.0 * a.1)).then_with(|| a.2.cmp(&b.2)));
            keyed.into_iter().map(|(_, _, _, id)| id).collect()
        }
    };
    first.extend(rest);
    first
}

/// Why a device may not start a rollout's update now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The fleet-wide halt holds.
    Halted,
    /// The rollout is paused.
    Paused,
    /// The device's phase has not opened.
    NotYetOpen,
    /// `max_installing` devices are already at it.
    Busy,
    /// The per-minute limit was reached.
    RateLimited,
}

impl Wait {
    /// Whether only a stored change (the rollout's state, the halt) can end this wait, so
    /// that the device may be told "nothing yet" without asking the store again until one
    /// happens; load and the clock end the others.
    pub fn lasts_until_a_change(self) -> bool {
        matches!(self, Self::Halted | Self::Paused | Self::NotYetOpen)
    }
}

/// How busy a rollout is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Devices handed the update and not finished.
    pub installing: u64,
    /// Devices handed the update in the last minute.
    pub started_last_minute: u64,
    /// Devices that succeeded so far.
    pub successes: u64,
}

/// The per-minute limit now: `max_per_minute`, doubled for every `rate_doubling` successes
/// (at most 2³² times); `None` without a limit.
pub fn rate_now(o: &RolloutOptions, successes: u64) -> Option<u64> {
    let base = o.max_per_minute?;
    let doublings = o
        .rate_doubling
        .filter(|n| *n > 0)
        .map_or(0, |n| (successes / n).min(32));
    Some(base.saturating_mul(1u64 << doublings))
}

/// Whether a device of `phase` may start the update now: its phase is open, the rollout
/// and the fleet are not held, fewer than `max_installing` devices are at it, and fewer than
/// the per-minute limit started in the last minute.
pub fn may_start(
    plan: Option<&Plan>,
    state: Option<&State>,
    phase: u32,
    halted: bool,
    load: Load,
) -> Result<(), Wait> {
    if halted {
        return Err(Wait::Halted);
    }
    let (Some(plan), Some(state)) = (plan, state) else {
        return Ok(());
    };
    if state.paused.is_some() {
        return Err(Wait::Paused);
    }
    if phase > state.phase {
        return Err(Wait::NotYetOpen);
    }
    if plan
        .options
        .max_installing
        .is_some_and(|m| load.installing >= m)
    {
        return Err(Wait::Busy);
    }
    if rate_now(&plan.options, load.successes).is_some_and(|r| load.started_last_minute >= r) {
        return Err(Wait::RateLimited);
    }
    Ok(())
}

/// Why a device that has the update must not install it yet (aloft's install control).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The fleet-wide halt holds.
    Halted,
    /// The rollout is paused.
    Paused,
    /// Outside the maintenance window; it opens then (UNIX µs), if ever.
    Window(Option<i64>),
    /// `download-only`: an operator's release is awaited.
    Release,
}

impl Hold {
    /// The words a device and an operator see.
    pub fn text(self, rfc3339: impl Fn(i64) -> String) -> String {
        match self {
            Self::Halted => "the fleet-wide halt holds every install".into(),
            Self::Paused => "the rollout is paused".into(),
            Self::Window(Some(t)) => {
                format!(
                    "outside the maintenance window, which opens at {}",
                    rfc3339(t)
                )
            }
            Self::Window(None) => "outside the maintenance window, which never opens again".into(),
            Self::Release => "download-only: waiting for the operator's release".into(),
        }
    }

    /// Whether only a stored change (the rollout's state, the halt, a release) can end this
    /// hold; the clock ends that of a window that opens again.
    pub fn lasts_until_a_change(self) -> bool {
        !matches!(self, Self::Window(Some(_)))
    }

    /// When the hold ends by itself, if known.
    pub fn until(self) -> Option<i64> {
        match self {
            Self::Window(t) => t,
            _ => None,
        }
    }
}

/// Whether the rollout controls installs at all (a window, or a policy other than
/// `forced`): only then do devices learn of holds, and stock clients wait for the go.
pub fn controls_install(plan: &Plan) -> bool {
    plan.options.window.is_some() || plan.options.install != InstallPolicy::Forced
}

/// Why a device of a rollout that controls installs must not install now, `None` when it
/// may: the halt and a pause hold it; an operator's release lets it go whatever the window;
/// otherwise the window decides (download-only too, when it has one), and download-only
/// without a window waits for the release.
pub fn install_hold(plan: &Plan, state: &State, halted: bool, now: i64) -> Option<Hold> {
    if halted {
        return Some(Hold::Halted);
    }
    if state.paused.is_some() {
        return Some(Hold::Paused);
    }
    if state.released.is_some() {
        return None;
    }
    // A window was checked when the rollout was made; one that no longer parses holds.
    match plan.options.window.as_ref().map(Window::parse) {
        Some(Ok(w)) => match w.at(now) {
            Openness::Open { .. } => None,
            Openness::Closed { opens } => Some(Hold::Window(opens)),
        },
        Some(Err(_)) => Some(Hold::Window(None)),
        None if plan.options.install == InstallPolicy::DownloadOnly => Some(Hold::Release),
        None => None,
    }
}

/// What a rollout should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Open the next phase.
    Advance,
    /// The open phase met its success threshold at this time (the soak starts).
    Met(i64),
    /// Stop handing the update out, for this reason.
    Pause(String),
    /// Abort the deployment, for this reason.
    Abort(String),
    /// A webhook gate refused the advance `decide` asked for, for this reason (asked again
    /// after [`GATE_RETRY_US`]).
    GateHeld(String),
}

fn applicable(c: &Counts) -> u64 {
    c.total - c.skipped
}

/// The next step of a rollout, given its phases' counts (index = phase) at `now`; `None`
/// when nothing is due. Nothing is automatic while it is paused.
pub fn decide(
    plan: &Plan,
    state: &State,
    counts: &[Counts],
    health: Option<(Cohort, Cohort)>,
    now: i64,
) -> Option<Step> {
    if state.paused.is_some() {
        return None;
    }
    let stop = |reason: String| match plan.options.on_failure {
        FailureAction::Pause => Step::Pause(reason),
        FailureAction::Abort => Step::Abort(reason),
    };
    if let Some(reason) = health_stop(plan, state, health) {
        return Some(stop(reason));
    }
    let open = usize::try_from(state.phase).unwrap_or(usize::MAX);
    if let Some(threshold) = plan.options.failure_threshold {
        let failures: u64 = counts.iter().map(|c| c.failure).sum();
        if failures > state.acknowledged_failures {
            for (i, c) in counts.iter().enumerate().take(open.saturating_add(1)) {
                let n = applicable(c);
                if c.failure > 0 && c.failure * 100 > u64::from(threshold) * n {
                    let reason = format!(
                        "phase {}: {} of {n} devices failed ({}%), above the failure threshold of {threshold}%",
                        i + 1,
                        c.failure,
                        c.failure * 100 / n.max(1)
                    );
                    return Some(stop(reason));
                }
            }
        }
    }
    let next = plan.phases.get(open.checked_add(1)?)?;
    let started = next.start_ts.is_none_or(|t| now >= t);
    match plan.options.advance {
        AdvanceMode::Manual => None,
        AdvanceMode::Time => started.then_some(Step::Advance),
        AdvanceMode::Auto => {
            let c = counts.get(open).copied().unwrap_or_default();
            let met = c.success * 100 >= u64::from(plan.success_threshold()) * applicable(&c);
            if !met {
                return None;
            }
            let since = state.met_ts.unwrap_or(now);
            if started && now >= since.saturating_add(plan.soak_us()) {
                Some(Step::Advance)
            } else if state.met_ts.is_none() {
                Some(Step::Met(now))
            } else {
                None
            }
        }
    }
}

/// Why the health gate stops the rollout now, if it does: the updated cohort is unhealthier
/// than the control by more than the margin, with more unhealthy devices than an operator
/// accepted when resuming.
pub fn health_stop(plan: &Plan, state: &State, health: Option<(Cohort, Cohort)>) -> Option<String> {
    let (gate, (updated, control)) = (plan.options.health?, health?);
    if updated.unhealthy() <= state.acknowledged_unhealthy {
        return None;
    }
    compare(updated, control, gate.margin)
}

/// The release most of `installed` (what a rollout's devices run) name, other than the one
/// being deployed; ties go to the first in name order. `None` when none is known.
pub fn previous_release<'a>(
    installed: impl IntoIterator<Item = &'a str>,
    target: &str,
) -> Option<String> {
    let mut counts: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for name in installed {
        if !name.is_empty() && name != target {
            *counts.entry(name).or_default() += 1;
        }
    }
    let most = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|(_, n)| *n == most)
        .map(|(name, _)| name.to_owned())
}

/// The state after `step` (an abort leaves it to the deployment).
pub fn apply(state: &State, step: &Step, now: i64) -> State {
    let mut s = state.clone();
    match step {
        Step::Advance => {
            s.phase += 1;
            s.phase_ts = now;
            s.met_ts = None;
            s.gate_held = None;
            s.gate_checked = None;
        }
        Step::Met(t) => s.met_ts = Some(*t),
        Step::GateHeld(reason) => {
            s.gate_held = Some(reason.clone());
            s.gate_checked = Some(now);
        }
        Step::Pause(reason) | Step::Abort(reason) => s.paused = Some(reason.clone()),
    }
    s
}

/// The phase (from 0) a device joining a running dynamic rollout is dealt into: the next
/// phase not yet open, so a device that appears during the canaries waits for the next wave
/// (canaries are chosen, not whoever comes), or the last phase once every phase is open.
pub fn joining_phase(plan: &Plan, state: &State) -> u32 {
    let last = u32::try_from(plan.phases.len().saturating_sub(1)).unwrap_or(u32::MAX);
    state.phase.saturating_add(1).min(last)
}

/// The earliest time each phase can open (UNIX µs), for a plan made at `now`: phase 1 at once
/// or at its start time; under `time` each later phase at its start time; under `auto` no
/// earlier than the previous phase plus the soak (a lower bound: installs take time too);
/// under `manual` unknown (`None`). With a maintenance window, a phase's installs start no
/// earlier than the window's next opening from there; download-only without one waits for
/// the release (unknown).
pub fn earliest_starts(plan: &Plan, now: i64) -> Vec<Option<i64>> {
    let window = plan
        .options
        .window
        .as_ref()
        .and_then(|w| Window::parse(w).ok());
    let release =
        plan.options.window.is_none() && plan.options.install == InstallPolicy::DownloadOnly;
    earliest_opens(plan, now)
        .into_iter()
        .map(|at| match &window {
            _ if release => None,
            Some(w) => at.and_then(|t| w.earliest_inside(t)),
            None => at,
        })
        .collect()
}

/// When each phase can open (its devices handed the update), before windows.
fn earliest_opens(plan: &Plan, now: i64) -> Vec<Option<i64>> {
    let mut out: Vec<Option<i64>> = Vec::with_capacity(plan.phases.len());
    for (i, p) in plan.phases.iter().enumerate() {
        let at = if i == 0 {
            Some(p.start_ts.map_or(now, |t| t.max(now)))
        } else {
            let prev = out[i - 1];
            match plan.options.advance {
                AdvanceMode::Manual => None,
                AdvanceMode::Time => p.start_ts.map(|t| t.max(now)),
                AdvanceMode::Auto => prev.map(|at| {
                    let after_soak = at.saturating_add(plan.soak_us());
                    p.start_ts.map_or(after_soak, |t| t.max(after_soak))
                }),
            }
        };
        out.push(at);
    }
    out
}

/// What an operator asks of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Stop handing the update out.
    Pause(String),
    /// Go on; the failures seen so far no longer trip the failure gate.
    Resume,
    /// Open the next phase now (and resume): an operator's override of every gate.
    Advance,
    /// Let devices install now, whatever the window or the download-only policy says.
    Release,
}

/// The state after an operator's command, or why it is refused. `failures` counts the
/// rollout's failed devices now, `unhealthy` its unhealthy updated devices.
pub fn command(
    plan: &Plan,
    state: &State,
    cmd: &Command,
    (failures, unhealthy): (u64, u64),
    now: i64,
) -> Result<State, String> {
    let mut s = state.clone();
    match cmd {
        Command::Pause(reason) => {
            if s.paused.is_some() {
                return Err("the rollout is already paused".into());
            }
            s.paused = Some(reason.clone());
        }
        Command::Resume => {
            if s.paused.is_none() {
                return Err("the rollout is not paused".into());
            }
            s.paused = None;
            s.acknowledged_failures = failures;
            s.acknowledged_unhealthy = unhealthy;
        }
        Command::Advance => {
            if usize::try_from(s.phase).unwrap_or(usize::MAX) + 1 >= plan.phases.len() {
                return Err("the last phase is already open".into());
            }
            s = apply(&s, &Step::Advance, now);
            s.paused = None;
            s.acknowledged_failures = failures;
            s.acknowledged_unhealthy = unhealthy;
        }
        Command::Release => {
            if plan.options.window.is_none() && plan.options.install != InstallPolicy::DownloadOnly
            {
                return Err(
                    "nothing to release: the rollout has no maintenance window and is not download-only"
                        .into(),
                );
            }
            if s.released.is_some() {
                return Err("the rollout is already released".into());
            }
            s.released = Some(now);
        }
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // the tables' row types
mod tests {
    use super::*;

    fn phase(batch: Option<u32>, devices: Option<u64>, ts: Option<&str>) -> NewPhase {
        NewPhase {
            batch_size: batch,
            devices,
            start_ts: ts.map(str::to_owned),
        }
    }

    fn parse(phases: &[NewPhase], o: Option<&RolloutOptions>) -> Result<Option<Plan>, String> {
        Plan::parse(Some(phases), o, aloft_api::time::parse_rfc3339)
    }

    fn auto() -> RolloutOptions {
        RolloutOptions {
            advance: AdvanceMode::Auto,
            ..RolloutOptions::default()
        }
    }

    #[test]
    fn plans_are_checked() {
        let t1 = Some("2026-01-01T00:00:00Z");
        let t0 = Some("2025-01-01T00:00:00Z");
        let manual = RolloutOptions {
            advance: AdvanceMode::Manual,
            ..RolloutOptions::default()
        };
        let ok = |r: Result<Option<Plan>, String>| r.map(|p| p.map(|p| p.phases.len()));
        let cases: Vec<(
            Vec<NewPhase>,
            Option<RolloutOptions>,
            Result<Option<usize>, &str>,
        )> = vec![
            (vec![], None, Ok(None)),
            (vec![phase(None, None, None)], None, Ok(None)),
            (vec![phase(Some(100), None, None)], None, Ok(None)),
            (
                vec![phase(Some(10), None, None), phase(None, None, t1)],
                None,
                Ok(Some(2)),
            ),
            (
                vec![phase(Some(10), None, None), phase(None, None, None)],
                None,
                Err("phase 2 has no start_ts"),
            ),
            (
                vec![phase(Some(10), None, None), phase(None, None, None)],
                Some(auto()),
                Ok(Some(2)),
            ),
            (
                vec![phase(None, Some(2), None), phase(None, None, None)],
                Some(manual.clone()),
                Ok(Some(2)),
            ),
            (
                vec![phase(Some(0), None, None), phase(None, None, t1)],
                None,
                Err("not a percentage"),
            ),
            (
                vec![phase(Some(101), None, None)],
                None,
                Err("not a percentage"),
            ),
            (vec![phase(Some(10), Some(1), None)], None, Err("not both")),
            (vec![phase(None, Some(0), None)], None, Err("at least 1")),
            (
                vec![phase(None, None, None), phase(Some(10), None, t1)],
                None,
                Err("only the last phase"),
            ),
            (
                vec![phase(Some(10), None, None), phase(None, Some(3), t1)],
                None,
                Err("not a mix"),
            ),
            (
                vec![phase(Some(60), None, None), phase(Some(60), None, t1)],
                None,
                Err("add up to 120%"),
            ),
            (
                vec![phase(Some(60), None, None), phase(Some(30), None, t1)],
                None,
                Err("add up to 90%"),
            ),
            (
                vec![phase(Some(100), None, None), phase(None, None, t1)],
                None,
                Err("already take every device"),
            ),
            (
                vec![phase(Some(10), None, t1), phase(None, None, t0)],
                None,
                Err("before the previous"),
            ),
            (
                vec![
                    phase(Some(10), None, Some("tomorrow")),
                    phase(None, None, t1),
                ],
                None,
                Err("not RFC 3339"),
            ),
            (vec![], Some(auto()), Ok(Some(1))),
        ];
        for (phases, o, want) in cases {
            let got = ok(parse(&phases, o.as_ref()));
            match (&got, want) {
                (Ok(g), Ok(w)) => assert_eq!(*g, w, "{phases:?}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{phases:?}: {e}"),
                _ => panic!("{phases:?} {o:?}: got {got:?}, want {want:?}"),
            }
        }
        let two = [phase(Some(50), None, None), phase(None, None, None)];
        let bad = [
            (
                RolloutOptions {
                    success_threshold: Some(101),
                    ..auto()
                },
                "from 0 to 100",
            ),
            (
                RolloutOptions {
                    failure_threshold: Some(101),
                    ..auto()
                },
                "from 0 to 100",
            ),
            (
                RolloutOptions {
                    soak_seconds: Some(MAX_SOAK_SECONDS + 1),
                    ..auto()
                },
                "soak_seconds",
            ),
            (
                RolloutOptions {
                    max_installing: Some(0),
                    ..auto()
                },
                "at least 1",
            ),
            (
                RolloutOptions {
                    order: PhaseOrder::Spread,
                    ..auto()
                },
                "needs an attribute",
            ),
            (
                RolloutOptions {
                    order: PhaseOrder::Random,
                    ..auto()
                },
                "needs a seed",
            ),
            (
                RolloutOptions {
                    seed: Some(1),
                    ..auto()
                },
                "seed goes with",
            ),
            (
                RolloutOptions {
                    attribute: Some("site".into()),
                    ..auto()
                },
                "attribute goes with",
            ),
            (
                RolloutOptions {
                    success_threshold: Some(50),
                    ..manual.clone()
                },
                "go with advance",
            ),
        ];
        for (o, want) in bad {
            let e = parse(&two, Some(&o)).unwrap_err();
            assert!(e.contains(want), "{o:?}: {e}");
        }
    }

    #[test]
    fn phase_sizes_round_up_and_refuse_empty_phases() {
        let pct = |x| PhasePlan {
            size: Size::Percent(x),
            start_ts: None,
        };
        let dev = |x| PhasePlan {
            size: Size::Devices(x),
            start_ts: None,
        };
        let rest = PhasePlan {
            size: Size::Rest,
            start_ts: None,
        };
        let cases: Vec<(u64, Vec<PhasePlan>, Result<Vec<u64>, &str>)> = vec![
            (10, vec![pct(10), rest], Ok(vec![1, 9])),
            (3, vec![pct(10), rest], Ok(vec![1, 2])),
            (3, vec![pct(10), pct(90)], Ok(vec![1, 2])),
            (100, vec![pct(1), pct(9), pct(90)], Ok(vec![1, 9, 90])),
            (7, vec![pct(50), pct(50)], Ok(vec![4, 3])),
            (1, vec![pct(10), rest], Err("phase 2 would have no device")),
            (
                2,
                vec![pct(10), pct(10), rest],
                Err("phase 2 would have no device"),
            ),
            (10, vec![dev(2), dev(3), rest], Ok(vec![2, 3, 5])),
            (5, vec![dev(2), dev(3)], Ok(vec![2, 3])),
            (5, vec![dev(2), dev(2)], Err("take 4 of the 5")),
            (5, vec![dev(6), rest], Err("more devices than the 5")),
            (5, vec![dev(5), rest], Err("phase 2 would have no device")),
        ];
        for (n, phases, want) in cases {
            let got = sizes(n, &phases);
            match (&got, want.clone()) {
                (Ok(g), Ok(w)) => assert_eq!(g, &w, "{n} {phases:?}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{n}: {e}"),
                _ => panic!("{n} {phases:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn cand(id: &str, created: i64, value: &str) -> Candidate {
        Candidate {
            id: id.into(),
            created,
            value: value.into(),
        }
    }

    #[test]
    fn devices_are_ordered_stably_canaries_first() {
        let fleet = vec![
            cand("d", 4, "east"),
            cand("a", 1, "east"),
            cand("c", 3, "east"),
            cand("b", 2, "west"),
            cand("e", 5, "east"),
            cand("f", 6, "west"),
        ];
        let creation = RolloutOptions::default();
        assert_eq!(
            order(fleet.clone(), &creation),
            ["a", "b", "c", "d", "e", "f"]
        );
        let canaries = RolloutOptions {
            canaries: vec!["e".into(), "nope".into(), "c".into()],
            ..RolloutOptions::default()
        };
        assert_eq!(
            order(fleet.clone(), &canaries),
            ["e", "c", "a", "b", "d", "f"]
        );
        // Spread: east's four at 1/8, 3/8, 5/8, 7/8; west's two at 1/4 and 3/4.
        let spread = RolloutOptions {
            order: PhaseOrder::Spread,
            attribute: Some("site".into()),
            ..RolloutOptions::default()
        };
        assert_eq!(
            order(fleet.clone(), &spread),
            ["a", "b", "c", "d", "f", "e"]
        );
        let random = |seed| RolloutOptions {
            order: PhaseOrder::Random,
            seed: Some(seed),
            ..RolloutOptions::default()
        };
        let mut shuffled = fleet.clone();
        shuffled.reverse();
        let one = order(fleet.clone(), &random(7));
        assert_eq!(
            one,
            order(shuffled, &random(7)),
            "the seed alone fixes the order"
        );
        assert_ne!(one, order(fleet.clone(), &random(8)));
        let mut sorted = one.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c", "d", "e", "f"]);
    }

    fn plan(advance: AdvanceMode, phases: usize) -> Plan {
        Plan {
            phases: (0..phases)
                .map(|_| PhasePlan {
                    size: Size::Rest,
                    start_ts: None,
                })
                .collect(),
            options: RolloutOptions {
                advance,
                ..RolloutOptions::default()
            },
            previous: None,
        }
    }

    fn counts(success: u64, failure: u64, skipped: u64, total: u64) -> Counts {
        Counts {
            success,
            failure,
            skipped,
            total,
            pending: total - success - failure - skipped,
            in_progress: 0,
        }
    }

    #[test]
    fn who_may_start() {
        let p = Plan {
            options: RolloutOptions {
                max_installing: Some(2),
                max_per_minute: Some(3),
                rate_doubling: Some(10),
                ..auto()
            },
            ..plan(AdvanceMode::Auto, 3)
        };
        let open1 = State {
            phase: 1,
            ..State::start(0)
        };
        let paused = State {
            paused: Some("x".into()),
            ..open1.clone()
        };
        let load = |installing, started_last_minute, successes| Load {
            installing,
            started_last_minute,
            successes,
        };
        let cases = [
            (None, 0, false, load(0, 0, 0), Ok(())),
            (None, 0, true, load(0, 0, 0), Err(Wait::Halted)),
            (Some(&open1), 0, false, load(0, 0, 0), Ok(())),
            (Some(&open1), 1, false, load(1, 1, 0), Ok(())),
            (Some(&open1), 1, false, load(2, 2, 0), Err(Wait::Busy)),
            (
                Some(&open1),
                1,
                false,
                load(1, 3, 0),
                Err(Wait::RateLimited),
            ),
            (
                Some(&open1),
                1,
                false,
                load(1, 3, 9),
                Err(Wait::RateLimited),
            ),
            (Some(&open1), 1, false, load(1, 3, 10), Ok(())), // doubled: 6 a minute
            (
                Some(&open1),
                1,
                false,
                load(1, 6, 10),
                Err(Wait::RateLimited),
            ),
            (Some(&open1), 2, false, load(0, 0, 0), Err(Wait::NotYetOpen)),
            (Some(&paused), 0, false, load(0, 0, 0), Err(Wait::Paused)),
            (Some(&open1), 0, true, load(0, 0, 0), Err(Wait::Halted)),
        ];
        for (state, phase, halted, l, want) in cases {
            let plan = state.map(|_| &p);
            assert_eq!(
                may_start(plan, state, phase, halted, l),
                want,
                "{state:?} phase {phase} halted {halted} {l:?}"
            );
        }
        let huge = RolloutOptions {
            max_per_minute: Some(1),
            rate_doubling: Some(1),
            ..RolloutOptions::default()
        };
        assert_eq!(rate_now(&huge, u64::MAX), Some(1 << 32), "capped");
        assert_eq!(rate_now(&RolloutOptions::default(), 5), None);
    }

    #[test]
    fn which_waits_only_a_stored_change_ends() {
        let waits = [
            (Wait::Halted, true),
            (Wait::Paused, true),
            (Wait::NotYetOpen, true),
            (Wait::Busy, false),
            (Wait::RateLimited, false),
        ];
        for (w, want) in waits {
            assert_eq!(w.lasts_until_a_change(), want, "{w:?}");
        }
        let holds = [
            (Hold::Halted, true),
            (Hold::Paused, true),
            (Hold::Release, true),
            (Hold::Window(Some(5)), false),
            (Hold::Window(None), true),
        ];
        for (h, want) in holds {
            assert_eq!(h.lasts_until_a_change(), want, "{h:?}");
        }
    }

    #[test]
    fn thresholds_hold_at_their_boundaries() {
        let gated = |success: Option<u32>, failure: Option<u32>, soak: u64| Plan {
            options: RolloutOptions {
                success_threshold: success,
                failure_threshold: failure,
                soak_seconds: Some(soak),
                ..auto()
            },
            ..plan(AdvanceMode::Auto, 3)
        };
        let s0 = State::start(0);
        let met = State {
            met_ts: Some(10_000_000),
            ..s0.clone()
        };
        let pause = |s: &str| Some(Step::Pause(s.into()));
        let cases: Vec<(&str, Plan, State, Vec<Counts>, i64, Option<Step>)> = vec![
            (
                "exactly at 80% success advances",
                gated(Some(80), None, 0),
                s0.clone(),
                vec![counts(8, 0, 0, 10)],
                1,
                Some(Step::Advance),
            ),
            (
                "just below 80% waits",
                gated(Some(80), None, 0),
                s0.clone(),
                vec![counts(7, 0, 0, 10)],
                1,
                None,
            ),
            (
                "skipped devices leave the denominator",
                gated(Some(100), None, 0),
                s0.clone(),
                vec![counts(8, 0, 2, 10)],
                1,
                Some(Step::Advance),
            ),
            (
                "a soak starts when met",
                gated(Some(80), None, 60),
                s0.clone(),
                vec![counts(8, 0, 0, 10)],
                5,
                Some(Step::Met(5)),
            ),
            (
                "and holds until it ends",
                gated(Some(80), None, 60),
                met.clone(),
                vec![counts(8, 0, 0, 10)],
                69_999_999,
                None,
            ),
            (
                "it advances at its end",
                gated(Some(80), None, 60),
                met.clone(),
                vec![counts(9, 0, 0, 10)],
                70_000_000,
                Some(Step::Advance),
            ),
            (
                "exactly at 20% failures goes on",
                gated(Some(100), Some(20), 0),
                s0.clone(),
                vec![counts(0, 2, 0, 10)],
                1,
                None,
            ),
            (
                "just above 20% pauses",
                gated(Some(100), Some(20), 0),
                s0.clone(),
                vec![counts(0, 3, 0, 10)],
                1,
                pause("phase 1: 3 of 10 devices failed (30%), above the failure threshold of 20%"),
            ),
            (
                "a 0% threshold pauses on one failure",
                gated(Some(100), Some(0), 0),
                s0.clone(),
                vec![counts(9, 1, 0, 10)],
                1,
                pause("phase 1: 1 of 10 devices failed (10%), above the failure threshold of 0%"),
            ),
            (
                "failures of any open phase count",
                gated(Some(100), Some(0), 0),
                State {
                    phase: 1,
                    ..s0.clone()
                },
                vec![counts(4, 1, 0, 5), counts(0, 0, 0, 5)],
                1,
                pause("phase 1: 1 of 5 devices failed (20%), above the failure threshold of 0%"),
            ),
            (
                "acknowledged failures do not pause again",
                gated(Some(100), Some(0), 0),
                State {
                    acknowledged_failures: 1,
                    ..s0.clone()
                },
                vec![counts(0, 1, 0, 10)],
                1,
                None,
            ),
            (
                "new ones do",
                gated(Some(100), Some(0), 0),
                State {
                    acknowledged_failures: 1,
                    ..s0.clone()
                },
                vec![counts(0, 2, 0, 10)],
                1,
                pause("phase 1: 2 of 10 devices failed (20%), above the failure threshold of 0%"),
            ),
            (
                "nothing happens while paused",
                gated(Some(0), Some(0), 0),
                State {
                    paused: Some("x".into()),
                    ..s0.clone()
                },
                vec![counts(0, 9, 0, 10)],
                1,
                None,
            ),
            (
                "the last phase open: nothing to advance",
                gated(Some(0), None, 0),
                State {
                    phase: 2,
                    ..s0.clone()
                },
                vec![counts(1, 0, 0, 1); 3],
                1,
                None,
            ),
            (
                "manual never advances",
                plan(AdvanceMode::Manual, 2),
                s0.clone(),
                vec![counts(10, 0, 0, 10)],
                1,
                None,
            ),
        ];
        for (what, p, s, c, now, want) in cases {
            assert_eq!(decide(&p, &s, &c, None, now), want, "{what}");
        }
        let aborting = Plan {
            options: RolloutOptions {
                failure_threshold: Some(0),
                on_failure: FailureAction::Abort,
                ..auto()
            },
            ..plan(AdvanceMode::Auto, 2)
        };
        assert!(matches!(
            decide(&aborting, &s0, &[counts(0, 1, 0, 2)], None, 1),
            Some(Step::Abort(_))
        ));
    }

    #[test]
    fn the_health_gate_stops_a_sicker_updated_cohort_until_an_operator_accepts_it() {
        let mut p = plan(AdvanceMode::Manual, 2);
        p.options.health = Some(aloft_api::management::HealthGate {
            margin: 20,
            offline_after_seconds: 60,
            roll_back: false,
        });
        let s = State::start(0);
        let c = vec![counts(2, 0, 0, 2), counts(0, 0, 0, 4)];
        let sick = |failing| {
            Some((
                Cohort {
                    devices: 2,
                    failing,
                    offline: 0,
                    rebooted: 0,
                },
                Cohort {
                    devices: 4,
                    failing: 0,
                    offline: 0,
                    rebooted: 0,
                },
            ))
        };
        assert_eq!(decide(&p, &s, &c, sick(0), 1), None, "equal health");
        let Some(Step::Pause(why)) = decide(&p, &s, &c, sick(2), 1) else {
            panic!("a sicker updated cohort pauses");
        };
        assert!(
            why.starts_with("health: 2 of 2 updated devices are unhealthy"),
            "{why}"
        );
        let paused = apply(&s, &Step::Pause(why), 1);
        let resumed = command(&p, &paused, &Command::Resume, (0, 2), 2).unwrap();
        assert_eq!(
            decide(&p, &resumed, &c, sick(2), 3),
            None,
            "accepted by the operator"
        );
        p.options.health = None;
        assert_eq!(decide(&p, &s, &c, sick(2), 1), None, "no gate");
    }

    #[test]
    fn a_device_that_joins_waits_for_the_next_wave() {
        let three = plan(AdvanceMode::Auto, 3);
        let one = plan(AdvanceMode::Auto, 1);
        let at = |phase| State {
            phase,
            ..State::start(0)
        };
        let table = [(&three, 0, 1), (&three, 1, 2), (&three, 2, 2), (&one, 0, 0)];
        for (p, open, want) in table {
            assert_eq!(
                joining_phase(p, &at(open)),
                want,
                "{} phases, phase {open} open",
                p.phases.len()
            );
        }
    }

    #[test]
    fn time_phases_open_at_their_start() {
        let mut p = plan(AdvanceMode::Time, 3);
        p.phases[1].start_ts = Some(100);
        p.phases[2].start_ts = Some(200);
        let s = State::start(0);
        let c = vec![counts(0, 0, 0, 1); 3];
        assert_eq!(decide(&p, &s, &c, None, 99), None);
        assert_eq!(decide(&p, &s, &c, None, 100), Some(Step::Advance));
        let s1 = apply(&s, &Step::Advance, 100);
        assert_eq!((s1.phase, s1.phase_ts), (1, 100));
        assert_eq!(decide(&p, &s1, &c, None, 199), None);
        assert_eq!(decide(&p, &s1, &c, None, 200), Some(Step::Advance));
    }

    #[test]
    fn a_plan_says_when_each_phase_can_open_at_the_earliest() {
        let mut p = plan(AdvanceMode::Time, 3);
        p.phases[0].start_ts = Some(50);
        p.phases[1].start_ts = Some(100);
        p.phases[2].start_ts = Some(200);
        assert_eq!(earliest_starts(&p, 10), [Some(50), Some(100), Some(200)]);
        assert_eq!(earliest_starts(&p, 150), [Some(150), Some(150), Some(200)]);
        p.options.advance = AdvanceMode::Auto;
        p.options.soak_seconds = Some(1);
        p.phases[1].start_ts = None;
        assert_eq!(
            earliest_starts(&p, 10),
            [Some(50), Some(1_000_050), Some(2_000_050)]
        );
        p.options.advance = AdvanceMode::Manual;
        assert_eq!(earliest_starts(&p, 10), [Some(50), None, None]);
    }

    #[test]
    fn operators_pause_resume_and_advance() {
        let p = plan(AdvanceMode::Manual, 2);
        let s = State::start(0);
        let paused = command(&p, &s, &Command::Pause("looks odd".into()), (0, 0), 1).unwrap();
        assert_eq!(paused.paused.as_deref(), Some("looks odd"));
        assert!(command(&p, &paused, &Command::Pause("again".into()), (0, 0), 1).is_err());
        let resumed = command(&p, &paused, &Command::Resume, (3, 0), 2).unwrap();
        assert_eq!(
            (resumed.paused.clone(), resumed.acknowledged_failures),
            (None, 3)
        );
        assert!(command(&p, &resumed, &Command::Resume, (3, 0), 2).is_err());
        let advanced = command(&p, &paused, &Command::Advance, (4, 0), 5).unwrap();
        assert_eq!(
            (advanced.phase, advanced.phase_ts, advanced.paused.clone()),
            (1, 5, None)
        );
        let e = command(&p, &advanced, &Command::Advance, (4, 0), 6).unwrap_err();
        assert!(e.contains("last phase"), "{e}");
    }

    #[test]
    fn installs_wait_for_the_window_the_release_and_no_pause_or_halt() {
        use crate::domain::windows::at_local;
        use aloft_api::management::MaintenanceWindow;
        let utc = chrono_tz::Tz::UTC;
        let t = |h, m| at_local(utc, 2026, 12, 2, h, m).unwrap();
        // 22:00 to 23:00 UTC every day.
        let nightly = Some(MaintenanceWindow {
            cron: "0 22 * * *".into(),
            duration_seconds: 3600,
            time_zone: None,
        });
        let with = |install, window: &Option<MaintenanceWindow>| Plan {
            options: RolloutOptions {
                install,
                window: window.clone(),
                ..RolloutOptions::default()
            },
            ..plan(AdvanceMode::Time, 1)
        };
        let forced = with(InstallPolicy::Forced, &None);
        let soft = with(InstallPolicy::Soft, &None);
        let only = with(InstallPolicy::DownloadOnly, &None);
        let windowed = with(InstallPolicy::Forced, &nightly);
        let only_windowed = with(InstallPolicy::DownloadOnly, &nightly);
        let open = State::start(0);
        let paused = State {
            paused: Some("by hand".into()),
            ..open.clone()
        };
        let released = State {
            released: Some(1),
            ..open.clone()
        };
        let shut = Some(Hold::Window(Some(t(22, 0))));
        let table: [(&Plan, &State, bool, i64, Option<Hold>); 14] = [
            (&forced, &open, false, t(12, 0), None),
            (&soft, &open, false, t(12, 0), None),
            (&only, &open, false, t(12, 0), Some(Hold::Release)),
            (&only, &released, false, t(12, 0), None),
            (&windowed, &open, false, t(21, 59), shut),
            (&windowed, &open, false, t(22, 0), None),
            (&windowed, &open, false, t(22, 59), None),
            (
                &windowed,
                &open,
                false,
                t(23, 0),
                Some(Hold::Window(Some(t(22, 0) + 86_400_000_000))),
            ),
            (&windowed, &released, false, t(12, 0), None),
            (&only_windowed, &open, false, t(12, 0), shut),
            (&only_windowed, &open, false, t(22, 30), None),
            (&windowed, &paused, false, t(22, 30), Some(Hold::Paused)),
            (&windowed, &released, true, t(22, 30), Some(Hold::Halted)),
            (&only, &paused, false, t(12, 0), Some(Hold::Paused)),
        ];
        for (i, (p, s, halted, now, want)) in table.into_iter().enumerate() {
            assert_eq!(install_hold(p, s, halted, now), want, "row {i}");
        }
        assert!(!controls_install(&forced));
        for p in [&soft, &only, &windowed, &only_windowed] {
            assert!(controls_install(p));
        }
        // Release: once, and only where something holds installs.
        let r = command(&only, &open, &Command::Release, (0, 0), 7).unwrap();
        assert_eq!(r.released, Some(7));
        assert!(command(&only, &r, &Command::Release, (0, 0), 8).is_err());
        assert!(command(&windowed, &open, &Command::Release, (0, 0), 7).is_ok());
        for p in [&forced, &soft] {
            let e = command(p, &open, &Command::Release, (0, 0), 7).unwrap_err();
            assert!(e.contains("nothing to release"), "{e}");
        }
        // The plan: a phase's installs start in the window; download-only waits for a person.
        assert_eq!(earliest_starts(&windowed, t(12, 0)), [Some(t(22, 0))]);
        assert_eq!(earliest_starts(&windowed, t(22, 10)), [Some(t(22, 10))]);
        assert_eq!(earliest_starts(&only, t(12, 0)), [None]);
        // Options without phases make a one-phase rollout; a bad window is refused.
        let one = Plan::parse(
            None,
            Some(&windowed.options),
            aloft_api::time::parse_rfc3339,
        )
        .unwrap()
        .unwrap();
        assert_eq!(one.phases.len(), 1);
        let mut bad = windowed.options.clone();
        bad.window.as_mut().unwrap().cron = "0 25 * * *".into();
        let e = Plan::parse(None, Some(&bad), aloft_api::time::parse_rfc3339).unwrap_err();
        assert!(e.contains("window.cron"), "{e}");
    }

    #[test]
    fn webhook_gates_are_checked_asked_again_later_and_shown_without_secrets() {
        use aloft_api::management::WebhookGate;
        let gate = |url: &str, timeout| WebhookGate {
            url: url.into(),
            timeout_seconds: timeout,
        };
        let with = |advance, gates: Vec<WebhookGate>| RolloutOptions {
            advance,
            gates,
            ..RolloutOptions::default()
        };
        let phases = [phase(None, Some(1), None), phase(None, None, None)];
        let ok = gate("https://grafana.example/api/ok", None);
        for (o, want) in [
            (with(AdvanceMode::Auto, vec![ok.clone()]), Ok(())),
            (
                with(AdvanceMode::Manual, vec![ok.clone()]),
                Err("go with advance"),
            ),
            (
                with(AdvanceMode::Auto, vec![ok.clone(); 5]),
                Err("at most 4"),
            ),
            (
                with(AdvanceMode::Auto, vec![gate("ftp://x/y", None)]),
                Err("gates[1].url"),
            ),
            (
                with(AdvanceMode::Auto, vec![gate("https://", None)]),
                Err("gates[1].url"),
            ),
            (
                with(AdvanceMode::Auto, vec![gate("https://a b", None)]),
                Err("gates[1].url"),
            ),
            (
                with(AdvanceMode::Auto, vec![gate("https://a", Some(0))]),
                Err("timeout_seconds"),
            ),
            (
                with(AdvanceMode::Auto, vec![gate("https://a", Some(31))]),
                Err("timeout_seconds"),
            ),
        ] {
            let got = parse(&phases, Some(&o)).map(|_| ());
            match want {
                Ok(()) => assert_eq!(got, Ok(()), "{o:?}"),
                Err(why) => assert!(got.as_ref().unwrap_err().contains(why), "{o:?}: {got:?}"),
            }
        }
        assert_eq!(
            shown_url("https://user:secret@mon.example:8443/check?token=abc#x"),
            "https://mon.example:8443/check"
        );
        let answers = |list: &[(&str, Result<u16, &str>)]| -> Vec<(String, Result<u16, String>)> {
            list.iter()
                .map(|(u, a)| ((*u).to_owned(), a.map_err(str::to_owned)))
                .collect()
        };
        assert_eq!(
            gate_verdict(&answers(&[
                ("https://a/x", Ok(204)),
                ("https://b/y", Ok(200))
            ])),
            Ok(())
        );
        assert_eq!(
            gate_verdict(&answers(&[
                ("https://a/x", Ok(200)),
                ("https://b/y?k=1", Ok(503))
            ])),
            Err("gate https://b/y answered 503".into())
        );
        assert_eq!(
            gate_verdict(&answers(&[("https://a/x", Err("timed out"))])),
            Err("gate https://a/x did not answer: timed out".into())
        );
        // Refused: asked again only after the retry time; an advance clears it.
        let s = State::start(0);
        assert!(gate_due(&s, 0));
        let held = apply(&s, &Step::GateHeld("gate answered 503".into()), 10);
        assert_eq!(held.gate_held.as_deref(), Some("gate answered 503"));
        assert!(!gate_due(&held, 10 + GATE_RETRY_US - 1));
        assert!(gate_due(&held, 10 + GATE_RETRY_US));
        let advanced = apply(&held, &Step::Advance, 20);
        assert_eq!((advanced.gate_held, advanced.gate_checked), (None, None));
    }

    #[test]
    fn a_roll_back_goes_to_the_release_most_devices_ran_before() {
        for (installed, want) in [
            (vec!["r1", "r1", "r0"], Some("r1")),
            (vec!["r0", "r1"], Some("r0")),
            (vec!["r2", "r2", "r1"], Some("r1")),
            (vec!["r2", ""], None),
            (vec![], None),
        ] {
            assert_eq!(
                previous_release(installed.iter().copied(), "r2").as_deref(),
                want,
                "{installed:?}"
            );
        }
    }
}
