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
//!
//! Two switches reproduce a PSA that takes a write but answers something
//! other than what a client expects (issue 13), so that exactly-once can be
//! tested against every answer:
//!
//! - `{"alter_written": 1, "alter_field": "price"}`: the next write that
//!   creates or updates a line stores a different value than sent for the
//!   named field and acknowledges with 2xx, returning the stored record as
//!   the real API would. `date` moves the effective/start date to the first
//!   of the following month (a PSA aligning a change to its billing
//!   period), `price` recalculates the unit price as the catalogue's
//!   monthly price — the sent price ÷ 12, the issue's "sent 72, stored 6" —
//!   and `quantity` rounds down to a pack of 5 ([`altered_date`],
//!   [`altered_price`], [`altered_quantity`]). Each PSA emulator consults
//!   [`Faults::take_alteration`] in its write handlers, which say which
//!   writes count.
//! - `{"ack_then_timeout": 1, "ack_delay_ms": 4000}`: the next write is
//!   applied, then its response is held for `ack_delay_ms` — longer than
//!   the client's timeout, so the client cannot know it landed.
//!
//! A *write* here is any request but a `GET`, except searches sent as
//! `POST …/query` (Autotask) and token requests (`…/token`). With
//! `writes_only`, the countdown switches (`rate_limited`, `server_errors`,
//! `unavailable`, `slow`, `truncated`) also skip everything but writes, so
//! a fault can be aimed at the write itself rather than the reads before
//! it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Which faults to inject into the next matching requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultPlan {
    /// Answer this many requests with `429 Too Many Requests`.
    pub rate_limited: u32,
    /// The `Retry-After` seconds sent with each injected 429 or 503.
    pub retry_after_secs: u32,
    /// Answer this many requests with `500 Internal Server Error`.
    pub server_errors: u32,
    /// Answer this many requests with `503 Service Unavailable` and
    /// `Retry-After: retry_after_secs` (a refusal before anything is
    /// applied, as a PSA under maintenance answers).
    pub unavailable: u32,
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
    /// Only writes (see the module docs) are affected by the countdown
    /// switches.
    pub writes_only: bool,
    /// Store a different value than sent for [`FaultPlan::alter_field`] on
    /// this many writes (which writes count is each emulator's: those that
    /// create or update a line carrying the field).
    pub alter_written: u32,
    /// The field `alter_written` changes.
    pub alter_field: Option<AlteredField>,
    /// Apply this many writes, then hold each response for `ack_delay_ms`.
    pub ack_then_timeout: u32,
    /// How long an `ack_then_timeout` response is held, in milliseconds.
    pub ack_delay_ms: u64,
}

/// A written field a PSA may store differently than sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlteredField {
    /// The effective (start) date.
    Date,
    /// The unit price.
    Price,
    /// The quantity.
    Quantity,
}

impl AlteredField {
    /// The name used in JSON and in the injected-fault counters.
    pub fn name(self) -> &'static str {
        match self {
            AlteredField::Date => "date",
            AlteredField::Price => "price",
            AlteredField::Quantity => "quantity",
        }
    }
}

/// The date an altering PSA stores for `sent`: the first of the following
/// month (always a different day).
pub fn altered_date(sent: NaiveDate) -> NaiveDate {
    let (year, month) = if sent.month() == 12 {
        (sent.year() + 1, 1)
    } else {
        (sent.year(), sent.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(sent)
}

/// The unit price an altering PSA stores for `sent`: recalculated as the
/// catalogue's monthly price, `sent / 12` to the cent (72.00 → 6.00).
pub fn altered_price(sent: Decimal) -> Decimal {
    (sent / Decimal::from(12)).round_dp(2)
}

/// The quantity an altering PSA stores for `sent`: rounded down to a pack
/// of 5; one already on a pack boundary loses a pack (never below 0, and
/// 0 becomes 5), so the result always differs. The sign is kept (an
/// Autotask `unitChange` may be negative).
pub fn altered_quantity(sent: Decimal) -> Decimal {
    let pack = Decimal::from(5);
    let size = sent.abs();
    let mut rounded = (size / pack).floor() * pack;
    if rounded == size {
        rounded = if size.is_zero() { pack } else { size - pack };
    }
    if sent.is_sign_negative() {
        -rounded
    } else {
        rounded
    }
}

/// Whether `method path` is a write: anything but a `GET`, except
/// `POST …/query` searches and token requests.
pub fn is_write(method: &Method, path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    *method != Method::GET
        && *method != Method::HEAD
        && !lower.ends_with("/query")
        && !lower.ends_with("/query/count")
        && !lower.ends_with("/token")
}

/// What an emulator has seen since its counters were last reset.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestStats {
    /// Requests answered, admin paths excluded.
    pub total: u64,
    /// Requests by `"METHOD /path"`, the path without its query string.
    pub by_route: BTreeMap<String, u64>,
    /// Faults injected, by kind (`rate_limited`, `server_error`, `slow`,
    /// `truncated`, `unavailable`, `ack_then_timeout`, `altered_date`, `altered_price`,
    /// `altered_quantity`).
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
    Unavailable(u32),
    Slow(Duration),
    Truncated,
    AckThenTimeout(Duration),
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

    /// The field the next write would store altered, without counting it
    /// down: a handler that validates before it stores peeks first and
    /// takes the alteration ([`Faults::take_alteration`]) when it commits,
    /// so a refused write does not use it up.
    pub fn planned_alteration(&self, path: &str) -> Option<AlteredField> {
        let plan = lock(&self.plan);
        if plan.alter_written == 0
            || plan
                .path_contains
                .as_deref()
                .is_some_and(|p| !path.contains(p))
        {
            return None;
        }
        plan.alter_field
    }

    /// The field the next write must store altered, counting the write
    /// down; `None` when no alteration is planned for `path`. Emulators
    /// call this from the write handlers that create or update a line.
    pub fn take_alteration(&self, path: &str) -> Option<AlteredField> {
        let mut plan = lock(&self.plan);
        if plan.alter_written == 0
            || plan
                .path_contains
                .as_deref()
                .is_some_and(|p| !path.contains(p))
        {
            return None;
        }
        let field = plan.alter_field?;
        plan.alter_written -= 1;
        drop(plan);
        let mut stats = lock(&self.stats);
        *stats
            .injected
            .entry(format!("altered_{}", field.name()))
            .or_default() += 1;
        Some(field)
    }

    fn take_fault(&self, method: &Method, path: &str) -> Option<Injected> {
        let mut plan = lock(&self.plan);
        if plan
            .path_contains
            .as_deref()
            .is_some_and(|p| !path.contains(p))
        {
            return None;
        }
        let write = is_write(method, path);
        if plan.ack_then_timeout > 0 && write {
            plan.ack_then_timeout -= 1;
            return Some(Injected::AckThenTimeout(Duration::from_millis(
                plan.ack_delay_ms,
            )));
        }
        if plan.writes_only && !write {
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
        if plan.unavailable > 0 {
            plan.unavailable -= 1;
            return Some(Injected::Unavailable(plan.retry_after_secs));
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
    match faults.take_fault(request.method(), &path) {
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
        Some(Injected::Unavailable(secs)) => {
            faults.record(route, Some("unavailable"));
            // With Retry-After, as a PSA down for maintenance answers: a
            // refusal before any work.
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"message": "The service is temporarily unavailable."})),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
        Some(Injected::Slow(delay)) => {
            faults.record(route, Some("slow"));
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Injected::AckThenTimeout(delay)) => {
            faults.record(route, Some("ack_then_timeout"));
            // Apply first, then keep the client waiting past its timeout.
            let response = next.run(request).await;
            tokio::time::sleep(delay).await;
            response
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
            faults.take_fault(&Method::GET, "/x"),
            Some(Injected::ServerError)
        ));
        assert!(matches!(
            faults.take_fault(&Method::GET, "/x"),
            Some(Injected::ServerError)
        ));
        assert!(faults.take_fault(&Method::GET, "/x").is_none());
    }

    #[test]
    fn path_filter_limits_a_plan() {
        let faults = Faults::default();
        faults.set_plan(FaultPlan {
            rate_limited: 1,
            path_contains: Some("/agreements".into()),
            ..FaultPlan::default()
        });
        assert!(
            faults
                .take_fault(&Method::GET, "/company/companies")
                .is_none()
        );
        assert!(matches!(
            faults.take_fault(&Method::GET, "/finance/agreements"),
            Some(Injected::RateLimited(_))
        ));
    }

    #[test]
    fn ack_then_timeout_and_writes_only_skip_reads() {
        let faults = Faults::default();
        faults.set_plan(FaultPlan {
            ack_then_timeout: 1,
            ack_delay_ms: 50,
            server_errors: 1,
            unavailable: 1,
            writes_only: true,
            ..FaultPlan::default()
        });
        let query = "/atservicesrest/v1.0/Companies/query";
        assert!(faults.take_fault(&Method::GET, "/additions").is_none());
        assert!(faults.take_fault(&Method::POST, query).is_none());
        assert!(faults.take_fault(&Method::POST, "/auth/token").is_none());
        assert!(matches!(
            faults.take_fault(&Method::POST, "/additions"),
            Some(Injected::AckThenTimeout(d)) if d == Duration::from_millis(50)
        ));
        assert!(matches!(
            faults.take_fault(&Method::PATCH, "/additions/7"),
            Some(Injected::ServerError)
        ));
        assert!(matches!(
            faults.take_fault(&Method::POST, "/additions"),
            Some(Injected::Unavailable(_))
        ));
        assert!(faults.take_fault(&Method::POST, "/additions").is_none());
    }

    #[test]
    fn an_alteration_counts_down_and_is_counted() {
        let faults = Faults::default();
        faults.set_plan(FaultPlan {
            alter_written: 1,
            alter_field: Some(AlteredField::Price),
            ..FaultPlan::default()
        });
        assert_eq!(faults.take_alteration("/x"), Some(AlteredField::Price));
        assert_eq!(faults.take_alteration("/x"), None);
        assert_eq!(faults.stats().injected.get("altered_price"), Some(&1));
    }

    #[test]
    fn altered_values_always_differ_from_what_was_sent() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        assert_eq!(altered_date(date(2026, 12, 7)), date(2027, 1, 1));
        assert_eq!(altered_date(date(2026, 11, 1)), date(2026, 12, 1));
        assert_eq!(altered_price(Decimal::from(72)), Decimal::from(6));
        assert_eq!(altered_price(Decimal::new(3950, 2)), Decimal::new(329, 2));
        for (sent, stored) in [(13, 10), (10, 5), (3, 0), (0, 5), (-7, -5), (-5, 0)] {
            assert_eq!(
                altered_quantity(Decimal::from(sent)),
                Decimal::from(stored),
                "{sent}"
            );
        }
        assert_eq!(altered_quantity(Decimal::new(125, 1)), Decimal::from(10));
    }

    #[test]
    fn a_plan_names_its_altered_field_in_snake_case() {
        let plan: FaultPlan =
            serde_json::from_str(r#"{"alter_written": 2, "alter_field": "quantity"}"#)
                .expect("a plan");
        assert_eq!(plan.alter_field, Some(AlteredField::Quantity));
        assert_eq!(plan.alter_written, 2);
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
