//! Helpers shared by the vendor emulators ([`crate::microsoft`],
//! [`crate::pax8`], [`crate::ninjaone`], [`crate::huntress`]): deterministic
//! identifiers, the reference clock, bearer/basic credential parsing, issued
//! token bookkeeping, per-key rate windows and page arithmetic.
//!
//! Nothing here knows a vendor's wire format; each emulator renders its own
//! error bodies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SubsecRound, Utc};

use crate::faults::RateWindow;
use crate::world::SeededRng;

/// The emulated MSP's own name: every vendor emulator also lists the MSP's
/// internal tenant, company or organisation under it (`"<MSP_NAME>
/// (Internal)"`), which no PSA customer matches.
pub const MSP_NAME: &str = "Cobalt Ridge IT";

/// The emulated MSP's own web/e-mail domain.
pub const MSP_DOMAIN: &str = "cobaltridgeit.com";

/// The name vendors show for the MSP's internal account.
pub fn internal_account_name() -> String {
    format!("{MSP_NAME} (Internal)")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps hold no invariant a panic could break half-way.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A deterministic, lower-case GUID (version-4 layout) for `(seed, stream,
/// index)`: the same inputs always give the same identifier.
pub fn guid(seed: u64, stream: &str, index: u64) -> String {
    let mut rng = SeededRng::stream(seed, stream, index);
    let hi = rng.next_u64();
    let lo = rng.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (hi >> 32) as u32,
        (hi >> 16) as u16,
        (hi as u16) & 0x0fff,
        ((lo >> 48) as u16 & 0x3fff) | 0x8000,
        lo & 0xffff_ffff_ffff
    )
}

/// The instant vendor data is relative to ("last seen 3 days ago"): the
/// `as_of` override when a test pins it, otherwise the wall clock at the
/// moment the emulator builds its data, to the second.
pub fn reference_time(as_of: Option<DateTime<Utc>>) -> DateTime<Utc> {
    as_of.unwrap_or_else(|| Utc::now().trunc_subsecs(0))
}

/// Whole seconds a client must wait, rounded up and never zero, for a
/// `Retry-After` header.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched
/// case-insensitively), or `None` when absent or of another scheme.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Passes `admitted` (a rate window's verdict) through; a refusal becomes
/// the vendor's 429, built by `answer` from the whole seconds to wait, with
/// a `Retry-After` header of those seconds.
// The error is a finished HTTP answer handed straight back by a handler.
#[allow(clippy::result_large_err)]
pub fn refuse_when_throttled(
    admitted: Result<(), Duration>,
    answer: impl FnOnce(u64) -> Response,
) -> Result<(), Response> {
    admitted.map_err(|wait| {
        let secs = retry_after_secs(wait);
        let mut response = answer(secs);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        response
    })
}

/// The `(user, password)` of an `Authorization: Basic base64(user:password)`
/// header, or `None` when absent, of another scheme or not decodable.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Why a presented bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token this emulator issued.
    Unknown,
    /// Issued, but its lifetime is over.
    Expired,
}

/// Tokens an emulator has issued, with what each grants and when it
/// expires. Tokens are opaque strings; nothing about a token can be derived
/// without asking the store.
#[derive(Debug)]
pub struct TokenStore<C> {
    prefix: &'static str,
    salt: u64,
    counter: AtomicU64,
    issued: Mutex<HashMap<String, (C, DateTime<Utc>)>>,
}

impl<C: Clone> TokenStore<C> {
    /// An empty store whose tokens start with `prefix`; `salt` (e.g. the world
    /// seed) varies the token text between emulator instances.
    pub fn new(prefix: &'static str, salt: u64) -> Self {
        Self {
            prefix,
            salt,
            counter: AtomicU64::new(0),
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// Issues a token granting `claims` for `lifetime`; returns the token and
    /// its expiry instant.
    pub fn issue(&self, claims: C, lifetime: Duration) -> (String, DateTime<Utc>) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut rng = SeededRng::stream(self.salt, self.prefix, n);
        let token = format!(
            "{}{n:x}.{:016x}{:016x}",
            self.prefix,
            rng.next_u64(),
            rng.next_u64()
        );
        let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
        let expires = Utc::now()
            .checked_add_signed(lifetime)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        lock(&self.issued).insert(token.clone(), (claims, expires));
        (token, expires)
    }

    /// What `token` grants, if it was issued here and has not expired.
    pub fn check(&self, token: &str) -> Result<C, TokenRefusal> {
        let issued = lock(&self.issued);
        let (claims, expires) = issued.get(token).ok_or(TokenRefusal::Unknown)?;
        if Utc::now() >= *expires {
            return Err(TokenRefusal::Expired);
        }
        Ok(claims.clone())
    }
}

/// A sliding-window request limit kept separately per key (per tenant, per
/// account), each key with the same `limit` per `window`.
#[derive(Debug)]
pub struct KeyedRateLimit {
    limit: usize,
    window: Duration,
    windows: Mutex<HashMap<String, Arc<RateWindow>>>,
}

impl KeyedRateLimit {
    /// At most `limit` requests per `window` for each key.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Records a request for `key` if it fits; otherwise how long until one
    /// would.
    pub fn admit(&self, key: &str) -> Result<(), Duration> {
        let window = lock(&self.windows)
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(RateWindow::new(self.limit, self.window)))
            .clone();
        window.admit()
    }
}

/// The index range of page `page` (0-based) of `size` items out of `total`;
/// empty past the end. `size` must be at least 1.
pub fn page_range(total: usize, page: usize, size: usize) -> std::ops::Range<usize> {
    let size = size.max(1);
    let start = page.saturating_mul(size).min(total);
    let end = start.saturating_add(size).min(total);
    start..end
}

/// How many pages of `size` hold `total` items (0 when there are none).
pub fn page_count(total: usize, size: usize) -> usize {
    total.div_ceil(size.max(1))
}

/// A lower-case ASCII slug of `name` with `separator` between words, e.g.
/// `"Contoso Legal LLC"` → `"contoso-legal-llc"`.
pub fn slug(name: &str, separator: char) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(separator);
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    #[test]
    fn guids_are_deterministic_and_well_formed() {
        let a = guid(7, "tenant", 3);
        assert_eq!(a, guid(7, "tenant", 3));
        assert_ne!(a, guid(7, "tenant", 4));
        assert_ne!(a, guid(8, "tenant", 3));
        let parts: Vec<_> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn credentials_are_parsed_from_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
        assert_eq!(basic_credentials(&headers), None);
        let encoded = STANDARD.encode("pub:priv:with-colon");
        let value = HeaderValue::from_str(&format!("Basic {encoded}")).expect("header");
        headers.insert(header::AUTHORIZATION, value);
        assert_eq!(
            basic_credentials(&headers),
            Some(("pub".to_owned(), "priv:with-colon".to_owned()))
        );
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn tokens_expire_and_unknown_ones_are_refused() {
        let store = TokenStore::new("t-", 1);
        let (live, _) = store.issue(5u8, Duration::from_secs(60));
        let (dead, _) = store.issue(6u8, Duration::ZERO);
        assert_eq!(store.check(&live), Ok(5));
        assert_eq!(store.check(&dead), Err(TokenRefusal::Expired));
        assert_eq!(store.check("t-forged"), Err(TokenRefusal::Unknown));
        assert_ne!(live, dead);
    }

    #[test]
    fn throttled_requests_get_retry_after() {
        let answer = |secs: u64| (StatusCode::TOO_MANY_REQUESTS, secs.to_string()).into_response();
        assert!(refuse_when_throttled(Ok(()), answer).is_ok());
        let refused = refuse_when_throttled(Err(Duration::from_millis(2500)), answer)
            .expect_err("a refusal becomes a response");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn keyed_limits_are_independent() {
        let limit = KeyedRateLimit::new(1, Duration::from_secs(60));
        assert!(limit.admit("a").is_ok());
        assert!(limit.admit("a").is_err());
        assert!(limit.admit("b").is_ok());
    }

    #[test]
    fn page_arithmetic_covers_the_edges() {
        assert_eq!(page_range(10, 0, 4), 0..4);
        assert_eq!(page_range(10, 2, 4), 8..10);
        assert_eq!(page_range(10, 3, 4), 10..10);
        assert_eq!(page_count(10, 4), 3);
        assert_eq!(page_count(0, 4), 0);
        assert_eq!(slug("Margie's Travel  Co.", '-'), "margie-s-travel-co");
    }
}
