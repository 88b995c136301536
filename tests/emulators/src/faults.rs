//! Fault switches and request accounting shared by every emulator.
//!
//! Tests (and the demo) flip switches over HTTP on the emulator itself:
//!
//! - `GET /_emulator/faults` shows the current [`FaultPlan`];
//! - `POST /_emulator/faults` with a JSON [`FaultPlan`] replaces it;
//! - `DELETE /_emulator/faults` clears it;
//! - `GET /_emulator/stats` returns [`RequestStats`] (requests seen, by
//!   method and path, and the faults injected);
//! - `DELETE /_emulator/stats` resets the counters.
//!
//! The switches count down: `{"server_errors": 3}` fails the next three
//! matching requests with a 500 and then behaves normally again, which is how
//! a transient fault looks to a client. `path_contains` limits a plan to
//! matching paths. Admin paths (`/_emulator/...`) never get faults and are
//! never counted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

/// Which faults to inject into the next matching requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultPlan {
    /// Answer this many requests with `429 Too Many Requests`.
    pub rate_limited: u32,
    /// The `Retry-After` seconds sent with each injected 429.
    pub retry_after_secs: u32,
    /// Answer this many requests with `500 Internal Server Error`.
    pub server_errors: u32,
    /// Delay this many responses by `slow_ms` before answering.
    pub slow: u32,
    /// The delay for `slow` responses, in milliseconds.
    pub slow_ms: u64,
    /// Cut this many JSON response bodies in half (invalid JSON, 200 status).
    pub truncated: u32,
    /// While true, list endpoints answer with a "next page" link that points
    /// back at the page just served, forever. Each emulator's paging code
    /// consults [`Faults::paging_loop`].
    pub paging_loop: bool,
    /// Only requests whose path contains this string are affected.
    pub path_contains: Option<String>,
}

/// What an emulator has seen since its counters were last reset.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestStats {
    /// Requests answered, admin paths excluded.
    pub total: u64,
    /// Requests by `"METHOD /path"`, the path without its query string.
    pub by_route: BTreeMap<String, u64>,
    /// Faults injected, by kind (`rate_limited`, `server_error`, `slow`,
    /// `truncated`).
    pub injected: BTreeMap<String, u64>,
}

/// The shared fault state of one emulator.
#[derive(Debug, Default)]
pub struct Faults {
    plan: Mutex<FaultPlan>,
    stats: Mutex<RequestStats>,
}

/// A fault chosen for one request.
enum Injected {
    RateLimited(u32),
    ServerError,
    Slow(Duration),
    Truncated,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these plain counters in a
    // state worse than "slightly off", so recover the guard.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Faults {
    /// A fault state with no faults planned.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the plan (as `POST /_emulator/faults` does).
    pub fn set_plan(&self, plan: FaultPlan) {
        *lock(&self.plan) = plan;
    }

    /// The current plan.
    pub fn plan(&self) -> FaultPlan {
        lock(&self.plan).clone()
    }

    /// Whether list endpoints serving `path` must loop their paging.
    pub fn paging_loop(&self, path: &str) -> bool {
        let plan = lock(&self.plan);
        plan.paging_loop
            && plan
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RequestStats {
        lock(&self.stats).clone()
    }

    /// Requests seen for `"METHOD /path"`.
    pub fn count(&self, route: &str) -> u64 {
        lock(&self.stats).by_route.get(route).copied().unwrap_or(0)
    }

    /// Resets the counters.
    pub fn reset_stats(&self) {
        *lock(&self.stats) = RequestStats::default();
    }

    fn record(&self, route: String, injected: Option<&str>) {
        let mut stats = lock(&self.stats);
        stats.total += 1;
        *stats.by_route.entry(route).or_default() += 1;
        if let Some(kind) = injected {
            *stats.injected.entry(kind.to_owned()).or_default() += 1;
        }
    }

    fn take_fault(&self, path: &str) -> Option<Injected> {
        let mut plan = lock(&self.plan);
        if plan
            .path_contains
            .as_deref()
            .is_some_and(|p| !path.contains(p))
        {
            return None;
        }
        if plan.rate_limited > 0 {
            plan.rate_limited -= 1;
            return Some(Injected::RateLimited(plan.retry_after_secs));
        }
        if plan.server_errors > 0 {
            plan.server_errors -= 1;
            return Some(Injected::ServerError);
        }
        if plan.slow > 0 {
            plan.slow -= 1;
            return Some(Injected::Slow(Duration::from_millis(plan.slow_ms)));
        }
        if plan.truncated > 0 {
            plan.truncated -= 1;
            return Some(Injected::Truncated);
        }
        None
    }
}

/// Wraps an emulator's API router with fault injection, request accounting
/// and the `/_emulator` admin routes.
pub fn wrap(api: Router, faults: Arc<Faults>) -> Router {
    let admin = Router::new()
        .route(
            "/_emulator/faults",
            get(get_plan).post(post_plan).delete(delete_plan),
        )
        .route("/_emulator/stats", get(get_stats).delete(delete_stats))
        .with_state(faults.clone());
    api.layer(middleware::from_fn_with_state(faults, inject))
        .merge(admin)
}

async fn inject(State(faults): State<Arc<Faults>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let route = format!("{} {}", request.method(), path);
    match faults.take_fault(&path) {
        Some(Injected::RateLimited(secs)) => {
            faults.record(route, Some("rate_limited"));
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(serde_json::json!({"message": "Rate limit exceeded. Try again later."})),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
        Some(Injected::ServerError) => {
            faults.record(route, Some("server_error"));
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({"message": "An unexpected error occurred."})),
            )
                .into_response()
        }
        Some(Injected::Slow(delay)) => {
            faults.record(route, Some("slow"));
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Injected::Truncated) => {
            faults.record(route, Some("truncated"));
            let response = next.run(request).await;
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let cut = bytes.slice(0..bytes.len() / 2);
            let mut response = Response::from_parts(parts, Body::from(cut));
            response.headers_mut().remove(header::CONTENT_LENGTH);
            response
        }
        None => {
            faults.record(route, None);
            next.run(request).await
        }
    }
}

async fn get_plan(State(faults): State<Arc<Faults>>) -> Json<FaultPlan> {
    Json(faults.plan())
}

async fn post_plan(State(faults): State<Arc<Faults>>, Json(plan): Json<FaultPlan>) -> StatusCode {
    faults.set_plan(plan);
    StatusCode::NO_CONTENT
}

async fn delete_plan(State(faults): State<Arc<Faults>>) -> StatusCode {
    faults.set_plan(FaultPlan::default());
    StatusCode::NO_CONTENT
}

async fn get_stats(State(faults): State<Arc<Faults>>) -> Json<RequestStats> {
    Json(faults.stats())
}

async fn delete_stats(State(faults): State<Arc<Faults>>) -> StatusCode {
    faults.reset_stats();
    StatusCode::NO_CONTENT
}

/// A sliding-window request limit (e.g. ConnectWise's per-minute rate or
/// Autotask's hourly budget).
#[derive(Debug)]
pub struct RateWindow {
    limit: usize,
    window: Duration,
    seen: Mutex<VecDeque<Instant>>,
}

impl RateWindow {
    /// At most `limit` requests in any `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            seen: Mutex::new(VecDeque::new()),
        }
    }

    /// Records a request if it fits; otherwise says how long until one
    /// would fit.
    pub fn admit(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut seen = lock(&self.seen);
        while seen
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            seen.pop_front();
        }
        if seen.len() >= self.limit {
            let oldest = seen.front().copied().unwrap_or(now);
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        seen.push_back(now);
        Ok(())
    }

    /// Requests counted in the current window.
    pub fn used(&self) -> usize {
        let now = Instant::now();
        lock(&self.seen)
            .iter()
            .filter(|t| now.duration_since(**t) < self.window)
            .count()
    }

    /// The configured limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// A cap on requests in flight at once (Autotask's per-endpoint thread
/// limit). Take a [`ConcurrencyPermit`] for the life of a request.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    limit: usize,
    in_flight: Arc<Mutex<usize>>,
}

/// Held while a request is in flight; releases its slot when dropped.
#[derive(Debug)]
pub struct ConcurrencyPermit {
    in_flight: Arc<Mutex<usize>>,
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        let mut n = lock(&self.in_flight);
        *n = n.saturating_sub(1);
    }
}

impl ConcurrencyLimit {
    /// At most `limit` requests at once.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            in_flight: Arc::new(Mutex::new(0)),
        }
    }

    /// A permit, or `None` when `limit` requests are already in flight.
    pub fn try_acquire(&self) -> Option<ConcurrencyPermit> {
        let mut n = lock(&self.in_flight);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(ConcurrencyPermit {
            in_flight: self.in_flight.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_count_down_and_then_stop() {
        let faults = Faults::default();
        faults.set_plan(FaultPlan {
            server_errors: 2,
            ..FaultPlan::default()
        });
        assert!(matches!(
            faults.take_fault("/x"),
            Some(Injected::ServerError)
        ));
        assert!(matches!(
            faults.take_fault("/x"),
            Some(Injected::ServerError)
        ));
        assert!(faults.take_fault("/x").is_none());
    }

    #[test]
    fn path_filter_limits_a_plan() {
        let faults = Faults::default();
        faults.set_plan(FaultPlan {
            rate_limited: 1,
            path_contains: Some("/agreements".into()),
            ..FaultPlan::default()
        });
        assert!(faults.take_fault("/company/companies").is_none());
        assert!(matches!(
            faults.take_fault("/finance/agreements"),
            Some(Injected::RateLimited(_))
        ));
    }

    #[test]
    fn a_rate_window_refuses_past_its_limit() {
        let window = RateWindow::new(2, Duration::from_secs(60));
        assert!(window.admit().is_ok());
        assert!(window.admit().is_ok());
        let wait = window.admit().expect_err("third request must be refused");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(58));
        assert_eq!(window.used(), 2);
    }

    #[test]
    fn a_concurrency_limit_frees_slots_on_drop() {
        let limit = ConcurrencyLimit::new(1);
        let permit = limit.try_acquire();
        assert!(permit.is_some());
        assert!(limit.try_acquire().is_none());
        drop(permit);
        assert!(limit.try_acquire().is_some());
    }
}
