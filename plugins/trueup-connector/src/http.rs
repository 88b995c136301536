//! Outbound HTTP through the host, with secrets placed by the host.
//!
//! The plaintext of a [`Secret`] never enters the guest: a request carries a
//! borrowed handle and the host writes the value into the header or body as
//! it sends. Responses map to [`ConnectorError`] with [`Response::ok`], and
//! JSON decodes with errors that name the request and the position.

use std::cell::RefCell;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::bindings::trueup::connector::http as wit;
use crate::bindings::trueup::connector::secrets;
use crate::{ConnectorError, UpstreamFailure};

pub use wit::SecretEncoding;

/// The most of a response body an error message carries.
pub const ERROR_BODY_LIMIT: usize = 2048;

/// Wait suggested to the host after a 429 without `Retry-After`.
pub const DEFAULT_RETRY_AFTER_MS: u64 = 1_000;

/// A secret granted to this plugin, by name. Opaque: it can only be placed
/// into requests.
pub struct Secret(secrets::Secret);

impl Secret {
    /// Looks up the secret `name` declared in `plugin.toml`.
    ///
    /// # Errors
    /// [`ConnectorError::InvalidConfig`] when it is not declared, not
    /// granted, or has no value; the host's message says which.
    pub fn get(name: &str) -> Result<Self, ConnectorError> {
        secrets::get(name).map(Secret)
    }

    /// The secret's name.
    pub fn name(&self) -> String {
        self.0.name()
    }
}

/// A piece of a header value or body: text, or a secret.
#[derive(Clone, Copy)]
pub enum Part<'a> {
    /// Plain text.
    Text(&'a str),
    /// A secret written as is.
    Secret(&'a Secret),
    /// A secret written with an encoding (form or JSON string).
    Encoded(&'a Secret, SecretEncoding),
}

impl<'a> Part<'a> {
    fn fragment(self) -> wit::Fragment<'a> {
        match self {
            Part::Text(text) => wit::Fragment::Text(text.to_owned()),
            Part::Secret(secret) => wit::Fragment::Secret(wit::SecretFragment {
                secret: &secret.0,
                encoding: SecretEncoding::Raw,
            }),
            Part::Encoded(secret, encoding) => wit::Fragment::Secret(wit::SecretFragment {
                secret: &secret.0,
                encoding,
            }),
        }
    }
}

fn fragments<'a>(parts: &[Part<'a>]) -> Vec<wit::Fragment<'a>> {
    parts.iter().map(|p| p.fragment()).collect()
}

/// An HTTP request under construction.
pub struct Request<'a> {
    method: wit::Method,
    url: String,
    headers: Vec<(String, wit::HeaderValue<'a>)>,
    body: Option<wit::Body<'a>>,
    timeout_ms: Option<u32>,
}

impl<'a> Request<'a> {
    /// A request with `method` to the absolute `url`.
    pub fn new(method: wit::Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(wit::Method::Get, url)
    }

    /// A POST request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(wit::Method::Post, url)
    }

    /// A PUT request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(wit::Method::Put, url)
    }

    /// A PATCH request.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(wit::Method::Patch, url)
    }

    /// A DELETE request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(wit::Method::Delete, url)
    }

    /// The request's method name, e.g. `GET`.
    pub fn method_name(&self) -> &'static str {
        method_name(self.method)
    }

    /// The request's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds a plain header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers
            .push((name.to_owned(), wit::HeaderValue::Text(value.into())));
        self
    }

    /// Adds a header concatenated from parts, e.g. `["Bearer ", secret]`.
    pub fn header_parts(mut self, name: &str, parts: &[Part<'a>]) -> Self {
        self.headers.push((
            name.to_owned(),
            wit::HeaderValue::Composed(fragments(parts)),
        ));
        self
    }

    /// Adds `Authorization: Basic base64(user:password)`, computed by the
    /// host so either side may hold secrets.
    pub fn basic_auth(mut self, user: &[Part<'a>], password: &[Part<'a>]) -> Self {
        self.headers.push((
            "authorization".to_owned(),
            wit::HeaderValue::BasicAuth(wit::BasicCredentials {
                user: fragments(user),
                password: fragments(password),
            }),
        ));
        self
    }

    /// Adds `Authorization: Bearer <token>` for a token the guest holds
    /// (e.g. an OAuth access token it obtained).
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Sets a JSON body (and the content type).
    ///
    /// # Errors
    /// [`ConnectorError::Internal`] when the value cannot be serialized.
    pub fn json<T: serde::Serialize>(mut self, value: &T) -> Result<Self, ConnectorError> {
        let bytes = serde_json::to_vec(value).map_err(|e| {
            ConnectorError::Internal(format!("serializing the body for {}: {e}", self.url))
        })?;
        self.body = Some(wit::Body::Bytes(bytes));
        Ok(self.header("content-type", "application/json"))
    }

    /// Sets a raw body.
    pub fn body(mut self, bytes: Vec<u8>) -> Self {
        self.body = Some(wit::Body::Bytes(bytes));
        self
    }

    /// Sets a body concatenated from parts (e.g. a JSON template holding a
    /// secret written with [`SecretEncoding::JsonString`]).
    pub fn body_parts(mut self, parts: &[Part<'a>]) -> Self {
        self.body = Some(wit::Body::Composed(fragments(parts)));
        self
    }

    /// Sets an `application/x-www-form-urlencoded` body. Text values are
    /// percent-encoded here; secret values by the host.
    pub fn form(mut self, fields: &[(&str, Part<'a>)]) -> Self {
        let mut parts: Vec<wit::Fragment<'a>> = Vec::new();
        for (i, (name, value)) in fields.iter().enumerate() {
            let mut prefix = String::new();
            if i > 0 {
                prefix.push('&');
            }
            prefix.push_str(&crate::paging::percent_encode(name));
            prefix.push('=');
            parts.push(wit::Fragment::Text(prefix));
            match value {
                Part::Text(text) => {
                    parts.push(wit::Fragment::Text(crate::paging::percent_encode(text)));
                }
                Part::Secret(secret) | Part::Encoded(secret, _) => {
                    parts.push(wit::Fragment::Secret(wit::SecretFragment {
                        secret: &secret.0,
                        encoding: SecretEncoding::FormUrlencoded,
                    }));
                }
            }
        }
        self.body = Some(wit::Body::Composed(parts));
        self.header("content-type", "application/x-www-form-urlencoded")
    }

    /// Caps this request's time (the host also caps it by the call's
    /// remaining time).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Sends the request.
    ///
    /// # Errors
    /// A [`ConnectorError`] describing a refused, timed-out or failed
    /// request, naming the method and URL. HTTP error statuses are NOT
    /// errors here: see [`Response::ok`].
    pub fn send(self) -> Result<Response, ConnectorError> {
        let method = method_name(self.method);
        let url = self.url.clone();
        let request = wit::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self.timeout_ms,
        };
        let started = crate::clock::now_ms();
        REQUESTS.with(|r| *r.borrow_mut() += 1);
        match wit::send(&request) {
            Ok(response) => Ok(Response {
                method,
                url,
                status: response.status,
                headers: response.headers,
                body: response.body,
            }),
            Err(error) => Err(transport_error(method, &url, error, started)),
        }
    }
}

thread_local! {
    static REQUESTS: RefCell<u64> = const { RefCell::new(0) };
}

/// Requests this instance has sent (for progress and budget accounting).
pub fn requests_sent() -> u64 {
    REQUESTS.with(|r| *r.borrow())
}

fn method_name(method: wit::Method) -> &'static str {
    match method {
        wit::Method::Get => "GET",
        wit::Method::Head => "HEAD",
        wit::Method::Post => "POST",
        wit::Method::Put => "PUT",
        wit::Method::Patch => "PATCH",
        wit::Method::Delete => "DELETE",
    }
}

fn transport_error(
    method: &str,
    url: &str,
    error: wit::HttpError,
    started_ms: i64,
) -> ConnectorError {
    match error {
        wit::HttpError::Denied(message) => ConnectorError::InvalidConfig(message),
        wit::HttpError::Timeout => ConnectorError::Internal(format!(
            "{method} {url} timed out after {} ms",
            crate::clock::now_ms().saturating_sub(started_ms)
        )),
        wit::HttpError::TooLarge(limit) => ConnectorError::Internal(format!(
            "{method} {url}: the response is larger than the host's limit of {limit} bytes; ask for smaller pages"
        )),
        wit::HttpError::InvalidRequest(message) => {
            ConnectorError::Internal(format!("{method} {url}: invalid request: {message}"))
        }
        wit::HttpError::Transport(message) => ConnectorError::Upstream(UpstreamFailure {
            status: 0,
            body: format!("{method} {url}: {message}"),
            retryable: true,
        }),
    }
}

/// Whether an HTTP status usually means "try again later": 408, 425, 429,
/// 5xx. A connector whose API answers refusals with a 5xx (Autotask does)
/// sets `retryable` itself.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 0 | 408 | 425 | 429) || status >= 500
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    method: &'static str,
    url: String,
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request's method name, e.g. `GET`.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The body as text (lossy), truncated to [`ERROR_BODY_LIMIT`].
    pub fn body_excerpt(&self) -> String {
        let end = self.body.len().min(ERROR_BODY_LIMIT);
        let mut text = String::from_utf8_lossy(&self.body[..end]).into_owned();
        if self.body.len() > end {
            text.push_str(" …(truncated)");
        }
        text
    }

    /// The response itself when its status is 2xx; otherwise the matching
    /// [`ConnectorError`]: 401/403 → `auth-failed`, 404 → `not-found`,
    /// 429 → `rate-limited` (with `Retry-After`), others → `upstream`.
    ///
    /// # Errors
    /// As above.
    pub fn ok(self) -> Result<Self, ConnectorError> {
        match self.status {
            200..=299 => Ok(self),
            401 | 403 => Err(ConnectorError::AuthFailed(format!(
                "{} {} answered {}: {}",
                self.method,
                self.url,
                self.status,
                self.body_excerpt()
            ))),
            404 => Err(ConnectorError::NotFound(format!(
                "{} {} answered 404: {}",
                self.method,
                self.url,
                self.body_excerpt()
            ))),
            429 => Err(ConnectorError::RateLimited(self.retry_after_ms())),
            status => Err(ConnectorError::Upstream(UpstreamFailure {
                status,
                body: self.body_excerpt(),
                retryable: is_retryable_status(status),
            })),
        }
    }

    /// The wait a 429/503 asks for: `Retry-After` in seconds or as an HTTP
    /// date, else [`DEFAULT_RETRY_AFTER_MS`].
    pub fn retry_after_ms(&self) -> u64 {
        let Some(value) = self.header("retry-after") else {
            return DEFAULT_RETRY_AFTER_MS;
        };
        if let Ok(secs) = value.trim().parse::<u64>() {
            return secs.saturating_mul(1000);
        }
        crate::values::http_date_to_unix_ms(value)
            .map(|at| at.saturating_sub(crate::clock::now_ms()).max(0) as u64)
            .unwrap_or(DEFAULT_RETRY_AFTER_MS)
    }

    /// Decodes the body as JSON. `T` may borrow from the body (`&str`
    /// fields), which saves an allocation per string on large pages.
    ///
    /// # Errors
    /// [`ConnectorError::Internal`] naming the request, the line and column
    /// and what was expected.
    pub fn json<'de, T: Deserialize<'de>>(&'de self) -> Result<T, ConnectorError> {
        serde_json::from_slice(&self.body).map_err(|e| self.parse_error(&e))
    }

    /// The error for a body that did not decode as expected, naming the
    /// request, the line and column and what was wrong. For connectors that
    /// decode the body themselves (e.g. with a parser shared with native
    /// code).
    pub fn parse_error(&self, error: &serde_json::Error) -> ConnectorError {
        ConnectorError::Internal(format!(
            "{} {}: the response is not the JSON expected (line {}, column {}): {error}",
            self.method,
            self.url,
            error.line(),
            error.column()
        ))
    }

    /// [`Response::ok`] then [`Response::json`].
    ///
    /// # Errors
    /// As those.
    pub fn ok_json<T: DeserializeOwned>(self) -> Result<T, ConnectorError> {
        self.ok()?.json()
    }
}

/// An OAuth access token cached for the life of the instance (one sync), so
/// a connector asks for a token once, not on every call.
pub struct TokenCache {
    slot: RefCell<Option<(String, i64)>>,
}

/// Tokens are renewed at most this long before they expire (less for
/// short-lived tokens: see [`crate::oauth::renew_margin_ms`]).
pub const TOKEN_RENEW_MARGIN_MS: i64 = crate::oauth::MAX_RENEW_MARGIN_MS;

impl TokenCache {
    /// An empty cache.
    pub const fn new() -> Self {
        Self {
            slot: RefCell::new(None),
        }
    }

    /// The cached token, or a new one from `fetch` (which returns the token
    /// and its lifetime in seconds).
    ///
    /// # Errors
    /// Whatever `fetch` returns.
    pub fn get_or_fetch(
        &self,
        fetch: impl FnOnce() -> Result<(String, i64), ConnectorError>,
    ) -> Result<String, ConnectorError> {
        let now = crate::clock::now_ms();
        if let Some((token, renew_at)) = self.slot.borrow().as_ref()
            && *renew_at > now
        {
            return Ok(token.clone());
        }
        let (token, lifetime_secs) = fetch()?;
        let renew_at = crate::oauth::renew_at_ms(now, lifetime_secs);
        *self.slot.borrow_mut() = Some((token.clone(), renew_at));
        Ok(token)
    }

    /// Forgets the token (e.g. after a 401).
    pub fn clear(&self) {
        *self.slot.borrow_mut() = None;
    }

    /// Sends the request `build` makes with the token (cached, or from
    /// `fetch`). When the service answers 401 to a token this cache held,
    /// the token is forgotten and the request is built and sent once more
    /// with a fresh one: tokens are revoked or expire early. The response is
    /// returned as is; map its status with [`Response::ok`].
    ///
    /// # Errors
    /// What `fetch` or [`Request::send`] return.
    pub fn send<'r>(
        &self,
        fetch: impl Fn() -> Result<(String, i64), ConnectorError>,
        build: impl Fn(&str) -> Request<'r>,
    ) -> Result<Response, ConnectorError> {
        let cached = self.slot.borrow().is_some();
        let token = self.get_or_fetch(&fetch)?;
        let response = build(&token).send()?;
        if response.status != 401 || !cached {
            return Ok(response);
        }
        self.clear();
        let token = self.get_or_fetch(&fetch)?;
        build(&token).send()
    }

    /// GETs `url` with the token as a bearer and `Accept:
    /// application/json` through [`TokenCache::send`] (a revoked token is
    /// renewed once), the status mapped with [`Response::ok`].
    ///
    /// # Errors
    /// What `fetch`, [`Request::send`] or [`Response::ok`] return.
    pub fn get(
        &self,
        fetch: impl Fn() -> Result<(String, i64), ConnectorError>,
        url: &str,
    ) -> Result<Response, ConnectorError> {
        self.send(fetch, |token| {
            Request::get(url)
                .bearer(token)
                .header("accept", "application/json")
        })?
        .ok()
    }
}

/// The most tokens a [`TokenCaches`] keeps; past it the least recently
/// fetched is dropped. One sync walks tenants in order, so a small window
/// holds the tokens still in use.
pub const MAX_CACHED_TOKENS: usize = 64;

/// OAuth tokens cached by key, for services that issue one token per
/// tenant (e.g. Microsoft Graph through GDAP: one token per customer
/// tenant). Bounded by [`MAX_CACHED_TOKENS`].
pub struct TokenCaches {
    slots: RefCell<Vec<(String, std::rc::Rc<TokenCache>)>>,
}

impl TokenCaches {
    /// An empty cache.
    pub const fn new() -> Self {
        Self {
            slots: RefCell::new(Vec::new()),
        }
    }

    /// The cache for `key`, created (and the oldest dropped past
    /// [`MAX_CACHED_TOKENS`]) when missing.
    pub fn cache(&self, key: &str) -> std::rc::Rc<TokenCache> {
        let mut slots = self.slots.borrow_mut();
        if let Some((_, cache)) = slots.iter().find(|(k, _)| k == key) {
            return cache.clone();
        }
        if slots.len() >= MAX_CACHED_TOKENS {
            slots.remove(0);
        }
        let cache = std::rc::Rc::new(TokenCache::new());
        slots.push((key.to_owned(), cache.clone()));
        cache
    }
}

impl Default for TokenCaches {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new()
    }
}
