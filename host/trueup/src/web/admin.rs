//! Administration, one file per purpose: integrations (plugins, grants,
//! write-only secrets, sync health), jobs (sync and reconcile now, jobs,
//! schedules), account and SKU mappings, rules (check, test, dry-run,
//! explain, activate), users, API tokens and the audit log.

pub mod audit;
pub mod integrations;
pub mod jobs;
pub mod mappings;
pub mod rules;
pub mod tokens;
pub mod users;
