//! Trueup's plugin host: loads PSA and vendor connectors as sandboxed
//! WebAssembly components through the WIT contract `trueup:connector`.
//!
//! The modules read bottom-up; each uses only those listed before it.
//!
//! - [`types`], [`limits`], [`error`]: the contract's vocabulary and what a
//!   connector returns; every limit, named and documented; every error.
//! - [`secrets`]: secret values, the handles guests get, their encodings
//!   and redaction.
//! - [`network`]: allowed-host patterns, IP networks, non-public addresses.
//! - [`wit`]: one module per supported WIT version (bindings and
//!   conversions): `since_v0_1_0` and `since_v0_2_0`, loaded side by side.
//! - [`manifest`]: `plugin.toml`, parsed strictly.
//! - [`capabilities`]: what a plugin declares AND the admin grants.
//! - [`inspect`], [`engine`]: a component's interface read before linking;
//!   the one wasmtime engine, epoch ticker, pooling and compile cache.
//! - [`journal`]: the write journal a write-back's requests are recorded in.
//! - [`host`], [`http`]: a store's state and the host side of the imports.
//! - [`plugin`]: loading into a [`LoadedPlugin`] with an `InstancePre`.
//! - [`session`]: calls under deadlines, CPU budget and memory cap, with
//!   traps classified into [`CallErrorKind`]; one [`Session`] for both
//!   worlds.

pub mod capabilities;
pub mod engine;
pub mod error;
pub mod host;
pub mod http;
pub mod inspect;
pub mod journal;
pub mod limits;
pub mod manifest;
pub mod network;
pub mod plugin;
pub mod secrets;
pub mod session;
pub mod types;
pub mod wit;

pub use capabilities::{EffectiveCapabilities, Grants};
pub use engine::{EngineSettings, PluginEngine, Pooling};
pub use error::{CallError, CallErrorKind, ConnectorFailure, LoadError};
pub use host::{ProgressReport, ProgressSink, SessionOptions};
pub use journal::{JournalOutcome, JournalledWrite, MemoryJournal, WriteJournal};
pub use manifest::PluginManifest;
pub use plugin::{LoadedPlugin, PluginSettings};
pub use secrets::{PluginSecrets, SecretValue};
pub use session::{CallStats, PsaSession, Session, VendorSession, World};
pub use types::{
    ChangePolicy, ConnectorDescription, ContractFilter, CostChange, Page, PlannedCall, PluginKind,
    PsaContract, PsaLine, QuantityChange, WriteOutcome,
};
pub use wit::ApiVersion;
