//! API tokens: listed (never their values), created (the value shown
//! once) and revoked.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_store::auth::{ApiToken, ApiTokenId};

use crate::auth::{Role, new_api_token};
use crate::web::AppState;
use crate::web::auth::{Caller, role_of, stored_role};
use crate::web::error::{ApiError, ApiResult, JsonBody};

/// An API token as listed (never its value).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id.0,
            name: t.name,
            role: role_of(t.role),
            created_by: t.created_by,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// `GET /api/v1/tokens`.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses((status = 200, description = "API tokens (never their values)", body = Vec<TokenView>)),
)]
pub async fn tokens(State(state): State<AppState>) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(
        state
            .app
            .store()
            .api_tokens()
            .await?
            .into_iter()
            .map(TokenView::from)
            .collect(),
    ))
}

/// A new API token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name for people.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// A created token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The token.
    pub token: TokenView,
    /// Its value, shown this once (`Authorization: Bearer <value>`).
    pub value: String,
}

/// `POST /api/v1/tokens`.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = NewToken,
    responses((status = 201, description = "Created; the value is shown this once", body = CreatedToken), (status = 400, description = "The request is invalid (the message says what to fix)", body = crate::web::openapi::ErrorBody)),
)]
pub async fn create_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(request): JsonBody<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = request.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::BadRequest(
            "a token needs a name (1 to 100 characters)".into(),
        ));
    }
    trueup_core::model::text::check("the token name", name, false).map_err(ApiError::BadRequest)?;
    let value = new_api_token();
    let store = state.app.store();
    let id = store
        .create_api_token(
            name,
            &value,
            stored_role(request.role),
            &caller.name,
            state.app.now(),
        )
        .await?;
    state
        .app
        .audit(
            &caller.name,
            "token.create",
            &format!("token:{name}"),
            serde_json::json!({ "id": id.0, "role": request.role }),
        )
        .await;
    let token = store
        .api_tokens()
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::Internal(format!("token {} vanished", id.0)))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: token.into(),
            value,
        }),
    ))
}

/// `DELETE /api/v1/tokens/{id}`.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = i64, Path, description = "The token id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such token", body = crate::web::openapi::ErrorBody)),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    state
        .app
        .store()
        .revoke_api_token(ApiTokenId(id), state.app.now())
        .await?;
    state.shared.auth.forget_all();
    state
        .app
        .audit(
            &caller.name,
            "token.revoke",
            &format!("token:{id}"),
            serde_json::json!({}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}
