//! Who is calling: session cookies (the UI) and API tokens (automation),
//! the per-route guard (authentication, role, CSRF), login with lockout,
//! logout.
//!
//! - A login creates a session: a random id in the cookie
//!   [`SESSION_COOKIE`] (HttpOnly, SameSite=Strict, Path=/, Secure when
//!   `[server] secure_cookies`), stored only as its SHA-256, with a random
//!   CSRF token returned by the login and by `GET /api/v1/session`.
//! - Every state-changing request (not GET/HEAD/OPTIONS) authenticated by
//!   the cookie must carry that token in [`CSRF_HEADER`]; API-token
//!   requests are exempt (a browser never sends a bearer token by itself).
//! - API tokens: `Authorization: Bearer tu_...`, stored as SHA-256.
//! - Lockout: [`MAX_LOGIN_FAILURES`] failed logins for one username within
//!   [`LOGIN_WINDOW`] lock that username out for the rest of the window
//!   (429 with `Retry-After`), even with the right password. A client
//!   address is locked the same way after [`MAX_ADDRESS_FAILURES`] failed
//!   logins across any usernames (a password spray from one address), so
//!   spraying is slowed without letting one address lock everyone out.
//! - Lookups are cached for [`AUTH_CACHE_TTL`]: a logout, revocation or
//!   user change made through this process takes effect at once; one made
//!   by another process sharing the database within the TTL.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use trueup_store::auth::Role as StoredRole;

use super::error::{ApiError, ApiResult, JsonBody};
use super::{Access, AppState};
use crate::auth::{Role, hash_password, random_token, token_hash, tokens_equal, verify_password};
use crate::lock::lock;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "trueup_session";

/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Failed logins of one username within [`LOGIN_WINDOW`] before it is
/// locked out.
pub const MAX_LOGIN_FAILURES: u32 = 5;

/// Failed logins from one client address (any usernames) within
/// [`LOGIN_WINDOW`] before the address is locked out. Higher than
/// [`MAX_LOGIN_FAILURES`]: several people may share an office address.
pub const MAX_ADDRESS_FAILURES: u32 = 20;
/// The window failed logins are counted in, and the lockout's length.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Usernames tracked by the lockout, and session or token lookups cached,
/// at most each (older entries are dropped first when full).
pub const MAX_TRACKED_LOGINS: usize = 10_000;

/// How long an authenticated session or token is trusted without asking
/// the store again.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(5);

/// The longest username or password accepted at login.
const MAX_CREDENTIAL_LEN: usize = 1024;

/// Converts between the store's role and the ordered role.
pub fn role_of(stored: StoredRole) -> Role {
    match stored {
        StoredRole::Admin => Role::Admin,
        StoredRole::Approver => Role::Approver,
        StoredRole::Viewer => Role::Viewer,
    }
}

/// The store's role.
pub fn stored_role(role: Role) -> StoredRole {
    match role {
        Role::Admin => StoredRole::Admin,
        Role::Approver => StoredRole::Approver,
        Role::Viewer => StoredRole::Viewer,
    }
}

/// How a caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A session cookie, with the session's CSRF token.
    Session {
        /// The session's CSRF token.
        csrf_token: String,
        /// When the session ends.
        expires_at: DateTime<Utc>,
    },
    /// An API token.
    Token {
        /// The token's id.
        id: i64,
    },
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The username, or `token:NAME` for API tokens (the audit log's actor).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// How it authenticated.
    pub via: Via,
}

struct Failures {
    count: u32,
    since: Instant,
}

/// Caches and the login lockout.
pub(crate) struct AuthState {
    secure_cookies: bool,
    /// Recent lookups of session ids and token hashes, for
    /// [`AUTH_CACHE_TTL`].
    cache: moka::sync::Cache<String, Principal>,
    failures: Mutex<HashMap<String, Failures>>,
    dummy_hash: std::sync::OnceLock<String>,
}

impl AuthState {
    pub(crate) fn new(secure_cookies: bool) -> Self {
        Self {
            secure_cookies,
            cache: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_LOGINS as u64)
                .time_to_live(AUTH_CACHE_TTL)
                .build(),
            failures: Mutex::new(HashMap::new()),
            dummy_hash: std::sync::OnceLock::new(),
        }
    }

    /// Forgets every cached lookup (after revocations and user changes).
    pub(crate) fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    fn cached(&self, key: &str) -> Option<Principal> {
        self.cache.get(key)
    }

    fn remember(&self, key: String, principal: Principal) {
        self.cache.insert(key, principal);
    }

    fn forget(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Seconds the username stays locked out, if it is.
    fn locked_for(&self, username: &str) -> Option<u64> {
        self.locked_key(&user_key(username), MAX_LOGIN_FAILURES)
    }

    /// Seconds the client address stays locked out, if it is.
    fn address_locked_for(&self, address: IpAddr) -> Option<u64> {
        self.locked_key(&address_key(address), MAX_ADDRESS_FAILURES)
    }

    fn locked_key(&self, key: &str, max: u32) -> Option<u64> {
        let failures = lock(&self.failures);
        let f = failures.get(key)?;
        let elapsed = f.since.elapsed();
        (f.count >= max && elapsed < LOGIN_WINDOW)
            .then(|| (LOGIN_WINDOW - elapsed).as_secs().max(1))
    }

    /// Counts a failed login against the username and, when known, the
    /// client address.
    fn record_failure(&self, username: &str, address: Option<IpAddr>) {
        self.record_key(user_key(username));
        if let Some(address) = address {
            self.record_key(address_key(address));
        }
    }

    fn record_key(&self, key: String) {
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_TRACKED_LOGINS {
            failures.retain(|_, f| f.since.elapsed() < LOGIN_WINDOW);
            if failures.len() >= MAX_TRACKED_LOGINS
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| k.clone())
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            since: Instant::now(),
        });
        if entry.since.elapsed() >= LOGIN_WINDOW {
            *entry = Failures {
                count: 0,
                since: Instant::now(),
            };
        }
        entry.count += 1;
    }

    /// A successful login clears the username's count, not the address's:
    /// a sprayer who knows one password must not reset its own count.
    fn clear_failures(&self, username: &str) {
        lock(&self.failures).remove(&user_key(username));
    }

    /// A hash to verify against when the user does not exist, so a login
    /// takes as long for unknown users as for wrong passwords.
    fn dummy_hash(&self) -> &str {
        self.dummy_hash
            .get_or_init(|| hash_password(&random_token()).unwrap_or_default())
    }

    /// The session cookie holding `value`, living `max_age`.
    fn cookie(&self, value: &str, max_age: Duration) -> String {
        let max_age =
            cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX));
        Cookie::build((SESSION_COOKIE, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .max_age(max_age)
            .secure(self.secure_cookies)
            .build()
            .to_string()
    }

    /// The `Set-Cookie` value starting a session.
    fn session_cookie(&self, id: &str) -> String {
        self.cookie(id, SESSION_TTL)
    }

    /// The `Set-Cookie` value ending it.
    fn clear_cookie(&self) -> String {
        self.cookie("", Duration::ZERO)
    }
}

/// The lockout key of a username (apart from addresses').
fn user_key(username: &str) -> String {
    format!("user:{username}")
}

/// The lockout key of a client address.
fn address_key(address: IpAddr) -> String {
    format!("addr:{address}")
}

/// The session id in the request's cookies.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Authenticates the request's credentials (a bearer token wins over a
/// cookie). `Ok(None)` when there are none or they are not valid.
///
/// # Errors
/// A store error.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Principal>> {
    let app = &state.app;
    let auth = &state.shared.auth;
    if let Some(token) = bearer(headers) {
        let key = format!("t:{}", token_hash(token));
        if let Some(principal) = auth.cached(&key) {
            return Ok(Some(principal));
        }
        let Some(found) = app.store().authenticate_api_token(token, app.now()).await? else {
            return Ok(None);
        };
        let principal = Principal {
            name: format!("token:{}", found.name),
            role: role_of(found.role),
            via: Via::Token { id: found.id.0 },
        };
        auth.remember(key, principal.clone());
        return Ok(Some(principal));
    }
    let Some(id) = session_id(headers) else {
        return Ok(None);
    };
    let key = format!("s:{}", token_hash(&id));
    if let Some(principal) = auth.cached(&key) {
        if let Via::Session { expires_at, .. } = &principal.via
            && *expires_at <= app.now()
        {
            auth.forget(&key);
            return Ok(None);
        }
        return Ok(Some(principal));
    }
    let Some(session) = app.store().session(&id, app.now()).await? else {
        return Ok(None);
    };
    let principal = Principal {
        name: session.user.username.clone(),
        role: role_of(session.user.role),
        via: Via::Session {
            csrf_token: session.csrf_token,
            expires_at: session.expires_at,
        },
    };
    auth.remember(key, principal.clone());
    Ok(Some(principal))
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The per-route guard: authentication, role and CSRF. Puts the
/// [`Principal`] into the request's (and the response's) extensions.
pub(crate) async fn guard(access: Access, mut req: Request, next: Next) -> Response {
    let needed = match access {
        // The push API's handlers check the push key themselves.
        Access::Public | Access::PushKey => return next.run(req).await,
        Access::Page => Role::Viewer,
        Access::Role(role) => role,
    };
    let Some(state) = req.extensions().get::<AppState>().cloned() else {
        return ApiError::Internal("the router has no state".into()).into_response();
    };
    let principal = match authenticate(&state, req.headers()).await {
        Ok(Some(p)) => p,
        Ok(None) if access == Access::Page => return Redirect::to("/login").into_response(),
        Ok(None) => {
            return ApiError::Unauthenticated(
                "log in (POST /api/v1/session) or send an API token (Authorization: Bearer tu_...)"
                    .into(),
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    if !principal.role.allows(needed) {
        return ApiError::forbidden(format!(
            "this needs the {} role; {} is {}",
            needed.as_str(),
            principal.name,
            principal.role.as_str()
        ))
        .into_response();
    }
    if let Via::Session { csrf_token, .. } = &principal.via
        && changes_state(req.method())
    {
        let given = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if given.is_empty() || !tokens_equal(given, csrf_token) {
            return ApiError::Forbidden {
                code: "csrf",
                message: format!(
                    "a state-changing request with a session cookie needs the session's CSRF token in {CSRF_HEADER} (from the login or GET /api/v1/session)"
                ),
            }
            .into_response();
        }
    }
    req.extensions_mut().insert(principal.clone());
    let mut response = next.run(req).await;
    response.extensions_mut().insert(principal);
    response
}

/// The caller, as the guard put it into the request.
pub struct Caller(pub Principal);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::Unauthenticated("not logged in".into()))
    }
}

/// Login credentials.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
}

/// The session as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// The username (or `token:NAME`).
    pub username: String,
    /// The role.
    pub role: Role,
    /// The CSRF token to send in `X-CSRF-Token` (sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    /// When the session ends (sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/session`.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "session",
    request_body = Login,
    responses((status = 200, description = "Logged in: sets the session cookie", body = SessionInfo), (status = 401, description = "Wrong username or password, or a disabled user", body = crate::web::openapi::ErrorBody), (status = 429, description = "Too many failed attempts; retry after Retry-After seconds", body = crate::web::openapi::ErrorBody), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 415, description = "The body is not sent as application/json", body = crate::web::openapi::ErrorBody)),
)]
pub async fn login(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    JsonBody(body): JsonBody<Login>,
) -> ApiResult<Response> {
    // The peer address as the server accepted it (not a forwarded header,
    // which a client could set to dodge the count).
    let address = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let auth = &state.shared.auth;
    let app = &state.app;
    let username = body.username.trim().to_owned();
    if username.is_empty()
        || username.len() > MAX_CREDENTIAL_LEN
        || body.password.len() > MAX_CREDENTIAL_LEN
    {
        return Err(ApiError::BadRequest(
            "give a username and a password (at most 1024 bytes each)".into(),
        ));
    }
    if let Some(retry_after) = address.and_then(|a| auth.address_locked_for(a)) {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "too many failed logins from this address; try again in {retry_after} s"
            ),
            retry_after,
        });
    }
    if let Some(retry_after) = auth.locked_for(&username) {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "too many failed logins for {username:?}; try again in {retry_after} s"
            ),
            retry_after,
        });
    }
    let user = app.store().user_by_name(&username).await?;
    let hash = match &user {
        Some(u) if !u.disabled => u.password_hash.clone(),
        _ => auth.dummy_hash().to_owned(),
    };
    let password = body.password;
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(format!("password check task: {e}")))?
        .unwrap_or(false);
    let user = match user {
        Some(u) if verified && !u.disabled => u,
        _ => {
            auth.record_failure(&username, address);
            tracing::warn!(username = %username.escape_debug(), address = ?address, "failed login");
            return Err(ApiError::Unauthenticated(
                "wrong username or password".into(),
            ));
        }
    };
    auth.clear_failures(&username);
    let id = random_token();
    let csrf_token = random_token();
    let now = app.now();
    let expires_at = now
        + chrono::Duration::from_std(SESSION_TTL).unwrap_or_else(|_| chrono::Duration::hours(12));
    app.store()
        .create_session(&id, user.id, &csrf_token, expires_at, now)
        .await?;
    app.audit(
        &user.username,
        "session.login",
        &format!("user:{}", user.username),
        serde_json::json!({}),
    )
    .await;
    let info = SessionInfo {
        username: user.username.clone(),
        role: role_of(user.role),
        csrf_token: Some(csrf_token),
        expires_at: Some(expires_at),
    };
    let mut response = Json(info).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&auth.session_cookie(&id)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `GET /api/v1/session`.
#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "session",
    responses((status = 200, description = "The caller", body = SessionInfo)),
)]
pub async fn me(Caller(principal): Caller) -> Json<SessionInfo> {
    let (csrf_token, expires_at) = match principal.via {
        Via::Session {
            csrf_token,
            expires_at,
        } => (Some(csrf_token), Some(expires_at)),
        Via::Token { .. } => (None, None),
    };
    Json(SessionInfo {
        username: principal.name,
        role: principal.role,
        csrf_token,
        expires_at,
    })
}

/// `DELETE /api/v1/session`.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "session",
    responses((status = 204, description = "Logged out: the session is deleted and the cookie cleared")),
)]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(id) = session_id(&headers) {
        state.shared.auth.forget(&format!("s:{}", token_hash(&id)));
        state.app.store().delete_session(&id).await?;
    }
    let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
    if let Ok(cookie) = HeaderValue::from_str(&state.shared.auth.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; trueup_session=abc; b=2"),
        );
        assert_eq!(session_id(&headers).as_deref(), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("trueup_session="));
        assert_eq!(session_id(&headers), None);
    }

    #[test]
    fn lockout_starts_after_the_limit_and_a_success_clears_it() {
        let auth = AuthState::new(true);
        for _ in 0..MAX_LOGIN_FAILURES - 1 {
            auth.record_failure("ann", None);
        }
        assert_eq!(auth.locked_for("ann"), None);
        auth.record_failure("ann", None);
        assert!(auth.locked_for("ann").is_some_and(|s| s > 0));
        assert_eq!(auth.locked_for("bob"), None);
        auth.clear_failures("ann");
        assert_eq!(auth.locked_for("ann"), None);
        assert!(auth.session_cookie("x").contains("; Secure"));
        assert!(
            auth.session_cookie("x")
                .contains("HttpOnly; SameSite=Strict")
        );
    }

    /// Issue 17 (10): one address failing across many usernames is locked
    /// out; a success does not clear the address's count; another address
    /// is not affected.
    #[test]
    fn an_address_spraying_usernames_is_locked_out() {
        let auth = AuthState::new(false);
        let sprayer = IpAddr::from([203, 0, 113, 7]);
        let other = IpAddr::from([198, 51, 100, 1]);
        for i in 0..MAX_ADDRESS_FAILURES - 1 {
            auth.record_failure(&format!("user-{i}"), Some(sprayer));
        }
        assert_eq!(auth.address_locked_for(sprayer), None);
        auth.clear_failures("user-0");
        auth.record_failure("ann", Some(sprayer));
        assert!(auth.address_locked_for(sprayer).is_some_and(|s| s > 0));
        assert_eq!(auth.address_locked_for(other), None);
        assert_eq!(auth.locked_for("ann"), None, "one failure for ann");
    }
}
