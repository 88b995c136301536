//! The write journal: every write a connector sends during a journalled
//! call (a write-back), recorded by the host with what the PSA answered.
//!
//! Exactly-once cannot rest on the connector: a connector that reads the
//! PSA first and does not recognise its own earlier write (the PSA stored
//! a normalised date, a recalculated price) writes it again. So the host,
//! which sees every request, records each write twice — "about to send"
//! before any byte leaves, and its outcome before the response is handed
//! back to the guest — and the caller decides from the journal, not from
//! the connector's words, whether anything may be sent again. A process
//! that dies between the two leaves an "about to send" with no outcome,
//! which reads as "may have been applied".

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

/// What became of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalOutcome {
    /// About to be sent; no outcome recorded (yet). Left alone, it means
    /// the process stopped mid-write: treat as [`JournalOutcome::Unknown`].
    Sending,
    /// The PSA answered 2xx: it holds the write.
    Acknowledged,
    /// The PSA definitely did not apply it (refused before sending, a
    /// connection never made, a 4xx other than 408, 429, 503 with
    /// Retry-After).
    NotApplied,
    /// It may or may not have been applied (timeout after sending, reset,
    /// 500/502/504, a body lost after a 2xx head).
    Unknown,
}

impl JournalOutcome {
    /// Whether the PSA may hold the write: anything but a definite "not
    /// applied". Such a write is never repeated without a person.
    pub fn may_have_applied(self) -> bool {
        self != JournalOutcome::NotApplied
    }

    /// The outcome of an HTTP answer to a write.
    ///
    /// 408 (the server gave up reading), 500, 502, 504 and other 5xx may
    /// come after the PSA applied the write; 503 with Retry-After and 429
    /// are refusals before any work; other 4xx are refusals; a 3xx handed
    /// back to the guest (not followed) is unknown.
    pub fn of_status(status: u16, has_retry_after: bool) -> Self {
        match status {
            200..=299 => JournalOutcome::Acknowledged,
            408 => JournalOutcome::Unknown,
            429 => JournalOutcome::NotApplied,
            503 if has_retry_after => JournalOutcome::NotApplied,
            400..=499 => JournalOutcome::NotApplied,
            _ => JournalOutcome::Unknown,
        }
    }
}

impl fmt::Display for JournalOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JournalOutcome::Sending => "sending",
            JournalOutcome::Acknowledged => "acknowledged",
            JournalOutcome::NotApplied => "not_applied",
            JournalOutcome::Unknown => "unknown",
        })
    }
}

/// One journal record: never a request body (it may carry secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalledWrite {
    /// The request's number within the call (pairs "sending" with its
    /// outcome).
    pub seq: u32,
    /// HTTP method.
    pub method: String,
    /// URL, secrets and secret-looking query values redacted.
    pub url: String,
    /// What became of it.
    pub outcome: JournalOutcome,
    /// The final HTTP status, when one came back.
    pub status: Option<u16>,
    /// The record id in the answer's body (`id`, `itemId`), when there is
    /// one.
    pub record_id: Option<String>,
    /// Why the outcome is what it is, for a person (redacted).
    pub detail: Option<String>,
    /// When it was recorded.
    pub at: DateTime<Utc>,
}

/// A future a journal returns.
pub type JournalFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where a call's writes are recorded (the write-back's outbox entry).
///
/// `record` is awaited before the request is sent ("sending") and before
/// the response is handed to the guest (the outcome). When recording
/// "sending" fails the request is not sent.
pub trait WriteJournal: Send + Sync {
    /// Records `write`; an error says why it could not be recorded.
    fn record(&self, write: JournalledWrite) -> JournalFuture<'_>;
}

/// A journal attached to one call.
#[derive(Clone)]
pub struct JournalHook(pub Arc<dyn WriteJournal>);

impl fmt::Debug for JournalHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JournalHook")
    }
}

/// A journal in memory (tests, tools).
#[derive(Debug, Default)]
pub struct MemoryJournal {
    writes: Mutex<Vec<JournalledWrite>>,
}

impl MemoryJournal {
    /// Everything recorded, in order.
    pub fn writes(&self) -> Vec<JournalledWrite> {
        self.writes.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// The last record per request: each write's latest outcome.
    pub fn outcomes(&self) -> Vec<JournalledWrite> {
        latest_per_write(self.writes())
    }
}

impl WriteJournal for MemoryJournal {
    fn record(&self, write: JournalledWrite) -> JournalFuture<'_> {
        Box::pin(async move {
            self.writes
                .lock()
                .map_err(|_| "the in-memory journal is poisoned".to_owned())?
                .push(write);
            Ok(())
        })
    }
}

/// The latest record of each write (by `seq`), in `seq` order.
pub fn latest_per_write(records: Vec<JournalledWrite>) -> Vec<JournalledWrite> {
    let mut latest: std::collections::BTreeMap<u32, JournalledWrite> = Default::default();
    for record in records {
        latest.insert(record.seq, record);
    }
    latest.into_values().collect()
}

/// Query parameters whose values are never journalled.
const SECRET_QUERY_NAMES: &[&str] = &[
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "client_secret",
    "password",
    "signature",
    "sig",
    "code",
];

/// `url` with secret-looking query values replaced (the host also redacts
/// every stored secret value from the text).
pub fn redact_query(url: &Url) -> String {
    if url.query().is_none() {
        return url.to_string();
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            let secret = SECRET_QUERY_NAMES.contains(&lower.as_str())
                || lower.contains("token")
                || lower.contains("secret")
                || lower.contains("password");
            let value = if secret {
                "REDACTED".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), value)
        })
        .collect();
    let mut redacted = url.clone();
    redacted.query_pairs_mut().clear().extend_pairs(pairs);
    redacted.to_string()
}

/// The record id in a write's answer: a top-level `id` or `itemId`
/// (Autotask answers a create with `{"itemId": N}`), or the first
/// element's `id` when the answer is an array (HaloPSA answers with the
/// saved records).
pub fn record_id(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = match &value {
        serde_json::Value::Array(items) => items.first()?,
        other => other,
    };
    ["id", "itemId"]
        .iter()
        .find_map(|name| match object.get(name)? {
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify_as_the_table_says() {
        use JournalOutcome::*;
        let table = [
            (200, false, Acknowledged),
            (201, false, Acknowledged),
            (204, false, Acknowledged),
            (302, false, Unknown),
            (400, false, NotApplied),
            (401, false, NotApplied),
            (404, false, NotApplied),
            (408, false, Unknown),
            (409, false, NotApplied),
            (422, false, NotApplied),
            (429, false, NotApplied),
            (500, false, Unknown),
            (502, false, Unknown),
            (503, true, NotApplied),
            (503, false, Unknown),
            (504, false, Unknown),
        ];
        for (status, retry_after, expected) in table {
            assert_eq!(
                JournalOutcome::of_status(status, retry_after),
                expected,
                "status {status}, retry-after {retry_after}"
            );
        }
        assert!(Sending.may_have_applied());
        assert!(Unknown.may_have_applied());
        assert!(Acknowledged.may_have_applied());
        assert!(!NotApplied.may_have_applied());
    }

    #[test]
    fn record_ids_come_from_the_answer() {
        assert_eq!(record_id(br#"{"itemId": 42}"#).as_deref(), Some("42"));
        assert_eq!(
            record_id(br#"{"id": 7, "quantity": 3}"#).as_deref(),
            Some("7")
        );
        assert_eq!(record_id(br#"[{"id": "a1"}]"#).as_deref(), Some("a1"));
        assert_eq!(record_id(b"not json"), None);
        assert_eq!(record_id(br#"{"name": "x"}"#), None);
    }

    #[test]
    fn secret_query_values_are_redacted() {
        let url = Url::parse("https://psa.example/api?clientId=abc&access_token=s3cret&page=2")
            .expect("a URL");
        let redacted = redact_query(&url);
        assert!(!redacted.contains("s3cret"), "{redacted}");
        assert!(redacted.contains("page=2"), "{redacted}");
        assert!(redacted.contains("clientId=abc"), "{redacted}");
    }

    #[test]
    fn the_latest_record_of_each_write_wins() {
        let at = Utc::now();
        let w = |seq, outcome| JournalledWrite {
            seq,
            method: "POST".into(),
            url: "u".into(),
            outcome,
            status: None,
            record_id: None,
            detail: None,
            at,
        };
        let latest = latest_per_write(vec![
            w(1, JournalOutcome::Sending),
            w(1, JournalOutcome::Acknowledged),
            w(2, JournalOutcome::Sending),
        ]);
        assert_eq!(
            latest.iter().map(|w| w.outcome).collect::<Vec<_>>(),
            vec![JournalOutcome::Acknowledged, JournalOutcome::Sending]
        );
    }
}
