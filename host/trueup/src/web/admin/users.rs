//! Users: listed, created (with a generated password shown once) and
//! changed (role, password, disabled).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{MIN_PASSWORD_LEN, Role, hash_password, random_token};
use crate::web::AppState;
use crate::web::auth::{Caller, role_of, stored_role};
use crate::web::error::{ApiError, ApiResult, JsonBody};

/// A user (never the password hash).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// Its id.
    pub id: i64,
    /// The login name.
    pub username: String,
    /// The role.
    pub role: Role,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<trueup_store::auth::User> for UserView {
    fn from(u: trueup_store::auth::User) -> Self {
        Self {
            id: u.id.0,
            username: u.username,
            role: role_of(u.role),
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// `GET /api/v1/users`.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    responses((status = 200, description = "Users", body = Vec<UserView>)),
)]
pub async fn users(State(state): State<AppState>) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(
        state
            .app
            .store()
            .users()
            .await?
            .into_iter()
            .map(UserView::from)
            .collect(),
    ))
}

/// A new user.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The login name.
    pub username: String,
    /// The role.
    pub role: Role,
    /// The password (at least 12 characters); omitted: one is generated
    /// and shown once.
    #[serde(default)]
    pub password: Option<String>,
}

/// A created user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    /// The user.
    pub user: UserView,
    /// The generated password, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

async fn hash(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(format!("hash task: {e}")))?
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// `POST /api/v1/users`.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = NewUser,
    responses((status = 201, description = "Created", body = CreatedUser), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 409, description = "Conflicts with the stored state", body = crate::web::openapi::ErrorBody)),
)]
pub async fn create_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<NewUser>,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    let username = request.username.trim().to_owned();
    if username.is_empty() || username.len() > 64 || username.chars().any(char::is_whitespace) {
        return Err(ApiError::BadRequest(
            "a username is 1 to 64 characters without spaces".into(),
        ));
    }
    trueup_core::model::text::check("the username", &username, false)
        .map_err(ApiError::BadRequest)?;
    let (password, generated) = match request.password {
        Some(p) => (p, None),
        None => {
            let p = random_token();
            (p.clone(), Some(p))
        }
    };
    let hashed = hash(password).await?;
    let store = state.app.store();
    store
        .create_user(
            &username,
            &hashed,
            stored_role(request.role),
            state.app.now(),
        )
        .await?;
    state
        .app
        .audit(
            &caller.name,
            "user.create",
            &format!("user:{username}"),
            serde_json::json!({ "role": request.role }),
        )
        .await;
    let user = store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("user {username} vanished")))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: user.into(),
            password: generated,
        }),
    ))
}

/// Changes to a user.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// A new role.
    #[serde(default)]
    pub role: Option<Role>,
    /// Disable or enable (disabling ends the user's sessions).
    #[serde(default)]
    pub disabled: Option<bool>,
    /// A new password (ends the user's sessions).
    #[serde(default)]
    pub password: Option<String>,
}

/// `PATCH /api/v1/users/{username}`.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{username}",
    tag = "users",
    params(("username" = String, Path, description = "The login name")),
    request_body = UserChange,
    responses((status = 200, description = "The user as changed", body = UserView), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody), (status = 404, description = "No such user", body = crate::web::openapi::ErrorBody), (status = 409, description = "The change would leave no enabled admin", body = crate::web::openapi::ErrorBody)),
)]
pub async fn update_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(username): Path<String>,
    JsonBody(change): JsonBody<UserChange>,
) -> ApiResult<Json<UserView>> {
    let store = state.app.store();
    let user = store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {username:?}")))?;
    if user.username == caller.name
        && (change.disabled == Some(true) || change.role.is_some_and(|r| r != Role::Admin))
    {
        return Err(ApiError::BadRequest(
            "you cannot disable yourself or take away your own admin role".into(),
        ));
    }
    let hashed = match change.password {
        Some(p) => {
            if p.chars().count() < MIN_PASSWORD_LEN {
                return Err(ApiError::BadRequest(format!(
                    "passwords must be at least {MIN_PASSWORD_LEN} characters"
                )));
            }
            Some(hash(p).await?)
        }
        None => None,
    };
    store
        .update_user(
            user.id,
            hashed.as_deref(),
            change.role.map(stored_role),
            change.disabled,
            state.app.now(),
        )
        .await
        .map_err(|e| {
            if trueup_store::auth::is_last_admin(&e) {
                ApiError::Conflict(format!(
                    "user {username:?} is the last enabled admin and cannot be disabled or demoted: make another user an admin first"
                ))
            } else {
                e.into()
            }
        })?;
    state.shared.auth.forget_all();
    state
        .app
        .audit(
            &caller.name,
            "user.update",
            &format!("user:{username}"),
            serde_json::json!({ "role": change.role, "disabled": change.disabled, "password": hashed.is_some() }),
        )
        .await;
    let user = store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("user {username} vanished")))?;
    Ok(Json(user.into()))
}
