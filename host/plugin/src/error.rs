//! Errors of the plugin host, all in one place at the bottom of the crate.
//! Every error says which plugin (id and version) and which export, what
//! happened, and how to fix it.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::{PACKAGE, PluginKind};

/// A `plugin.toml` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct ManifestError {
    /// The manifest's path.
    pub file: PathBuf,
    /// What is wrong, naming the field.
    pub problem: String,
}

/// Grants that do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trueup.toml [plugins.{plugin:?}.grants]: {problem}")]
pub struct GrantError {
    /// The plugin id.
    pub plugin: String,
    /// What is wrong.
    pub problem: String,
}

/// Why a component could not be inspected or is not a connector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// Not a valid WebAssembly binary.
    #[error("not a WebAssembly binary: {0}")]
    Malformed(String),
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component; build it with scripts/setup (or `wasm-tools component new`)"
    )]
    CoreModule,
    /// Exports neither connector interface.
    #[error(
        "the component exports no {PACKAGE} interface (exports: {exports}); is it a Trueup connector?"
    )]
    NotAConnector {
        /// What it does export.
        exports: String,
    },
}

/// The engine could not be created.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("could not configure the WebAssembly engine: {0}")]
    Config(String),
    /// The cache directory is unusable.
    #[error("the compiled-plugin cache {path} is not usable: {reason}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A plugin that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The admin's grants are invalid.
    #[error(transparent)]
    Grants(#[from] GrantError),
    /// A file could not be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The component file is larger than the host accepts.
    #[error("{path}: the component is {size} bytes; the host accepts at most {limit}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not a connector component.
    #[error("plugin {plugin}: {source}")]
    Inspect {
        /// Plugin id.
        plugin: String,
        /// Why.
        source: InspectError,
    },
    /// Built for an API version this host does not support.
    #[error(
        "plugin {plugin} {version} was built for trueup:connector@{built_for}; this host supports {supported}. Rebuild it against a supported trueup-connector SDK, or upgrade Trueup"
    )]
    IncompatibleApi {
        /// Plugin id.
        plugin: String,
        /// Plugin version.
        version: String,
        /// The version it was built for.
        built_for: String,
        /// What this host supports, e.g. `0.1.0–0.1.x`.
        supported: String,
    },
    /// The manifest and the component disagree.
    #[error("plugin {plugin}: {problem}")]
    Mismatch {
        /// Plugin id.
        plugin: String,
        /// What disagrees.
        problem: String,
    },
    /// The component imports something the host does not provide.
    #[error(
        "plugin {plugin} imports {imports}, which Trueup does not provide: connectors get only trueup:connector imports; build for wasm32-unknown-unknown without WASI"
    )]
    ForeignImports {
        /// Plugin id.
        plugin: String,
        /// The imports.
        imports: String,
    },
    /// Required settings are missing.
    #[error(
        "plugin {plugin}: required config {keys} not set; set them under [plugins.\"{plugin}\".config] in trueup.toml"
    )]
    MissingConfig {
        /// Plugin id.
        plugin: String,
        /// The keys.
        keys: String,
    },
    /// A setting the manifest does not declare.
    #[error(
        "plugin {plugin}: config key `{key}` is not declared in its plugin.toml (declared: {declared})"
    )]
    UnknownConfig {
        /// Plugin id.
        plugin: String,
        /// The key.
        key: String,
        /// The declared keys.
        declared: String,
    },
    /// A value was given for a secret in plain config.
    #[error(
        "plugin {plugin}: `{key}` is a secret; store it with `trueup plugin secret set {plugin} {key}` instead of writing it into trueup.toml"
    )]
    SecretInConfig {
        /// Plugin id.
        plugin: String,
        /// The key.
        key: String,
    },
    /// Compiling or linking failed.
    #[error("plugin {plugin} {version}: {stage} failed: {reason}")]
    Compile {
        /// Plugin id.
        plugin: String,
        /// Plugin version.
        version: String,
        /// Compile or link.
        stage: &'static str,
        /// wasmtime's message.
        reason: String,
    },
    /// The plugin is of the other kind.
    #[error("plugin {plugin} is a {actual} connector, not a {expected} connector")]
    WrongKind {
        /// Plugin id.
        plugin: String,
        /// What was asked for.
        expected: PluginKind,
        /// What it is.
        actual: PluginKind,
    },
    /// The HTTP client could not be built.
    #[error("plugin {plugin}: could not create its HTTP client: {reason}")]
    HttpClient {
        /// Plugin id.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// The engine could not be created.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// An expected failure a connector returned (`connector-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorFailure {
    /// Credentials refused.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// Asked to slow down.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// Record missing.
    #[error("not found: {0}")]
    NotFound(String),
    /// Setting missing or malformed.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The service answered with an error or rejected a write.
    #[error("the service answered {status}: {body}")]
    Upstream {
        /// HTTP status (0 for a connection failure).
        status: u16,
        /// Its reason.
        body: String,
        /// Whether the connector says retrying may help.
        retryable: bool,
    },
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl ConnectorFailure {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectorFailure::RateLimited { .. } => true,
            ConnectorFailure::Upstream { retryable, .. } => *retryable,
            ConnectorFailure::Internal(_) => true,
            ConnectorFailure::AuthFailed(_)
            | ConnectorFailure::NotFound(_)
            | ConnectorFailure::InvalidConfig(_) => false,
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallErrorKind {
    /// Wall-clock deadline.
    #[error(
        "timed out after {limit:?}; if the service is just slow, raise [limits] call_timeout_ms"
    )]
    Timeout {
        /// The limit.
        limit: Duration,
    },
    /// Too much compute.
    #[error("used more than its CPU budget of {limit:?} running WebAssembly (an endless loop?)")]
    CpuBudget {
        /// The limit.
        limit: Duration,
    },
    /// Memory cap.
    #[error(
        "tried to grow its memory past its limit of {limit_mib} MiB; ask for smaller pages or raise [limits] memory_mib"
    )]
    MemoryLimit {
        /// The limit.
        limit_mib: usize,
    },
    /// Stack exhausted.
    #[error("overflowed its stack (unbounded recursion?)")]
    StackOverflow,
    /// The guest panicked.
    #[error("panicked: {message}")]
    Panic {
        /// The panic message.
        message: String,
    },
    /// Any other trap.
    #[error("trapped: {message}")]
    Trap {
        /// wasmtime's description.
        message: String,
    },
    /// The result exceeds what the host accepts.
    #[error("returned more than the host accepts: {detail}")]
    OutputTooLarge {
        /// What and how much.
        detail: String,
    },
    /// The result is malformed.
    #[error("returned invalid data: {detail}")]
    InvalidOutput {
        /// What and where.
        detail: String,
    },
    /// A capability was refused and the call failed.
    #[error("capability denied: {message}")]
    CapabilityDenied {
        /// What was refused and how to allow it.
        message: String,
    },
    /// The connector's own error.
    #[error(transparent)]
    Connector(ConnectorFailure),
    /// The plugin's API version has no such export (e.g. a cost change
    /// asked of a 0.1 connector). Nothing was called.
    #[error("{message}")]
    Unsupported {
        /// What is missing, since which version, and how to get it.
        message: String,
    },
    /// An instance could not be created.
    #[error("could not be instantiated: {message}")]
    Instantiate {
        /// Why.
        message: String,
    },
}

/// A failed export call, tagged with plugin and export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin} {version}, {export}: {kind}")]
pub struct CallError {
    /// Plugin id.
    pub plugin: String,
    /// Plugin version.
    pub version: String,
    /// The export, e.g. `list-usage`.
    pub export: &'static str,
    /// What happened.
    pub kind: CallErrorKind,
}

impl CallError {
    /// Whether the failure trapped (the instance was dropped).
    pub fn is_trap(&self) -> bool {
        matches!(
            self.kind,
            CallErrorKind::Timeout { .. }
                | CallErrorKind::CpuBudget { .. }
                | CallErrorKind::MemoryLimit { .. }
                | CallErrorKind::StackOverflow
                | CallErrorKind::Panic { .. }
                | CallErrorKind::Trap { .. }
        )
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            CallErrorKind::Connector(failure) => failure.is_transient(),
            CallErrorKind::Timeout { .. } => true,
            _ => false,
        }
    }
}
