//! `GET /api/management/v1/events`: server-sent events of device and deployment changes (an
//! aloft extension; the web UI and `aloftctl deployments show --watch` use it). Authorised like
//! every management call, or by `?ticket=`: a browser's `EventSource` cannot send headers, so
//! the UI first asks `POST /api/management/v1/events/ticket` for a ticket that is valid for
//! 30 seconds, once, and only here. A stream ends soon after the token behind it is revoked.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, UserAuth};
use aloft_api::management::ErrorBody;

use crate::auth::{Claims, ISSUER};
use crate::error::{ApiError, ApiResult};
use crate::store::TokenKind;

/// Audience of event-stream tickets (accepted nowhere else).
const AUD_EVENTS_TICKET: &str = "aloft-events-ticket";
/// How long a ticket is valid.
const TICKET_SECS: i64 = 30;
/// How often an open stream checks that its token still exists.
const RECHECK: Duration = Duration::from_secs(1);

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(ticket))
}

/// Tickets already redeemed in this process (until they expire).
#[derive(Debug, Default)]
pub struct Tickets {
    used: Mutex<HashMap<String, i64>>,
}

impl Tickets {
    /// Marks the ticket `nonce` (valid until `exp`, UNIX seconds) used; false if it already was.
    fn redeem(&self, nonce: &str, exp: i64, now: i64) -> bool {
        let Ok(mut used) = self.used.lock() else {
            return false;
        };
        if used.len() >= 4096 {
            used.retain(|_, e| *e > now);
        }
        used.insert(nonce.to_owned(), exp).is_none()
    }
}

/// A ticket for one `EventSource` connection.
#[derive(Serialize, utoipa::ToSchema)]
struct TicketBody {
    /// Pass as `?ticket=` to `GET /api/management/v1/events`.
    ticket: String,
    /// Seconds it stays valid.
    expires_in: i64,
}

/// A single-use ticket for the event stream, valid for 30 seconds.
#[utoipa::path(post, path = "/api/management/v1/events/ticket", tag = "events", security(("bearer" = [])),
    responses((status = 200, body = TicketBody), (status = 401, body = ErrorBody)))]
async fn ticket(State(st): State<AppState>, user: UserAuth) -> ApiResult<axum::Json<TicketBody>> {
    let now = crate::time::now_us() / 1_000_000;
    let claims = Claims {
        // The token it stands for, and a nonce that makes it single-use.
        jti: format!("{}.{}", user.jti, uuid::Uuid::new_v4()),
        sub: user.user_id,
        iss: ISSUER.into(),
        aud: AUD_EVENTS_TICKET.into(),
        iat: now,
        exp: now + TICKET_SECS,
        device: None,
        user: Some(true),
    };
    let ticket = st.keys.issue(&claims).map_err(ApiError::internal)?;
    Ok(axum::Json(TicketBody {
        ticket,
        expires_in: TICKET_SECS,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct EventsQuery {
    /// A ticket from `POST /api/management/v1/events/ticket`, for clients that cannot send an
    /// `Authorization` header.
    ticket: Option<String>,
}

/// Who a stream is for: the user and the token it lives on.
struct Listener {
    user_id: String,
    jti: String,
}

async fn listener(st: &AppState, headers: &HeaderMap, q: EventsQuery) -> ApiResult<Listener> {
    if let Some(token) = super::bearer(headers) {
        let u = UserAuth::from_token(st, &token).await?;
        return Ok(Listener {
            user_id: u.user_id,
            jti: u.jti,
        });
    }
    let ticket = q
        .ticket
        .ok_or_else(|| ApiError::unauthorized("missing token or ticket"))?;
    let claims = st
        .keys
        .verify(&ticket, AUD_EVENTS_TICKET)
        .map_err(|e| ApiError::unauthorized(format!("ticket: {e}")))?;
    let (jti, nonce) = claims
        .jti
        .rsplit_once('.')
        .ok_or_else(|| ApiError::unauthorized("invalid ticket"))?;
    let now = crate::time::now_us() / 1_000_000;
    if !st.tickets.redeem(nonce, claims.exp, now) {
        return Err(ApiError::unauthorized("ticket already used"));
    }
    let l = Listener {
        user_id: claims.sub.clone(),
        jti: jti.to_owned(),
    };
    if !alive(st, &l).await? {
        return Err(ApiError::unauthorized("token revoked"));
    }
    Ok(l)
}

/// Whether the listener's token is still honoured.
async fn alive(st: &AppState, l: &Listener) -> ApiResult<bool> {
    let t = st.store.use_token(&l.jti, crate::time::now_us()).await?;
    Ok(t.is_some_and(|t| {
        matches!(t.kind, TokenKind::Session | TokenKind::Pat) && t.subject == l.user_id
    }))
}

/// Live events: each `data:` line is an `aloft_api::event::Envelope`, a JSON object with `type`
/// (`device`, `device_deployment`, `deployment`), `ts` and the change; deployment changes carry
/// the deployment's new `statistics` and `summary`. An event named `lagged` means some were
/// missed (reload).
#[utoipa::path(get, path = "/api/management/v1/events", tag = "events", security(("bearer" = [])),
    params(EventsQuery),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody)))]
async fn events(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let who = listener(&st, &headers, q).await?;
    let rx = st.events.subscribe();
    let checked = Instant::now();
    let stream = futures::stream::unfold(
        (rx, st, who, checked),
        |(mut rx, st, who, mut checked)| async move {
            loop {
                let next = tokio::select! {
                    r = rx.recv() => Some(r),
                    () = st.events.closed() => return None,
                    () = tokio::time::sleep_until(checked + RECHECK * 5) => None,
                };
                // Nothing goes out on a revoked token: check before delivering (at most once
                // a second) and every few seconds while idle.
                if checked.elapsed() >= RECHECK {
                    if !alive(&st, &who).await.unwrap_or(false) {
                        return None;
                    }
                    checked = Instant::now();
                }
                let event = match next {
                    None => continue,
                    Some(Ok(text)) => Event::default().data(&*text),
                    Some(Err(RecvError::Lagged(n))) => {
                        Event::default().event("lagged").data(n.to_string())
                    }
                    Some(Err(RecvError::Closed)) => return None,
                };
                return Some((Ok(event), (rx, st, who, checked)));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_redeemed_once() {
        let t = Tickets::default();
        assert!(t.redeem("n1", 100, 50));
        assert!(!t.redeem("n1", 100, 50), "a second use is refused");
        assert!(t.redeem("n2", 100, 50));
    }
}
