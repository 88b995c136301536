//! The request middleware around every route (the web API's and the push
//! API's): request id, metrics and access log, security headers.
//!
//! The request id and the headers are `tower-http` layers. The access log
//! and the metrics stay one small hand-written middleware: they need the
//! matched route and the caller the auth guard found (a response
//! extension), and the access line keeps its flat JSON fields, which
//! `TraceLayer` would move into a span. No timeout, compression or global
//! body limit is applied: the live event stream must stay open, and each
//! body-reading route sets its own limit (the push API answers its own
//! `too_large` JSON).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::web::AppState;
use crate::web::auth::Principal;
use crate::web::error::REQUEST_ID;

/// Header carrying the request id (taken from the client when it is a
/// short token, generated otherwise).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest client-supplied request id kept.
const MAX_REQUEST_ID_LEN: usize = 64;

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// `routes` with the middleware of every route around them; `state`
/// holds the metrics.
pub fn around(routes: Router, state: AppState) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let hsts = hsts_value(&state.app.config().server);
    routes.layer(
        ServiceBuilder::new()
            .layer(middleware::map_request(drop_unusable_request_id))
            .layer(SetRequestIdLayer::new(
                request_id.clone(),
                ProcessRequestIds,
            ))
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(SetResponseHeaderLayer::overriding(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("DENY"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::STRICT_TRANSPORT_SECURITY,
                move |_: &axum::response::Response| hsts.clone(),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ))
            .layer(middleware::from_fn_with_state(state, observe)),
    )
}

/// The `Strict-Transport-Security` header to send: the configured value
/// when served over HTTPS (`secure_cookies`), none otherwise (over plain
/// HTTP browsers ignore it) or when configured empty or unusable.
pub fn hsts_value(server: &crate::config::ServerConfig) -> Option<HeaderValue> {
    let value = server.hsts.trim();
    if !server.secure_cookies || value.is_empty() {
        return None;
    }
    HeaderValue::from_str(value).ok()
}

/// Request ids of this process: a random prefix and a counter.
#[derive(Debug, Clone, Copy)]
struct ProcessRequestIds;

impl MakeRequestId for ProcessRequestIds {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&new_request_id())
            .ok()
            .map(RequestId::new)
    }
}

fn new_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let random = crate::auth::random_token();
        random.chars().take(8).collect()
    });
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn usable_request_id(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(|value| {
        !value.is_empty()
            && value.len() <= MAX_REQUEST_ID_LEN
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

/// Kept by hand: `SetRequestIdLayer` keeps any id a client sends, and ours
/// must be a short plain token (docs/api.md), so others are dropped first.
async fn drop_unusable_request_id(mut req: Request) -> Request {
    if req
        .headers()
        .get(REQUEST_ID_HEADER)
        .is_some_and(|value| !usable_request_id(value))
    {
        req.headers_mut().remove(REQUEST_ID_HEADER);
    }
    req
}

/// Metrics and the access log, with the request id in scope for error
/// bodies ([`REQUEST_ID`]).
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_default();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let path = req.uri().path().to_owned();
    let response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    let elapsed = started.elapsed();
    let status = response.status();
    state
        .shared
        .metrics
        .record_request(&method, &route, status, elapsed);
    let user = response
        .extensions()
        .get::<Principal>()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    tracing::info!(
        target: "trueup::access",
        request_id = %id,
        method = %method,
        path = %path,
        route = %route,
        status = status.as_u16(),
        micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        user = %user,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_client_ids_are_kept() {
        for good in ["abc", "req-1.2_3", &"x".repeat(MAX_REQUEST_ID_LEN)] {
            assert!(
                usable_request_id(&HeaderValue::from_str(good).expect("header")),
                "{good}"
            );
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(MAX_REQUEST_ID_LEN + 1)] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).expect("header");
            assert!(!usable_request_id(&value), "{bad}");
        }
    }
}
