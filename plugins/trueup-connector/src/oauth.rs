//! OAuth 2.0 client-credentials tokens (RFC 6749 §4.4): decoding a token
//! endpoint's answer and mapping its refusals.
//!
//! A connector builds the token request itself (the grant's parameters and
//! where the client secret goes differ between services: a form body for
//! the Microsoft identity platform and NinjaOne, a JSON body for Pax8), sends
//! it, and hands the [`Response`] to [`token_from_response`]. The secret is
//! placed by the host (see [`crate::http::Part`]); this module never sees it.
//!
//! Cache the token for the life of the instance with
//! [`crate::http::TokenCache`].

use serde::Deserialize;

use crate::ConnectorError;
use crate::http::Response;

/// Lifetime assumed for a token whose answer carries no `expires_in`: short,
/// so a token of unknown lifetime is renewed rather than used past expiry.
pub const DEFAULT_TOKEN_LIFETIME_SECS: i64 = 300;

/// The longest a token is renewed before it expires.
pub const MAX_RENEW_MARGIN_MS: i64 = 60_000;

/// How long before its expiry a token living `lifetime_secs` is renewed:
/// a tenth of its life, at most [`MAX_RENEW_MARGIN_MS`]. Relative to the
/// lifetime, so a short-lived token (say 30 s) is still reused for most of
/// its life; a fixed 60 s margin would make every token shorter than a
/// minute look expired on arrival and cost a token request per call.
pub fn renew_margin_ms(lifetime_secs: i64) -> i64 {
    (lifetime_secs.max(0).saturating_mul(1000) / 10).min(MAX_RENEW_MARGIN_MS)
}

/// The instant (ms since the epoch) from which a token fetched at
/// `fetched_at_ms` and living `lifetime_secs` is renewed rather than used.
pub fn renew_at_ms(fetched_at_ms: i64, lifetime_secs: i64) -> i64 {
    let expires = fetched_at_ms.saturating_add(lifetime_secs.max(0).saturating_mul(1000));
    expires - renew_margin_ms(lifetime_secs)
}

/// A token endpoint's success body. Unknown fields are ignored.
#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    /// A number in the RFC, but some services send a string; read as a
    /// JSON value (an untagged enum would not see numbers under serde_json's
    /// `arbitrary_precision`).
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// A token endpoint's error body (RFC 6749 §5.2). Unknown fields are
/// ignored.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The access token and its lifetime in seconds from a token endpoint's
/// answer, ready for [`crate::http::TokenCache::get_or_fetch`].
///
/// # Errors
/// - [`ConnectorError::AuthFailed`] for 401/403, and for a 400 whose body is
///   an OAuth error (`invalid_client`, `unauthorized_client`,
///   `invalid_scope`, ...), naming the endpoint, the OAuth error and its
///   description so the admin knows which credential to check;
/// - [`ConnectorError::RateLimited`] for 429, other statuses as
///   [`Response::ok`] maps them;
/// - [`ConnectorError::Internal`] when a 2xx body is not a token.
pub fn token_from_response(response: Response) -> Result<(String, i64), ConnectorError> {
    if matches!(response.status, 400 | 401 | 403)
        && let Ok(refusal) = serde_json::from_slice::<ErrorBody>(&response.body)
    {
        return Err(ConnectorError::AuthFailed(format!(
            "{} {} refused the client credentials ({}): {}{}",
            response.method(),
            response.url(),
            response.status,
            refusal.error,
            refusal
                .error_description
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )));
    }
    let response = response.ok()?;
    let body: TokenBody = response.json()?;
    if body.access_token.trim().is_empty() {
        return Err(ConnectorError::Internal(format!(
            "{} {}: the token endpoint answered an empty access_token",
            response.method(),
            response.url()
        )));
    }
    let lifetime = match &body.expires_in {
        None | Some(serde_json::Value::Null) => Some(DEFAULT_TOKEN_LIFETIME_SECS),
        Some(serde_json::Value::String(text)) => text.trim().parse().ok(),
        Some(number) => number.as_i64(),
    }
    .ok_or_else(|| {
        ConnectorError::Internal(format!(
            "{} {}: expires_in {} is not a whole number of seconds",
            response.method(),
            response.url(),
            body.expires_in
                .as_ref()
                .map_or_else(String::new, ToString::to_string)
        ))
    })?;
    Ok((body.access_token, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_relative_to_the_token_lifetime() {
        // An hour-long token: renewed a minute early.
        assert_eq!(renew_margin_ms(3600), 60_000);
        // A 30 s token: renewed 3 s early, so it serves 27 s of calls (a
        // fixed 60 s margin renewed it on every call).
        assert_eq!(renew_margin_ms(30), 3_000);
        assert_eq!(renew_at_ms(1_000_000, 30), 1_027_000);
        assert_eq!(renew_margin_ms(0), 0);
        assert_eq!(renew_margin_ms(-5), 0);
    }
}
