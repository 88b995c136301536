//! The host's clock. `wasm32-unknown-unknown` has no clock of its own
//! (`SystemTime::now()` panics there); taking time from the host also keeps
//! connectors deterministic under test.

use crate::Date;
use crate::bindings::trueup::connector::clock as wit;

/// Milliseconds since the Unix epoch, UTC.
pub fn now_ms() -> i64 {
    wit::now_ms()
}

/// The reconciliation's "as of" business date.
pub fn as_of() -> Date {
    wit::as_of()
}
