//! The one wasmtime [`Engine`] of the process: component model, async,
//! epoch interruption driven by a ticker thread, the pooling allocator where
//! the machine allows it, and an on-disk cache of compiled components.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use crate::error::EngineError;
use crate::limits::{
    EPOCH_TICK, MAX_COMPONENT_INSTANCE_BYTES, MAX_CONCURRENT_INSTANCES,
    MAX_CORE_INSTANCES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT, MAX_MEMORY_MIB, MAX_WASM_STACK,
    POOL_CORE_INSTANCES_PER_COMPONENT, POOL_TABLES_PER_COMPONENT,
};

/// Whether to use the pooling allocator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Use it when the machine lets us reserve its address space (Spin
    /// probes the same way), else allocate on demand.
    #[default]
    Auto,
    /// Require it.
    On,
    /// Never use it.
    Off,
}

/// Host-wide plugin runtime settings.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    /// Pooling allocator policy.
    pub pooling: Pooling,
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
}

/// The shared engine, its ticker and its instance slots.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    pooling: bool,
    cache_dir: Option<PathBuf>,
    slots: Arc<Semaphore>,
    /// wasmtime version + engine configuration, part of every cache key.
    config_hash: String,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("pooling", &self.inner.pooling)
            .field("cache_dir", &self.inner.cache_dir)
            .finish_non_exhaustive()
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.memory_init_cow(true);
    config
}

fn pooling_config() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES);
    pool.total_core_instances(MAX_CONCURRENT_INSTANCES * POOL_CORE_INSTANCES_PER_COMPONENT);
    pool.total_memories(MAX_CONCURRENT_INSTANCES);
    pool.total_tables(MAX_CONCURRENT_INSTANCES * POOL_TABLES_PER_COMPONENT);
    pool.total_stacks(MAX_CONCURRENT_INSTANCES);
    pool.max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024);
    pool.max_component_instance_size(MAX_COMPONENT_INSTANCE_BYTES);
    pool.max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT);
    pool.max_memories_per_component(MAX_MEMORIES_PER_COMPONENT);
    pool
}

impl PluginEngine {
    /// Creates the engine and starts its epoch ticker.
    ///
    /// # Errors
    /// [`EngineError`] when wasmtime refuses the configuration (with
    /// `Pooling::On`, when the machine cannot reserve the pool) or the cache
    /// directory cannot be created.
    pub fn new(settings: &EngineSettings) -> Result<Self, EngineError> {
        let (engine, pooling) = match settings.pooling {
            Pooling::Off => (Self::on_demand()?, false),
            Pooling::On => (Self::pooled()?, true),
            Pooling::Auto => match Self::pooled() {
                Ok(engine) => (engine, true),
                Err(error) => {
                    tracing::info!(%error, "pooling allocator unavailable here; allocating instances on demand");
                    (Self::on_demand()?, false)
                }
            },
        };
        if let Some(dir) = &settings.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::Cache {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let config_hash = format!("{:016x}", hasher.finish());
        start_ticker(&engine);
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                pooling,
                cache_dir: settings.cache_dir.clone(),
                slots: Arc::new(Semaphore::new(MAX_CONCURRENT_INSTANCES as usize)),
                config_hash,
            }),
        })
    }

    fn on_demand() -> Result<Engine, EngineError> {
        Engine::new(&base_config()).map_err(|e| EngineError::Config(format!("{e:#}")))
    }

    fn pooled() -> Result<Engine, EngineError> {
        let mut config = base_config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config()));
        let engine = Engine::new(&config).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        Ok(engine)
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }

    /// Slots for live instances; a session holds one while its instance
    /// exists, so a full pool makes callers wait instead of failing.
    pub(crate) fn slots(&self) -> Arc<Semaphore> {
        self.inner.slots.clone()
    }

    /// Compiles `bytes`, or loads the compiled artifact cached for exactly
    /// these bytes, this wasmtime and this engine configuration.
    ///
    /// # Errors
    /// The compiler's message when the component is invalid.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, wasmtime::Error> {
        let Some(dir) = &self.inner.cache_dir else {
            return Component::new(&self.inner.engine, bytes);
        };
        let key = format!(
            "{}-{}.cwasm",
            hex::encode(Sha256::digest(bytes)),
            self.inner.config_hash
        );
        let path = dir.join(key);
        if path.is_file() {
            match self.load_cached(&path) {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "discarding an unusable compiled-plugin cache entry");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // Compiled here and serialized for the cache (safe), rather than
        // precompiled and deserialized (unsafe): the artifact is the same.
        let component = Component::new(&self.inner.engine, bytes)?;
        let tmp = path.with_extension("tmp");
        let written = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|compiled| {
                std::fs::write(&tmp, &compiled).and_then(|()| std::fs::rename(&tmp, &path))
            });
        if written.is_err() {
            tracing::warn!(path = %path.display(), "could not write the compiled-plugin cache");
        }
        Ok(component)
    }

    #[allow(
        unsafe_code,
        reason = "loading precompiled code; see the safety comment"
    )]
    fn load_cached(&self, path: &Path) -> Result<Component, wasmtime::Error> {
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own
        // output. The cache directory is written only by `compile` above
        // (never by plugins or users), entries are keyed by the content hash
        // of the source component and by this engine's compatibility hash,
        // and wasmtime itself checks the version and configuration header.
        unsafe { Component::deserialize_file(&self.inner.engine, path) }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a plain thread (not a
/// tokio task), so deadlines keep ticking even if every async worker is
/// busy. The thread ends when the engine is dropped.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = thread::Builder::new()
        .name("trueup-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "could not start the epoch ticker; plugin deadlines will only be enforced by wall-clock timeouts");
    }
}
