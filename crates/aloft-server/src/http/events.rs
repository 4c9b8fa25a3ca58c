//! `GET /api/management/v1/events`: server-sent events of device and deployment changes (an
//! aloft extension; the web UI and `aloftctl deployments show --watch` use it). Authorised like
//! every management call; `?access_token=` is also accepted because a browser's `EventSource`
//! cannot send headers.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, UserAuth};
use aloft_api::management::ErrorBody;

use crate::error::{ApiError, ApiResult};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct EventsQuery {
    /// The token, for clients that cannot send an `Authorization` header.
    access_token: Option<String>,
}

/// Live events: each `data:` line is a JSON object with `type` (`device`,
/// `device_deployment`, `deployment`) and the changed fields; an event named `lagged` means
/// some were missed (reload).
#[utoipa::path(get, path = "/api/management/v1/events", tag = "events", security(("bearer" = [])),
    params(EventsQuery),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody)))]
async fn events(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let token = super::bearer(&headers)
        .or(q.access_token)
        .ok_or_else(|| ApiError::unauthorized("missing token"))?;
    UserAuth::from_token(&st, &token).await?;
    let rx = st.events.subscribe();
    let events = st.events.clone();
    let stream = futures::stream::unfold((rx, events), |(mut rx, events)| async move {
        let next = tokio::select! {
            r = rx.recv() => r,
            () = events.closed() => return None,
        };
        let event = match next {
            Ok(text) => Event::default().data(&*text),
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), (rx, events)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
