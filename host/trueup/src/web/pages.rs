//! The UI's pages and static assets, embedded in the binary (no CDN: the
//! UI works without internet). Pages hold no data: they call the API with
//! the session cookie and the CSRF token.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::AppState;
use super::error::ApiError;

/// The login page.
const LOGIN_HTML: &str = include_str!("../../assets/login.html");
/// The application shell (every `/app` page).
const APP_HTML: &str = include_str!("../../assets/app.html");

/// Static assets by file name: (name, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/login.js"),
    ),
    (
        "core.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/core.js"),
    ),
    (
        "cards.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/cards.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/admin.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    ),
];

/// How long browsers may cache static assets.
const ASSET_MAX_AGE: &str = "public, max-age=300";

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// `GET /`: the cards page when logged in, else the login page.
#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    responses((status = 303, description = "To /app/cards when logged in, else to /login")),
)]
pub async fn root(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    match super::auth::authenticate(&state, &headers).await {
        Ok(Some(_)) => Redirect::to("/app/cards").into_response(),
        _ => Redirect::to("/login").into_response(),
    }
}

/// `GET /login`.
#[utoipa::path(
    get,
    path = "/login",
    tag = "pages",
    responses((status = 200, description = "The login page", content_type = "text/html")),
)]
pub async fn login() -> Response {
    html(LOGIN_HTML)
}

/// `GET /app`, `GET /app/{*page}`: the application shell; its script
/// shows the page the path names.
#[utoipa::path(
    get,
    path = "/app",
    tag = "pages",
    responses((status = 200, description = "The application shell", content_type = "text/html")),
)]
pub async fn app() -> Response {
    html(APP_HTML)
}

/// `GET /app/{*page}`: the same shell as [`app`] (one handler per
/// documented operation).
#[utoipa::path(
    get,
    path = "/app/{*page}",
    tag = "pages",
    params(("page" = String, Path, description = "The UI page, e.g. cards or admin/users")),
    responses((status = 200, description = "The application shell", content_type = "text/html")),
)]
pub async fn app_page() -> Response {
    html(APP_HTML)
}

/// `GET /assets/{file}`.
#[utoipa::path(
    get,
    path = "/assets/{file}",
    tag = "pages",
    params(("file" = String, Path, description = "The asset, e.g. app.css")),
    responses((status = 200, description = "The asset (CSS or JavaScript)", content_type = "text/css"), (status = 404, description = "No such asset", body = crate::web::openapi::ErrorBody)),
)]
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => {
            let mut response = ([(header::CONTENT_TYPE, *content_type)], *body).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(ASSET_MAX_AGE),
            );
            response
        }
        None => ApiError::NotFound(format!("no asset {file:?}")).into_response(),
    }
}
