//! Users, login and personal access tokens (`/api/management/v1/useradm`).

use aloft_api::management::{ErrorBody, NewToken, NewUser, TokenInfo, User, UserUpdate};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, AppState, UserAuth, created};
use crate::auth::{self, AUD_MANAGEMENT, Claims, ISSUER};
use crate::error::{ApiError, ApiResult};
use crate::store::{TokenKind, TokenRow, UserRow};
use crate::throttle::ClientKey;
use crate::time::{now_us, rfc3339, rfc3339_opt};

/// A token that "never expires" still carries an `exp`: a century.
const FOREVER_SECS: i64 = 100 * 365 * 24 * 3600;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(delete_token))
}

fn user_json(u: &UserRow) -> User {
    User {
        id: u.id.clone(),
        email: u.email.clone(),
        created_ts: rfc3339(u.created_ts),
        updated_ts: rfc3339(u.updated_ts),
        login_ts: rfc3339_opt(u.login_ts),
    }
}

fn jwt_response(token: String) -> Response {
    ([(header::CONTENT_TYPE, "application/jwt")], token).into_response()
}

/// Issues and records a user token.
pub(crate) async fn issue_user_token(
    st: &AppState,
    user_id: &str,
    kind: TokenKind,
    name: Option<String>,
    lifetime_secs: Option<i64>,
) -> ApiResult<String> {
    let now = now_us();
    let secs = now / 1_000_000;
    let jti = uuid::Uuid::new_v4().to_string();
    let claims = Claims {
        jti: jti.clone(),
        sub: user_id.to_owned(),
        iss: ISSUER.into(),
        aud: AUD_MANAGEMENT.into(),
        iat: secs,
        exp: secs + lifetime_secs.unwrap_or(FOREVER_SECS),
        device: None,
        user: Some(true),
    };
    let token = st.keys.issue(&claims).map_err(ApiError::internal)?;
    st.store
        .insert_token(
            &TokenRow {
                jti,
                kind,
                subject: user_id.to_owned(),
                name,
                created_ts: now,
                expires_ts: lifetime_secs.map(|l| (secs + l) * 1_000_000),
                last_used: None,
            },
            10,
            10,
        )
        .await?;
    Ok(token)
}

async fn password_ok(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || auth::check_password(&password, &hash))
        .await
        .unwrap_or(false)
}

/// The optional body of a login.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "documents the body for OpenAPI; parsed leniently by hand"
)]
struct LoginOptions {
    /// Ask for a token that never expires.
    no_expiry: Option<bool>,
}

/// Log in with HTTP Basic credentials; answers the bare JWT.
#[utoipa::path(post, path = "/api/management/v1/useradm/auth/login", tag = "useradm",
    security(("basic" = [])), request_body(content = Option<LoginOptions>, content_type = "application/json"),
    responses((status = 200, description = "the token", content_type = "application/jwt", body = String),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody, description = "too many failed logins; see Retry-After")))]
async fn login(
    State(st): State<AppState>,
    client: ClientKey,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or_else(|| ApiError::unauthorized("missing or malformed Basic credentials"))?;
    let (email, password) = creds
        .split_once(':')
        .ok_or_else(|| ApiError::unauthorized("missing or malformed Basic credentials"))?;
    // An optional JSON body may ask for a token that never expires.
    let no_expiry = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
        v.get("no_expiry")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    let account = email.to_lowercase();
    let throttle = LoginThrottle::enter(&st, &client, &account)?;
    let Some(mut user) = st.store.user_by_email(&account).await? else {
        // Same work as a real check, so a missing user is not faster to detect.
        let _ = password_ok(password.to_owned(), DUMMY_HASH.to_owned()).await;
        return Err(ApiError::unauthorized("invalid credentials"));
    };
    if !password_ok(password.to_owned(), user.password_hash.clone()).await {
        tracing::info!(user.id = %user.id, "failed login");
        return Err(ApiError::unauthorized("invalid credentials"));
    }
    throttle.passed();
    let lifetime = (!no_expiry).then_some(st.settings.session_token_secs);
    let token = issue_user_token(&st, &user.id, TokenKind::Session, None, lifetime).await?;
    user.login_ts = Some(now_us());
    st.store.update_user(&user).await?;
    tracing::info!(user.id = %user.id, "login");
    Ok(jwt_response(token))
}

/// A login attempt counted against its client and its account; a good password gives both
/// back, so only failures use up the budget.
struct LoginThrottle<'a> {
    st: &'a AppState,
    client: &'a ClientKey,
    account: &'a str,
}

impl<'a> LoginThrottle<'a> {
    fn enter(st: &'a AppState, client: &'a ClientKey, account: &'a str) -> ApiResult<Self> {
        let t = &st.throttles;
        t.login_client.take_both(
            client,
            (&t.login_account, account),
            "too many failed logins from this address or for this account",
        )?;
        Ok(Self {
            st,
            client,
            account,
        })
    }

    fn passed(self) {
        self.st.throttles.login_client.refund(&self.client.0);
        self.st.throttles.login_account.refund(self.account);
    }
}

/// An argon2 hash of a random password, checked when the user does not exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2RzpJ5UqGiKVhCjmZgqSSUjWzHcX5e4hYBfHdu+WgZ4";

/// Log out: revokes the presented token.
#[utoipa::path(post, path = "/api/management/v1/useradm/auth/logout", tag = "useradm",
    security(("bearer" = [])), responses((status = 202, description = "revoked"), (status = 401, body = ErrorBody)))]
async fn logout(State(st): State<AppState>, user: UserAuth) -> ApiResult<StatusCode> {
    st.store
        .delete_token(&user.jti, Some(&user.user_id))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// List users, filtered by `id` and `email` (both repeatable) and by creation or update time
/// (`created_after`, `created_before`, `updated_after`, `updated_before`: UNIX seconds).
#[utoipa::path(get, path = "/api/management/v1/useradm/users", tag = "useradm", security(("bearer" = [])),
    params(("id" = Option<Vec<String>>, Query), ("email" = Option<Vec<String>>, Query),
        ("created_after" = Option<i64>, Query), ("created_before" = Option<i64>, Query),
        ("updated_after" = Option<i64>, Query), ("updated_before" = Option<i64>, Query)),
    responses((status = 200, body = Vec<User>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_users(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: axum::http::Uri,
) -> ApiResult<axum::Json<Vec<User>>> {
    let q = super::query_pairs(&uri);
    let all = |name: &str| -> Vec<String> {
        q.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let epoch = |name: &str| super::epoch_param(&q, name);
    let (ids, emails) = (all("id"), all("email"));
    let emails: Vec<String> = emails.iter().map(|e| e.to_lowercase()).collect();
    let (ca, cb) = (epoch("created_after")?, epoch("created_before")?);
    let (ua, ub) = (epoch("updated_after")?, epoch("updated_before")?);
    let users = st.store.users().await?;
    Ok(axum::Json(
        users
            .iter()
            .filter(|u| ids.is_empty() || ids.contains(&u.id))
            .filter(|u| emails.is_empty() || emails.contains(&u.email))
            .filter(|u| {
                ca.is_none_or(|t| u.created_ts >= t)
                    && cb.is_none_or(|t| u.created_ts <= t + 999_999)
            })
            .filter(|u| {
                ua.is_none_or(|t| u.updated_ts >= t)
                    && ub.is_none_or(|t| u.updated_ts <= t + 999_999)
            })
            .map(user_json)
            .collect(),
    ))
}

/// Checks an e-mail address enough to refuse obvious garbage.
fn check_email(email: &str) -> ApiResult<String> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(e)
    } else {
        Err(ApiError::bad_request(format!(
            "invalid email address {email:?}"
        )))
    }
}

fn check_password(p: &str) -> ApiResult<()> {
    if p.chars().count() < 8 {
        return Err(ApiError::unprocessable(
            "password too short: at least 8 characters",
        ));
    }
    if p.len() > 1024 {
        return Err(ApiError::bad_request("password too long"));
    }
    Ok(())
}

/// Creates a user (also used by `aloft-server user create`).
pub async fn create_user_row(
    store: &dyn crate::store::Store,
    email: &str,
    password: &str,
) -> ApiResult<UserRow> {
    let email = check_email(email)?;
    check_password(password)?;
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let now = now_us();
    let user = UserRow {
        id: uuid::Uuid::new_v4().to_string(),
        email,
        password_hash: hash,
        created_ts: now,
        updated_ts: now,
        login_ts: None,
    };
    store.create_user(&user).await?;
    Ok(user)
}

/// Create a user.
#[utoipa::path(post, path = "/api/management/v1/useradm/users", tag = "useradm", security(("bearer" = [])),
    request_body = NewUser,
    responses((status = 201, description = "created; Location: users/<id>"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_user(
    State(st): State<AppState>,
    _user: UserAuth,
    ApiJson(new): ApiJson<NewUser>,
) -> ApiResult<Response> {
    let u = create_user_row(st.store.as_ref(), &new.email, &new.password).await?;
    Ok(created(&format!("users/{}", u.id)))
}

async fn resolve_user(st: &AppState, me: &UserAuth, id: &str) -> ApiResult<UserRow> {
    let id = if id == "me" { me.user_id.as_str() } else { id };
    st.store
        .user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user not found"))
}

/// One user (`me` for oneself).
#[utoipa::path(get, path = "/api/management/v1/useradm/users/{id}", tag = "useradm", security(("bearer" = [])),
    params(("id" = String, Path, description = "user id or `me`")),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_user(
    State(st): State<AppState>,
    me: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<User>> {
    Ok(axum::Json(user_json(&resolve_user(&st, &me, &id).await?)))
}

/// Change a user's e-mail or password.
#[utoipa::path(put, path = "/api/management/v1/useradm/users/{id}", tag = "useradm", security(("bearer" = [])),
    params(("id" = String, Path, description = "user id or `me`")), request_body = UserUpdate,
    responses((status = 204, description = "updated"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_user(
    State(st): State<AppState>,
    me: UserAuth,
    Path(id): Path<String>,
    ApiJson(upd): ApiJson<UserUpdate>,
) -> ApiResult<StatusCode> {
    let mut user = resolve_user(&st, &me, &id).await?;
    let password_changed = upd.password.is_some();
    if let Some(e) = &upd.email {
        user.email = check_email(e)?;
    }
    if let Some(p) = &upd.password {
        check_password(p)?;
        if user.id == me.user_id {
            let current = upd.current_password.clone().ok_or_else(|| {
                ApiError::unprocessable("current_password is required to change your password")
            })?;
            if !password_ok(current, user.password_hash.clone()).await {
                return Err(ApiError::unauthorized("current password is wrong"));
            }
        }
        let pw = p.clone();
        user.password_hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
    }
    user.updated_ts = now_us();
    st.store.update_user(&user).await?;
    if password_changed {
        // Every other session and access token of the user ends; one's own current one stays.
        let keep = (user.id == me.user_id).then_some(me.jti.as_str());
        let n = st
            .store
            .revoke_tokens_of(&user.id, &[TokenKind::Session, TokenKind::Pat], keep)
            .await?;
        tracing::info!(user.id = %user.id, tokens.revoked = n, "password changed");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a user and their tokens.
#[utoipa::path(delete, path = "/api/management/v1/useradm/users/{id}", tag = "useradm", security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_user(
    State(st): State<AppState>,
    me: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if id == me.user_id || id == "me" {
        // Nobody locks themselves (or the last operator) out by accident.
        return Err(ApiError::unprocessable(
            "you cannot delete your own account",
        ));
    }
    st.store.delete_user(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's personal access tokens (metadata only).
#[utoipa::path(get, path = "/api/management/v1/useradm/settings/tokens", tag = "useradm", security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenInfo>), (status = 401, body = ErrorBody)))]
async fn list_tokens(
    State(st): State<AppState>,
    me: UserAuth,
) -> ApiResult<axum::Json<Vec<TokenInfo>>> {
    let pats = st.store.pats(&me.user_id).await?;
    Ok(axum::Json(
        pats.into_iter()
            .map(|t| TokenInfo {
                id: t.jti,
                name: t.name.unwrap_or_default(),
                created_ts: rfc3339(t.created_ts),
                expiration_date: rfc3339_opt(t.expires_ts),
                last_used: rfc3339_opt(t.last_used),
            })
            .collect(),
    ))
}

/// Create a personal access token; answers the bare JWT (shown only once).
#[utoipa::path(post, path = "/api/management/v1/useradm/settings/tokens", tag = "useradm", security(("bearer" = [])),
    request_body = NewToken,
    responses((status = 200, description = "the token", content_type = "application/jwt", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create_token(
    State(st): State<AppState>,
    me: UserAuth,
    ApiJson(new): ApiJson<NewToken>,
) -> ApiResult<Response> {
    if new.name.is_empty() || new.name.len() > 128 {
        return Err(ApiError::bad_request(
            "the token name must have 1 to 128 characters",
        ));
    }
    let lifetime = match new.expires_in {
        None | Some(0) => None,
        Some(s) if s <= 31_536_000 => Some(i64::try_from(s).unwrap_or(31_536_000)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "expires_in is at most 31536000 seconds",
            ));
        }
    };
    let token =
        issue_user_token(&st, &me.user_id, TokenKind::Pat, Some(new.name), lifetime).await?;
    Ok(jwt_response(token))
}

/// Delete (revoke) a personal access token.
#[utoipa::path(delete, path = "/api/management/v1/useradm/settings/tokens/{id}", tag = "useradm",
    security(("bearer" = [])), params(("id" = String, Path, description = "token id")),
    responses((status = 204, description = "revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_token(
    State(st): State<AppState>,
    me: UserAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if st.store.delete_token(&id, Some(&me.user_id)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token not found"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dummy_hash_parses() {
        assert!(argon2::password_hash::PasswordHash::new(super::DUMMY_HASH).is_ok());
    }

    #[test]
    fn emails() {
        assert_eq!(
            super::check_email(" Ops@Example.com ").unwrap(),
            "ops@example.com"
        );
        assert!(super::check_email("nope").is_err());
        assert!(super::check_email("a b@c.d").is_err());
        assert!(super::check_email("ops\0@example.com").is_err(), "NUL");
        assert!(super::check_email("ops@exa\u{1b}mple.com").is_err(), "ESC");
    }
}
