//! What every instance's store holds, and the host side of the WIT imports
//! (`log`, `config`, `secrets`, `progress`, `clock`; `http` is in
//! [`crate::http`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, Utc};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Result as WasmResult};

use crate::capabilities::EffectiveCapabilities;
use crate::limits::{EffectiveLimits, MAX_LOG_BYTES_PER_CALL, MAX_TABLE_ELEMENTS};
use crate::manifest::PluginManifest;
use crate::secrets::PluginSecrets;
pub use crate::secrets::SecretHandle;
use crate::wit::since_v0_1_0::{clock, config, log, progress, secrets, types};

/// Progress reported by a plugin during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressReport {
    /// Plugin id.
    pub plugin: String,
    /// The export being called.
    pub export: &'static str,
    /// Units done.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// The plugin's message (secrets redacted).
    pub message: String,
}

/// Receives progress reports (the UI's live sync view).
pub type ProgressSink = Arc<dyn Fn(ProgressReport) + Send + Sync>;

/// Where "now" comes from, so tests can fix it.
pub type ClockFn = Arc<dyn Fn() -> chrono::DateTime<Utc> + Send + Sync>;

/// Per-session inputs from the caller.
#[derive(Clone)]
pub struct SessionOptions {
    /// The run's "as of" business date (`clock.as-of`).
    pub as_of: NaiveDate,
    /// The secrets the admin stored for this plugin.
    pub secrets: PluginSecrets,
    /// Progress receiver.
    pub progress: Option<ProgressSink>,
    /// The clock (`clock.now-ms`); the system clock when `None`.
    pub clock: Option<ClockFn>,
}

impl SessionOptions {
    /// Options for `as_of` with `secrets`, no progress sink, system clock.
    pub fn new(as_of: NaiveDate, secrets: PluginSecrets) -> Self {
        Self {
            as_of,
            secrets,
            progress: None,
            clock: None,
        }
    }
}

impl std::fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOptions")
            .field("as_of", &self.as_of)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

/// What does not change between calls of a loaded plugin.
#[derive(Debug)]
pub(crate) struct PluginContext {
    pub manifest: PluginManifest,
    pub capabilities: EffectiveCapabilities,
    pub config: BTreeMap<String, String>,
    pub limits: EffectiveLimits,
    pub http: reqwest::Client,
}

/// The state of the export call in progress.
#[derive(Debug)]
pub(crate) struct CallState {
    pub export: &'static str,
    pub started: Instant,
    pub deadline: Instant,
    /// Time spent inside host calls (HTTP), excluded from the CPU budget.
    pub host_time: Duration,
    pub requests: u32,
    pub log_bytes: usize,
    pub log_dropped: bool,
    /// Capability refusals during the call, in order.
    pub denials: Vec<String>,
    /// The message of the guest's panic hook, if it panicked.
    pub panic_message: Option<String>,
    /// Set when the host stopped the call: which limit was hit.
    pub stopped: Option<StopReason>,
    /// Only GET/HEAD requests allowed (dry-run planning).
    pub read_only: bool,
    /// Where this call's writes are journalled (a write-back).
    pub journal: Option<crate::journal::JournalHook>,
}

/// Why the host stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Deadline,
    CpuBudget,
    MemoryLimit,
}

impl CallState {
    pub fn idle() -> Self {
        let now = Instant::now();
        Self {
            export: "",
            started: now,
            deadline: now,
            host_time: Duration::ZERO,
            requests: 0,
            log_bytes: 0,
            log_dropped: false,
            denials: Vec::new(),
            panic_message: None,
            stopped: None,
            read_only: false,
            journal: None,
        }
    }
}

/// A store's data.
pub struct HostState {
    pub(crate) plugin: Arc<PluginContext>,
    pub(crate) options: SessionOptions,
    pub(crate) table: ResourceTable,
    pub(crate) call: CallState,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<PluginContext>, options: SessionOptions) -> Self {
        Self {
            plugin,
            options,
            table: ResourceTable::new(),
            call: CallState::idle(),
        }
    }

    /// `text` with every secret value of this plugin replaced.
    pub(crate) fn redact(&self, text: &str) -> String {
        self.options.secrets.redact(text)
    }

    pub(crate) fn deny(&mut self, message: String) {
        tracing::warn!(
            plugin = %self.plugin.manifest.id,
            export = self.call.export,
            "capability denied: {message}"
        );
        self.call.denials.push(message);
    }

    fn now(&self) -> chrono::DateTime<Utc> {
        self.options
            .clock
            .as_ref()
            .map_or_else(Utc::now, |clock| clock())
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> WasmResult<bool> {
        if desired > self.plugin.limits.memory_bytes {
            self.call.stopped = Some(StopReason::MemoryLimit);
            tracing::warn!(
                plugin = %self.plugin.manifest.id,
                export = self.call.export,
                "error.type" = "memory_limit_exceeded",
                desired,
                limit = self.plugin.limits.memory_bytes,
                "plugin tried to grow its memory past the limit"
            );
            return Err(wasmtime::Error::msg("memory limit exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> WasmResult<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> WasmResult<()> {
        if let Some(panic) = message.strip_prefix("guest panicked: ") {
            self.call.panic_message = Some(self.redact(panic));
        }
        if self.call.log_bytes >= MAX_LOG_BYTES_PER_CALL {
            if !self.call.log_dropped {
                self.call.log_dropped = true;
                tracing::warn!(
                    plugin = %self.plugin.manifest.id,
                    export = self.call.export,
                    "log output past {MAX_LOG_BYTES_PER_CALL} bytes in one call is dropped"
                );
            }
            return Ok(());
        }
        self.call.log_bytes += message.len();
        let message = self.redact(&message);
        let id = &self.plugin.manifest.id;
        let version = &self.plugin.manifest.version;
        let export = self.call.export;
        match level {
            log::Level::Trace => tracing::trace!(plugin = %id, %version, export, "{message}"),
            log::Level::Debug => tracing::debug!(plugin = %id, %version, export, "{message}"),
            log::Level::Info => tracing::info!(plugin = %id, %version, export, "{message}"),
            log::Level::Warn => tracing::warn!(plugin = %id, %version, export, "{message}"),
            log::Level::Error => tracing::error!(plugin = %id, %version, export, "{message}"),
        }
        Ok(())
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> WasmResult<Option<String>> {
        let manifest = &self.plugin.manifest;
        let Some(entry) = manifest.config.get(&key) else {
            return Ok(None);
        };
        if entry.secret {
            return Ok(None);
        }
        Ok(self
            .plugin
            .config
            .get(&key)
            .cloned()
            .or_else(|| entry.default.clone()))
    }
}

impl secrets::HostSecret for HostState {
    fn name(&mut self, secret: Resource<SecretHandle>) -> WasmResult<String> {
        Ok(self.table.get(&secret)?.name.clone())
    }

    fn drop(&mut self, secret: Resource<SecretHandle>) -> WasmResult<()> {
        self.table.delete(secret)?;
        Ok(())
    }
}

impl secrets::Host for HostState {
    fn get(
        &mut self,
        name: String,
    ) -> WasmResult<Result<Resource<SecretHandle>, types::ConnectorError>> {
        if let Err(denied) = self.plugin.capabilities.check_secret(&name) {
            self.deny(denied.0.clone());
            return Ok(Err(types::ConnectorError::InvalidConfig(denied.0)));
        }
        if !self.options.secrets.contains(&name) {
            let id = &self.plugin.manifest.id;
            return Ok(Err(types::ConnectorError::InvalidConfig(format!(
                "no value is stored for the secret {name:?} of plugin {id}: set it with `trueup plugin secret set {id} {name}` or in the Integrations page"
            ))));
        }
        let handle = self.table.push(SecretHandle { name })?;
        Ok(Ok(handle))
    }
}

impl progress::Host for HostState {
    fn report(&mut self, done: u64, total: Option<u64>, message: String) -> WasmResult<()> {
        if let Some(sink) = &self.options.progress {
            sink(ProgressReport {
                plugin: self.plugin.manifest.id.clone(),
                export: self.call.export,
                done,
                total,
                message: self.redact(&message),
            });
        }
        Ok(())
    }
}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> WasmResult<i64> {
        Ok(self.now().timestamp_millis())
    }

    fn as_of(&mut self) -> WasmResult<types::Date> {
        let date = self.options.as_of;
        Ok(types::Date {
            year: date.year(),
            month: date.month() as u8,
            day: date.day() as u8,
        })
    }
}
