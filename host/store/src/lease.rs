//! Leases of the store's two leased queues (the job queue and the
//! write-back outbox): when a lease ends, and whether a worker still held
//! the row it acted on.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Result, StoreError};

/// `now + lease`, saturating.
pub(crate) fn lease_end(
    operation: &'static str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<DateTime<Utc>> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| StoreError::invalid(operation, format!("lease {lease:?} is too long")))
}

/// `Ok` when the statement changed exactly the one row the worker
/// leased, [`StoreError::LeaseLost`] otherwise.
pub(crate) fn lease_held(
    operation: &'static str,
    what: &'static str,
    id: i64,
    worker: &str,
    rows: u64,
) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost {
            operation,
            what,
            id,
            worker: worker.to_owned(),
        })
    }
}
