//! Secret values a plugin was granted, held by the host only.
//!
//! The guest gets borrow-only handles ([`SecretHandle`]); the host writes
//! values into outgoing requests (in the encodings below) and redacts them,
//! in every such encoding, from everything a plugin can make the host print
//! (logs, errors, progress).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

/// Values shorter than this are not redacted from text: a 1–3 character
/// "secret" would blank out ordinary words. Real credentials are longer.
pub const MIN_REDACTED_LEN: usize = 4;

/// What replaces a secret value in logs and messages.
pub const REDACTED: &str = "[redacted]";

/// A secret handle given to a guest: only the name; the value stays in the
/// store's [`PluginSecrets`] and is written into requests by the host.
#[derive(Debug)]
pub struct SecretHandle {
    pub(crate) name: String,
}

/// What [`percent_encode`] leaves as is: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes for a form body (RFC 3986 unreserved pass through).
pub fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// Escapes for the inside of a JSON string.
pub fn json_escape(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// One secret value; wiped from memory when dropped, never printed.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The plaintext, for the host to place into a request.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The secrets stored for one plugin, by name.
#[derive(Clone, Default)]
pub struct PluginSecrets(Arc<BTreeMap<String, SecretValue>>);

impl PluginSecrets {
    /// Secrets from `(name, value)` pairs.
    pub fn new(values: impl IntoIterator<Item = (String, SecretValue)>) -> Self {
        Self(Arc::new(values.into_iter().collect()))
    }

    /// Whether a value is stored for `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The value for `name`.
    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.0.get(name)
    }

    /// `text` with every stored value (and its common encodings) replaced by
    /// [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in self.0.values() {
            let Ok(plain) = std::str::from_utf8(value.expose()) else {
                continue;
            };
            if plain.len() < MIN_REDACTED_LEN {
                continue;
            }
            for form in [plain.to_owned(), percent_encode(plain), json_escape(plain)] {
                if out.contains(&form) {
                    out = out.replace(&form, REDACTED);
                }
            }
        }
        out
    }
}

impl fmt::Debug for PluginSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_redacted_in_plain_and_encoded_forms() {
        let secrets = PluginSecrets::new([("key".to_owned(), SecretValue::new("s3cr3t&value\"x"))]);
        let text = "a s3cr3t&value\"x b s3cr3t%26value%22x c s3cr3t&value\\\"x";
        assert_eq!(
            secrets.redact(text),
            "a [redacted] b [redacted] c [redacted]"
        );
    }

    #[test]
    fn encodings_keep_unreserved_characters_only() {
        assert_eq!(
            percent_encode("aZ09-_.~ &=+/%é"),
            "aZ09-_.~%20%26%3D%2B%2F%25%C3%A9"
        );
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }

    #[test]
    fn debug_never_shows_a_value() {
        let secrets = PluginSecrets::new([("api_key".to_owned(), SecretValue::new("hunter22"))]);
        let printed = format!("{secrets:?} {:?}", secrets.get("api_key"));
        assert!(!printed.contains("hunter22"));
        assert!(printed.contains("api_key"));
    }
}
