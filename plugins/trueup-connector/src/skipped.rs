//! Records a 0.2 connector could not read: one bad record becomes a named
//! exclusion in its page's `skipped` list, and the sync goes on.
//!
//! ```text
//! match parse_agreement(&json) {
//!     Ok(contract) => items.push(contract),
//!     Err(why) => skipped.push(skipped::record("agreement", &id, "billStartDate", &raw, &why)),
//! }
//! ```

use crate::SkippedRecord;

/// How many characters of an unreadable value are kept: enough to see what
/// it was, never a whole response body.
pub const MAX_SEEN_CHARS: usize = 200;

/// A skipped record: what it is (`kind`, in the API's words), its id, the
/// field that could not be read, the value seen (truncated to
/// [`MAX_SEEN_CHARS`] characters) and why.
pub fn record(kind: &str, id: &str, field: &str, seen: &str, reason: &str) -> SkippedRecord {
    let mut kept: String = seen.chars().take(MAX_SEEN_CHARS).collect();
    if kept.len() < seen.len() {
        kept.push('…');
    }
    SkippedRecord {
        kind: kind.to_owned(),
        id: id.to_owned(),
        field: field.to_owned(),
        seen: kept,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept_whole() {
        let r = record(
            "agreement",
            "42",
            "billStartDate",
            "31/02/2026",
            "not a date",
        );
        assert_eq!(r.kind, "agreement");
        assert_eq!(r.id, "42");
        assert_eq!(r.field, "billStartDate");
        assert_eq!(r.seen, "31/02/2026");
        assert_eq!(r.reason, "not a date");
    }

    #[test]
    fn long_values_are_truncated_on_a_character_boundary() {
        let seen = "é".repeat(MAX_SEEN_CHARS + 5);
        let r = record("addition", "7", "unitPrice", &seen, "not a number");
        assert_eq!(r.seen.chars().count(), MAX_SEEN_CHARS + 1);
        assert!(r.seen.ends_with('…'));
    }
}
