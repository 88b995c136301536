//! Calling a plugin: a session owns one instance (one store) and makes calls
//! on it one at a time, each under the plugin's wall-clock deadline, CPU
//! budget and memory cap.
//!
//! There is one session mechanism, [`Session`], generic over the [`World`]
//! of the contract it speaks: [`PsaSession`] (`Session<Psa>`) and
//! [`VendorSession`] (`Session<Vendor>`) share instantiation, limits,
//! classification and statistics, and differ only in their exports.
//!
//! A session keeps its instance between calls (a connector may cache an
//! OAuth token for the life of a sync). A trap or timeout drops the
//! instance; the next call gets a fresh one, and other plugins and the host
//! carry on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use trueup_core::model::{
    Company, Contract, ServiceLine, UsageObservation, VendorAccount, VendorId,
};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::error::{CallError, CallErrorKind, ConnectorFailure, LoadError};
use crate::host::{CallState, HostState, SessionOptions, StopReason};
use crate::journal::{JournalHook, WriteJournal};
use crate::plugin::{LoadedPlugin, PluginPre};
use trueup_core::catalog::CatalogProduct;

use crate::types::{
    ConnectorDescription, ContractFilter, CostChange, Page, PlannedCall, PluginKind, PsaContract,
    PsaLine, QuantityChange, WriteOutcome,
};
use crate::wit::since_v0_1_0::{self as v0_1, psa, types, vendor};
use crate::wit::since_v0_2_0::{self as v0_2, psa as psa_v0_2, vendor as vendor_v0_2};

/// What one export call cost: for benchmarks and sync health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallStats {
    /// The export.
    pub export: &'static str,
    /// Wall time of the call.
    pub wall: std::time::Duration,
    /// Time inside host calls (HTTP round trips).
    pub host_time: std::time::Duration,
    /// Time running WebAssembly: wall time minus host time.
    pub wasm_time: std::time::Duration,
    /// HTTP requests sent.
    pub requests: u32,
}

mod sealed {
    /// Only this crate's worlds: a session's exports are written per world.
    pub trait Sealed {}
}

/// A world of the `trueup:connector` contract, as a session speaks it.
/// Implemented by [`Psa`] and [`Vendor`] only.
pub trait World: sealed::Sealed {
    /// The kind of plugin that implements this world.
    const KIND: PluginKind;
}

/// The `psa-connector` world: companies, contracts, services, write-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Psa;

/// The `vendor-connector` world: accounts and usage, reported as one vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vendor {
    /// The vendor the usage is reported as.
    vendor: VendorId,
}

impl sealed::Sealed for Psa {}
impl sealed::Sealed for Vendor {}

impl World for Psa {
    const KIND: PluginKind = PluginKind::Psa;
}

impl World for Vendor {
    const KIND: PluginKind = PluginKind::Vendor;
}

/// A session with a PSA connector.
pub type PsaSession = Session<Psa>;

/// A session with a vendor connector.
pub type VendorSession = Session<Vendor>;

/// A session with a connector of world `W`.
pub struct Session<W> {
    caller: Caller,
    last_call: Option<CallStats>,
    live: Option<Live>,
    world: W,
}

struct Live {
    store: Store<HostState>,
    bindings: Bindings,
    _slot: OwnedSemaphorePermit,
}

/// An instance's bindings, by API version and world (as [`PluginPre`]).
enum Bindings {
    PsaV0_1(psa::PsaConnector),
    VendorV0_1(vendor::VendorConnector),
    PsaV0_2(psa_v0_2::PsaConnector),
    VendorV0_2(vendor_v0_2::VendorConnector),
}

/// An export's answer from a plugin of either version line, before it is
/// converted to the host's types.
enum Answer<A, B> {
    V0_1(A),
    V0_2(B),
}

/// A 0.2 call's raw result in the shape the classifier reads (its error
/// lowered to 0.1's, which has the same cases).
fn v0_2_answer<A, B>(
    result: wasmtime::Result<Result<B, v0_2::types::ConnectorError>>,
) -> wasmtime::Result<Result<Answer<A, B>, types::ConnectorError>> {
    result.map(|r| r.map(Answer::V0_2).map_err(v0_2::convert::lower_error))
}

/// A 0.1 call's raw result as an [`Answer`].
fn v0_1_answer<A, B>(
    result: wasmtime::Result<Result<A, types::ConnectorError>>,
) -> wasmtime::Result<Result<Answer<A, B>, types::ConnectorError>> {
    result.map(|r| r.map(Answer::V0_1))
}

fn not_psa<T>() -> wasmtime::Result<T> {
    Err(wasmtime::Error::msg("not a PSA plugin"))
}

fn not_vendor<T>() -> wasmtime::Result<T> {
    Err(wasmtime::Error::msg("not a vendor plugin"))
}

impl Bindings {
    /// Instantiates the loaded plugin's `InstancePre`.
    async fn instantiate(pre: &PluginPre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        match pre {
            PluginPre::PsaV0_1(pre) => pre.instantiate_async(store).await.map(Bindings::PsaV0_1),
            PluginPre::VendorV0_1(pre) => {
                pre.instantiate_async(store).await.map(Bindings::VendorV0_1)
            }
            PluginPre::PsaV0_2(pre) => pre.instantiate_async(store).await.map(Bindings::PsaV0_2),
            PluginPre::VendorV0_2(pre) => {
                pre.instantiate_async(store).await.map(Bindings::VendorV0_2)
            }
        }
    }
}

/// The outcome of one raw export call before classification.
type RawOutcome<T> =
    Result<wasmtime::Result<Result<T, types::ConnectorError>>, tokio::time::error::Elapsed>;

fn new_store(plugin: &LoadedPlugin, options: &SessionOptions) -> Store<HostState> {
    let mut store = Store::new(
        plugin.engine.engine(),
        HostState::new(plugin.context.clone(), options.clone()),
    );
    store.limiter(|state| state as &mut dyn wasmtime::ResourceLimiter);
    let cpu_budget = plugin.context.limits.cpu_budget;
    store.epoch_deadline_callback(move |mut ctx| {
        let call = &mut ctx.data_mut().call;
        let now = Instant::now();
        if now >= call.deadline {
            call.stopped = Some(StopReason::Deadline);
            return Err(wasmtime::Error::msg("wall-clock deadline exceeded"));
        }
        let wasm_time = now
            .duration_since(call.started)
            .saturating_sub(call.host_time);
        if wasm_time > cpu_budget {
            call.stopped = Some(StopReason::CpuBudget);
            return Err(wasmtime::Error::msg("CPU budget exceeded"));
        }
        // Yield to the executor every tick: a busy guest never starves the
        // other tasks on this thread, and the call's timeout can fire.
        Ok(UpdateDeadline::Yield(1))
    });
    store.set_epoch_deadline(1);
    store
}

fn begin_call(store: &mut Store<HostState>, export: &'static str, read_only: bool) {
    let timeout = store.data().plugin.limits.call_timeout;
    let mut call = CallState::idle();
    call.export = export;
    call.started = Instant::now();
    call.deadline = call.started + timeout;
    call.read_only = read_only;
    store.data_mut().call = call;
    store.set_epoch_deadline(1);
}

/// Frames of one function, repeated, that mark an out-of-bounds access as a
/// stack overflow (see [`shadow_stack_overflow`]). wasmtime captures at most
/// 20 frames of a trap's backtrace.
const OVERFLOW_MIN_FRAMES: usize = 16;

/// Whether an out-of-bounds memory trap is really a stack overflow.
///
/// Languages compiled to WebAssembly (Rust, C) keep their stack frames in
/// linear memory, below a stack pointer that starts at the top of a fixed
/// region. Unbounded recursion runs that pointer off the bottom of memory,
/// which traps as an out-of-bounds access, not as wasm's own
/// `StackOverflow`. Hundreds of frames deep, with the same function
/// repeated (a full backtrace of one function), it is the overflow, and is
/// reported as one.
fn shadow_stack_overflow(trap: &wasmtime::Error) -> bool {
    let Some(backtrace) = trap.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = backtrace.frames();
    frames.len() >= OVERFLOW_MIN_FRAMES
        && frames
            .windows(2)
            .all(|pair| pair[0].func_index() == pair[1].func_index())
}

/// A session's identity and classification, apart from its instance so
/// both can be borrowed at once.
struct Caller {
    plugin: Arc<LoadedPlugin>,
    options: SessionOptions,
}

impl Caller {
    fn error(&self, export: &'static str, kind: CallErrorKind) -> CallError {
        CallError {
            plugin: self.plugin.manifest().id.clone(),
            version: self.plugin.manifest().version.clone(),
            export,
            kind,
        }
    }

    async fn slot(&self, export: &'static str) -> Result<OwnedSemaphorePermit, CallError> {
        self.plugin
            .engine
            .slots()
            .acquire_owned()
            .await
            .map_err(|_| {
                self.error(
                    export,
                    CallErrorKind::Instantiate {
                        message: "the plugin runtime is shutting down".into(),
                    },
                )
            })
    }

    /// Turns a raw outcome into a result. Every error that is a trap
    /// ([`CallError::is_trap`]) means the instance must be dropped.
    fn classify<T>(
        &self,
        export: &'static str,
        store: &Store<HostState>,
        outcome: RawOutcome<T>,
    ) -> Result<T, CallError> {
        let state = store.data();
        let limits = state.plugin.limits;
        let call = &state.call;
        let result = match outcome {
            Err(_elapsed) => {
                return Err(self.error(
                    export,
                    CallErrorKind::Timeout {
                        limit: limits.call_timeout,
                    },
                ));
            }
            Ok(result) => result,
        };
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(connector_error)) => {
                if let Some(denial) = call.denials.first() {
                    return Err(self.error(
                        export,
                        CallErrorKind::CapabilityDenied {
                            message: denial.clone(),
                        },
                    ));
                }
                Err(self.error(
                    export,
                    CallErrorKind::Connector(self.failure(connector_error, state)),
                ))
            }
            Err(trap) => {
                let kind = match call.stopped {
                    Some(StopReason::Deadline) => CallErrorKind::Timeout {
                        limit: limits.call_timeout,
                    },
                    Some(StopReason::CpuBudget) => CallErrorKind::CpuBudget {
                        limit: limits.cpu_budget,
                    },
                    Some(StopReason::MemoryLimit) => CallErrorKind::MemoryLimit {
                        limit_mib: limits.memory_bytes / (1024 * 1024),
                    },
                    None => match trap.downcast_ref::<Trap>() {
                        Some(Trap::StackOverflow) => CallErrorKind::StackOverflow,
                        Some(Trap::MemoryOutOfBounds) if shadow_stack_overflow(&trap) => {
                            CallErrorKind::StackOverflow
                        }
                        _ => match &call.panic_message {
                            Some(message) => CallErrorKind::Panic {
                                message: message.clone(),
                            },
                            None => CallErrorKind::Trap {
                                message: state.redact(&trap.root_cause().to_string()),
                            },
                        },
                    },
                };
                tracing::warn!(
                    plugin = %self.plugin.manifest().id,
                    export,
                    "plugin call failed and its instance was dropped: {kind}"
                );
                Err(self.error(export, kind))
            }
        }
    }

    fn failure(&self, error: types::ConnectorError, state: &HostState) -> ConnectorFailure {
        use types::ConnectorError as E;
        match error {
            E::AuthFailed(m) => ConnectorFailure::AuthFailed(state.redact(&m)),
            E::RateLimited(ms) => ConnectorFailure::RateLimited {
                retry_after: std::time::Duration::from_millis(ms),
            },
            E::NotFound(m) => ConnectorFailure::NotFound(state.redact(&m)),
            E::InvalidConfig(m) => ConnectorFailure::InvalidConfig(state.redact(&m)),
            E::Upstream(u) => ConnectorFailure::Upstream {
                status: u.status,
                body: state.redact(&u.body),
                retryable: u.retryable,
            },
            E::Internal(m) => ConnectorFailure::Internal(state.redact(&m)),
        }
    }

    fn invalid(&self, export: &'static str, detail: v0_1::convert::Invalid) -> CallError {
        let kind = match detail {
            v0_1::convert::Invalid::TooLarge(detail) => CallErrorKind::OutputTooLarge { detail },
            v0_1::convert::Invalid::Malformed(detail) => CallErrorKind::InvalidOutput { detail },
        };
        self.error(export, kind)
    }

    /// The live instance, instantiating one (in a pool slot) when there is
    /// none.
    async fn ensure_live<'a>(
        &self,
        live: &'a mut Option<Live>,
        export: &'static str,
    ) -> Result<&'a mut Live, CallError> {
        if live.is_none() {
            let slot = self.slot(export).await?;
            let mut store = new_store(&self.plugin, &self.options);
            begin_call(&mut store, export, false);
            let bindings = Bindings::instantiate(&self.plugin.pre, &mut store)
                .await
                .map_err(|e| {
                    self.error(
                        export,
                        CallErrorKind::Instantiate {
                            message: format!("{e:#}"),
                        },
                    )
                })?;
            *live = Some(Live {
                store,
                bindings,
                _slot: slot,
            });
        }
        live.as_mut().ok_or_else(|| {
            self.error(
                export,
                CallErrorKind::Instantiate {
                    message: "no instance".into(),
                },
            )
        })
    }
}

impl<W: World> Session<W> {
    /// Opens a session speaking world `W` with `plugin` (instantiation is
    /// lazy).
    fn open(
        plugin: &Arc<LoadedPlugin>,
        world: W,
        options: SessionOptions,
    ) -> Result<Self, LoadError> {
        if plugin.kind() != W::KIND {
            return Err(LoadError::WrongKind {
                plugin: plugin.manifest().id.clone(),
                expected: W::KIND,
                actual: plugin.kind(),
            });
        }
        Ok(Self {
            caller: Caller {
                plugin: plugin.clone(),
                options,
            },
            last_call: None,
            live: None,
            world,
        })
    }

    /// The cost of the last call made on this session.
    pub fn last_call(&self) -> Option<CallStats> {
        self.last_call
    }

    /// Creates the instance now rather than at the first call (to measure
    /// instantiation, or to check that the plugin starts).
    ///
    /// # Errors
    /// [`CallErrorKind::Instantiate`] when it cannot start.
    pub async fn instantiate(&mut self) -> Result<(), CallError> {
        self.caller
            .ensure_live(&mut self.live, "instantiate")
            .await
            .map(|_| ())
    }

    /// Whether an instance is alive (false after a trap until the next call).
    pub fn is_instantiated(&self) -> bool {
        self.live.is_some()
    }

    /// Starts a call of `export`: the live instance (instantiated when there
    /// is none) with its call state reset, and the call's time limit. The
    /// caller runs the export under that limit and hands the outcome to
    /// [`Session::settle`].
    ///
    /// Each export is an `async` block between the two, not an async closure
    /// handed to one method: a closure's future over borrowed arguments is
    /// higher-ranked, and rustc can fail to prove such a future `Send` inside
    /// a caller's spawned task.
    async fn enter(
        &mut self,
        export: &'static str,
        read_only: bool,
    ) -> Result<(&Bindings, &mut Store<HostState>, Duration), CallError> {
        let live = self.caller.ensure_live(&mut self.live, export).await?;
        begin_call(&mut live.store, export, read_only);
        let timeout = live.store.data().plugin.limits.call_timeout;
        Ok((&live.bindings, &mut live.store, timeout))
    }

    /// Finishes a call of `export`: records its [`CallStats`], classifies
    /// the outcome, and drops the instance when the call trapped.
    fn settle<T>(&mut self, export: &'static str, outcome: RawOutcome<T>) -> Result<T, CallError> {
        let Some(live) = &self.live else {
            return Err(self.caller.error(
                export,
                CallErrorKind::Instantiate {
                    message: "no instance".into(),
                },
            ));
        };
        let call = &live.store.data().call;
        let wall = call.started.elapsed();
        self.last_call = Some(CallStats {
            export,
            wall,
            host_time: call.host_time,
            wasm_time: wall.saturating_sub(call.host_time),
            requests: call.requests,
        });
        let result = self.caller.classify(export, &live.store, outcome);
        if result.as_ref().is_err_and(CallError::is_trap) {
            self.live = None;
        }
        result
    }

    /// `describe`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn describe(&mut self) -> Result<ConnectorDescription, CallError> {
        let (bindings, store, limit) = self.enter("describe", false).await?;
        let outcome = tokio::time::timeout(limit, async {
            match bindings {
                Bindings::PsaV0_1(b) => b.trueup_connector_psa().call_describe(store).await,
                Bindings::VendorV0_1(b) => b.trueup_connector_vendor().call_describe(store).await,
                Bindings::PsaV0_2(b) => b
                    .trueup_connector_psa()
                    .call_describe(store)
                    .await
                    .map(v0_2::convert::lower_info),
                Bindings::VendorV0_2(b) => b
                    .trueup_connector_vendor()
                    .call_describe(store)
                    .await
                    .map(v0_2::convert::lower_info),
            }
            .map(Ok)
        })
        .await;
        let info = self.settle("describe", outcome)?;
        Ok(v0_1::convert::description(info))
    }

    /// The API version line of the plugin this session speaks to.
    pub fn api_version(&self) -> crate::wit::ApiVersion {
        self.caller.plugin.api_version()
    }

    /// The error for an export `since` a version the plugin predates.
    fn unsupported(&self, export: &'static str, since: &str) -> CallError {
        let plugin = self.caller.plugin.manifest();
        self.caller.error(
            export,
            CallErrorKind::Unsupported {
                message: format!(
                    "{export} needs trueup:connector@{since} or later, but the plugin was built for {}: ask its author for a build against {since} (wit/README.md says how to move a connector)",
                    plugin.api
                ),
            },
        )
    }
}

impl LoadedPlugin {
    /// Opens a session with this PSA plugin (instantiation is lazy).
    ///
    /// # Errors
    /// [`crate::LoadError::WrongKind`] for a vendor plugin.
    pub fn psa_session(self: &Arc<Self>, options: SessionOptions) -> Result<PsaSession, LoadError> {
        Session::open(self, Psa, options)
    }

    /// Opens a session with this vendor plugin, reporting usage as `vendor`.
    ///
    /// # Errors
    /// [`crate::LoadError::WrongKind`] for a PSA plugin.
    pub fn vendor_session(
        self: &Arc<Self>,
        vendor: VendorId,
        options: SessionOptions,
    ) -> Result<VendorSession, LoadError> {
        Session::open(self, Vendor { vendor }, options)
    }
}

impl Session<Psa> {
    /// `list-companies`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn list_companies(
        &mut self,
        cursor: Option<&str>,
    ) -> Result<Page<Company>, CallError> {
        let (b, store, limit) = self.enter("list-companies", false).await?;
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::PsaV0_1(b) => v0_1_answer(
                    b.trueup_connector_psa()
                        .call_list_companies(store, cursor)
                        .await,
                ),
                Bindings::PsaV0_2(b) => v0_2_answer(
                    b.trueup_connector_psa()
                        .call_list_companies(store, cursor)
                        .await,
                ),
                _ => not_psa(),
            }
        })
        .await;
        let page = match self.settle("list-companies", outcome)? {
            Answer::V0_1(page) => v0_1::convert::companies(page),
            Answer::V0_2(page) => v0_2::convert::companies(page),
        };
        page.map_err(|e| self.caller.invalid("list-companies", e))
    }

    /// `list-contracts`, each contract with its terms (the billing anchor a
    /// 0.2 connector gives; none from a 0.1 connector).
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn list_contracts_with_terms(
        &mut self,
        filter: &ContractFilter,
        cursor: Option<&str>,
    ) -> Result<Page<PsaContract>, CallError> {
        let filter_v0_1 = psa::exports::trueup::connector::psa::ContractFilter {
            types: filter.types.clone(),
            active_only: filter.active_only,
        };
        let filter_v0_2 = psa_v0_2::exports::trueup::connector::psa::ContractFilter {
            types: filter.types.clone(),
            active_only: filter.active_only,
        };
        let (b, store, limit) = self.enter("list-contracts", false).await?;
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::PsaV0_1(b) => v0_1_answer(
                    b.trueup_connector_psa()
                        .call_list_contracts(store, &filter_v0_1, cursor)
                        .await,
                ),
                Bindings::PsaV0_2(b) => v0_2_answer(
                    b.trueup_connector_psa()
                        .call_list_contracts(store, &filter_v0_2, cursor)
                        .await,
                ),
                _ => not_psa(),
            }
        })
        .await;
        let page = match self.settle("list-contracts", outcome)? {
            Answer::V0_1(page) => v0_1::convert::contracts(page).map(|page| Page {
                items: page
                    .items
                    .into_iter()
                    .map(|c| v0_2::convert::with_anchor(c, None))
                    .collect(),
                next_cursor: page.next_cursor,
                skipped: page.skipped,
            }),
            Answer::V0_2(page) => v0_2::convert::contracts(page),
        };
        page.map_err(|e| self.caller.invalid("list-contracts", e))
    }

    /// `list-contracts`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn list_contracts(
        &mut self,
        filter: &ContractFilter,
        cursor: Option<&str>,
    ) -> Result<Page<Contract>, CallError> {
        let page = self.list_contracts_with_terms(filter, cursor).await?;
        Ok(Page {
            items: page.items.into_iter().map(|c| c.contract).collect(),
            next_cursor: page.next_cursor,
            skipped: page.skipped,
        })
    }

    /// `list-services` for up to 200 contracts, each line with its terms
    /// (billing kind and commitment from a 0.2 connector; derived for a 0.1
    /// one).
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn list_services_with_terms(
        &mut self,
        contract_ids: &[String],
        cursor: Option<&str>,
    ) -> Result<Page<PsaLine>, CallError> {
        let (b, store, limit) = self.enter("list-services", false).await?;
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::PsaV0_1(b) => v0_1_answer(
                    b.trueup_connector_psa()
                        .call_list_services(store, contract_ids, cursor)
                        .await,
                ),
                Bindings::PsaV0_2(b) => v0_2_answer(
                    b.trueup_connector_psa()
                        .call_list_services(store, contract_ids, cursor)
                        .await,
                ),
                _ => not_psa(),
            }
        })
        .await;
        let page = match self.settle("list-services", outcome)? {
            Answer::V0_1(page) => v0_1::convert::services(page).map(|page| Page {
                items: page
                    .items
                    .into_iter()
                    .map(v0_2::convert::derived_terms)
                    .collect(),
                next_cursor: page.next_cursor,
                skipped: page.skipped,
            }),
            Answer::V0_2(page) => v0_2::convert::services(page),
        };
        page.map_err(|e| self.caller.invalid("list-services", e))
    }

    /// `list-services` for up to 200 contracts.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn list_services(
        &mut self,
        contract_ids: &[String],
        cursor: Option<&str>,
    ) -> Result<Page<ServiceLine>, CallError> {
        let page = self.list_services_with_terms(contract_ids, cursor).await?;
        Ok(Page {
            items: page.items.into_iter().map(|l| l.line).collect(),
            next_cursor: page.next_cursor,
            skipped: page.skipped,
        })
    }

    /// `list-catalog` (contract 0.2). A 0.1 connector has no catalogue: its
    /// answer is one empty last page, without calling the plugin.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn list_catalog(
        &mut self,
        cursor: Option<&str>,
    ) -> Result<Page<CatalogProduct>, CallError> {
        if self.api_version() == crate::wit::ApiVersion::V0_1 {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
                skipped: Vec::new(),
            });
        }
        let (b, store, limit) = self.enter("list-catalog", false).await?;
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::PsaV0_2(b) => v0_2_answer::<(), _>(
                    b.trueup_connector_psa()
                        .call_list_catalog(store, cursor)
                        .await,
                ),
                _ => not_psa(),
            }
        })
        .await;
        match self.settle("list-catalog", outcome)? {
            Answer::V0_2(page) => {
                v0_2::convert::catalog(page).map_err(|e| self.caller.invalid("list-catalog", e))
            }
            Answer::V0_1(()) => Err(self.unsupported("list-catalog", "0.2.0")),
        }
    }

    /// `plan-quantity-change`: only GET/HEAD requests are allowed.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn plan_quantity_change(
        &mut self,
        change: &QuantityChange,
    ) -> Result<Vec<PlannedCall>, CallError> {
        let export = "plan-quantity-change";
        let change_v0_1 =
            v0_1::convert::quantity_change(change).map_err(|e| self.caller.invalid(export, e))?;
        let change_v0_2 =
            v0_2::convert::quantity_change(change).map_err(|e| self.caller.invalid(export, e))?;
        let (b, store, limit) = self.enter(export, true).await?;
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::PsaV0_1(b) => v0_1_answer(
                    b.trueup_connector_psa()
                        .call_plan_quantity_change(store, &change_v0_1)
                        .await,
                ),
                Bindings::PsaV0_2(b) => v0_2_answer(
                    b.trueup_connector_psa()
                        .call_plan_quantity_change(store, &change_v0_2)
                        .await,
                ),
                _ => not_psa(),
            }
        })
        .await;
        Ok(match self.settle(export, outcome)? {
            Answer::V0_1(calls) => v0_1::convert::planned_calls(calls),
            Answer::V0_2(calls) => {
                v0_1::convert::planned_calls(v0_2::convert::lower_planned_calls(calls))
            }
        })
    }

    /// `apply-quantity-change`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn apply_quantity_change(
        &mut self,
        change: &QuantityChange,
    ) -> Result<WriteOutcome, CallError> {
        self.apply_quantity_change_journalled(change, None).await
    }

    /// `apply-quantity-change` with every write it sends recorded in
    /// `journal` (see [`crate::journal`]): "sending" before it leaves, its
    /// outcome before the guest sees the answer.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn apply_quantity_change_journalled(
        &mut self,
        change: &QuantityChange,
        journal: Option<Arc<dyn WriteJournal>>,
    ) -> Result<WriteOutcome, CallError> {
        let export = "apply-quantity-change";
        let change_v0_1 =
            v0_1::convert::quantity_change(change).map_err(|e| self.caller.invalid(export, e))?;
        let change_v0_2 =
            v0_2::convert::quantity_change(change).map_err(|e| self.caller.invalid(export, e))?;
        let (b, store, limit) = self.enter(export, false).await?;
        store.data_mut().call.journal = journal.map(JournalHook);
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::PsaV0_1(b) => v0_1_answer(
                    b.trueup_connector_psa()
                        .call_apply_quantity_change(store, &change_v0_1)
                        .await,
                ),
                Bindings::PsaV0_2(b) => v0_2_answer(
                    b.trueup_connector_psa()
                        .call_apply_quantity_change(store, &change_v0_2)
                        .await,
                ),
                _ => not_psa(),
            }
        })
        .await;
        let outcome = match self.settle(export, outcome)? {
            Answer::V0_1(result) => v0_1::convert::write_outcome(result),
            Answer::V0_2(result) => v0_2::convert::write_outcome(result),
        };
        outcome.map_err(|e| self.caller.invalid(export, e))
    }

    /// `plan-cost-change` (contract 0.2): the calls `apply-cost-change`
    /// would make; only GET/HEAD requests are allowed.
    ///
    /// # Errors
    /// [`CallErrorKind::Unsupported`] for a 0.1 connector (nothing is
    /// called); otherwise [`CallError`].
    pub async fn plan_cost_change(
        &mut self,
        change: &CostChange,
    ) -> Result<Vec<PlannedCall>, CallError> {
        let export = "plan-cost-change";
        if self.api_version() == crate::wit::ApiVersion::V0_1 {
            return Err(self.unsupported(export, "0.2.0"));
        }
        let wit_change =
            v0_2::convert::cost_change(change).map_err(|e| self.caller.invalid(export, e))?;
        let (b, store, limit) = self.enter(export, true).await?;
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::PsaV0_2(b) => v0_2_answer::<(), _>(
                    b.trueup_connector_psa()
                        .call_plan_cost_change(store, &wit_change)
                        .await,
                ),
                _ => not_psa(),
            }
        })
        .await;
        match self.settle(export, outcome)? {
            Answer::V0_2(calls) => Ok(v0_1::convert::planned_calls(
                v0_2::convert::lower_planned_calls(calls),
            )),
            Answer::V0_1(()) => Err(self.unsupported(export, "0.2.0")),
        }
    }

    /// `apply-cost-change` (contract 0.2), its writes recorded in `journal`
    /// like a quantity change's.
    ///
    /// # Errors
    /// [`CallErrorKind::Unsupported`] for a 0.1 connector (nothing is
    /// called); otherwise [`CallError`].
    pub async fn apply_cost_change_journalled(
        &mut self,
        change: &CostChange,
        journal: Option<Arc<dyn WriteJournal>>,
    ) -> Result<WriteOutcome, CallError> {
        let export = "apply-cost-change";
        if self.api_version() == crate::wit::ApiVersion::V0_1 {
            return Err(self.unsupported(export, "0.2.0"));
        }
        let wit_change =
            v0_2::convert::cost_change(change).map_err(|e| self.caller.invalid(export, e))?;
        let (b, store, limit) = self.enter(export, false).await?;
        store.data_mut().call.journal = journal.map(JournalHook);
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::PsaV0_2(b) => v0_2_answer::<(), _>(
                    b.trueup_connector_psa()
                        .call_apply_cost_change(store, &wit_change)
                        .await,
                ),
                _ => not_psa(),
            }
        })
        .await;
        match self.settle(export, outcome)? {
            Answer::V0_2(result) => {
                v0_2::convert::write_outcome(result).map_err(|e| self.caller.invalid(export, e))
            }
            Answer::V0_1(()) => Err(self.unsupported(export, "0.2.0")),
        }
    }

    /// `apply-cost-change` without a journal.
    ///
    /// # Errors
    /// As [`Session::apply_cost_change_journalled`].
    pub async fn apply_cost_change(
        &mut self,
        change: &CostChange,
    ) -> Result<WriteOutcome, CallError> {
        self.apply_cost_change_journalled(change, None).await
    }

    /// `read-line`, with the line's terms.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn read_line_with_terms(
        &mut self,
        contract_id: &str,
        line_id: &str,
    ) -> Result<PsaLine, CallError> {
        let (b, store, limit) = self.enter("read-line", false).await?;
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::PsaV0_1(b) => v0_1_answer(
                    b.trueup_connector_psa()
                        .call_read_line(store, contract_id, line_id)
                        .await,
                ),
                Bindings::PsaV0_2(b) => v0_2_answer(
                    b.trueup_connector_psa()
                        .call_read_line(store, contract_id, line_id)
                        .await,
                ),
                _ => not_psa(),
            }
        })
        .await;
        let line = match self.settle("read-line", outcome)? {
            Answer::V0_1(line) => v0_1::convert::service(line, 0).map(v0_2::convert::derived_terms),
            Answer::V0_2(line) => v0_2::convert::service(line, 0),
        };
        line.map_err(|e| self.caller.invalid("read-line", e))
    }

    /// `read-line`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn read_line(
        &mut self,
        contract_id: &str,
        line_id: &str,
    ) -> Result<ServiceLine, CallError> {
        Ok(self.read_line_with_terms(contract_id, line_id).await?.line)
    }
}

impl Session<Vendor> {
    /// `list-accounts`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn list_accounts(
        &mut self,
        cursor: Option<&str>,
    ) -> Result<Page<VendorAccount>, CallError> {
        let (b, store, limit) = self.enter("list-accounts", false).await?;
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::VendorV0_1(b) => v0_1_answer(
                    b.trueup_connector_vendor()
                        .call_list_accounts(store, cursor)
                        .await,
                ),
                Bindings::VendorV0_2(b) => v0_2_answer(
                    b.trueup_connector_vendor()
                        .call_list_accounts(store, cursor)
                        .await,
                ),
                _ => not_vendor(),
            }
        })
        .await;
        let (page, skipped) = match self.settle("list-accounts", outcome)? {
            Answer::V0_1(page) => (page, Vec::new()),
            Answer::V0_2(page) => v0_2::convert::lower_accounts(page),
        };
        v0_2::convert::check_skipped_records(&skipped)
            .and_then(|()| v0_1::convert::accounts(&self.world.vendor, page))
            .map(|mut page| {
                page.skipped = v0_2::convert::skipped(skipped);
                page
            })
            .map_err(|e| self.caller.invalid("list-accounts", e))
    }

    /// `list-usage` for one account, or all accounts (`None`) when the
    /// connector supports it.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn list_usage(
        &mut self,
        account_id: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Page<UsageObservation>, CallError> {
        let request_v0_1 = vendor::exports::trueup::connector::vendor::UsageRequest {
            account_id: account_id.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
        };
        let request_v0_2 = vendor_v0_2::exports::trueup::connector::vendor::UsageRequest {
            account_id: account_id.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
        };
        let (b, store, limit) = self.enter("list-usage", false).await?;
        let outcome = tokio::time::timeout(limit, async {
            match b {
                Bindings::VendorV0_1(b) => v0_1_answer(
                    b.trueup_connector_vendor()
                        .call_list_usage(store, &request_v0_1)
                        .await,
                ),
                Bindings::VendorV0_2(b) => v0_2_answer(
                    b.trueup_connector_vendor()
                        .call_list_usage(store, &request_v0_2)
                        .await,
                ),
                _ => not_vendor(),
            }
        })
        .await;
        let (page, skipped) = match self.settle("list-usage", outcome)? {
            Answer::V0_1(page) => (page, Vec::new()),
            Answer::V0_2(page) => v0_2::convert::lower_usage(page),
        };
        let observed_at = self
            .caller
            .options
            .clock
            .as_ref()
            .map_or_else(chrono::Utc::now, |clock| clock());
        v0_2::convert::check_skipped_records(&skipped)
            .and_then(|()| v0_1::convert::usage(&self.world.vendor, observed_at, page))
            .map(|mut page| {
                page.skipped = v0_2::convert::skipped(skipped);
                page
            })
            .map_err(|e| self.caller.invalid("list-usage", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions are driven from spawned tasks (sync jobs, the write-back
    /// worker): their calls, awaited with borrowed arguments inside another
    /// future, must leave that future `Send`.
    #[allow(dead_code, reason = "compiled, never run: a type check")]
    fn calls_are_send(mut psa: PsaSession, mut vendor: VendorSession) {
        fn send<T: Send>(_: T) {}
        send(async move {
            let cursor = String::from("c");
            let _ = psa.describe().await;
            let _ = psa.list_companies(Some(&cursor)).await;
            let _ = psa.read_line(&cursor, &cursor).await;
            let _ = vendor.list_usage(None, Some(&cursor)).await;
        });
    }
}
