//! Paging helpers: opaque cursors, `Link` headers, query strings.
//!
//! A cursor handed to the host must hold everything needed to continue,
//! because the host may use a fresh instance for the next call. Encode a
//! small serde struct with [`Cursor::encode`] and read it back with
//! [`Cursor::decode`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ConnectorError;

/// Encoding and decoding of opaque cursors.
pub struct Cursor;

impl Cursor {
    /// Encodes a cursor state as compact JSON.
    ///
    /// # Errors
    /// [`ConnectorError::Internal`] when the state cannot be serialized.
    pub fn encode<T: Serialize>(state: &T) -> Result<String, ConnectorError> {
        serde_json::to_string(state)
            .map_err(|e| ConnectorError::Internal(format!("encoding a paging cursor: {e}")))
    }

    /// Decodes a cursor from the host; `None` means "first page".
    ///
    /// # Errors
    /// [`ConnectorError::Internal`] when the cursor is not one this
    /// connector made (e.g. from another version).
    pub fn decode<T: DeserializeOwned>(cursor: Option<&str>) -> Result<Option<T>, ConnectorError> {
        cursor
            .map(|c| {
                serde_json::from_str(c).map_err(|e| {
                    ConnectorError::Internal(format!(
                        "the paging cursor {c:?} is not one this connector version made ({e}); restart the sync"
                    ))
                })
            })
            .transpose()
    }
}

/// Checks that the next-page token a service handed back differs from the
/// one that fetched the page (`presented`; `None` for the first page).
/// A service that repeats a token would otherwise be followed forever.
///
/// # Errors
/// [`ConnectorError::Internal`] naming the request and the token.
pub fn require_new_token(
    request: &str,
    presented: Option<&str>,
    next: &str,
) -> Result<(), ConnectorError> {
    if presented == Some(next) {
        return Err(not_advancing(request, &format!("token {next:?}")));
    }
    Ok(())
}

/// Checks that a numeric paging position (a page number, the last id of a
/// page) moved past the previous one: `next > previous`.
///
/// # Errors
/// [`ConnectorError::Internal`] naming the request and both positions.
pub fn require_increase(
    request: &str,
    what: &str,
    previous: u64,
    next: u64,
) -> Result<(), ConnectorError> {
    if next <= previous {
        return Err(not_advancing(
            request,
            &format!("{what} {next} (after {what} {previous})"),
        ));
    }
    Ok(())
}

/// The error for a paging cursor that does not move past the page just
/// read: following it would loop forever.
pub fn not_advancing(request: &str, cursor: &str) -> ConnectorError {
    ConnectorError::Internal(format!(
        "{request}: the service's next-page {cursor} does not advance past the page just read; stopped instead of looping forever (a bug or fault in the service's paging)"
    ))
}

/// The URL with `rel="next"` in an RFC 8288 `Link` header, e.g.
/// `<https://x/y?page=2>; rel="next", <https://x/y?page=9>; rel="last"`.
pub fn link_rel(header: &str, rel: &str) -> Option<String> {
    header.split(',').find_map(|entry| {
        let (target, params) = entry.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let matches = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|v| v.trim_matches('"').split_whitespace().any(|r| r == rel))
                .unwrap_or(false)
        });
        matches.then(|| target.to_owned())
    })
}

/// Percent-encodes a query-string or form component (RFC 3986 unreserved
/// characters pass through).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `base?k1=v1&k2=v2` with every key and value percent-encoded.
pub fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return base.to_owned();
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next_and_last() {
        let header = r#"<https://x/api?page=2&pageSize=1000>; rel="next", <https://x/api?page=9>; rel="last""#;
        assert_eq!(
            link_rel(header, "next").as_deref(),
            Some("https://x/api?page=2&pageSize=1000")
        );
        assert_eq!(
            link_rel(header, "last").as_deref(),
            Some("https://x/api?page=9")
        );
        assert_eq!(link_rel(header, "prev"), None);
    }

    #[test]
    fn query_components_are_encoded() {
        assert_eq!(
            with_query(
                "https://x/a",
                &[("conditions", "name = \"A&B\""), ("page", "2")]
            ),
            "https://x/a?conditions=name%20%3D%20%22A%26B%22&page=2"
        );
        assert_eq!(
            with_query("https://x/a?x=1", &[("y", "2")]),
            "https://x/a?x=1&y=2"
        );
    }
}
