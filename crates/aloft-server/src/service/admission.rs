//! Admission: devices asking to be let in and operators deciding about their keys. Every
//! change here that can end a device's credentials moves the revocation epoch, and every
//! change of a device's status is published.

use aloft_api::event::Event;
use aloft_api::status::{AuthSetStatus, DeviceDeploymentStatus, DeviceStatus};
use serde_json::Value;

use super::deployments::device_changed;
use super::{Ctx, ServiceError, ServiceResult, stored};
use crate::auth::{AUD_DEVICE, Claims, ISSUER, Keys};
use crate::store::{TokenKind, TokenRow};
use crate::time::now_us;

/// What an authentication request got.
#[derive(Debug)]
pub enum Admission {
    /// Accepted: a new device token (its row is stored).
    Token {
        /// The device.
        device_id: String,
        /// The signed token.
        token: String,
    },
    /// Not (yet) accepted.
    Refused {
        /// The device.
        device_id: String,
        /// The status of the presented auth set.
        status: AuthSetStatus,
    },
}

/// Records an authentication request (publishing the device when it is new or newly
/// admitted) and, once its key is accepted, issues a device token valid for `token_secs`.
pub async fn authenticate(
    ctx: Ctx<'_>,
    keys: &Keys,
    token_secs: i64,
    identity_hash: &str,
    identity: &Value,
    pubkey: &str,
) -> ServiceResult<Admission> {
    let now = now_us();
    let outcome = ctx
        .store
        .auth_request(identity_hash, identity, pubkey, now)
        .await?;
    let status: AuthSetStatus = stored(&outcome.status)?;
    if outcome.changed {
        ctx.events.publish(Event::Device {
            id: outcome.device_id.clone(),
            status: device_status(status),
        });
    }
    if outcome.changed && status == AuthSetStatus::Accepted {
        // A preauthorized device just came in: it may match a running dynamic deployment.
        super::dynamic::devices_changed(ctx, Some(std::slice::from_ref(&outcome.device_id))).await;
    }
    if status != AuthSetStatus::Accepted {
        return Ok(Admission::Refused {
            device_id: outcome.device_id,
            status,
        });
    }
    let jti = uuid::Uuid::new_v4().to_string();
    let secs = now / 1_000_000;
    let claims = Claims {
        jti: jti.clone(),
        sub: outcome.device_id.clone(),
        iss: ISSUER.into(),
        aud: AUD_DEVICE.into(),
        iat: secs,
        exp: secs + token_secs,
        device: Some(true),
        user: None,
    };
    let token = keys
        .issue(&claims)
        .map_err(|e| ServiceError::Corrupt(format!("cannot sign a device token: {e}")))?;
    ctx.store
        .insert_token(
            &TokenRow {
                jti,
                kind: TokenKind::Device,
                subject: outcome.device_id.clone(),
                name: None,
                created_ts: now,
                expires_ts: Some(claims.exp * 1_000_000),
                last_used: None,
            },
            0,
            0,
        )
        .await?;
    ctx.caches.note_check_in(&outcome.device_id, now);
    Ok(Admission::Token {
        device_id: outcome.device_id,
        token,
    })
}

/// Preauthorizes an identity and key: `Ok(new device id)`, or `Err(existing id)` when the
/// identity exists and not `force` (with `force` the key is added to that device, so tokens
/// are checked again).
pub async fn preauthorize(
    ctx: Ctx<'_>,
    identity_hash: &str,
    identity: &Value,
    pubkey: &str,
    force: bool,
) -> ServiceResult<Result<String, String>> {
    let outcome = ctx
        .store
        .preauthorize(identity_hash, identity, pubkey, force, now_us())
        .await?;
    if force {
        ctx.caches.revoked();
    }
    if let Ok(id) = &outcome {
        ctx.events.publish(Event::Device {
            id: id.clone(),
            status: DeviceStatus::Preauthorized,
        });
    }
    Ok(outcome)
}

/// The device status an auth set status gives its device.
fn device_status(s: AuthSetStatus) -> DeviceStatus {
    match s {
        AuthSetStatus::Pending => DeviceStatus::Pending,
        AuthSetStatus::Accepted => DeviceStatus::Accepted,
        AuthSetStatus::Rejected => DeviceStatus::Rejected,
        AuthSetStatus::Preauthorized => DeviceStatus::Preauthorized,
    }
}

/// Accepts, rejects or resets one auth set.
pub async fn set_auth_status(
    ctx: Ctx<'_>,
    device_id: &str,
    auth_id: &str,
    status: AuthSetStatus,
) -> ServiceResult<()> {
    if status == AuthSetStatus::Preauthorized {
        return Err(ServiceError::Invalid(
            "status must be accepted, rejected or pending, not \"preauthorized\"".into(),
        ));
    }
    ctx.store
        .set_auth_status(device_id, auth_id, status.as_str(), now_us())
        .await?;
    ctx.caches.revoked();
    ctx.events.publish(Event::Device {
        id: device_id.to_owned(),
        status: device_status(status),
    });
    tracing::info!(device.id = %device_id, auth_set.id = %auth_id, status = %status, "auth set status changed");
    if status == AuthSetStatus::Accepted {
        super::dynamic::devices_changed(ctx, Some(&[device_id.to_owned()])).await;
    }
    Ok(())
}

/// Removes one auth set of a device.
pub async fn delete_auth_set(ctx: Ctx<'_>, device_id: &str, auth_id: &str) -> ServiceResult<()> {
    ctx.store
        .delete_auth_set(device_id, auth_id, now_us())
        .await?;
    ctx.caches.revoked();
    Ok(())
}

/// Decommissions a device; false when there was none. Its open deployments end
/// `decommissioned`, and listeners hear of each.
pub async fn decommission(ctx: Ctx<'_>, device_id: &str) -> ServiceResult<bool> {
    let open = ctx.store.open_device_deployments(device_id).await?;
    let gone = ctx.store.decommission(device_id, now_us()).await?;
    ctx.caches.revoked();
    if gone {
        ctx.caches.deployments_changed();
        ctx.events.publish(Event::Device {
            id: device_id.to_owned(),
            status: DeviceStatus::Decommissioned,
        });
        for dd in open {
            device_changed(
                ctx,
                &dd.deployment_id,
                device_id,
                DeviceDeploymentStatus::Decommissioned,
                None,
            )
            .await;
        }
        tracing::info!(device.id = %device_id, "device decommissioned");
    }
    Ok(gone)
}

/// Revokes a device token by its id; false when no device token has it.
pub async fn revoke_device_token(ctx: Ctx<'_>, jti: &str) -> ServiceResult<bool> {
    match ctx.store.use_token(jti, now_us()).await? {
        Some(t) if t.kind == crate::store::TokenKind::Device => {
            ctx.store.delete_token(jti, None).await?;
            ctx.caches.revoked();
            Ok(true)
        }
        _ => Ok(false),
    }
}
