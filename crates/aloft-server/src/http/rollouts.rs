//! Rollout commands (`pause`, `resume`, `advance`, `release` of a rollout), the fleet-wide
//! halt and a test server's movable clock: aloft extensions beside Mender's deployments API.

use aloft_api::management::{ClockMove, ClockNow, ErrorBody, Halt, PauseBody, RolloutHealth};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, AppState, UserAuth, check_uuid};
use crate::domain::rollouts::Command;
use crate::error::{ApiError, ApiResult};
use crate::service::rollouts;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(advance))
        .routes(routes!(release))
        .routes(routes!(health))
        .routes(routes!(get_halt, put_halt))
        .routes(routes!(move_clock))
}

/// Pause a phased deployment: no device that has not started gets it until it resumes.
#[utoipa::path(post, path = "/api/management/v1/deployments/deployments/{id}/pause", tag = "rollouts",
    security(("bearer" = [])), params(("id" = String, Path)), request_body(content = Option<PauseBody>),
    responses((status = 204, description = "paused"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn pause(
    State(st): State<AppState>,
    u: UserAuth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    check_uuid(&id)?;
    let b: PauseBody = if body.iter().all(u8::is_ascii_whitespace) {
        PauseBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?
    };
    let reason = b
        .reason
        .unwrap_or_else(|| format!("paused by user {}", u.user_id));
    if reason.len() > 1024 {
        return Err(ApiError::bad_request(
            "reason must have at most 1024 characters",
        ));
    }
    rollouts::command(st.ctx(), &id, Command::Pause(reason)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resume a paused phased deployment; the failures seen so far no longer trip its failure
/// threshold.
#[utoipa::path(post, path = "/api/management/v1/deployments/deployments/{id}/resume", tag = "rollouts",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "resumed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn resume(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_uuid(&id)?;
    rollouts::command(st.ctx(), &id, Command::Resume).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Open the next phase now, whatever its gates say (and resume).
#[utoipa::path(post, path = "/api/management/v1/deployments/deployments/{id}/advance", tag = "rollouts",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "advanced"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn advance(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_uuid(&id)?;
    rollouts::command(st.ctx(), &id, Command::Advance).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Let a rollout's devices install now, whatever its maintenance window or its download-only
/// policy says (those that downloaded install at their next poll).
#[utoipa::path(post, path = "/api/management/v1/deployments/deployments/{id}/release", tag = "rollouts",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "released"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn release(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_uuid(&id)?;
    rollouts::command(st.ctx(), &id, Command::Release).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A rollout's health comparison over time (its updated devices against those not yet
/// updated, sampled every 30 s while it runs); 422 without a health gate.
#[utoipa::path(get, path = "/api/management/v1/deployments/deployments/{id}/health", tag = "rollouts",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = RolloutHealth), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn health(
    State(st): State<AppState>,
    _u: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<RolloutHealth>> {
    check_uuid(&id)?;
    Ok(axum::Json(rollouts::health_history(st.ctx(), &id).await?))
}

/// Move the rollout clock forward: only on a server started with a movable clock (tests);
/// 403 on any other.
#[utoipa::path(put, path = "/api/management/v1/test/clock", tag = "rollouts", security(("bearer" = [])),
    request_body = ClockMove,
    responses((status = 200, body = ClockNow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn move_clock(
    State(st): State<AppState>,
    _u: UserAuth,
    ApiJson(b): ApiJson<ClockMove>,
) -> ApiResult<axum::Json<ClockNow>> {
    const MAX: u64 = 400 * 86_400;
    if b.forward_seconds > MAX {
        return Err(ApiError::bad_request(format!(
            "forward_seconds must be at most {MAX}"
        )));
    }
    let by = i64::try_from(b.forward_seconds).unwrap_or(i64::MAX / 1_000_000) * 1_000_000;
    let ahead = rollouts::move_clock(st.ctx(), by)
        .await?
        .map_err(ApiError::forbidden)?;
    Ok(axum::Json(ClockNow {
        now: crate::time::rfc3339(st.clock.now()),
        ahead_seconds: ahead / 1_000_000,
    }))
}

/// The fleet-wide halt.
#[utoipa::path(get, path = "/api/management/v1/deployments/halt", tag = "rollouts", security(("bearer" = [])),
    responses((status = 200, body = Halt), (status = 401, body = ErrorBody)))]
async fn get_halt(State(st): State<AppState>, _u: UserAuth) -> ApiResult<axum::Json<Halt>> {
    let reason = rollouts::halted(st.ctx()).await?;
    Ok(axum::Json(Halt {
        halted: reason.is_some(),
        reason,
    }))
}

/// Engage or release the fleet-wide halt: while it holds, no device starts an update of any
/// deployment (those under way finish).
#[utoipa::path(put, path = "/api/management/v1/deployments/halt", tag = "rollouts", security(("bearer" = [])),
    request_body = Halt,
    responses((status = 204, description = "set"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn put_halt(
    State(st): State<AppState>,
    u: UserAuth,
    ApiJson(b): ApiJson<Halt>,
) -> ApiResult<StatusCode> {
    let reason = b.halted.then(|| {
        b.reason
            .unwrap_or_else(|| format!("halted by user {}", u.user_id))
    });
    rollouts::set_halt(st.ctx(), reason).await?;
    Ok(StatusCode::NO_CONTENT)
}
