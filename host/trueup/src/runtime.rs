//! The plugin runtime as configured in `trueup.toml`: one engine, plugins
//! loaded on demand from their configured directories.

use std::path::Path;
use std::sync::Arc;

use trueup_plugin_host::{EngineSettings, LoadError, LoadedPlugin, PluginEngine, PluginSettings};

use crate::config::Config;

/// Why a plugin could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No such plugin in `trueup.toml`.
    #[error(
        "no plugin {id:?} in the configuration (configured: {configured}); add a [plugins.{id:?}] section"
    )]
    Unknown {
        /// The id asked for.
        id: String,
        /// The ids configured.
        configured: String,
    },
    /// The plugin is disabled.
    #[error("plugin {0:?} is disabled in the configuration (enabled = false)")]
    Disabled(String),
    /// It failed to load.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The engine and the configuration it loads plugins from.
#[derive(Clone)]
pub struct Runtime {
    engine: PluginEngine,
    config: Arc<Config>,
}

impl Runtime {
    /// Creates the engine for `config`.
    ///
    /// # Errors
    /// When the engine or its cache directory cannot be set up.
    pub fn new(config: Arc<Config>) -> Result<Self, LoadError> {
        let engine = PluginEngine::new(&EngineSettings {
            pooling: config.runtime.pooling,
            cache_dir: Some(config.plugin_cache()),
        })?;
        Ok(Self { engine, config })
    }

    /// The engine.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Loads the configured plugin `id`.
    ///
    /// # Errors
    /// [`RuntimeError`] saying what to fix.
    pub fn load(&self, id: &str) -> Result<Arc<LoadedPlugin>, RuntimeError> {
        let entry = self
            .config
            .plugins
            .get(id)
            .ok_or_else(|| RuntimeError::Unknown {
                id: id.to_owned(),
                configured: if self.config.plugins.is_empty() {
                    "none".into()
                } else {
                    self.config
                        .plugins
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })?;
        if !entry.enabled {
            return Err(RuntimeError::Disabled(id.to_owned()));
        }
        Ok(LoadedPlugin::load(
            &self.engine,
            &entry.path,
            &entry.settings(),
        )?)
    }

    /// Loads a plugin directory that is not in the configuration, with no
    /// config values and no grants.
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn load_dir(&self, dir: &Path) -> Result<Arc<LoadedPlugin>, LoadError> {
        LoadedPlugin::load(&self.engine, dir, &PluginSettings::default())
    }
}
