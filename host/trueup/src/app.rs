//! The application: one store, one plugin runtime, the secret box and the
//! active rules, and the operations the CLI, the web server and the job
//! workers share (sync, reconcile, decide, write back).
//!
//! Everything here is about orchestration; the domain logic lives in
//! `trueup-core`, persistence in `trueup-store`, sandboxing in
//! `trueup-plugin-host`, rules in `trueup-rules`.

pub mod debounce;
pub mod decide;
pub mod reconcile;
pub mod sync;
pub mod writeback;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use trueup_core::effective::PsaProfile;
use trueup_core::mapping::{SkuTableFirst, SkuTableMapper};
use trueup_plugin_host::{PluginSecrets, SecretValue, SessionOptions};
use trueup_rules::{CompiledRules, RuleCache, RuleVersion, RulesMapper};
use trueup_store::audit::NewAuditEntry;
use trueup_store::{Store, StoreError};

use crate::config::Config;
use crate::runtime::{Runtime, RuntimeError};
use crate::secret_box::{Sealed, SecretBox, SecretBoxError};

/// Where "now" comes from (fixed in tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Events the UI follows live (sync progress, finished jobs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AppEvent {
    /// A sync read more records.
    SyncProgress {
        /// The PSA plugin id or vendor integration id.
        source: String,
        /// What is being read.
        phase: String,
        /// Records read in this phase.
        records: u64,
        /// Pages read in this phase.
        pages: u32,
    },
    /// A sync ended.
    SyncFinished {
        /// The source.
        source: String,
        /// Whether it succeeded.
        ok: bool,
        /// A one-line summary or the error.
        message: String,
    },
    /// A reconcile run was recorded.
    Reconciled {
        /// The run id.
        run: i64,
        /// Cards produced.
        cards: usize,
    },
    /// A job (sync, reconcile) finished on some worker of this process.
    JobFinished {
        /// The job id.
        job: i64,
        /// Its kind.
        kind: String,
        /// Whether it succeeded.
        ok: bool,
        /// A one-line summary or the error.
        message: String,
    },
    /// A write-back finished.
    WriteBack {
        /// The card.
        card: String,
        /// applied, rejected or retrying.
        status: String,
        /// Details (record ids or the PSA's reason).
        message: String,
    },
}

/// Why an operation failed, for the user.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A plugin failed to load.
    #[error(transparent)]
    Load(#[from] trueup_plugin_host::LoadError),
    /// A plugin call failed.
    #[error(transparent)]
    Call(#[from] trueup_plugin_host::CallError),
    /// A sync stopped.
    #[error(transparent)]
    Pull(#[from] crate::pull::PullError),
    /// Rules could not be compiled or validated.
    #[error("rules: {0}")]
    Rules(String),
    /// Secrets could not be sealed or opened.
    #[error(transparent)]
    Secret(#[from] SecretBoxError),
    /// A decision is not valid for the card.
    #[error(transparent)]
    Action(#[from] trueup_core::actions::ActionError),
    /// Something is not configured.
    #[error("{0}")]
    NotConfigured(String),
    /// Something asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A request is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl From<trueup_rules::RuleError> for AppError {
    fn from(error: trueup_rules::RuleError) -> Self {
        AppError::Rules(error.to_string())
    }
}

/// The rule version that is active, compiled, with the SKU table that
/// decides before it.
#[derive(Clone)]
pub struct ActiveRules {
    /// The version.
    pub version: RuleVersion,
    /// Compiled.
    pub compiled: Arc<CompiledRules>,
    /// The MSP's SKU table (`/api/v1/mappings/skus`), read with the rules.
    pub sku_table: SkuTableMapper,
}

impl ActiveRules {
    /// The one mapper: the SKU table first, then the rules, as of `as_of`.
    /// The reconcile, the rules dry run, explain and the push preview all
    /// map through this.
    pub fn mapper(&self, as_of: NaiveDate) -> SkuTableFirst<RulesMapper> {
        SkuTableFirst::new(self.sku_table.clone(), self.compiled.mapper(as_of))
    }
}

struct Inner {
    config: Arc<Config>,
    store: Store,
    /// A pool of its own for background work (reconciles), so a
    /// reconcile reading a month of usage never holds the connections
    /// the API's requests need (issue 16).
    background: Store,
    runtime: Runtime,
    secret_box: SecretBox,
    rule_cache: RuleCache,
    clock: Clock,
    events: broadcast::Sender<AppEvent>,
    worker_id: String,
    /// The reconcile debouncer the server started for this app, if any.
    debouncer: debounce::Slot,
}

/// The application. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

/// Connections of the background pool ([`App::background_store`]): a
/// reconcile uses one at a time; two leave room for a second job.
const BACKGROUND_CONNECTIONS: u32 = 2;

/// Events buffered per subscriber before the slowest one misses some.
const EVENT_BUFFER: usize = 1024;

impl App {
    /// Opens the store (migrating it), the secret key and the plugin
    /// runtime for `config`, and makes sure a rule version is active
    /// (importing `[rules] path` the first time).
    ///
    /// # Errors
    /// What could not be opened, and why.
    pub async fn open(config: Arc<Config>) -> Result<Self, AppError> {
        Self::open_with_clock(config, Arc::new(Utc::now)).await
    }

    /// [`App::open`] with a given clock.
    ///
    /// # Errors
    /// As [`App::open`].
    pub async fn open_with_clock(config: Arc<Config>, clock: Clock) -> Result<Self, AppError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            AppError::NotConfigured(format!(
                "cannot create the data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let store = Store::connect(&config.store_url()).await?;
        store.migrate().await?;
        let url = config.store_url();
        // An in-memory SQLite database exists once per pool: share it.
        let background =
            if store.backend() == trueup_store::Backend::Sqlite && url.contains("memory") {
                store.clone()
            } else {
                Store::connect_with(
                    &url,
                    trueup_store::StoreOptions {
                        max_connections: Some(BACKGROUND_CONNECTIONS),
                        migrate: false,
                    },
                )
                .await?
            };
        let secret_box = SecretBox::load(&config.data_dir)?;
        let runtime = Runtime::new(config.clone())?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let worker_id = format!(
            "{}-{}",
            std::process::id(),
            trueup_store::new_id().map_err(AppError::Store)?
        );
        let app = Self {
            inner: Arc::new(Inner {
                config,
                store,
                background,
                runtime,
                secret_box,
                rule_cache: RuleCache::new(),
                clock,
                events,
                worker_id,
                debouncer: debounce::Slot::default(),
            }),
        };
        app.ensure_rules().await?;
        Ok(app)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The store through the background pool: for long work (reconciles)
    /// that must not take the request pool's connections.
    pub fn background_store(&self) -> &Store {
        &self.inner.background
    }

    /// The plugin runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        (self.inner.clock)()
    }

    /// Today in the MSP's time zone.
    pub fn today(&self) -> NaiveDate {
        self.now()
            .with_timezone(&self.config().billing.zone())
            .date_naive()
    }

    /// This process's worker id (for leases).
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Where the app's reconcile debouncer is reached (see
    /// [`debounce::mark_usage_changed`]).
    pub(crate) fn debouncer_slot(&self) -> &debounce::Slot {
        &self.inner.debouncer
    }

    /// Subscribes to live events.
    pub fn events(&self) -> broadcast::Receiver<AppEvent> {
        self.inner.events.subscribe()
    }

    /// Sends `event` to every live subscriber (none is fine).
    pub fn emit(&self, event: AppEvent) {
        // No subscriber is fine: nobody is watching.
        let _ = self.inner.events.send(event);
    }

    /// Appends to the audit log; a failure is logged, never fatal to the
    /// operation it records (which already happened).
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: serde_json::Value,
    ) {
        let entry = NewAuditEntry {
            at: self.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            details,
        };
        if let Err(error) = self.store().audit(&entry).await {
            tracing::error!(%error, action, subject, "could not write the audit log");
        }
    }

    /// The PSA profile (integer units, dated changes, anchor) of the
    /// configured PSA connector.
    pub fn psa_profile(&self) -> PsaProfile {
        match self.config().psa.as_ref().map(|p| p.plugin.as_str()) {
            Some("trueup.connectwise") => PsaProfile::connectwise(),
            Some("trueup.autotask") => PsaProfile::autotask(),
            Some("trueup.halopsa") => PsaProfile::halopsa(),
            Some(other) => PsaProfile::generic(other),
            None => PsaProfile::generic("none"),
        }
    }

    // ------------------------------------------------------------ secrets

    /// Stores `plugin`'s secret `name`, encrypted. The plugin must declare
    /// the secret in its manifest.
    ///
    /// # Errors
    /// An unknown plugin or undeclared secret; a store error.
    pub async fn set_secret(
        &self,
        plugin: &str,
        name: &str,
        value: &str,
        by: &str,
    ) -> Result<(), AppError> {
        self.declared_secret(plugin, name).map_err(|e| *e)?;
        if value.is_empty() {
            return Err(AppError::Invalid("a secret cannot be empty".into()));
        }
        let Sealed { nonce, ciphertext } =
            self.inner.secret_box.seal(plugin, name, value.as_bytes());
        self.store()
            .put_secret(plugin, name, &nonce, &ciphertext, by, self.now())
            .await?;
        self.audit(
            by,
            "secret.set",
            &format!("{plugin}/{name}"),
            serde_json::json!({}),
        )
        .await;
        Ok(())
    }

    /// Deletes `plugin`'s secret `name`; whether one was stored. Audited.
    ///
    /// # Errors
    /// An unknown plugin or undeclared secret; a store error.
    pub async fn delete_secret(
        &self,
        plugin: &str,
        name: &str,
        by: &str,
    ) -> Result<bool, AppError> {
        self.declared_secret(plugin, name).map_err(|e| *e)?;
        let existed = self.store().delete_secret(plugin, name).await?;
        if existed {
            self.audit(
                by,
                "secret.delete",
                &format!("{plugin}/{name}"),
                serde_json::json!({}),
            )
            .await;
        }
        Ok(existed)
    }

    /// Whether the configured `plugin`'s manifest declares the secret
    /// `name`; the errors name what is configured or declared (boxed: the
    /// application's error is large).
    fn declared_secret(&self, plugin: &str, name: &str) -> Result<(), Box<AppError>> {
        let plugins = &self.config().plugins;
        let entry = plugins.get(plugin).ok_or_else(|| {
            let configured: Vec<&str> = plugins.keys().map(String::as_str).collect();
            Box::new(AppError::NotFound(format!(
                "no plugin {plugin:?} is configured (configured: {})",
                if configured.is_empty() {
                    "none".to_owned()
                } else {
                    configured.join(", ")
                }
            )))
        })?;
        let manifest = trueup_plugin_host::PluginManifest::load(
            &entry.path.join(trueup_plugin_host::manifest::MANIFEST_FILE),
        )
        .map_err(|e| Box::new(AppError::Invalid(e.to_string())))?;
        if !manifest.is_secret(name) {
            return Err(Box::new(AppError::Invalid(format!(
                "plugin {plugin} declares no secret {name:?} (its secrets: {})",
                if manifest.capabilities.secrets.is_empty() {
                    "none".to_owned()
                } else {
                    manifest.capabilities.secrets.join(", ")
                }
            ))));
        }
        Ok(())
    }

    /// The decrypted secrets stored for `plugin`, for a session.
    ///
    /// # Errors
    /// A store error or a secret that cannot be decrypted.
    pub async fn plugin_secrets(&self, plugin: &str) -> Result<PluginSecrets, AppError> {
        let mut values = Vec::new();
        for info in self.store().secret_names(Some(plugin)).await? {
            if let Some(stored) = self.store().secret(plugin, &info.name).await? {
                let sealed = Sealed {
                    nonce: stored.nonce,
                    ciphertext: stored.ciphertext,
                };
                let plain = self.inner.secret_box.open(plugin, &info.name, &sealed)?;
                values.push((info.name.clone(), SecretValue::new(plain.to_vec())));
            }
        }
        Ok(PluginSecrets::new(values))
    }

    /// Session options for `plugin` as of `as_of`, with its secrets and a
    /// progress sink that forwards to live events.
    ///
    /// # Errors
    /// As [`App::plugin_secrets`].
    pub async fn session_options(
        &self,
        plugin: &str,
        as_of: NaiveDate,
    ) -> Result<SessionOptions, AppError> {
        let mut options = SessionOptions::new(as_of, self.plugin_secrets(plugin).await?);
        let clock = self.inner.clock.clone();
        options.clock = Some(Arc::new(move || clock()));
        Ok(options)
    }

    // -------------------------------------------------------------- rules

    /// The active rules, compiled (once per version, cached).
    ///
    /// # Errors
    /// No active version, or one that no longer compiles.
    pub async fn active_rules(&self) -> Result<ActiveRules, AppError> {
        let active = self
            .store()
            .active_rule_version()
            .await?
            .ok_or_else(|| AppError::NotConfigured("no rule version is active".into()))?;
        let version = rule_version_from_store(&active.version);
        let compiled = self.inner.rule_cache.get(&version)?;
        Ok(ActiveRules {
            version,
            compiled,
            sku_table: self.sku_table().await?,
        })
    }

    /// The MSP's SKU table as a mapper (it decides before the rules).
    ///
    /// # Errors
    /// A store error.
    pub async fn sku_table(&self) -> Result<SkuTableMapper, AppError> {
        let entries = self.store().sku_entries().await?;
        Ok(SkuTableMapper::from_entries(
            entries.into_iter().map(|e| e.entry),
        ))
    }

    /// Validates `source` (compile, declarations, the tests given) and, if
    /// it passes, stores it as an immutable version and activates it.
    /// Returns the checksum.
    ///
    /// # Errors
    /// [`AppError::Rules`] with file:line:col when it does not validate;
    /// nothing is stored then.
    pub async fn activate_rules(
        &self,
        file: &str,
        source: &str,
        tests: Option<String>,
        by: &str,
    ) -> Result<String, AppError> {
        let version = RuleVersion::new(file, source, tests, by, self.now());
        let validated = trueup_rules::cases::validate(&version, &self.inner.rule_cache)?;
        let report = serde_json::json!({
            "file": version.file,
            "tests": version.tests,
            "report": format!("{validated:?}"),
        });
        let (checksum, _) = self
            .store()
            .save_rule_version(&version.source, by, &report, self.now())
            .await?;
        self.store()
            .activate_rule_version(&checksum, by, self.now())
            .await?;
        self.audit(
            by,
            "rules.activate",
            &checksum,
            serde_json::json!({ "file": file }),
        )
        .await;
        Ok(checksum)
    }

    async fn ensure_rules(&self) -> Result<(), AppError> {
        if self.store().active_rule_version().await?.is_some() {
            return Ok(());
        }
        let path = &self.config().rules.path;
        let version = RuleVersion::from_file(path, "trueup", self.now())?;
        self.activate_rules(
            &version.file,
            &version.source,
            version.tests.clone(),
            "trueup (initial rules)",
        )
        .await?;
        tracing::info!(path = %path.display(), "activated the initial rules");
        Ok(())
    }
}

/// A stored rule version as the rules crate's type (file and tests are
/// kept in the validation report).
fn rule_version_from_store(stored: &trueup_store::rules::RuleVersion) -> RuleVersion {
    let file = stored
        .validation
        .get("file")
        .and_then(|v| v.as_str())
        .unwrap_or("rules/active.rhai")
        .to_owned();
    let tests = stored
        .validation
        .get("tests")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    RuleVersion {
        checksum: stored.checksum.clone(),
        file,
        source: stored.source.clone(),
        tests,
        author: stored.author.clone(),
        created_at: stored.created_at,
    }
}
