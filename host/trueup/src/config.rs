//! `trueup.toml`: the admin's configuration.
//!
//! ```toml
//! data_dir = "data"                      # SQLite file, plugin cache, keys
//!
//! [store]
//! url = "sqlite://data/trueup.db"        # or postgres://user@host/db
//!
//! [server]
//! bind = "127.0.0.1:8080"
//! secure_cookies = true                  # served over HTTPS: Secure cookies, HSTS
//! hsts = "max-age=31536000"              # the Strict-Transport-Security sent then
//!
//! [billing]
//! time_zone = "America/Chicago"          # the MSP's business day
//! currency = "USD"
//!
//! [psa]
//! plugin = "trueup.connectwise"
//! contract_types = ["Managed Services"]
//!
//! [[vendors]]
//! id = "microsoft-365"                   # the vendor integration id on cards
//! name = "Microsoft 365"
//! plugin = "trueup.microsoft365"
//!
//! [plugins."trueup.connectwise"]
//! path = "target/plugins/trueup.connectwise"
//! [plugins."trueup.connectwise".config]
//! base_url = "https://na.myconnectwise.net"
//! [plugins."trueup.connectwise".grants]
//! http = ["https://na.myconnectwise.net"]
//! secrets = ["private_key"]
//!
//! [[schedules]]
//! name = "month-end"                     # unique
//! kind = "sync.full"                     # sync.full | sync.quick | sync.source | reconcile
//! spec = "monthly on day 28 at 18:00"    # in [billing] time_zone (see schedule.rs)
//!
//! [write_back]
//! lease_secs = 180                       # a crashed worker's write-back is taken over after this
//! ```
//!
//! Unknown fields are refused; errors name the file, line and field.
//!
//! Relative paths in the file — `data_dir`, `[store] url` for SQLite
//! (`sqlite://data/trueup.db`), `[rules] path`, `[runtime] plugin_cache`
//! and every `[plugins."<id>"] path` — are relative to the directory of the
//! configuration file, not to the directory `trueup` runs in: `trueup
//! serve --config /srv/trueup/trueup.toml` finds the same files from
//! anywhere.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trueup_plugin_host::limits::LimitSettings;
use trueup_plugin_host::{Grants, PluginSettings, Pooling};

/// The file read when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "trueup.toml";

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where Trueup keeps its files (SQLite database, plugin cache, key
    /// file). Relative paths are relative to the config file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Storage.
    #[serde(default)]
    pub store: StoreConfig,
    /// The web server.
    #[serde(default)]
    pub server: ServerConfig,
    /// The plugin runtime.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Billing defaults.
    #[serde(default)]
    pub billing: BillingConfig,
    /// The PSA connector.
    #[serde(default)]
    pub psa: Option<PsaConfig>,
    /// Vendor integrations backed by plugins.
    #[serde(default)]
    pub vendors: Vec<VendorConfig>,
    /// Installed plugins by id.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginEntry>,
    /// Rules.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Scheduled jobs (syncs, reconciles), in the MSP's time zone.
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// The write-back worker.
    #[serde(default)]
    pub write_back: WriteBackConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// `[store]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://...`; default
    /// `sqlite://<data_dir>/trueup.db`.
    #[serde(default)]
    pub url: Option<String>,
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Mark session cookies `Secure` (set when served over HTTPS, directly
    /// or behind a TLS-terminating proxy).
    #[serde(default)]
    pub secure_cookies: bool,
    /// The `Strict-Transport-Security` value sent on every response when
    /// `secure_cookies` is set (served over HTTPS); empty sends none.
    /// Default one year: browsers then refuse plain HTTP to this host.
    #[serde(default = "default_hsts")]
    pub hsts: String,
}

fn default_hsts() -> String {
    "max-age=31536000".to_owned()
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            secure_cookies: false,
            hsts: default_hsts(),
        }
    }
}

/// `[write_back]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBackConfig {
    /// How long a worker holds a claimed write-back before another worker
    /// may take it over (a crashed worker's entry waits this long). Longer
    /// than a write's connector deadline with its retries; default 180 s.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

/// How long a claimed write-back stays with its worker before another may
/// take it over, unless `[write_back] lease_secs` says otherwise. Longer
/// than a write's connector deadline with its retries.
pub const DEFAULT_WRITE_BACK_LEASE: std::time::Duration = std::time::Duration::from_secs(180);

fn default_lease_secs() -> u64 {
    DEFAULT_WRITE_BACK_LEASE.as_secs()
}

impl Default for WriteBackConfig {
    fn default() -> Self {
        Self {
            lease_secs: default_lease_secs(),
        }
    }
}

impl WriteBackConfig {
    /// The lease (at least one second).
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_secs.max(1))
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Pooling allocator policy.
    #[serde(default)]
    pub pooling: Pooling,
    /// Compiled-plugin cache; default `<data_dir>/plugin-cache`.
    #[serde(default)]
    pub plugin_cache: Option<PathBuf>,
}

/// `[billing]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    /// The IANA time zone whose calendar day is "today" for the MSP.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// ISO currency of PSA prices.
    #[serde(default = "default_currency")]
    pub currency: String,
}

fn default_time_zone() -> String {
    "UTC".into()
}

fn default_currency() -> String {
    "USD".into()
}

impl BillingConfig {
    /// The MSP's time zone (validated at load).
    pub fn zone(&self) -> chrono_tz::Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// Today's date in the MSP's time zone.
    pub fn today(&self) -> chrono::NaiveDate {
        chrono::Utc::now().with_timezone(&self.zone()).date_naive()
    }
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            time_zone: default_time_zone(),
            currency: default_currency(),
        }
    }
}

/// `[psa]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PsaConfig {
    /// The plugin id.
    pub plugin: String,
    /// Contract types to sync; empty means all.
    #[serde(default)]
    pub contract_types: Vec<String>,
}

/// `[[vendors]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorConfig {
    /// The vendor integration id used on cards and mappings.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The plugin id.
    pub plugin: String,
}

/// `[rules]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// The rule script loaded when the store holds no active version yet.
    #[serde(default = "default_rules")]
    pub path: PathBuf,
}

fn default_rules() -> PathBuf {
    PathBuf::from("rules/default.rhai")
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            path: default_rules(),
        }
    }
}

/// `[[schedules]]`: a job enqueued on a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique name (the store's schedule key).
    pub name: String,
    /// The job kind: `sync.full` (every source, then a reconcile),
    /// `sync.quick` (every source, no reconcile), `sync.source` (one
    /// source, named by `source`) or `reconcile`.
    pub kind: String,
    /// When, e.g. `"weekly on mon at 06:00"` or `"monthly on day 28 at
    /// 18:00"` (see [`crate::schedule`]), in `[billing] time_zone`.
    pub spec: String,
    /// For `sync.source`: the PSA plugin id or vendor integration id.
    #[serde(default)]
    pub source: Option<String>,
    /// Disabled schedules enqueue nothing.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

/// The job kinds a schedule may enqueue.
pub const SCHEDULE_KINDS: &[&str] = &["sync.full", "sync.quick", "sync.source", "reconcile"];

/// `[plugins."<id>"]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// The plugin directory (with `plugin.toml` and the component).
    pub path: PathBuf,
    /// Whether to load it.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Non-secret config values.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Capability grants.
    #[serde(default)]
    pub grants: Grants,
    /// Caps on requested limits.
    #[serde(default)]
    pub limits: LimitSettings,
}

fn enabled() -> bool {
    true
}

impl PluginEntry {
    /// The settings the plugin host takes.
    pub fn settings(&self) -> PluginSettings {
        PluginSettings {
            config: self.config.clone(),
            grants: self.grants.clone(),
            limits: self.limits,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong.
    pub problem: String,
}

impl Config {
    /// Reads `path`, or the defaults when `path` is the default file and it
    /// does not exist. Relative paths inside become relative to the file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, the line and the field.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let error = |problem: String| ConfigError {
            file: path.to_owned(),
            problem,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default().rooted(Path::new(".")));
            }
            Err(e) => return Err(error(format!("cannot be read: {e}"))),
        };
        let config = Self::parse(&text).map_err(error)?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok(config.rooted(base))
    }

    /// Parses configuration text.
    ///
    /// # Errors
    /// The problem, with its line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(line) => format!("line {line}: {}", e.message()),
                None => e.message().to_owned(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(psa) = &self.psa
            && !self.plugins.contains_key(&psa.plugin)
        {
            return Err(format!(
                "[psa] plugin = {:?} has no [plugins.{:?}] entry",
                psa.plugin, psa.plugin
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for vendor in &self.vendors {
            if !ids.insert(vendor.id.as_str()) {
                return Err(format!("[[vendors]] id {:?} is used twice", vendor.id));
            }
            if !self.plugins.contains_key(&vendor.plugin) {
                return Err(format!(
                    "[[vendors]] {:?} uses plugin {:?}, which has no [plugins.{:?}] entry",
                    vendor.id, vendor.plugin, vendor.plugin
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for schedule in &self.schedules {
            if !names.insert(schedule.name.as_str()) {
                return Err(format!(
                    "[[schedules]] name {:?} is used twice",
                    schedule.name
                ));
            }
            if !SCHEDULE_KINDS.contains(&schedule.kind.as_str()) {
                return Err(format!(
                    "[[schedules]] {:?}: kind {:?} is not one of {}",
                    schedule.name,
                    schedule.kind,
                    SCHEDULE_KINDS.join(", ")
                ));
            }
            if let Err(e) = crate::schedule::Schedule::parse(&schedule.spec) {
                return Err(format!("[[schedules]] {:?}: {e}", schedule.name));
            }
            match (&schedule.source, schedule.kind == "sync.source") {
                (None, true) => {
                    return Err(format!(
                        "[[schedules]] {:?}: kind \"sync.source\" needs source = \"<PSA plugin or vendor id>\"",
                        schedule.name
                    ));
                }
                (Some(source), true)
                    if self.psa.as_ref().is_none_or(|p| &p.plugin != source)
                        && !self.vendors.iter().any(|v| &v.id == source) =>
                {
                    return Err(format!(
                        "[[schedules]] {:?}: source {source:?} is neither the [psa] plugin nor a [[vendors]] id",
                        schedule.name
                    ));
                }
                (Some(_), false) => {
                    return Err(format!(
                        "[[schedules]] {:?}: source is only for kind \"sync.source\"",
                        schedule.name
                    ));
                }
                _ => {}
            }
        }
        if self.billing.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(format!(
                "[billing] time_zone = {:?} is not an IANA time zone name like \"America/Chicago\"",
                self.billing.time_zone
            ));
        }
        Ok(())
    }

    fn rooted(mut self, base: &Path) -> Self {
        let root = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        root(&mut self.data_dir);
        root(&mut self.rules.path);
        if let Some(url) = &mut self.store.url
            && let Some(rooted) = rooted_sqlite_url(url, base)
        {
            *url = rooted;
        }
        if let Some(cache) = &mut self.runtime.plugin_cache {
            root(cache);
        }
        for entry in self.plugins.values_mut() {
            root(&mut entry.path);
        }
        self
    }

    /// The store URL: `[store] url` or SQLite in the data directory.
    pub fn store_url(&self) -> String {
        self.store
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("trueup.db").display()))
    }

    /// The compiled-plugin cache directory.
    pub fn plugin_cache(&self) -> PathBuf {
        self.runtime
            .plugin_cache
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugin-cache"))
    }
}

/// `url` with its SQLite file made relative to `base` when it is a
/// relative path (`sqlite://data/trueup.db`, `sqlite:trueup.db`); `None`
/// for other URLs, in-memory databases and absolute paths.
fn rooted_sqlite_url(url: &str, base: &Path) -> Option<String> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.is_empty() || path.starts_with(':') || Path::new(path).is_absolute() {
        return None;
    }
    Some(format!("sqlite://{}", base.join(path).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let config = Config::parse("").expect("empty is valid");
        assert_eq!(config.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.billing.time_zone, "UTC");
        assert!(config.plugins.is_empty());
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let error =
            Config::parse("[server]\nbind = \"127.0.0.1:8080\"\nport = 9\n").expect_err("unknown");
        assert_eq!(
            error,
            "line 3: unknown field `port`, expected one of `bind`, `secure_cookies`, `hsts`"
        );
        let error = Config::parse("[billing]\ntime_zone = \"Mars/Olympus\"\n").expect_err("zone");
        assert_eq!(
            error,
            "[billing] time_zone = \"Mars/Olympus\" is not an IANA time zone name like \"America/Chicago\""
        );
        let error = Config::parse("[psa]\nplugin = \"x\"\n").expect_err("no entry");
        assert_eq!(error, "[psa] plugin = \"x\" has no [plugins.\"x\"] entry");
    }

    #[test]
    fn schedules_are_read_and_checked() {
        let config = Config::parse(
            "[[schedules]]\nname = \"month-end\"\nkind = \"sync.full\"\nspec = \"monthly on day 28 at 18:00\"\n\
             [[schedules]]\nname = \"weekly\"\nkind = \"reconcile\"\nspec = \"weekly on mon at 06:00\"\nenabled = false\n",
        )
        .expect("valid");
        assert_eq!(
            config.schedules,
            vec![
                ScheduleConfig {
                    name: "month-end".into(),
                    kind: "sync.full".into(),
                    spec: "monthly on day 28 at 18:00".into(),
                    source: None,
                    enabled: true,
                },
                ScheduleConfig {
                    name: "weekly".into(),
                    kind: "reconcile".into(),
                    spec: "weekly on mon at 06:00".into(),
                    source: None,
                    enabled: false,
                },
            ]
        );
        let cases = [
            (
                "[[schedules]]\nname = \"a\"\nkind = \"sync.full\"\nspec = \"daily at 06:00\"\n\
                 [[schedules]]\nname = \"a\"\nkind = \"reconcile\"\nspec = \"daily at 07:00\"\n",
                "[[schedules]] name \"a\" is used twice",
            ),
            (
                "[[schedules]]\nname = \"a\"\nkind = \"backup\"\nspec = \"daily at 06:00\"\n",
                "[[schedules]] \"a\": kind \"backup\" is not one of sync.full, sync.quick, sync.source, reconcile",
            ),
            (
                "[[schedules]]\nname = \"a\"\nkind = \"sync.source\"\nspec = \"daily at 06:00\"\n",
                "[[schedules]] \"a\": kind \"sync.source\" needs source = \"<PSA plugin or vendor id>\"",
            ),
            (
                "[[schedules]]\nname = \"a\"\nkind = \"sync.source\"\nsource = \"pax8\"\nspec = \"daily at 06:00\"\n",
                "[[schedules]] \"a\": source \"pax8\" is neither the [psa] plugin nor a [[vendors]] id",
            ),
            (
                "[[schedules]]\nname = \"a\"\nkind = \"reconcile\"\nsource = \"pax8\"\nspec = \"daily at 06:00\"\n",
                "[[schedules]] \"a\": source is only for kind \"sync.source\"",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Config::parse(text).expect_err(expected), expected);
        }
        let error =
            Config::parse("[[schedules]]\nname = \"a\"\nkind = \"reconcile\"\nspec = \"hourly\"\n")
                .expect_err("bad spec");
        assert!(
            error.starts_with("[[schedules]] \"a\": \"hourly\" is not a schedule"),
            "{error}"
        );
    }

    #[test]
    fn plugin_paths_are_relative_to_the_config_file() {
        let config = Config::parse("[plugins.\"a.b\"]\npath = \"plugins/a\"\n")
            .expect("valid")
            .rooted(Path::new("/etc/trueup"));
        assert_eq!(
            config.plugins["a.b"].path,
            PathBuf::from("/etc/trueup/plugins/a")
        );
        assert_eq!(config.data_dir, PathBuf::from("/etc/trueup/data"));
    }

    #[test]
    fn relative_sqlite_files_are_relative_to_the_config_file() {
        let cases = [
            (
                "sqlite://data/trueup.db",
                "sqlite:///etc/trueup/data/trueup.db",
            ),
            ("sqlite:trueup.db", "sqlite:///etc/trueup/trueup.db"),
            ("sqlite:///var/lib/trueup.db", "sqlite:///var/lib/trueup.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("sqlite://:memory:", "sqlite://:memory:"),
            ("postgres://u@db/trueup", "postgres://u@db/trueup"),
        ];
        for (url, expected) in cases {
            let config = Config::parse(&format!("[store]\nurl = {url:?}\n"))
                .expect("valid")
                .rooted(Path::new("/etc/trueup"));
            assert_eq!(config.store.url.as_deref(), Some(expected), "{url}");
        }
    }
}
