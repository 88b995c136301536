//! Trueup's plugin host: loads PSA and vendor connectors as sandboxed
//! WebAssembly components through the WIT contract `trueup:connector`.
//!
//! - [`manifest`]: `plugin.toml`, parsed strictly.
//! - [`capabilities`]: what a plugin declares AND the admin grants.
//! - [`inspect`] + [`wit`]: API version checked before linking; one module
//!   per supported WIT version.
//! - [`engine`]: the one wasmtime engine, epoch ticker, pooling, compile
//!   cache.
//! - [`plugin`]: loading into a [`LoadedPlugin`] with an `InstancePre`.
//! - [`session`]: calls under deadlines, CPU budget and memory cap, with
//!   traps classified into [`CallErrorKind`].
//! - [`http`], [`secrets`], [`host`]: the host side of the imports.
//! - [`limits`]: every limit, named and documented.

pub mod capabilities;
pub mod engine;
pub mod error;
pub mod host;
pub mod http;
pub mod inspect;
pub mod limits;
pub mod manifest;
pub mod plugin;
pub mod secrets;
pub mod session;
pub mod types;
pub mod wit;

pub use capabilities::{EffectiveCapabilities, Grants};
pub use engine::{EngineSettings, PluginEngine, Pooling};
pub use error::{CallError, CallErrorKind, ConnectorFailure, LoadError};
pub use host::{ProgressReport, ProgressSink, SessionOptions};
pub use manifest::{PluginKind, PluginManifest};
pub use plugin::{LoadedPlugin, PluginSettings};
pub use secrets::{PluginSecrets, SecretValue};
pub use session::{CallStats, PsaSession, VendorSession};
pub use types::{
    ChangePolicy, ConnectorDescription, ContractFilter, Page, PlannedCall, QuantityChange,
    WriteOutcome,
};
