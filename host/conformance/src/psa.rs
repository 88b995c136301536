//! The PSA connector conformance kit behind `trueup plugin test <plugin>
//! --against <emulator>`: one standard scenario run against a bundled
//! emulator (from `trueup-emulators`, started in-process on a loopback
//! port), printed as a pass/fail table.
//!
//! The scenario:
//!
//! 1. **describe**: the id matches `plugin.toml`, and the connector offers
//!    `write-quantity`, `plan-quantity-change` and `read-line`;
//! 2. **full sync with paging**: every company (over more than one page),
//!    every contract, and the services of every contract in batches of
//!    [`SERVICES_BATCH`] ids; the eligible lines, judged by the host's own
//!    eligibility rules, must bill exactly the emulated world's billing
//!    truth per customer and product; and page 2 of each listing, read in
//!    a fresh instance from page 1's cursor, must be the same page;
//! 3. **plan**: the dry run of a quantity change lists the calls (with a
//!    write among them, no secret in them) and sends no write;
//! 4. **write**: applying it changes the line, and the writes the emulator
//!    received are exactly the plan's;
//! 5. **read-back**: `read-line` shows the new quantity;
//! 6. **repeated write**: applying the same change again changes nothing
//!    and sends no write;
//! 7. **add a line**: a change without a line ("new revenue found") for a
//!    catalogue product an eligible monthly contract has no line of, at
//!    [`ADD_QUANTITY`]: its dry run lists the calls (a write among them)
//!    and sends no write; applying it sends exactly the planned writes and
//!    answers a new line of that product with the quantity and the
//!    catalogue's price; `read-line` shows it; applying it again changes
//!    nothing, sends no write and answers the same line;
//! 8. **faults**: a 429 burst gives `rate-limited` with the `Retry-After`
//!    wait, a 500 a transient `upstream`, truncated JSON an `internal`
//!    error naming the URL, and a paging loop is detected and reported
//!    within [`LOOP_CALLS`] calls;
//! 9. **what real servers do** (issue 14): the lines' product keys are the
//!    PSA's stable ids (one id per catalogue item, never its name); the
//!    full sync asked for at most one OAuth token (a PSA without tokens,
//!    none); a company listing whose first [`RATE_LIMITED_REQUESTS`]
//!    requests are answered `429` with `Retry-After` finishes with every
//!    company and not before the waits (the connector waits, or reports
//!    `rate-limited` and the kit waits); and a full sync against an
//!    emulator that serves at most [`PAGE_CAP`] records a page — fewer than
//!    any connector asks for — still bills the world's truth (paging to the
//!    documented end, never by a short page).
//!
//! What the truth check of step 2 also covers: lines read when a listing
//! omits them (the world's lines must all be billed) and dates the PSA
//! leaves unset (a contract read with a sentinel end would not bill).
//! One malformed record among good ones (an emulator serving one contract
//! with an unreadable start date): WIT 0.1 has no way to report a
//! per-record exclusion, so the check asserts what it allows — the sync
//! fails loudly quoting what was seen, never succeeds without the record.
//!
//! The plugin's config and grants are pointed at the emulator: the config
//! keys of the shipped connectors are set (see [`Against::config`]) where
//! the manifest declares them, the emulator's origin and loopback are
//! granted, and the emulator's credentials are given as the declared
//! secrets. The helpers ([`full_sync`], [`truth_mismatches`], ...) are
//! public so tests and benchmarks drive connectors the same way.

mod against;
mod change;
mod connect;
mod faults;
mod hardening;
mod scenario;
mod sync;
mod writes;

pub use against::{Against, secrets_for, settings_for};
pub use change::{ADD_QUANTITY, WRITE_INCREMENT, add_line_change, product_missing_from};
pub use connect::{ConformanceError, Connection, connect};
pub use faults::{LOOP_CALLS, RETRY_AFTER_SECS};
pub use hardening::{
    MAX_RATE_LIMITED_CALLS, PAGE_CAP, RATE_LIMIT_RETRY_AFTER_SECS, RATE_LIMITED_REQUESTS,
};
pub use scenario::{SCENARIO_CUSTOMERS, SCENARIO_SEED, Scenario, run};
pub use sync::{Cost, MAX_PAGES, SERVICES_BATCH, SyncError, Synced, full_sync, truth_mismatches};

pub use crate::report::Check;

/// The outcome of a scenario run against a PSA emulator.
pub type Report = crate::report::Report<Against>;
