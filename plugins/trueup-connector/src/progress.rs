//! Progress of a long call (a sync page, a write), shown live in the UI.
//!
//! Report after each unit of work (an API page, a batch of records), with
//! the running count across the whole listing (carry it in the cursor) and
//! the total when the service says it. Reports are cheap host calls, not
//! log lines: the host passes them to its progress sink and drops them when
//! nothing listens.

use crate::bindings::trueup::connector::progress as wit;

/// Reports `done` of `total` units (`None` when the total is unknown) with a
/// short message such as "companies page 3".
pub fn report(done: u64, total: Option<u64>, message: &str) {
    wit::report(done, total, message);
}
