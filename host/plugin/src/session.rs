//! Calling a plugin: a session owns one instance (one store) and makes calls
//! on it one at a time, each under the plugin's wall-clock deadline, CPU
//! budget and memory cap.
//!
//! A session keeps its instance between calls (a connector may cache an
//! OAuth token for the life of a sync). A trap or timeout drops the
//! instance; the next call gets a fresh one, and other plugins and the host
//! carry on.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;
use trueup_core::model::{
    Company, Contract, ServiceLine, UsageObservation, VendorAccount, VendorId,
};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::error::{CallError, CallErrorKind, ConnectorFailure};
use crate::host::{CallState, HostState, SessionOptions, StopReason};
use crate::manifest::PluginKind;
use crate::plugin::{LoadedPlugin, PluginPre};
use crate::types::{
    ConnectorDescription, ContractFilter, Page, PlannedCall, QuantityChange, WriteOutcome,
};
use crate::wit::since_v0_1_0::{self as v0_1, psa, types, vendor};

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

struct Live<B> {
    store: Store<HostState>,
    bindings: B,
    _slot: OwnedSemaphorePermit,
}

enum PsaBindings {
    V0_1(psa::PsaConnector),
}

enum VendorBindings {
    V0_1(vendor::VendorConnector),
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

/// Shared by both session kinds: identity and classification.
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

    /// Turns a raw outcome into a result; `Err(true)`-style trap detection
    /// is reported through `trapped` so the caller drops the instance.
    fn classify<T>(
        &self,
        export: &'static str,
        store: &Store<HostState>,
        outcome: RawOutcome<T>,
        trapped: &mut bool,
    ) -> Result<T, CallError> {
        let state = store.data();
        let limits = state.plugin.limits;
        let call = &state.call;
        let result = match outcome {
            Err(_elapsed) => {
                *trapped = true;
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
                *trapped = true;
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
}

/// Instantiates a world's bindings from the loaded plugin's `InstancePre`.
trait Instantiate: Sized {
    async fn instantiate(pre: &PluginPre, store: &mut Store<HostState>) -> wasmtime::Result<Self>;
}

impl Instantiate for PsaBindings {
    async fn instantiate(pre: &PluginPre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        match pre {
            PluginPre::PsaV0_1(pre) => pre.instantiate_async(store).await.map(PsaBindings::V0_1),
            PluginPre::VendorV0_1(_) => Err(wasmtime::Error::msg("not a PSA plugin")),
        }
    }
}

impl Instantiate for VendorBindings {
    async fn instantiate(pre: &PluginPre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        match pre {
            PluginPre::VendorV0_1(pre) => {
                pre.instantiate_async(store).await.map(VendorBindings::V0_1)
            }
            PluginPre::PsaV0_1(_) => Err(wasmtime::Error::msg("not a vendor plugin")),
        }
    }
}

/// The live instance, instantiating one (in a pool slot) when there is none.
async fn ensure_live<'a, B: Instantiate>(
    caller: &Caller,
    live: &'a mut Option<Live<B>>,
    export: &'static str,
) -> Result<&'a mut Live<B>, CallError> {
    if live.is_none() {
        let slot = caller.slot(export).await?;
        let mut store = new_store(&caller.plugin, &caller.options);
        begin_call(&mut store, export, false);
        let bindings = B::instantiate(&caller.plugin.pre, &mut store)
            .await
            .map_err(|e| {
                caller.error(
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
        caller.error(
            export,
            CallErrorKind::Instantiate {
                message: "no instance".into(),
            },
        )
    })
}

macro_rules! call_export {
    ($session:ident, $export:expr, $read_only:expr, |$bindings:pat, $store:ident| $call:expr) => {{
        let export: &'static str = $export;
        let live = ensure_live(&$session.caller, &mut $session.live, export).await?;
        begin_call(&mut live.store, export, $read_only);
        let timeout = live.store.data().plugin.limits.call_timeout;
        let $store = &mut live.store;
        let outcome = match &live.bindings {
            $bindings => tokio::time::timeout(timeout, $call).await,
        };
        let mut trapped = false;
        {
            let call = &live.store.data().call;
            let wall = call.started.elapsed();
            $session.last_call = Some(CallStats {
                export,
                wall,
                host_time: call.host_time,
                wasm_time: wall.saturating_sub(call.host_time),
                requests: call.requests,
            });
        }
        let result = $session
            .caller
            .classify(export, &live.store, outcome, &mut trapped);
        if trapped {
            $session.live = None;
        }
        result
    }};
}

/// A session with a PSA connector.
pub struct PsaSession {
    caller: Caller,
    last_call: Option<CallStats>,
    live: Option<Live<PsaBindings>>,
}

impl LoadedPlugin {
    /// Opens a session with this PSA plugin (instantiation is lazy).
    ///
    /// # Errors
    /// [`crate::LoadError::WrongKind`] for a vendor plugin.
    pub fn psa_session(
        self: &Arc<Self>,
        options: SessionOptions,
    ) -> Result<PsaSession, crate::LoadError> {
        if self.kind() != PluginKind::Psa {
            return Err(crate::LoadError::WrongKind {
                plugin: self.manifest().id.clone(),
                expected: PluginKind::Psa,
                actual: self.kind(),
            });
        }
        Ok(PsaSession {
            caller: Caller {
                plugin: self.clone(),
                options,
            },
            last_call: None,
            live: None,
        })
    }

    /// Opens a session with this vendor plugin, reporting usage as `vendor`.
    ///
    /// # Errors
    /// [`crate::LoadError::WrongKind`] for a PSA plugin.
    pub fn vendor_session(
        self: &Arc<Self>,
        vendor: VendorId,
        options: SessionOptions,
    ) -> Result<VendorSession, crate::LoadError> {
        if self.kind() != PluginKind::Vendor {
            return Err(crate::LoadError::WrongKind {
                plugin: self.manifest().id.clone(),
                expected: PluginKind::Vendor,
                actual: self.kind(),
            });
        }
        Ok(VendorSession {
            caller: Caller {
                plugin: self.clone(),
                options,
            },
            last_call: None,
            vendor,
            live: None,
        })
    }
}

impl PsaSession {
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
        ensure_live(&self.caller, &mut self.live, "instantiate")
            .await
            .map(|_| ())
    }

    /// Whether an instance is alive (false after a trap until the next call).
    pub fn is_instantiated(&self) -> bool {
        self.live.is_some()
    }

    /// `describe`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn describe(&mut self) -> Result<ConnectorDescription, CallError> {
        let info = call_export!(
            self,
            "describe",
            false,
            |PsaBindings::V0_1(b), store| async {
                b.trueup_connector_psa().call_describe(store).await.map(Ok)
            }
        )?;
        Ok(v0_1::convert::description(info))
    }

    /// `list-companies`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn list_companies(
        &mut self,
        cursor: Option<&str>,
    ) -> Result<Page<Company>, CallError> {
        let page = call_export!(
            self,
            "list-companies",
            false,
            |PsaBindings::V0_1(b), store| b
                .trueup_connector_psa()
                .call_list_companies(store, cursor)
        )?;
        v0_1::convert::companies(page).map_err(|e| self.caller.invalid("list-companies", e))
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
        let wit_filter = psa::exports::trueup::connector::psa::ContractFilter {
            types: filter.types.clone(),
            active_only: filter.active_only,
        };
        let page = call_export!(
            self,
            "list-contracts",
            false,
            |PsaBindings::V0_1(b), store| b.trueup_connector_psa().call_list_contracts(
                store,
                &wit_filter,
                cursor
            )
        )?;
        v0_1::convert::contracts(page).map_err(|e| self.caller.invalid("list-contracts", e))
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
        let page = call_export!(
            self,
            "list-services",
            false,
            |PsaBindings::V0_1(b), store| b.trueup_connector_psa().call_list_services(
                store,
                contract_ids,
                cursor
            )
        )?;
        v0_1::convert::services(page).map_err(|e| self.caller.invalid("list-services", e))
    }

    /// `plan-quantity-change`: only GET/HEAD requests are allowed.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn plan_quantity_change(
        &mut self,
        change: &QuantityChange,
    ) -> Result<Vec<PlannedCall>, CallError> {
        let wit_change = v0_1::convert::quantity_change(change)
            .map_err(|e| self.caller.invalid("plan-quantity-change", e))?;
        let calls = call_export!(
            self,
            "plan-quantity-change",
            true,
            |PsaBindings::V0_1(b), store| b
                .trueup_connector_psa()
                .call_plan_quantity_change(store, &wit_change)
        )?;
        Ok(v0_1::convert::planned_calls(calls))
    }

    /// `apply-quantity-change`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn apply_quantity_change(
        &mut self,
        change: &QuantityChange,
    ) -> Result<WriteOutcome, CallError> {
        let wit_change = v0_1::convert::quantity_change(change)
            .map_err(|e| self.caller.invalid("apply-quantity-change", e))?;
        let result = call_export!(
            self,
            "apply-quantity-change",
            false,
            |PsaBindings::V0_1(b), store| b
                .trueup_connector_psa()
                .call_apply_quantity_change(store, &wit_change)
        )?;
        v0_1::convert::write_outcome(result)
            .map_err(|e| self.caller.invalid("apply-quantity-change", e))
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
        let line = call_export!(self, "read-line", false, |PsaBindings::V0_1(b), store| b
            .trueup_connector_psa()
            .call_read_line(store, contract_id, line_id))?;
        v0_1::convert::service(line, 0).map_err(|e| self.caller.invalid("read-line", e))
    }
}

/// A session with a vendor connector.
pub struct VendorSession {
    caller: Caller,
    last_call: Option<CallStats>,
    vendor: VendorId,
    live: Option<Live<VendorBindings>>,
}

impl VendorSession {
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
        ensure_live(&self.caller, &mut self.live, "instantiate")
            .await
            .map(|_| ())
    }

    /// Whether an instance is alive (false after a trap until the next call).
    pub fn is_instantiated(&self) -> bool {
        self.live.is_some()
    }

    /// `describe`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn describe(&mut self) -> Result<ConnectorDescription, CallError> {
        let info = call_export!(
            self,
            "describe",
            false,
            |VendorBindings::V0_1(b), store| async {
                b.trueup_connector_vendor()
                    .call_describe(store)
                    .await
                    .map(Ok)
            }
        )?;
        Ok(v0_1::convert::description(info))
    }

    /// `list-accounts`.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn list_accounts(
        &mut self,
        cursor: Option<&str>,
    ) -> Result<Page<VendorAccount>, CallError> {
        let page = call_export!(
            self,
            "list-accounts",
            false,
            |VendorBindings::V0_1(b), store| b
                .trueup_connector_vendor()
                .call_list_accounts(store, cursor)
        )?;
        v0_1::convert::accounts(&self.vendor, page)
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
        let request = vendor::exports::trueup::connector::vendor::UsageRequest {
            account_id: account_id.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
        };
        let page = call_export!(
            self,
            "list-usage",
            false,
            |VendorBindings::V0_1(b), store| b
                .trueup_connector_vendor()
                .call_list_usage(store, &request)
        )?;
        let observed_at = self
            .caller
            .options
            .clock
            .as_ref()
            .map_or_else(chrono::Utc::now, |clock| clock());
        v0_1::convert::usage(&self.vendor, observed_at, page)
            .map_err(|e| self.caller.invalid("list-usage", e))
    }
}
