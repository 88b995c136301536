//! Loading a PSA connector pointed at an emulator, and why it may not load.

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use trueup_plugin_host::manifest::{MANIFEST_FILE, PluginManifest};
use trueup_plugin_host::{
    LoadError, LoadedPlugin, PluginEngine, PluginKind, PluginSettings, PsaSession, SessionOptions,
};

use super::against::{Against, secrets_for, settings_for};

/// Why the scenario could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The emulator did not start.
    #[error("starting the {against} emulator: {source}")]
    Emulator {
        /// Which.
        against: Against,
        /// Why.
        source: std::io::Error,
    },
    /// The plugin did not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The plugin is not a PSA connector.
    #[error("{plugin} is a {kind} connector; the conformance kit tests PSA connectors")]
    NotPsa {
        /// The plugin id.
        plugin: String,
        /// Its kind.
        kind: PluginKind,
    },
}

/// A PSA connector loaded against an emulator, ready for sessions.
pub struct Connection {
    /// The loaded plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// Session options: the as-of date and the emulator's credentials.
    pub options: SessionOptions,
    /// The plugin's manifest.
    pub manifest: PluginManifest,
}

impl Connection {
    /// A new session (a fresh instance at its first call).
    ///
    /// # Errors
    /// [`LoadError::WrongKind`] for a vendor plugin.
    pub fn session(&self) -> Result<PsaSession, LoadError> {
        self.plugin.psa_session(self.options.clone())
    }
}

/// Loads the PSA connector in `dir` with `base` settings pointed at the
/// `against` emulator at `origin` (see [`settings_for`]), with the
/// emulator's credentials and `as_of` for its sessions.
///
/// # Errors
/// [`ConformanceError`] when the plugin does not load or is not a PSA
/// connector.
pub fn connect(
    engine: &PluginEngine,
    dir: &Path,
    base: &PluginSettings,
    against: Against,
    origin: &str,
    as_of: NaiveDate,
) -> Result<Connection, ConformanceError> {
    let manifest = PluginManifest::load(&dir.join(MANIFEST_FILE)).map_err(LoadError::from)?;
    if manifest.kind != PluginKind::Psa {
        return Err(ConformanceError::NotPsa {
            plugin: manifest.id.clone(),
            kind: manifest.kind,
        });
    }
    let plugin = LoadedPlugin::load(engine, dir, &settings_for(&manifest, base, against, origin))?;
    let options = SessionOptions::new(as_of, secrets_for(&manifest, against));
    Ok(Connection {
        plugin,
        options,
        manifest,
    })
}
