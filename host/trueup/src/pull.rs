//! Pulling a PSA's or a vendor's data through a connector session: every
//! page, with retries on rate limits and transient failures, into the core
//! model.
//!
//! A pull either returns everything or fails with what went wrong and how
//! far it got. There is no "partial success": the caller records a failed
//! sync and keeps the previous data, which stays marked with its own date —
//! stale data is never shown as fresh.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use trueup_core::cycles::CycleAnchor;
use trueup_core::eligibility;
use trueup_core::model::{Company, Contract, ServiceLine, UsageObservation, VendorAccount};
use trueup_plugin_host::{
    CallError, CallErrorKind, CallStats, ConnectorFailure, ContractFilter, Page, PsaSession,
    VendorSession,
};

use crate::backoff::Backoff;

/// Contract ids per `list-services` call (the WIT contract's maximum).
pub const SERVICES_BATCH: usize = 200;

/// Pages one listing may take before the pull stops as runaway.
pub const MAX_PAGES_PER_LISTING: u32 = 100_000;

/// How calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call for transient failures (5xx, timeouts, garbled
    /// responses), including the first.
    pub max_attempts: u32,
    /// First backoff; doubles each retry.
    pub base_backoff: Duration,
    /// Longest single backoff.
    pub max_backoff: Duration,
    /// Longest single wait a `rate-limited` answer may impose.
    pub max_rate_limit_wait: Duration,
    /// Total time a pull may spend waiting on rate limits.
    pub rate_limit_budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(300),
            rate_limit_budget: Duration::from_secs(1800),
        }
    }
}

/// What a pull cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Export calls made (retries included).
    pub calls: u32,
    /// Pages received.
    pub pages: u32,
    /// HTTP requests the connector sent.
    pub requests: u64,
    /// Calls retried.
    pub retries: u32,
    /// Time spent waiting because of `rate-limited`.
    pub rate_limit_wait: Duration,
    /// Time spent backing off after transient failures.
    pub backoff_wait: Duration,
    /// Time inside WebAssembly.
    pub wasm_time: Duration,
    /// Time in host calls (HTTP).
    pub host_time: Duration,
    /// Wall time of the whole pull.
    pub wall: Duration,
}

impl PullStats {
    fn add_call(&mut self, stats: Option<CallStats>) {
        self.calls += 1;
        if let Some(stats) = stats {
            self.requests += u64::from(stats.requests);
            self.wasm_time += stats.wasm_time;
            self.host_time += stats.host_time;
        }
    }
}

/// Why a pull stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// A call failed and retrying did not help (or could not).
    #[error("{phase}: {error}")]
    Call {
        /// What was being read, e.g. "companies".
        phase: &'static str,
        /// The last error.
        error: CallError,
        /// The cost so far.
        stats: PullStats,
    },
    /// The connector handed back a cursor it had already returned.
    #[error(
        "{phase}: the connector returned a paging cursor it had already returned ({cursor:?}); stopping instead of looping (a connector or upstream paging bug)"
    )]
    PagingLoop {
        /// What was being read.
        phase: &'static str,
        /// The repeated cursor, truncated.
        cursor: String,
        /// The cost so far.
        stats: PullStats,
    },
    /// Too many pages.
    #[error("{phase}: more than {MAX_PAGES_PER_LISTING} pages; stopping")]
    TooManyPages {
        /// What was being read.
        phase: &'static str,
        /// The cost so far.
        stats: PullStats,
    },
    /// Rate limits ate the whole waiting budget.
    #[error(
        "{phase}: waited {waited:?} on rate limits, more than the budget; the service is throttling us (other integrations may share its limit)"
    )]
    RateLimitBudget {
        /// What was being read.
        phase: &'static str,
        /// Time waited.
        waited: Duration,
        /// The cost so far.
        stats: PullStats,
    },
}

impl PullError {
    /// The cost so far.
    pub fn stats(&self) -> PullStats {
        match self {
            PullError::Call { stats, .. }
            | PullError::PagingLoop { stats, .. }
            | PullError::TooManyPages { stats, .. }
            | PullError::RateLimitBudget { stats, .. } => *stats,
        }
    }
}

/// Progress of a pull, for the live view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// What is being read.
    pub phase: &'static str,
    /// Records read so far in this phase.
    pub records: u64,
    /// Pages read so far in this phase.
    pub pages: u32,
}

/// The retry loop around one export call.
struct Retrier<'a> {
    policy: &'a RetryPolicy,
    stats: PullStats,
    progress: &'a (dyn Fn(PullProgress) + Send + Sync),
}

impl Retrier<'_> {
    /// Waits as `error` asks, or returns the error to stop with.
    async fn wait_or_stop(
        &mut self,
        phase: &'static str,
        attempt: u32,
        error: CallError,
    ) -> Result<(), PullError> {
        let wait = match &error.kind {
            CallErrorKind::Connector(ConnectorFailure::RateLimited { retry_after }) => {
                let wait = (*retry_after)
                    .max(Duration::from_millis(100))
                    .min(self.policy.max_rate_limit_wait);
                if self.stats.rate_limit_wait + wait > self.policy.rate_limit_budget {
                    return Err(PullError::RateLimitBudget {
                        phase,
                        waited: self.stats.rate_limit_wait,
                        stats: self.stats,
                    });
                }
                self.stats.rate_limit_wait += wait;
                tracing::info!(
                    phase,
                    ?wait,
                    "rate limited; waiting before retrying the same page"
                );
                wait
            }
            _ if error.is_transient() && attempt < self.policy.max_attempts => {
                let wait =
                    Backoff::new(self.policy.base_backoff, self.policy.max_backoff).delay(attempt);
                self.stats.backoff_wait += wait;
                tracing::warn!(phase, attempt, ?wait, error = %error, "transient failure; retrying");
                wait
            }
            _ => {
                return Err(PullError::Call {
                    phase,
                    error,
                    stats: self.stats,
                });
            }
        };
        self.stats.retries += 1;
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// One listing being paged: the cursor to ask for next, the items read so
/// far, and the checks against a loop or a runaway listing. The caller makes
/// each call itself and hands the answer to [`Listing::take`]:
///
/// ```text
/// let mut listing = Listing::new("companies");
/// while !listing.is_done() {
///     let result = session.list_companies(listing.cursor()).await;
///     listing.take(&mut retrier, result, session.last_call()).await?;
/// }
/// ```
///
/// A pager rather than a function taking the call as a closure: a closure
/// that borrows the session for each call is higher-ranked, and rustc cannot
/// prove a future holding it `Send` (rust-lang/rust#100013), which kept sync
/// jobs from being spawned as tasks.
struct Listing<T> {
    phase: &'static str,
    items: Vec<T>,
    cursor: Option<String>,
    seen: HashSet<String>,
    pages: u32,
    /// Failed attempts at the current page.
    attempt: u32,
    done: bool,
}

impl<T> Listing<T> {
    fn new(phase: &'static str) -> Self {
        Self {
            phase,
            items: Vec::new(),
            cursor: None,
            seen: HashSet::new(),
            pages: 0,
            attempt: 0,
            done: false,
        }
    }

    /// Whether the listing has ended (the last page had no next cursor).
    fn is_done(&self) -> bool {
        self.done
    }

    /// The cursor the next call asks for (`None` for the first page).
    fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// Takes the answer to a call for [`Listing::cursor`]: a page moves the
    /// listing on; a failure waits as it asks (the same page is asked for
    /// again) or stops the pull.
    async fn take(
        &mut self,
        retrier: &mut Retrier<'_>,
        result: Result<Page<T>, CallError>,
        stats: Option<CallStats>,
    ) -> Result<(), PullError> {
        self.attempt += 1;
        retrier.stats.add_call(stats);
        let page = match result {
            Ok(page) => page,
            Err(error) => return retrier.wait_or_stop(self.phase, self.attempt, error).await,
        };
        self.attempt = 0;
        self.pages += 1;
        retrier.stats.pages += 1;
        self.items.extend(page.items);
        (retrier.progress)(PullProgress {
            phase: self.phase,
            records: self.items.len() as u64,
            pages: self.pages,
        });
        let Some(next) = page.next_cursor else {
            self.done = true;
            return Ok(());
        };
        if !self.seen.insert(next.clone()) || self.cursor.as_deref() == Some(next.as_str()) {
            return Err(PullError::PagingLoop {
                phase: self.phase,
                cursor: next.chars().take(120).collect(),
                stats: retrier.stats,
            });
        }
        if self.pages >= MAX_PAGES_PER_LISTING {
            return Err(PullError::TooManyPages {
                phase: self.phase,
                stats: retrier.stats,
            });
        }
        self.cursor = Some(next);
        Ok(())
    }

    /// Everything read.
    fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// Everything read from a PSA.
#[derive(Debug, Clone, Default)]
pub struct PsaPull {
    /// Companies.
    pub companies: Vec<Company>,
    /// Contracts of the selected types, any status.
    pub contracts: Vec<Contract>,
    /// Lines of the contracts that are reconciled (active, recurring).
    pub lines: Vec<ServiceLine>,
    /// What it cost.
    pub stats: PullStats,
}

/// Reads companies, contracts and the recurring services of eligible
/// contracts. Lines of contracts that cannot be reconciled (inactive,
/// cancelled, one-time ...) are not fetched: that saves the PSA's request
/// budget, and the contracts themselves are kept so the exclusions show.
///
/// # Errors
/// [`PullError`] with the phase and the cost so far.
pub async fn pull_psa(
    session: &mut PsaSession,
    filter: &ContractFilter,
    as_of: NaiveDate,
    anchor: CycleAnchor,
    policy: &RetryPolicy,
    progress: &(dyn Fn(PullProgress) + Send + Sync),
) -> Result<PsaPull, PullError> {
    let started = Instant::now();
    let mut retrier = Retrier {
        policy,
        stats: PullStats::default(),
        progress,
    };
    let mut listing = Listing::new("companies");
    while !listing.is_done() {
        let result = session.list_companies(listing.cursor()).await;
        listing
            .take(&mut retrier, result, session.last_call())
            .await?;
    }
    let companies = listing.into_items();
    let mut listing = Listing::new("contracts");
    while !listing.is_done() {
        let result = session.list_contracts(filter, listing.cursor()).await;
        listing
            .take(&mut retrier, result, session.last_call())
            .await?;
    }
    let contracts = listing.into_items();
    let eligible = eligibility::assess(&companies, &contracts, &[], as_of, anchor);
    let ids: Vec<String> = eligible
        .contracts
        .iter()
        .map(|c| contracts[c.contract].id.to_string())
        .collect();
    let mut lines = Vec::new();
    for batch in ids.chunks(SERVICES_BATCH) {
        let mut listing = Listing::new("services");
        while !listing.is_done() {
            let result = session.list_services(batch, listing.cursor()).await;
            listing
                .take(&mut retrier, result, session.last_call())
                .await?;
        }
        lines.append(&mut listing.into_items());
    }
    retrier.stats.wall = started.elapsed();
    Ok(PsaPull {
        companies,
        contracts,
        lines,
        stats: retrier.stats,
    })
}

/// Everything read from a vendor.
#[derive(Debug, Clone, Default)]
pub struct VendorPull {
    /// Accounts.
    pub accounts: Vec<VendorAccount>,
    /// Usage of every account.
    pub usage: Vec<UsageObservation>,
    /// What it cost.
    pub stats: PullStats,
}

/// Reads accounts and their usage: in one listing when the connector
/// supports `usage-all-accounts`, else account by account.
///
/// # Errors
/// [`PullError`] with the phase and the cost so far.
pub async fn pull_vendor(
    session: &mut VendorSession,
    policy: &RetryPolicy,
    progress: &(dyn Fn(PullProgress) + Send + Sync),
) -> Result<VendorPull, PullError> {
    let started = Instant::now();
    let mut retrier = Retrier {
        policy,
        stats: PullStats::default(),
        progress,
    };
    let description = {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = session.describe().await;
            retrier.stats.add_call(session.last_call());
            match result {
                Ok(description) => break description,
                Err(error) => retrier.wait_or_stop("describe", attempt, error).await?,
            }
        }
    };
    let mut listing = Listing::new("accounts");
    while !listing.is_done() {
        let result = session.list_accounts(listing.cursor()).await;
        listing
            .take(&mut retrier, result, session.last_call())
            .await?;
    }
    let accounts = listing.into_items();
    let usage = if description
        .capabilities
        .iter()
        .any(|c| c == "usage-all-accounts")
    {
        let mut listing = Listing::new("usage");
        while !listing.is_done() {
            let result = session.list_usage(None, listing.cursor()).await;
            listing
                .take(&mut retrier, result, session.last_call())
                .await?;
        }
        listing.into_items()
    } else {
        let mut all = Vec::new();
        for account in &accounts {
            let id = account.id.to_string();
            let mut listing = Listing::new("usage");
            while !listing.is_done() {
                let result = session.list_usage(Some(&id), listing.cursor()).await;
                listing
                    .take(&mut retrier, result, session.last_call())
                    .await?;
            }
            all.append(&mut listing.into_items());
        }
        all
    };
    retrier.stats.wall = started.elapsed();
    Ok(VendorPull {
        accounts,
        usage,
        stats: retrier.stats,
    })
}
