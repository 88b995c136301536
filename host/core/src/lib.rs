//! Trueup's billing domain, free of I/O: the normalized model, billing
//! cycles and effective dates, proration, account matching, and
//! reconciliation of vendor usage against PSA recurring services into
//! service cards.

pub mod model;
