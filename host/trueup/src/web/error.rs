//! The API's errors: `{ "error": { "code", "message", "request_id" } }`
//! with the right status. Internals (database errors, key problems) are
//! logged with the request id and answered with a generic message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use trueup_store::StoreError;

use crate::app::AppError;

tokio::task_local! {
    /// The id of the request being handled (set by the request-id
    /// middleware), for error logs and bodies.
    pub static REQUEST_ID: String;
}

/// The current request's id, when inside a request.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No or bad credentials (401).
    Unauthenticated(String),
    /// Authenticated but not allowed, or a missing/wrong CSRF token (403).
    Forbidden {
        /// A machine-readable code (`forbidden`, `csrf`).
        code: &'static str,
        /// What is missing.
        message: String,
    },
    /// Nothing there (404).
    NotFound(String),
    /// The request is malformed or invalid (400).
    BadRequest(String),
    /// Well-formed, but a value cannot be used (422), e.g. a date that is
    /// not a real date or lies in the future.
    Unprocessable(String),
    /// The request conflicts with the stored state (409).
    Conflict(String),
    /// The body is not of a type the route reads (415), e.g. JSON sent
    /// without `Content-Type: application/json`.
    UnsupportedMediaType(String),
    /// Too many attempts (429), retry after the seconds given.
    TooManyRequests {
        /// What is limited.
        message: String,
        /// Seconds until the next attempt may succeed.
        retry_after: u64,
    },
    /// A connector or the PSA failed (502).
    Upstream(String),
    /// The store is not reachable (503).
    Unavailable(String),
    /// Something broke inside; the detail is logged, not answered (500).
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Conflict(_) => "conflict",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Upstream(_) => "upstream",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// A 403 for a role that is too low.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden {
            code: "forbidden",
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound { .. } => ApiError::NotFound(error.to_string()),
            StoreError::Duplicate { .. } => ApiError::Conflict(error.to_string()),
            StoreError::Invalid { .. } | StoreError::MissingReference { .. } => {
                ApiError::BadRequest(error.to_string())
            }
            StoreError::LeaseLost { .. } => ApiError::Conflict(error.to_string()),
            StoreError::Connect { .. } => ApiError::Unavailable(error.to_string()),
            StoreError::Migrate { .. }
            | StoreError::Database { .. }
            | StoreError::Corrupt { .. } => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Store(e) => e.into(),
            AppError::Runtime(e) => ApiError::Conflict(e.to_string()),
            AppError::Load(e) => ApiError::Upstream(e.to_string()),
            AppError::Call(e) => ApiError::Upstream(e.to_string()),
            AppError::Pull(e) => ApiError::Upstream(e.to_string()),
            AppError::Rules(e) => ApiError::BadRequest(e),
            AppError::Secret(e) => ApiError::Internal(e.to_string()),
            AppError::Action(e) => ApiError::BadRequest(e.to_string()),
            AppError::NotConfigured(e) => ApiError::Conflict(e),
            AppError::NotFound(e) => ApiError::NotFound(e),
            AppError::Invalid(e) => ApiError::BadRequest(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = request_id();
        let status = self.status();
        let internal = matches!(self, ApiError::Internal(_) | ApiError::Unavailable(_));
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), error = %detail, "internal error");
                "something went wrong inside Trueup; the log has the details under this request id"
                    .to_owned()
            }
            ApiError::Unavailable(detail) => {
                tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), error = %detail, "store unavailable");
                "the store is not reachable; try again shortly".to_owned()
            }
            ApiError::Unauthenticated(m)
            | ApiError::NotFound(m)
            | ApiError::BadRequest(m)
            | ApiError::Unprocessable(m)
            | ApiError::Conflict(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::Upstream(m)
            | ApiError::Forbidden { message: m, .. }
            | ApiError::TooManyRequests { message: m, .. } => m.clone(),
        };
        let body = Body {
            error: Detail {
                code: self.code(),
                message: &message,
                request_id: if internal { request_id } else { None },
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::TooManyRequests { retry_after, .. } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body whose rejections are answered as [`ApiError`]s.
///
/// Stricter than `axum::Json`: the body must be sent as
/// `application/json` (or a `+json` type), else 415; and it must be a JSON
/// object, else 400 — serde reads a struct from an array by position, so
/// `[false]` once passed for `{"enabled": false}` and disabled an admin.
/// Unknown fields are refused by `deny_unknown_fields` on every request
/// type; errors name the JSON path.
pub struct JsonBody<T>(pub T);

/// Whether `content_type` is JSON: `application/json` or
/// `application/<something>+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Reads `bytes` as a JSON object of type `T`.
///
/// # Errors
/// [`ApiError::BadRequest`] naming what is wrong and where.
pub fn json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        let found = match &value {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(_) => "an object",
        };
        return Err(ApiError::BadRequest(format!(
            "the body must be a JSON object with the documented fields, not {found}"
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!(" at {path}")
        };
        ApiError::BadRequest(format!("the body is not valid{at}: {}", e.inner()))
    })
}

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !is_json(&content_type) {
            return Err(ApiError::UnsupportedMediaType(if content_type.is_empty() {
                "send the body as JSON with Content-Type: application/json".to_owned()
            } else {
                format!(
                    "the body was sent as {content_type:?}; send it as JSON with Content-Type: application/json"
                )
            }));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
        json_object(&bytes).map(JsonBody)
    }
}

/// A JSON object body that may be left out: an empty (or all-whitespace)
/// body reads as `T::default()`; anything else is held to [`JsonBody`]'s
/// rules (JSON `Content-Type`, an object of the documented fields).
pub struct OptionalJsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for OptionalJsonBody<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        // Read through `Bytes`' extractor so the router's body limit holds.
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        let mut again = axum::extract::Request::new(axum::body::Body::from(bytes));
        if let Some(content_type) = content_type {
            again
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        JsonBody::from_request(again, state)
            .await
            .map(|JsonBody(value)| Self(value))
    }
}

/// Query parameters whose rejections are answered as [`ApiError`]s.
pub struct QueryParams<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parse_query(&parts.uri).map(QueryParams)
    }
}

/// Parses a URI's query string into `T`.
///
/// # Errors
/// [`ApiError::BadRequest`] naming the problem.
pub fn parse_query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> ApiResult<T> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17 (4): a JSON body must be an object; an array is not read
    /// as a struct by position.
    #[test]
    fn json_bodies_must_be_objects() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Change {
            enabled: bool,
        }
        for body in ["[false]", "false", "null", "\"x\"", "3"] {
            let error = json_object::<Change>(body.as_bytes()).expect_err(body);
            assert!(
                matches!(&error, ApiError::BadRequest(m) if m.contains("must be a JSON object")),
                "{body}: {error:?}"
            );
        }
        let unknown = json_object::<Change>(br#"{"enabled": false, "role": "admin"}"#)
            .expect_err("unknown field");
        assert!(
            matches!(&unknown, ApiError::BadRequest(m) if m.contains("unknown field `role`")),
            "{unknown:?}"
        );
        assert!(json_object::<Change>(br#"{"enabled": false}"#).is_ok());
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json(""));
        assert_eq!(
            ApiError::UnsupportedMediaType("x".into()).status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn internal_errors_are_hidden_and_others_are_said() {
        let hidden = ApiError::from(StoreError::Database {
            operation: "list cards",
            table: "cards",
            problem: "disk I/O error at /var/lib/secret/path".into(),
        });
        assert_eq!(hidden.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let response = hidden.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let said = ApiError::from(AppError::NotFound("no card abc".into()));
        assert_eq!(said.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            ApiError::from(AppError::Invalid("bad".into())).status(),
            StatusCode::BAD_REQUEST
        );
        let limited = ApiError::TooManyRequests {
            message: "slow down".into(),
            retry_after: 42,
        }
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "42");
    }
}
