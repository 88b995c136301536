//! `trueup plugin list | inspect | check | test | secret`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use trueup_core::model::VendorId;
use trueup_plugin_host::inspect;
use trueup_plugin_host::limits::EffectiveLimits;
use trueup_plugin_host::manifest::{MANIFEST_FILE, PluginManifest};
use trueup_plugin_host::plugin::{check_api, check_component, check_settings};
use trueup_plugin_host::{LoadedPlugin, PluginKind, PluginSecrets, PluginSettings, SessionOptions};

use trueup::config::Config;
use trueup::runtime::Runtime;
#[cfg(feature = "demo")]
use trueup_conformance::psa as conformance;

mod secret;

/// The emulator `plugin test --against` names: parsed with the conformance
/// kit, or any text in a build without it (which `plugin test` refuses).
#[cfg(feature = "demo")]
type Emulator = conformance::Against;
#[cfg(not(feature = "demo"))]
type Emulator = String;

/// `trueup plugin ...`.
#[derive(Debug, Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// List the configured plugins and whether each loads.
    List,
    /// Show a plugin's manifest, world, exports, capabilities and limits.
    Inspect {
        /// A configured plugin id, or a plugin directory.
        plugin: String,
    },
    /// Validate a plugin: manifest, component, grants; start it and call
    /// `describe`.
    Check {
        /// A configured plugin id, or a plugin directory.
        plugin: String,
    },
    /// Run the PSA conformance scenario against a bundled emulator and
    /// print a pass/fail table; exits non-zero when a check fails.
    #[cfg_attr(not(feature = "demo"), command(hide = true))]
    Test {
        /// A configured plugin id, or a plugin directory.
        plugin: String,
        /// The emulator: connectwise, autotask or halopsa.
        #[arg(long)]
        against: Emulator,
    },
    /// Set, list or delete a plugin's secrets in the configured store
    /// (encrypted as the API's `PUT .../secrets/{name}` does; values are
    /// never taken as arguments nor shown).
    Secret {
        #[command(subcommand)]
        command: secret::SecretCommand,
    },
}

/// Runs `trueup plugin ...`.
///
/// # Errors
/// What failed, for the user.
pub fn run(config: Arc<Config>, args: PluginArgs) -> anyhow::Result<()> {
    match args.command {
        PluginCommand::List => list(&config),
        PluginCommand::Inspect { plugin } => inspect_plugin(&config, &plugin),
        PluginCommand::Check { plugin } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(check(config, &plugin))
        }
        PluginCommand::Test { plugin, against } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(test(config, &plugin, against))
        }
        PluginCommand::Secret { command } => secret::run(config, command),
    }
}

/// The directory and admin settings for a configured id or a directory.
fn resolve(config: &Config, plugin: &str) -> anyhow::Result<(PathBuf, PluginSettings, bool)> {
    if let Some(entry) = config.plugins.get(plugin) {
        return Ok((entry.path.clone(), entry.settings(), true));
    }
    let dir = Path::new(plugin);
    if dir.join(MANIFEST_FILE).is_file() {
        return Ok((dir.to_owned(), PluginSettings::default(), false));
    }
    bail!(
        "{plugin:?} is neither a configured plugin id ({}) nor a directory holding {MANIFEST_FILE}",
        if config.plugins.is_empty() {
            "none configured".to_owned()
        } else {
            config
                .plugins
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        }
    )
}

fn list(config: &Config) -> anyhow::Result<()> {
    if config.plugins.is_empty() {
        println!("no plugins configured (add [plugins.\"<id>\"] sections to trueup.toml)");
        return Ok(());
    }
    let runtime = Runtime::new(Arc::new(config.clone()))?;
    println!(
        "{:<26} {:<7} {:<9} {:<6} STATUS",
        "ID", "KIND", "VERSION", "API"
    );
    for (id, entry) in &config.plugins {
        if !entry.enabled {
            println!("{id:<26} {:<7} {:<9} {:<6} disabled", "-", "-", "-");
            continue;
        }
        match runtime.load(id) {
            Ok(plugin) => {
                let manifest = plugin.manifest();
                println!(
                    "{id:<26} {:<7} {:<9} {:<6} ok ({})",
                    manifest.kind.to_string(),
                    manifest.version,
                    plugin.api(),
                    entry.path.display()
                );
            }
            Err(error) => println!("{id:<26} {:<7} {:<9} {:<6} error: {error}", "?", "?", "?"),
        }
    }
    Ok(())
}

fn inspect_plugin(config: &Config, plugin: &str) -> anyhow::Result<()> {
    let (dir, settings, configured) = resolve(config, plugin)?;
    let manifest = PluginManifest::load(&dir.join(MANIFEST_FILE))?;
    let component_path = manifest.component_path(&dir);
    let bytes = std::fs::read(&component_path)
        .with_context(|| format!("reading {}", component_path.display()))?;
    let interface = inspect::interface(&bytes)?;
    println!("{} {} ({})", manifest.id, manifest.version, manifest.name);
    if !manifest.description.is_empty() {
        println!("  {}", manifest.description);
    }
    println!(
        "  kind:        {} (world {})",
        manifest.kind,
        manifest.kind.world()
    );
    println!("  api:         trueup:connector@{}", manifest.api);
    if !manifest.authors.is_empty() {
        println!("  authors:     {}", manifest.authors.join(", "));
    }
    if let Some(license) = &manifest.license {
        println!("  license:     {license}");
    }
    println!(
        "  component:   {} ({} KiB)",
        component_path.display(),
        bytes.len() / 1024
    );
    println!("  exports:     {}", interface.exports.join(", "));
    println!("  imports:     {}", interface.imports.join(", "));
    println!("  config:");
    for (key, entry) in &manifest.config {
        let value = if entry.secret {
            "(secret)".to_owned()
        } else {
            settings
                .config
                .get(key)
                .map(|v| format!("= {v}"))
                .or_else(|| entry.default.as_ref().map(|d| format!("= {d} (default)")))
                .unwrap_or_else(|| "(unset)".to_owned())
        };
        let required = if entry.required { " required" } else { "" };
        println!(
            "    {key:<22}{required:<9} {value:<30} {}",
            entry.description
        );
    }
    println!("  capabilities:");
    println!(
        "    http declared: {}",
        list_or_none(&manifest.capabilities.http)
    );
    println!("    http granted:  {}", list_or_none(&settings.grants.http));
    println!(
        "    private nets:  {}",
        list_or_none(&settings.grants.private_networks)
    );
    println!(
        "    secrets declared: {}",
        list_or_none(&manifest.capabilities.secrets)
    );
    println!(
        "    secrets granted:  {}",
        list_or_none(&settings.grants.secrets)
    );
    let limits = EffectiveLimits::resolve(&manifest.limits, &settings.limits);
    println!("  limits (effective):");
    println!(
        "    memory:        {} MiB",
        limits.memory_bytes / (1024 * 1024)
    );
    println!("    call timeout:  {:?}", limits.call_timeout);
    println!("    cpu budget:    {:?}", limits.cpu_budget);
    println!("    response cap:  {} bytes", limits.max_response_bytes);
    if !configured {
        println!("  (not in trueup.toml: no config values or grants shown)");
    }
    Ok(())
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

struct Checks {
    failed: bool,
}

impl Checks {
    fn report<T, E: std::fmt::Display>(&mut self, what: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => {
                println!("  ok    {what}");
                Some(value)
            }
            Err(error) => {
                println!("  FAIL  {what}: {error}");
                self.failed = true;
                None
            }
        }
    }
}

async fn check(config: Arc<Config>, plugin: &str) -> anyhow::Result<()> {
    let (dir, settings, configured) = resolve(&config, plugin)?;
    println!("checking {}", dir.display());
    let mut checks = Checks { failed: false };
    let Some(manifest) = checks.report("manifest", PluginManifest::load(&dir.join(MANIFEST_FILE)))
    else {
        bail!("the plugin is not usable");
    };
    checks.report("api version supported", check_api(&manifest).map(|_| ()));
    if configured {
        checks.report(
            "trueup.toml settings match the manifest",
            check_settings(&manifest, &settings),
        );
    }
    let component = std::fs::read(manifest.component_path(&dir))
        .with_context(|| format!("reading {}", manifest.component_path(&dir).display()));
    if let Some(bytes) = checks.report("component readable", component)
        && let Some(interface) =
            checks.report("component is a connector", inspect::interface(&bytes))
    {
        checks.report(
            "component matches the manifest",
            check_component(&manifest, &interface).map(|_| ()),
        );
    }
    for name in &manifest.capabilities.secrets {
        if configured && !settings.grants.secrets.contains(name) {
            println!("  warn  secret {name:?} is declared but not granted in trueup.toml");
        }
    }
    if configured {
        checks.report(
            "required secrets are set in the store",
            secret::missing_required(&config, plugin, &manifest).await,
        );
    }
    let runtime = Runtime::new(config.clone())?;
    let loaded = checks.report(
        "compiles and links",
        LoadedPlugin::load(runtime.engine(), &dir, &settings),
    );
    if let Some(loaded) = loaded {
        let options = SessionOptions::new(config.billing.today(), PluginSecrets::default());
        let described = match loaded.kind() {
            PluginKind::Psa => match loaded.psa_session(options) {
                Ok(mut session) => session.describe().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            PluginKind::Vendor => match loaded.vendor_session(VendorId::from("check"), options) {
                Ok(mut session) => session.describe().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        if let Some(description) = checks.report("starts and answers describe", described) {
            let consistent =
                if description.id == manifest.id && description.version == manifest.version {
                    Ok(())
                } else {
                    Err(format!(
                        "describe says {} {}, plugin.toml says {} {}",
                        description.id, description.version, manifest.id, manifest.version
                    ))
                };
            checks.report("describe agrees with the manifest", consistent);
        }
    }
    if checks.failed {
        bail!("{} failed its checks", manifest.id);
    }
    println!("{} {} is ready", manifest.id, manifest.version);
    Ok(())
}

#[cfg(feature = "demo")]
async fn test(config: Arc<Config>, plugin: &str, against: Emulator) -> anyhow::Result<()> {
    let (dir, settings, _) = resolve(&config, plugin)?;
    let runtime = Runtime::new(config.clone())?;
    let scenario = conformance::Scenario::standard(config.billing.today());
    let report = conformance::run(runtime.engine(), &dir, &settings, against, &scenario).await?;
    println!("{report}");
    if !report.passed() {
        bail!(
            "{} failed the conformance scenario against {against}",
            report.plugin
        );
    }
    Ok(())
}

/// `plugin test` in a build without the conformance kit.
#[cfg(not(feature = "demo"))]
async fn test(_config: Arc<Config>, _plugin: &str, _against: Emulator) -> anyhow::Result<()> {
    Err(crate::not_built("plugin test"))
}
