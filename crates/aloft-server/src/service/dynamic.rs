//! Dynamic groups and the deployments that follow them: saved inventory filters, and the
//! devices that come to match a running dynamic deployment's filter (new, admitted, or with
//! changed inventory, tags or group) joining it. Every membership change of a dynamic
//! deployment happens here: at once after each change of a device ([`devices_changed`]), and
//! by the periodic sweep ([`sweep`]) for whatever a crash in between left out.

use aloft_api::management::{FilterTerm, NewSavedFilter, SavedFilter};

use super::deployments::{accepted_query, deployment_changed};
use super::{Ctx, ServiceError, ServiceResult, rollouts};
use crate::domain::filters;
use crate::domain::rollouts::joining_phase;
use crate::store::{DeploymentRow, Filter, InventoryQuery, SavedFilterRow};

/// How often the sweep looks for devices that match a running dynamic deployment and are
/// not in it (a device normally joins at once; this bounds how late it can be).
pub const SWEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// A stored filter as the API shows it.
fn saved(row: SavedFilterRow) -> ServiceResult<SavedFilter> {
    let terms: Vec<FilterTerm> = serde_json::from_str(&row.terms)
        .map_err(|e| ServiceError::Corrupt(format!("terms of saved filter {}: {e}", row.id)))?;
    Ok(SavedFilter {
        id: row.id,
        name: row.name,
        terms,
    })
}

/// A saved filter's predicates as the store searches for them.
pub(crate) fn predicates(terms: &[FilterTerm]) -> Vec<Filter> {
    terms
        .iter()
        .map(|t| Filter {
            scope: t.scope.clone(),
            attribute: t.attribute.clone(),
            op: t.op.clone(),
            value: t.value.clone(),
        })
        .collect()
}

/// Saves a dynamic group; returns it. Its name follows the rule of static group names.
pub async fn create(ctx: Ctx<'_>, f: NewSavedFilter) -> ServiceResult<SavedFilter> {
    if !aloft_api::management::is_group_name(&f.name) {
        return Err(ServiceError::Invalid(format!(
            "a dynamic group's name must have 1 to {} letters, digits, '-' or '_'",
            aloft_api::management::GROUP_NAME_MAX
        )));
    }
    if f.terms.is_empty() {
        return Err(ServiceError::Invalid(
            "a dynamic group needs at least one term (deploy to all devices instead)".into(),
        ));
    }
    filters::check(&predicates(&f.terms)).map_err(ServiceError::Invalid)?;
    let row = SavedFilterRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: f.name,
        terms: serde_json::to_string(&f.terms)
            .map_err(|e| ServiceError::Invalid(format!("terms: {e}")))?,
        created: ctx.now(),
    };
    ctx.store.insert_saved_filter(&row).await?;
    tracing::info!(filter.id = %row.id, filter.name = %row.name, "dynamic group saved");
    saved(row)
}

/// Every dynamic group, by name.
pub async fn list(ctx: Ctx<'_>) -> ServiceResult<Vec<SavedFilter>> {
    ctx.store
        .saved_filters()
        .await?
        .into_iter()
        .map(saved)
        .collect()
}

/// One dynamic group.
pub async fn find(ctx: Ctx<'_>, id: &str) -> ServiceResult<SavedFilter> {
    let row = ctx
        .store
        .saved_filter(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("no dynamic group has this id".into()))?;
    saved(row)
}

/// Deletes a dynamic group; the deployments that follow it keep their copy of its terms.
pub async fn delete(ctx: Ctx<'_>, id: &str) -> ServiceResult<()> {
    if !ctx.store.delete_saved_filter(id).await? {
        return Err(ServiceError::NotFound(
            "no dynamic group has this id".into(),
        ));
    }
    tracing::info!(filter.id = %id, "dynamic group deleted");
    Ok(())
}

/// The query for a dynamic group's devices (any status: the search shows them all).
pub fn members_query(f: &SavedFilter) -> InventoryQuery {
    InventoryQuery {
        filters: predicates(&f.terms),
        ..InventoryQuery::default()
    }
}

/// The saved filter a dynamic deployment follows.
pub(crate) fn filter_of(dep: &DeploymentRow) -> ServiceResult<Option<SavedFilter>> {
    dep.filter
        .as_deref()
        .map(|f| {
            serde_json::from_str(f)
                .map_err(|e| ServiceError::Corrupt(format!("filter of deployment {}: {e}", dep.id)))
        })
        .transpose()
}

/// Adds to `dep` the accepted devices that match its filter and are not in it (only those of
/// `only`, when given), in admission order, each in the phase a joining device is dealt into.
async fn join(
    ctx: Ctx<'_>,
    dep: &DeploymentRow,
    only: Option<&[String]>,
    changed_since: Option<i64>,
) -> ServiceResult<()> {
    let Some(filter) = filter_of(dep)? else {
        return Ok(());
    };
    let mut q = accepted_query(predicates(&filter.terms));
    q.not_in_deployment = Some(dep.id.clone());
    q.changed_since = changed_since;
    if let Some(ids) = only {
        q.ids = ids.to_vec();
    }
    let (found, _) = ctx.store.search_inventory(&q).await?;
    if found.is_empty() {
        return Ok(());
    }
    let phase = match rollouts::of(dep)? {
        Some((plan, state)) => joining_phase(&plan, &state),
        None => 0,
    };
    let devices: Vec<(String, u32)> = found.into_iter().map(|id| (id, phase)).collect();
    let joined = ctx
        .store
        .join_deployment(&dep.id, &devices, ctx.now())
        .await?;
    if joined.is_empty() {
        return Ok(());
    }
    ctx.caches.deployments_changed();
    tracing::info!(deployment.id = %dep.id, devices = joined.len(), phase = phase + 1, "devices joined a dynamic deployment");
    deployment_changed(ctx, &dep.id).await;
    Ok(())
}

/// After a change of these devices' inventory, tags, group or admission (`None`: of devices
/// not named, say a whole group's), those now matching a running dynamic deployment join it.
/// The change is already stored: a failure here is logged, and the sweep catches up.
pub async fn devices_changed(ctx: Ctx<'_>, ids: Option<&[String]>) {
    let deployments = match ctx.store.active_dynamic().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list dynamic deployments; the sweep will add any device that now matches");
            return;
        }
    };
    for dep in deployments {
        if let Err(e) = join(ctx, &dep, ids, None).await {
            tracing::warn!(deployment.id = %dep.id, error = %e, "cannot add matching devices to a dynamic deployment; the sweep will");
        }
    }
}

/// The periodic sweep: every running dynamic deployment takes the matching devices it lacks.
/// A process's first sweep looks at every device; later ones at the devices changed since the
/// previous complete sweep started (what a missed [`devices_changed`] can have left out), less
/// [`SWEEP_OVERLAP_US`], so that a sweep over a million devices does not scan them all.
pub async fn sweep(ctx: Ctx<'_>) -> ServiceResult<()> {
    // The real time, as device changes are stamped (not the rollout clock a test moves).
    let started = crate::time::now_us();
    let since = ctx
        .caches
        .sweep_since()
        .map(|t| t.saturating_sub(SWEEP_OVERLAP_US));
    let mut complete = true;
    for dep in ctx.store.active_dynamic().await? {
        // Every device for a deployment new since (devices that changed while it was being
        // created) and for one with `max_devices` (a freed place goes to an unchanged device).
        let since = since.filter(|s| dep.created < *s && dep.max_devices.is_none());
        if let Err(e) = join(ctx, &dep, None, since).await {
            complete = false;
            tracing::warn!(deployment.id = %dep.id, error = %e, "cannot sweep a dynamic deployment");
        }
    }
    if complete {
        ctx.caches.swept(started);
    }
    Ok(())
}

/// How far back of the previous sweep's start the next looks (µs): changes stored by a
/// transaction still open as that sweep read, with a clock a little behind.
pub const SWEEP_OVERLAP_US: i64 = 60_000_000;
