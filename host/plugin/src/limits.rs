//! Every limit the plugin host enforces, as a named constant with its reason.
//!
//! A plugin may request lower or higher values in `[limits]` of its
//! `plugin.toml`; the admin may cap them in `trueup.toml`. The effective
//! value is the plugin's request (or the default here), never above the
//! admin's cap (or the ceiling here). See [`EffectiveLimits::resolve`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Linear memory per instance, by default. Connectors parse pages of JSON;
/// 64 MiB holds a 10,000-device page several times over.
pub const DEFAULT_MEMORY_MIB: u32 = 64;
/// The most memory any plugin may be given, whatever it asks.
pub const MAX_MEMORY_MIB: u32 = 512;

/// Wall-clock time per export call, by default, including time spent in
/// host calls (HTTP). A page of a slow API takes seconds, not minutes.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest any single call may take.
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Time spent executing WebAssembly per call (wall time minus time in host
/// calls), by default. Connectors are I/O-bound: seconds of pure compute
/// mean a loop.
pub const DEFAULT_CPU_BUDGET: Duration = Duration::from_secs(5);
/// The most compute time any single call may use.
pub const MAX_CPU_BUDGET: Duration = Duration::from_secs(60);

/// How often the epoch ticker advances; the granularity of deadline and
/// CPU-budget checks while WebAssembly runs (Spin uses 10 ms too).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Outbound HTTP requests per export call. A page should need a handful;
/// hundreds mean a runaway loop (or a per-record fetch to batch instead).
pub const MAX_REQUESTS_PER_CALL: u32 = 500;

/// Response body size a plugin may receive, by default.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 32 * 1024 * 1024;
/// The largest response body any plugin may receive.
pub const MAX_RESPONSE_BYTES: u64 = 128 * 1024 * 1024;

/// Request body size a plugin may send.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// Redirect hops the host follows for one request.
pub const MAX_REDIRECTS: u32 = 5;

/// Log output kept per call; the rest is dropped with a note.
pub const MAX_LOG_BYTES_PER_CALL: usize = 64 * 1024;

/// Items one page may hold. Lifting a page into the host costs memory; a
/// connector should page well below this (about 1,000 is good).
pub const MAX_PAGE_ITEMS: usize = 25_000;

/// Bytes of text one returned page may hold in total (ids, names,
/// attributes). Bounds what a hostile guest can make the host allocate.
pub const MAX_PAGE_TEXT_BYTES: usize = 64 * 1024 * 1024;

/// WebAssembly stack per instance (wasmtime's default); deep recursion traps
/// as a stack overflow instead of taking the host down.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// Instances alive at once across all plugins (the pooling allocator's
/// size); calls beyond it wait for a slot.
pub const MAX_CONCURRENT_INSTANCES: u32 = 64;

/// Largest component file accepted at load.
pub const MAX_COMPONENT_BYTES: u64 = 32 * 1024 * 1024;

/// Elements a table may grow to. Tables hold function references;
/// connectors need a few hundred.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Core instances per connector component, for sizing the pool: a
/// connector component holds a handful of core instances and one memory.
pub const POOL_CORE_INSTANCES_PER_COMPONENT: u32 = 4;
/// Tables per connector component, for sizing the pool.
pub const POOL_TABLES_PER_COMPONENT: u32 = 2;
/// The most core instances one component may hold in the pool.
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// The most memories one component may hold in the pool.
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
/// Bytes of instance metadata (not linear memory) one component may use in
/// the pool.
pub const MAX_COMPONENT_INSTANCE_BYTES: usize = 10 * 1024 * 1024;

/// How long a plugin's HTTP client waits to connect to a host; the call's
/// deadline still bounds the whole request.
pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an idle connection is kept for a plugin's next request.
pub const HTTP_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest plugin id `plugin.toml` may declare.
pub const MAX_PLUGIN_ID_LEN: usize = 64;

/// Limits requested in `plugin.toml` `[limits]` or capped in `trueup.toml`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Linear memory, MiB.
    pub memory_mib: Option<u32>,
    /// Wall time per call, ms.
    pub call_timeout_ms: Option<u64>,
    /// WebAssembly compute time per call, ms.
    pub cpu_budget_ms: Option<u64>,
    /// Response body cap, bytes.
    pub max_response_bytes: Option<u64>,
}

/// The limits a plugin runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EffectiveLimits {
    /// Linear memory, bytes.
    pub memory_bytes: usize,
    /// Wall time per call.
    pub call_timeout: Duration,
    /// WebAssembly compute time per call.
    pub cpu_budget: Duration,
    /// Response body cap, bytes.
    pub max_response_bytes: u64,
}

impl EffectiveLimits {
    /// The plugin's request (or the default), capped by the admin (or the
    /// ceiling).
    pub fn resolve(requested: &LimitSettings, admin_cap: &LimitSettings) -> Self {
        fn pick(requested: Option<u64>, default: u64, cap: Option<u64>, ceiling: u64) -> u64 {
            requested
                .unwrap_or(default)
                .min(cap.unwrap_or(ceiling))
                .min(ceiling)
        }
        let memory_mib = pick(
            requested.memory_mib.map(u64::from),
            u64::from(DEFAULT_MEMORY_MIB),
            admin_cap.memory_mib.map(u64::from),
            u64::from(MAX_MEMORY_MIB),
        );
        Self {
            memory_bytes: (memory_mib as usize) * 1024 * 1024,
            call_timeout: Duration::from_millis(pick(
                requested.call_timeout_ms,
                DEFAULT_CALL_TIMEOUT.as_millis() as u64,
                admin_cap.call_timeout_ms,
                MAX_CALL_TIMEOUT.as_millis() as u64,
            )),
            cpu_budget: Duration::from_millis(pick(
                requested.cpu_budget_ms,
                DEFAULT_CPU_BUDGET.as_millis() as u64,
                admin_cap.cpu_budget_ms,
                MAX_CPU_BUDGET.as_millis() as u64,
            )),
            max_response_bytes: pick(
                requested.max_response_bytes,
                DEFAULT_MAX_RESPONSE_BYTES,
                admin_cap.max_response_bytes,
                MAX_RESPONSE_BYTES,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_honoured_below_the_cap_and_capped_above_it() {
        let requested = LimitSettings {
            memory_mib: Some(128),
            call_timeout_ms: Some(10_000),
            ..LimitSettings::default()
        };
        let cap = LimitSettings {
            memory_mib: Some(96),
            ..LimitSettings::default()
        };
        let limits = EffectiveLimits::resolve(&requested, &cap);
        assert_eq!(limits.memory_bytes, 96 * 1024 * 1024);
        assert_eq!(limits.call_timeout, Duration::from_secs(10));
        assert_eq!(limits.cpu_budget, DEFAULT_CPU_BUDGET);
    }

    #[test]
    fn nothing_exceeds_the_ceiling() {
        let greedy = LimitSettings {
            memory_mib: Some(100_000),
            call_timeout_ms: Some(u64::MAX),
            cpu_budget_ms: Some(u64::MAX),
            max_response_bytes: Some(u64::MAX),
        };
        let limits = EffectiveLimits::resolve(&greedy, &greedy);
        assert_eq!(limits.memory_bytes, MAX_MEMORY_MIB as usize * 1024 * 1024);
        assert_eq!(limits.call_timeout, MAX_CALL_TIMEOUT);
        assert_eq!(limits.cpu_budget, MAX_CPU_BUDGET);
        assert_eq!(limits.max_response_bytes, MAX_RESPONSE_BYTES);
    }
}
