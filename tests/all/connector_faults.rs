//! Fault injection against every PSA connector: one scenario — rate limits,
//! server errors, truncated JSON, slow responses, paging loops — run on
//! ConnectWise, Autotask and HaloPSA, with each PSA's own paths and request
//! lines as data. What only one PSA does (ConnectWise's per-minute limit,
//! looping additions; Autotask's zone URL) stays in its own module.

use std::time::Duration;

use trueup_conformance::psa::{Against, Connection};
use trueup_emulators::faults::FaultPlan;
use trueup_emulators::{Kind, Settings};
use trueup_emulators::{autotask as at, connectwise as cw};
use trueup_plugin_host::limits::LimitSettings;
use trueup_plugin_host::{CallError, CallErrorKind, ConnectorFailure, PsaSession};

use crate::connector_harness::{Emulator, all_contracts, as_of, connect_psa};

const SEED: u64 = 7;

/// Customers in the emulated world: enough for a looping listing to reach
/// its second page at the page sizes below.
const CUSTOMERS: usize = 600;

/// Pages a looping listing is followed for before the test calls it
/// followed.
const LOOP_PAGES: usize = 5;

/// One PSA's side of the scenario.
struct Psa {
    /// The plugin id.
    id: &'static str,
    /// Its emulator.
    against: Against,
    kind: Kind,
    /// Connector settings for the paging-loop case (a small page where the
    /// connector lets us choose one; Autotask's page is fixed at 500).
    small_pages: &'static [(&'static str, &'static str)],
    /// The company listing's path as the fault plan matches it.
    companies_path: &'static str,
    /// The request line a truncated company page must be named by.
    companies_request: fn(base: &str) -> String,
}

const PSAS: [Psa; 3] = [
    Psa {
        id: "trueup.connectwise",
        against: Against::ConnectWise,
        kind: Kind::ConnectWise,
        small_pages: &[("page_size", "10")],
        companies_path: "/company/companies",
        companies_request: |base| format!("GET {base}{}/company/companies", cw::BASE_PATH),
    },
    Psa {
        id: "trueup.autotask",
        against: Against::Autotask,
        kind: Kind::Autotask,
        small_pages: &[],
        companies_path: "/Companies",
        companies_request: |base| format!("POST {base}{}/v1.0/Companies/query", at::ZONE_ROOT),
    },
    Psa {
        id: "trueup.halopsa",
        against: Against::HaloPsa,
        kind: Kind::HaloPsa,
        small_pages: &[("page_size", "10")],
        companies_path: "/api/Client",
        companies_request: |base| format!("GET {base}/api/Client"),
    },
];

impl Psa {
    fn settings(&self) -> Settings {
        self.against.emulator_settings(as_of())
    }

    async fn emulator(&self) -> Emulator {
        Emulator::start(self.kind, SEED, CUSTOMERS, self.settings()).await
    }

    fn connect(
        &self,
        emulator: &Emulator,
        config: &[(&str, &str)],
        limits: LimitSettings,
    ) -> Connection {
        connect_psa(self.id, self.against, emulator, config, limits)
    }

    /// A fault plan limited to the company listing.
    fn on_companies(&self, plan: FaultPlan) -> FaultPlan {
        FaultPlan {
            path_contains: Some(self.companies_path.into()),
            ..plan
        }
    }
}

fn session(connection: &Connection) -> PsaSession {
    connection.session().expect("session")
}

/// The connector's `internal` message, or a panic naming what came instead.
fn internal(psa: &Psa, error: CallError) -> String {
    match error.kind {
        CallErrorKind::Connector(ConnectorFailure::Internal(message)) => message,
        other => panic!("{}: expected internal, got {other:?}", psa.id),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_rate_limited_with_the_psas_wait() {
    for psa in &PSAS {
        let emulator = psa.emulator().await;
        let connection = psa.connect(&emulator, &[], LimitSettings::default());
        emulator.faults(psa.on_companies(FaultPlan {
            rate_limited: 2,
            retry_after_secs: 9,
            ..FaultPlan::default()
        }));
        let error = session(&connection)
            .list_companies(None)
            .await
            .expect_err("429");
        assert_eq!(
            error.kind,
            CallErrorKind::Connector(ConnectorFailure::RateLimited {
                retry_after: Duration::from_secs(9)
            }),
            "{}",
            psa.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_transient_and_the_next_call_succeeds() {
    for psa in &PSAS {
        let emulator = psa.emulator().await;
        let connection = psa.connect(&emulator, &[], LimitSettings::default());
        emulator.faults(psa.on_companies(FaultPlan {
            server_errors: 1,
            ..FaultPlan::default()
        }));
        let mut session = session(&connection);
        let error = session.list_companies(None).await.expect_err("500");
        assert!(
            matches!(
                error.kind,
                CallErrorKind::Connector(ConnectorFailure::Upstream { status: 500, .. })
            ),
            "{}: {error}",
            psa.id
        );
        assert!(error.is_transient(), "{}: {error}", psa.id);
        let page = session.list_companies(None).await.expect("the retry");
        assert!(!page.items.is_empty(), "{}", psa.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_json_is_an_internal_error_naming_the_request() {
    for psa in &PSAS {
        let emulator = psa.emulator().await;
        let connection = psa.connect(&emulator, &[], LimitSettings::default());
        emulator.faults(psa.on_companies(FaultPlan {
            truncated: 1,
            ..FaultPlan::default()
        }));
        let error = session(&connection)
            .list_companies(None)
            .await
            .expect_err("truncated");
        let message = internal(psa, error);
        let request = (psa.companies_request)(emulator.base());
        assert!(message.contains(&request), "{}: {message}", psa.id);
        assert!(
            message.contains("not the JSON expected"),
            "{}: {message}",
            psa.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_response_past_the_deadline_is_the_hosts_timeout() {
    for psa in &PSAS {
        let emulator = psa.emulator().await;
        let limits = LimitSettings {
            call_timeout_ms: Some(1_000),
            ..LimitSettings::default()
        };
        let connection = psa.connect(&emulator, &[], limits);
        emulator.faults(psa.on_companies(FaultPlan {
            slow: 1,
            slow_ms: 4_000,
            ..FaultPlan::default()
        }));
        let error = session(&connection)
            .list_companies(None)
            .await
            .expect_err("timeout");
        assert!(
            matches!(error.kind, CallErrorKind::Timeout { .. }),
            "{}: {error}",
            psa.id
        );
        assert!(error.is_transient(), "{}: {error}", psa.id);
    }
}

/// Which listing a paging loop is injected into.
#[derive(Clone, Copy)]
enum Listing {
    Companies,
    Contracts,
}

/// Pages `listing` until an error, failing the test when the loop is
/// followed for [`LOOP_PAGES`] pages; the error must name the loop.
async fn assert_loop_stops(psa: &Psa, session: &mut PsaSession, listing: Listing) {
    let mut cursor: Option<String> = None;
    for _ in 0..LOOP_PAGES {
        let next = match listing {
            Listing::Companies => session
                .list_companies(cursor.as_deref())
                .await
                .map(|page| page.next_cursor),
            Listing::Contracts => session
                .list_contracts(&all_contracts(), cursor.as_deref())
                .await
                .map(|page| page.next_cursor),
        };
        match next {
            Ok(next) => cursor = Some(next.expect("the loop never ends the listing")),
            Err(error) => {
                let message = internal(psa, error);
                assert!(
                    message.contains("does not advance"),
                    "{}: {message}",
                    psa.id
                );
                return;
            }
        }
    }
    panic!("{}: the loop was followed", psa.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_listing_that_loops_is_reported_not_followed() {
    for psa in &PSAS {
        let emulator = psa.emulator().await;
        let connection = psa.connect(&emulator, psa.small_pages, LimitSettings::default());
        emulator.faults(psa.on_companies(FaultPlan {
            paging_loop: true,
            ..FaultPlan::default()
        }));
        assert_loop_stops(psa, &mut session(&connection), Listing::Companies).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_listing_that_loops_is_reported_not_followed() {
    // The contract listing of each PSA: agreements, contracts, recurring
    // invoices.
    let paths = ["/finance/agreements", "/Contracts", "/api/RecurringInvoice"];
    for (psa, path) in PSAS.iter().zip(paths) {
        let emulator = psa.emulator().await;
        let connection = psa.connect(&emulator, psa.small_pages, LimitSettings::default());
        emulator.faults(FaultPlan {
            paging_loop: true,
            path_contains: Some(path.into()),
            ..FaultPlan::default()
        });
        assert_loop_stops(psa, &mut session(&connection), Listing::Contracts).await;
    }
}
