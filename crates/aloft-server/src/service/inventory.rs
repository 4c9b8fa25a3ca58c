//! Inventory: what devices report about themselves, and the tags and static groups operators
//! give them. Each call stamps the change with the current time, and the devices that now
//! match a running dynamic deployment join it ([`super::dynamic::devices_changed`]).

use serde_json::Value;

use super::dynamic::devices_changed;
use super::{Ctx, ServiceResult};
use crate::time::now_us;

/// Replaces (`replace`) or upserts the attributes a device reported.
pub async fn report(
    ctx: Ctx<'_>,
    device_id: &str,
    attrs: &[(String, Value)],
    replace: bool,
) -> ServiceResult<()> {
    ctx.store
        .put_inventory(device_id, attrs, replace, now_us())
        .await?;
    devices_changed(ctx, Some(&[device_id.to_owned()])).await;
    Ok(())
}

/// Clears a device's reported attributes; false when there was no such device.
pub async fn clear(ctx: Ctx<'_>, device_id: &str) -> ServiceResult<bool> {
    Ok(ctx.store.clear_inventory(device_id, now_us()).await?)
}

/// Sets tags (name, value, description): all of them (`replace`) or some.
pub async fn put_tags(
    ctx: Ctx<'_>,
    device_id: &str,
    tags: &[(String, String, Option<String>)],
    replace: bool,
) -> ServiceResult<()> {
    ctx.store
        .put_tags(device_id, tags, replace, now_us())
        .await?;
    devices_changed(ctx, Some(&[device_id.to_owned()])).await;
    Ok(())
}

/// Puts a device in a static group; false when there was no such device.
pub async fn set_group(ctx: Ctx<'_>, device_id: &str, group: &str) -> ServiceResult<bool> {
    let found = ctx
        .store
        .set_group(device_id, Some(group), now_us())
        .await?;
    devices_changed(ctx, Some(&[device_id.to_owned()])).await;
    Ok(found)
}

/// Moves devices into a group; returns (updated, matched).
pub async fn add_to_group(ctx: Ctx<'_>, group: &str, ids: &[String]) -> ServiceResult<(u64, u64)> {
    let counts = ctx.store.add_to_group(group, ids, now_us()).await?;
    devices_changed(ctx, Some(ids)).await;
    Ok(counts)
}

/// Takes devices out of a group (`None`: all of them); returns how many.
pub async fn remove_from_group(
    ctx: Ctx<'_>,
    group: &str,
    ids: Option<&[String]>,
) -> ServiceResult<u64> {
    let n = ctx.store.remove_from_group(group, ids, now_us()).await?;
    devices_changed(ctx, ids).await;
    Ok(n)
}
