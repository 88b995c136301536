//! `trueup plugin secret set | list | delete`: a plugin's secrets in the
//! configured store, sealed with the store's secret box exactly as the
//! API's `PUT /api/v1/integrations/{plugin}/secrets/{name}` seals them
//! ([`App::set_secret`]), and audited.
//!
//! A value is read from standard input when it is piped, or typed at a
//! prompt that does not echo; never from an argument, where it would land
//! in the shell history and the process list. `list` shows names, whether
//! each is set, when and by whom — never values.

use std::io::{IsTerminal, Read};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use trueup_plugin_host::PluginManifest;
use trueup_plugin_host::manifest::MANIFEST_FILE;
use trueup_store::Store;

use trueup::app::App;
use trueup::config::Config;

/// `trueup plugin secret ...`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret: the value from standard input when piped
    /// (`printf %s "$KEY" | trueup plugin secret set P NAME`), else from a
    /// prompt that does not echo.
    Set {
        /// A configured plugin id.
        plugin: String,
        /// A secret the plugin's manifest declares.
        name: String,
    },
    /// List a plugin's declared secrets (all plugins' without PLUGIN):
    /// whether each is set, when and by whom, never the value.
    List {
        /// A configured plugin id.
        plugin: Option<String>,
    },
    /// Delete a stored secret.
    Delete {
        /// A configured plugin id.
        plugin: String,
        /// A secret the plugin's manifest declares.
        name: String,
    },
}

/// Who the audit log names for a change from this command line.
fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// Runs `trueup plugin secret ...`.
///
/// # Errors
/// An unknown plugin or undeclared secret (naming the declared ones), no
/// value given, or a store that cannot be opened.
pub fn run(config: Arc<Config>, command: SecretCommand) -> anyhow::Result<()> {
    // Read the value before opening anything, so a prompt is not delayed
    // by migrations and a missing value fails fast.
    let value = match &command {
        SecretCommand::Set { plugin, name } => Some(read_value(plugin, name)?),
        _ => None,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let app = App::open(config).await.context("opening Trueup")?;
        let by = actor();
        let result = match command {
            SecretCommand::Set { plugin, name } => {
                let value = value.unwrap_or_default();
                app.set_secret(&plugin, &name, &value, &by)
                    .await
                    .map(|()| println!("secret {name} of {plugin} set"))
                    .map_err(anyhow::Error::from)
            }
            SecretCommand::List { plugin } => list(&app, plugin.as_deref()).await,
            SecretCommand::Delete { plugin, name } => {
                match app.delete_secret(&plugin, &name, &by).await {
                    Ok(true) => {
                        println!("secret {name} of {plugin} deleted");
                        Ok(())
                    }
                    Ok(false) => {
                        println!("secret {name} of {plugin} was not set; nothing deleted");
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
        };
        app.store().close().await;
        result
    })
}

/// The secret's value: all of standard input when it is not a terminal
/// (one trailing line break dropped, as `echo` adds it), else a prompt
/// without echo.
fn read_value(plugin: &str, name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut value = if stdin.is_terminal() {
        rpassword::prompt_password(format!("{name} of {plugin} (not shown): "))
            .context("reading the secret from the terminal")?
    } else {
        let mut text = String::new();
        stdin
            .lock()
            .read_to_string(&mut text)
            .context("reading the secret from standard input (it must be UTF-8 text)")?;
        text
    };
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        bail!(
            "no value for secret {name} of {plugin}: pipe it on standard input \
             (printf %s \"$VALUE\" | trueup plugin secret set {plugin} {name}) or type it at the prompt"
        );
    }
    Ok(value)
}

/// The declared secrets of one configured plugin, or of all.
async fn list(app: &App, plugin: Option<&str>) -> anyhow::Result<()> {
    let config = app.config();
    let ids: Vec<&str> = match plugin {
        Some(id) if config.plugins.contains_key(id) => vec![id],
        Some(id) => bail!(
            "no plugin {id:?} is configured (configured: {})",
            configured(config)
        ),
        None => config.plugins.keys().map(String::as_str).collect(),
    };
    println!("{:<26} {:<22} {:<9} STATUS", "PLUGIN", "SECRET", "REQUIRED");
    for id in ids {
        let manifest = manifest_of(config, id)?;
        let stored = app.store().secret_names(Some(id)).await?;
        for name in &manifest.capabilities.secrets {
            let required = if is_required(&manifest, name) {
                "required"
            } else {
                "optional"
            };
            let status = match stored.iter().find(|s| &s.name == name) {
                Some(s) => format!("set {} by {}", s.updated_at.to_rfc3339(), s.updated_by),
                None => "not set".to_owned(),
            };
            println!("{id:<26} {name:<22} {required:<9} {status}");
        }
    }
    Ok(())
}

fn configured(config: &Config) -> String {
    if config.plugins.is_empty() {
        "none".to_owned()
    } else {
        config
            .plugins
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn manifest_of(config: &Config, id: &str) -> anyhow::Result<PluginManifest> {
    let entry = config
        .plugins
        .get(id)
        .with_context(|| format!("no plugin {id:?} is configured"))?;
    Ok(PluginManifest::load(&entry.path.join(MANIFEST_FILE))?)
}

fn is_required(manifest: &PluginManifest, name: &str) -> bool {
    manifest.config.get(name).is_some_and(|k| k.required)
}

/// For `plugin check`: fails naming every secret the manifest declares as
/// required that the configured store does not hold, and the command that
/// sets it.
///
/// # Errors
/// The missing secrets, or why the store could not be read.
pub async fn missing_required(
    config: &Config,
    plugin: &str,
    manifest: &PluginManifest,
) -> Result<(), String> {
    let required: Vec<&String> = manifest
        .capabilities
        .secrets
        .iter()
        .filter(|name| is_required(manifest, name))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let store = open_store(config).await?;
    let stored = store.secret_names(Some(plugin)).await;
    store.close().await;
    let stored = stored.map_err(|e| format!("cannot read the stored secrets: {e}"))?;
    let missing: Vec<String> = required
        .into_iter()
        .filter(|name| !stored.iter().any(|s| &s.name == *name))
        .map(|name| format!("secret {name:?} is required but not set (set it with `trueup plugin secret set {plugin} {name}`)"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

/// The configured store, migrated (as every command that uses it does).
async fn open_store(config: &Config) -> Result<Store, String> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create the data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let store = Store::connect(&config.store_url())
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    store
        .migrate()
        .await
        .map_err(|e| format!("cannot migrate the store: {e}"))?;
    Ok(store)
}
