//! Helpers shared by the PSA emulators ([`crate::connectwise`],
//! [`crate::autotask`], [`crate::halopsa`]).
//!
//! - [`CustomerPlan`]: what the emulated MSP bills one customer in its PSA,
//!   the same plan for every PSA so a customer looks alike in all three
//!   (the main contract's lines are exactly [`catalog::billed_lines`]; the
//!   extra contracts a connector must filter out carry stale copies);
//! - calendar arithmetic on inclusive date ranges;
//! - money as exact JSON numbers, query strings, comparisons of typed field
//!   values (used by the ConnectWise `conditions` and Autotask filter
//!   evaluators), and the write log behind each emulator's
//!   `/_emulator/<psa>/writes` route.
//!
//! Credential parsing, `Retry-After` arithmetic and token bookkeeping live
//! in [`crate::vendor_common`] and are reused from there.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;
use serde_json::Value;

use crate::catalog::{self, PRODUCTS, Product};
use crate::world::{Customer, SeededRng, World};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is replaced or appended as a whole; a panic cannot
    // leave it half-written.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// Calendar
// ---------------------------------------------------------------------------

/// The emulator's "today": `pinned` when a test pins it, otherwise the UTC
/// calendar date when the emulator builds its data.
pub fn today(pinned: Option<NaiveDate>) -> NaiveDate {
    pinned.unwrap_or_else(|| Utc::now().date_naive())
}

/// The first day of `date`'s month.
pub fn month_start(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// The last day of `date`'s month (inclusive).
pub fn month_end(date: NaiveDate) -> NaiveDate {
    add_months(month_start(date), 1).pred_opt().unwrap_or(date)
}

/// `date` moved by `months` (negative moves back); the day is clamped to the
/// target month's length, e.g. 31 Jan + 1 month = 28/29 Feb.
pub fn add_months(date: NaiveDate, months: i32) -> NaiveDate {
    let shifted = if months >= 0 {
        date.checked_add_months(Months::new(months.unsigned_abs()))
    } else {
        date.checked_sub_months(Months::new(months.unsigned_abs()))
    };
    shifted.unwrap_or(date)
}

/// Days in the inclusive range `start..=end` (0 when `end < start`).
pub fn days_inclusive(start: NaiveDate, end: NaiveDate) -> i64 {
    ((end - start).num_days() + 1).max(0)
}

/// An inclusive billing period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First day billed.
    pub start: NaiveDate,
    /// Last day billed (inclusive).
    pub end: NaiveDate,
}

impl Period {
    /// Whether `date` falls inside the period.
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.start <= date && date <= self.end
    }

    /// Days in the period.
    pub fn days(&self) -> i64 {
        days_inclusive(self.start, self.end)
    }
}

/// The period of `months` months containing `date`, when periods start at
/// `anchor` and repeat every `months` months (`months` ≥ 1). Dates before
/// the anchor fall in periods counted backwards from it.
pub fn period_containing(anchor: NaiveDate, months: u32, date: NaiveDate) -> Period {
    let months = i32::try_from(months.max(1)).unwrap_or(1);
    let diff = (date.year() - anchor.year()) * 12 + date.month0() as i32 - anchor.month0() as i32;
    let mut index = diff.div_euclid(months);
    let mut start = add_months(anchor, index * months);
    if start > date {
        index -= 1;
        start = add_months(anchor, index * months);
    }
    let mut end = add_months(anchor, (index + 1) * months)
        .pred_opt()
        .unwrap_or(start);
    if end < date {
        start = end.succ_opt().unwrap_or(end);
        end = add_months(anchor, (index + 2) * months)
            .pred_opt()
            .unwrap_or(start);
    }
    Period { start, end }
}

/// Parses the dates PSAs send and accept: `2025-01-01`,
/// `2025-01-01T00:00:00`, `2025-01-01T00:00:00Z`, with or without
/// fractional seconds or an offset. Returns the instant in UTC (a date alone
/// or a time without offset is taken as UTC).
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|naive| naive.and_utc())
}

/// The calendar date of a PSA date string (see [`parse_datetime`]).
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    parse_datetime(text).map(|instant| instant.date_naive())
}

/// `date` as ConnectWise and Autotask send dates: `2025-01-01T00:00:00Z`.
pub fn date_z(date: NaiveDate) -> String {
    format!("{}T00:00:00Z", date.format("%Y-%m-%d"))
}

/// An instant as `2025-01-01T08:30:00Z` (whole seconds).
pub fn instant_z(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

// ---------------------------------------------------------------------------
// Money and JSON
// ---------------------------------------------------------------------------

/// A decimal as a JSON number, e.g. `26.4` or `45.0`. Values keep their
/// shortest exact decimal spelling for the 2–4 decimal places money and
/// quantities use.
pub fn money(value: Decimal) -> Value {
    value
        .normalize()
        .to_f64()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// A JSON number (or numeric string) as a decimal, exactly as written.
pub fn decimal_from_json(value: &Value) -> Option<Decimal> {
    let text = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.trim().to_owned(),
        _ => return None,
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

/// Cents as a decimal amount, e.g. `2640` → `26.40`.
pub fn cents(amount: i64) -> Decimal {
    Decimal::new(amount, 2)
}

/// Rounds money to cents, half away from zero.
pub fn round_money(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

// ---------------------------------------------------------------------------
// Query strings and paths
// ---------------------------------------------------------------------------

/// A request's query string, decoded, in order. Names are matched
/// case-insensitively, as the .NET services behind all three PSAs do.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string (`None` = no query).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|raw| {
                url::form_urlencoded::parse(raw.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every pair whose name is not one of `skip`, in order.
    pub fn without<'a>(&'a self, skip: &'a [&str]) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.pairs
            .iter()
            .filter(|(k, _)| !skip.iter().any(|s| k.eq_ignore_ascii_case(s)))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Builds a query string from pairs, percent-encoding each part.
pub fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

/// The lower-cased segments of a path after `prefix` (matched
/// case-insensitively, as the PSAs' IIS front ends do), or `None` when the
/// path is outside it. Segments are ids and entity names, so no
/// percent-decoding is needed.
pub fn segments_after(path: &str, prefix: &str) -> Option<Vec<String>> {
    let lower = path.to_ascii_lowercase();
    let rest = lower.strip_prefix(&prefix.to_ascii_lowercase())?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(
        rest.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// Typed values for filters
// ---------------------------------------------------------------------------

/// The declared type of a filterable field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Whole number (ids, enums).
    Int,
    /// Decimal number (money, quantities).
    Decimal,
    /// Text.
    Text,
    /// `true`/`false`.
    Bool,
    /// Date or date-time.
    DateTime,
}

impl FieldType {
    /// A human name for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            FieldType::Int => "whole number",
            FieldType::Decimal => "number",
            FieldType::Text => "text",
            FieldType::Bool => "boolean",
            FieldType::DateTime => "date",
        }
    }
}

/// A field value (or a literal in a filter) being compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// Absent or null.
    Null,
    /// Boolean.
    Bool(bool),
    /// Any number.
    Num(Decimal),
    /// Text.
    Str(Cow<'a, str>),
    /// An instant.
    Time(DateTime<Utc>),
}

impl Val<'_> {
    /// Whether the value is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// Reads a JSON value as a field of type `ty` (strings holding dates
    /// become instants; anything that does not fit is null).
    pub fn from_json(value: Option<&Value>, ty: FieldType) -> Val<'_> {
        match (value, ty) {
            (None | Some(Value::Null), _) => Val::Null,
            (Some(Value::Bool(b)), FieldType::Bool) => Val::Bool(*b),
            (Some(v @ Value::Number(_)), FieldType::Int | FieldType::Decimal) => {
                decimal_from_json(v).map_or(Val::Null, Val::Num)
            }
            (Some(Value::String(s)), FieldType::Text) => Val::Str(Cow::Borrowed(s)),
            (Some(Value::String(s)), FieldType::DateTime) => {
                parse_datetime(s).map_or(Val::Null, Val::Time)
            }
            _ => Val::Null,
        }
    }
}

/// Orders two non-null values of the same kind (text case-insensitively,
/// as the PSAs' SQL collations do); `None` for nulls or mixed kinds.
pub fn compare(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => Some(x.cmp(y)),
        (Val::Str(x), Val::Str(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Val::Time(x), Val::Time(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Whether `text` matches `pattern`, case-insensitively, where `*` and `%`
/// stand for any run of characters and `_` for exactly one.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || (p[pi] != '*' && p[pi] != '%' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
        pi += 1;
    }
    pi == p.len()
}

// ---------------------------------------------------------------------------
// Write log
// ---------------------------------------------------------------------------

/// One write request an emulator received (after authentication), in
/// arrival order.
#[derive(Debug, Clone, Serialize)]
pub struct WriteRecord {
    /// 1-based position in the log.
    pub seq: u64,
    /// When the emulator received it.
    pub at: DateTime<Utc>,
    /// HTTP method.
    pub method: String,
    /// Request path (no query string).
    pub path: String,
    /// The status answered; 2xx means the change was applied.
    pub status: u16,
    /// The request body as JSON (`null` when empty or not JSON).
    pub body: Value,
}

/// Every write an emulator received; served at `/_emulator/<psa>/writes`.
#[derive(Debug, Default)]
pub struct WriteLog {
    records: Mutex<Vec<WriteRecord>>,
}

impl WriteLog {
    /// Appends a write.
    pub fn record(&self, method: &str, path: &str, status: StatusCode, body: &[u8]) {
        let mut records = lock(&self.records);
        let seq = records.len() as u64 + 1;
        records.push(WriteRecord {
            seq,
            at: Utc::now(),
            method: method.to_owned(),
            path: path.to_owned(),
            status: status.as_u16(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        });
    }

    /// A copy of the log.
    pub fn list(&self) -> Vec<WriteRecord> {
        lock(&self.records).clone()
    }

    /// Empties the log.
    pub fn clear(&self) {
        lock(&self.records).clear();
    }
}

/// `GET` (list) and `DELETE` (clear) of `log` at `path`.
pub fn write_log_routes(path: &str, log: Arc<WriteLog>) -> Router {
    Router::new()
        .route(
            path,
            get(
                |axum::extract::State(log): axum::extract::State<Arc<WriteLog>>| async move {
                    Json(log.list())
                },
            )
            .delete(
                |axum::extract::State(log): axum::extract::State<Arc<WriteLog>>| async move {
                    log.clear();
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(log)
}

// ---------------------------------------------------------------------------
// What a customer is billed in the PSA
// ---------------------------------------------------------------------------

/// A contract a connector must usually leave out (or, for
/// [`Extra::Annual`] and [`Extra::Arrears`], handle specially).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    /// Cancelled some months ago; carries stale lines.
    Cancelled,
    /// Still billing one real line, once a year.
    Annual,
    /// Set inactive; carries stale lines.
    Inactive,
    /// Billing one real line in arrears instead of in advance.
    Arrears,
    /// Ended (end date in the past); carries stale lines.
    Expired,
    /// Of a contract type connectors do not select by default (block
    /// hours); carries stale lines.
    OtherType,
    /// Recurring contract with no billing cycle set ("None"); stale lines.
    NoCycle,
    /// A one-time (not recurring) contract; stale lines.
    OneTime,
}

/// Every extra, in the order customers receive them.
pub const EXTRAS: [Extra; 8] = [
    Extra::Cancelled,
    Extra::Annual,
    Extra::Inactive,
    Extra::Arrears,
    Extra::Expired,
    Extra::OtherType,
    Extra::NoCycle,
    Extra::OneTime,
];

impl Extra {
    /// Whether the extra contract bills a real line (moved off the main
    /// contract) rather than stale copies.
    pub fn bills(self) -> bool {
        matches!(self, Extra::Annual | Extra::Arrears)
    }
}

/// One recurring line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedLine {
    /// What is billed.
    pub product: &'static Product,
    /// Units billed.
    pub quantity: u32,
    /// First day billed.
    pub effective: NaiveDate,
}

/// An earlier quantity of a line, replaced at the start of last month (the
/// ConnectWise cut-over pattern: the old addition gets a `cancelledDate`, a
/// new one starts the next day). The line's
/// [`PlannedLine::effective`] is when the old quantity began; the current
/// quantity begins the day after [`Replaced::ended`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replaced {
    /// Index into [`CustomerPlan::lines`] of the line now billed.
    pub line: usize,
    /// The quantity billed before.
    pub old_quantity: u32,
    /// Last day the old quantity was billed (end of the month before last).
    pub ended: NaiveDate,
}

/// What the MSP bills one PSA customer, shared by all three PSA emulators.
///
/// The lines of the main contract plus [`CustomerPlan::moved`] are exactly
/// [`catalog::billed_lines`] of the customer, so connectors that filter the
/// extras correctly see the world's billing truth.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerPlan {
    /// The customer's index in the world.
    pub customer: usize,
    /// Position among PSA customers (0-based), which drives the extras.
    pub position: usize,
    /// First day of the main contract (a 1st of a month, 4–36 months ago).
    pub start: NaiveDate,
    /// Whether the main contract prorates mid-period changes.
    pub prorate: bool,
    /// Lines of the main contract.
    pub lines: Vec<PlannedLine>,
    /// A line billed on the extra contract instead (annual or arrears).
    pub moved: Option<PlannedLine>,
    /// The extra contract, if any.
    pub extra: Option<Extra>,
    /// First day of the extra contract.
    pub extra_start: NaiveDate,
    /// The extra contract's end (cancel date or expiry), when it has one.
    pub extra_end: Option<NaiveDate>,
    /// Stale lines on a non-billing extra contract.
    pub stale: Vec<PlannedLine>,
    /// A line whose quantity changed at the start of last month.
    pub replaced: Option<Replaced>,
    /// Units of a line billed as "do not bill" (e.g. the MSP's spare
    /// workstations), as `(product, quantity)`.
    pub do_not_bill: Option<(&'static Product, u32)>,
    /// Units given free of charge ("no charge").
    pub no_charge: Option<(&'static Product, u32)>,
}

/// The plans of every PSA customer of `world`, in world order, relative to
/// `today`.
pub fn plans(world: &World, today: NaiveDate) -> Vec<CustomerPlan> {
    world
        .psa_customers()
        .enumerate()
        .map(|(position, customer)| plan(world.seed, customer, position, today))
        .collect()
}

fn plan(seed: u64, customer: &Customer, position: usize, today: NaiveDate) -> CustomerPlan {
    let mut rng = SeededRng::stream(seed, "psa-plan", customer.index as u64);
    let this_month = month_start(today);
    let start = add_months(this_month, -(rng.range(4, 36) as i32));
    let mut lines: Vec<PlannedLine> = catalog::billed_lines(customer)
        .into_iter()
        .map(|(product, quantity)| {
            // Some lines were added after the contract began, none later
            // than two months ago.
            let months_in = if rng.chance(25) {
                rng.range(1, 2) as i32
            } else {
                0
            };
            PlannedLine {
                product,
                quantity,
                effective: add_months(start, months_in),
            }
        })
        .collect();
    let extra = position
        .is_multiple_of(3)
        .then(|| EXTRAS[(position / 3) % EXTRAS.len()]);
    let moved = match extra {
        Some(e) if e.bills() && lines.len() >= 2 => lines.pop(),
        _ => None,
    };
    let (extra_start, extra_end) = match extra {
        Some(Extra::Cancelled) => {
            let ended = month_end(add_months(this_month, -(rng.range(1, 6) as i32)));
            (add_months(start, -12), Some(ended))
        }
        Some(Extra::Expired) => {
            let ended = month_end(add_months(this_month, -(rng.range(1, 12) as i32)));
            (add_months(month_start(ended), -23), Some(ended))
        }
        Some(Extra::OneTime) => (add_months(this_month, -1), None),
        _ => (start, None),
    };
    let stale = match extra {
        Some(e) if !e.bills() => {
            let mut stale: Vec<PlannedLine> = lines
                .iter()
                .take(2)
                .map(|line| PlannedLine {
                    product: line.product,
                    quantity: line.quantity + rng.range(1, 4),
                    effective: extra_start,
                })
                .collect();
            if stale.is_empty() {
                stale.push(PlannedLine {
                    product: &PRODUCTS[0],
                    quantity: rng.range(1, 5),
                    effective: extra_start,
                });
            }
            stale
        }
        _ => Vec::new(),
    };
    let replaced = (position % 4 == 1 && !lines.is_empty()).then(|| {
        let line = rng.range(0, lines.len() as u32 - 1) as usize;
        let last_month = add_months(this_month, -1);
        lines[line].effective = lines[line].effective.min(add_months(this_month, -3));
        let current = lines[line].quantity;
        let old_quantity = if current > 1 && rng.chance(50) {
            current - 1
        } else {
            current + rng.range(1, 3)
        };
        Replaced {
            line,
            old_quantity,
            ended: last_month.pred_opt().unwrap_or(last_month),
        }
    });
    let do_not_bill = (position % 5 == 2).then(|| (&PRODUCTS[3], rng.range(1, 3)));
    let no_charge = (position % 7 == 3).then(|| (&PRODUCTS[6], rng.range(1, 2)));
    CustomerPlan {
        customer: customer.index,
        position,
        start,
        prorate: position % 10 < 7,
        lines,
        moved,
        extra,
        extra_start,
        extra_end,
        stale,
        replaced,
        do_not_bill,
        no_charge,
    }
}

/// Helpers for the PSA emulators' HTTP tests.
#[cfg(test)]
pub mod testing {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use chrono::NaiveDate;

    use crate::world::World;
    use crate::{Kind, Running, Settings};

    /// The seed every PSA test world uses.
    pub const SEED: u64 = 7;

    /// Starts `kind` on a free loopback port over a world of `customers`.
    pub async fn start_psa(kind: Kind, customers: usize, settings: Settings) -> Running {
        crate::start(
            kind,
            Arc::new(World::new(SEED, customers)),
            settings,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .expect("the emulator binds a loopback port")
    }

    /// An HTTP client for tests.
    pub fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    /// A date from `YYYY-MM-DD`.
    pub fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test dates are YYYY-MM-DD")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
    }

    #[test]
    fn periods_are_found_on_both_sides_of_the_anchor() {
        let anchor = date("2024-01-01");
        let cases = [
            (1, "2024-03-15", "2024-03-01", "2024-03-31"),
            (1, "2023-12-31", "2023-12-01", "2023-12-31"),
            (3, "2024-05-01", "2024-04-01", "2024-06-30"),
            (12, "2025-02-10", "2025-01-01", "2025-12-31"),
            (12, "2023-02-10", "2023-01-01", "2023-12-31"),
        ];
        for (months, day, start, end) in cases {
            let period = period_containing(anchor, months, date(day));
            assert_eq!(
                period,
                Period {
                    start: date(start),
                    end: date(end)
                },
                "{months} months around {day}"
            );
        }
        let mid = period_containing(date("2024-01-15"), 1, date("2024-02-20"));
        assert_eq!(
            (mid.start, mid.end),
            (date("2024-02-15"), date("2024-03-14"))
        );
    }

    #[test]
    fn dates_parse_in_every_shape_the_psas_send() {
        for text in [
            "2025-02-03",
            "2025-02-03T00:00:00",
            "2025-02-03T00:00:00Z",
            "2025-02-03T00:00:00.000Z",
            "2025-02-03T01:00:00+01:00",
        ] {
            assert_eq!(parse_date(text), Some(date("2025-02-03")), "{text}");
        }
        assert_eq!(parse_date("03/02/2025"), None);
        assert_eq!(date_z(date("2025-02-03")), "2025-02-03T00:00:00Z");
    }

    #[test]
    fn money_is_an_exact_json_number() {
        assert_eq!(money(cents(2640)).to_string(), "26.4");
        assert_eq!(money(Decimal::new(4500, 2)).to_string(), "45.0");
        assert_eq!(
            decimal_from_json(&serde_json::json!(26.4)),
            Some(Decimal::new(264, 1))
        );
        assert_eq!(decimal_from_json(&serde_json::json!("x")), None);
        assert_eq!(round_money(Decimal::new(12345, 3)), Decimal::new(1235, 2));
    }

    #[test]
    fn wildcards_match_like_sql() {
        let cases = [
            ("North*", "Northwind Dental", true),
            ("%dental%", "Northwind Dental", true),
            ("north", "Northwind", false),
            ("N_rth*", "north", true),
            ("*LLC", "Contoso LLC", true),
            ("*LLC", "Contoso LLC Ltd", false),
            ("", "", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                wildcard_match(pattern, text),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn plans_bill_exactly_the_worlds_lines_and_cover_every_extra() {
        let world = World::new(11, 60);
        let today = date("2025-06-14");
        let plans = plans(&world, today);
        for plan in &plans {
            let customer = &world.customers[plan.customer];
            let mut billed: Vec<_> = plan
                .lines
                .iter()
                .chain(plan.moved.iter())
                .map(|l| (l.product.identifier, l.quantity))
                .collect();
            billed.sort();
            let mut truth: Vec<_> = catalog::billed_lines(customer)
                .into_iter()
                .map(|(p, q)| (p.identifier, q))
                .collect();
            truth.sort();
            assert_eq!(billed, truth, "customer {}", plan.customer);
            assert!(plan.lines.iter().all(|l| l.effective < month_start(today)));
            assert_eq!(plan.start.day(), 1);
        }
        for extra in EXTRAS {
            assert!(plans.iter().any(|p| p.extra == Some(extra)), "{extra:?}");
        }
        assert!(plans.iter().any(|p| p.replaced.is_some()));
        assert!(plans.iter().any(|p| p.do_not_bill.is_some()));
        assert!(plans.iter().any(|p| p.no_charge.is_some()));
        assert!(plans.iter().any(|p| !p.prorate));
        assert_eq!(plans, super::plans(&world, today), "deterministic");
    }

    #[test]
    fn segments_are_lowercased_and_prefix_checked() {
        assert_eq!(
            segments_after("/ATServicesRest/V1.0/Contracts/12", "/atservicesrest/v1.0"),
            Some(vec!["contracts".to_owned(), "12".to_owned()])
        );
        assert_eq!(
            segments_after("/atservicesrestx/v1.0", "/atservicesrest"),
            None
        );
    }
}
