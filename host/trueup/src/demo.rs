//! The demo environment: the bundled emulators started in-process, and a
//! configuration that installs the shipped plugins with grants for exactly
//! those emulators — ConnectWise as the PSA; Microsoft 365, Pax8, NinjaOne
//! and Huntress as vendors — on SQLite in a local data directory.
//!
//! `trueup demo` runs it; the end-to-end tests use it too.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use trueup_emulators::world::World;
use trueup_emulators::{Kind, Running, Settings};
use trueup_plugin_host::Grants;

use crate::config::{
    Config, ConfigError, DEFAULT_CONFIG_FILE, PluginEntry, PsaConfig, RulesConfig, StoreConfig,
    VendorConfig,
};

/// The PSA plugin of the demo.
pub const PSA_PLUGIN: &str = "trueup.connectwise";

/// Contract types the demo MSP reconciles in ConnectWise (the emulator also
/// seeds others, which the sync must leave out).
pub const CONTRACT_TYPES: &[&str] = &["Managed Services", "Microsoft Licensing"];

/// The demo's vendors: (vendor integration id, display name, plugin id).
/// The ids are the ones `rules/default.rhai` maps.
pub const VENDORS: &[(&str, &str, &str)] = &[
    ("microsoft-365", "Microsoft 365", "trueup.microsoft365"),
    ("pax8", "Pax8", "trueup.pax8"),
    ("ninjaone", "NinjaOne", "trueup.ninjaone"),
    ("huntress", "Huntress", "trueup.huntress"),
];

/// The emulators the demo runs.
#[derive(Debug)]
pub struct Emulators {
    /// ConnectWise PSA.
    pub connectwise: Running,
    /// Microsoft identity, Graph and Partner Center.
    pub microsoft: Running,
    /// Pax8.
    pub pax8: Running,
    /// NinjaOne.
    pub ninjaone: Running,
    /// Huntress.
    pub huntress: Running,
}

/// Starts the emulators on `host` (free ports), over a world of
/// `customers` customers from `seed`, with "today" pinned to `today`.
///
/// # Errors
/// When a port cannot be bound.
pub async fn start_emulators(
    seed: u64,
    customers: usize,
    today: NaiveDate,
    host: IpAddr,
) -> std::io::Result<Emulators> {
    let world = Arc::new(World::new(seed, customers));
    let mut settings = Settings::default();
    settings.connectwise.today = Some(today);
    let as_of = today.and_hms_opt(12, 0, 0).map(|t| t.and_utc());
    settings.microsoft.as_of = as_of;
    settings.pax8.as_of = as_of;
    settings.ninjaone.as_of = as_of;
    settings.huntress.as_of = as_of;
    let bind = SocketAddr::new(host, 0);
    let start = |kind| trueup_emulators::start(kind, world.clone(), settings.clone(), bind);
    Ok(Emulators {
        connectwise: start(Kind::ConnectWise).await?,
        microsoft: start(Kind::Microsoft).await?,
        pax8: start(Kind::Pax8).await?,
        ninjaone: start(Kind::NinjaOne).await?,
        huntress: start(Kind::Huntress).await?,
    })
}

fn entry(
    plugins_dir: &Path,
    id: &str,
    origin: &str,
    config: &[(&str, String)],
    secrets: &[&str],
) -> PluginEntry {
    PluginEntry {
        path: plugins_dir.join(id),
        enabled: true,
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        grants: Grants {
            http: vec![origin.to_owned()],
            // The emulators listen on loopback, which plugins may not reach
            // unless granted.
            private_networks: vec!["127.0.0.1/32".to_owned()],
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        },
        limits: Default::default(),
    }
}

/// The demo configuration: SQLite in `data_dir`, plugins from
/// `plugins_dir`, rules from `rules`, each plugin pointed at its emulator.
pub fn config(data_dir: &Path, plugins_dir: &Path, rules: &Path, emulators: &Emulators) -> Config {
    use trueup_emulators::{connectwise as cw, huntress, microsoft, ninjaone, pax8};
    let mut plugins = BTreeMap::new();
    let cw_origin = emulators.connectwise.base_url.as_str();
    plugins.insert(
        PSA_PLUGIN.to_owned(),
        entry(
            plugins_dir,
            PSA_PLUGIN,
            cw_origin,
            &[
                ("base_url", format!("{cw_origin}{}", cw::BASE_PATH)),
                ("company_id", cw::COMPANY_ID.to_owned()),
                ("client_id", cw::CLIENT_ID.to_owned()),
            ],
            &["public_key", "private_key"],
        ),
    );
    let ms = emulators.microsoft.base_url.as_str();
    plugins.insert(
        "trueup.microsoft365".to_owned(),
        entry(
            plugins_dir,
            "trueup.microsoft365",
            ms,
            &[
                ("login_base_url", ms.to_owned()),
                ("graph_base_url", ms.to_owned()),
                ("partner_center_base_url", ms.to_owned()),
                ("client_id", microsoft::CLIENT_ID.to_owned()),
                ("partner_tenant_id", microsoft::PARTNER_TENANT_ID.to_owned()),
            ],
            &["client_secret"],
        ),
    );
    let p8 = emulators.pax8.base_url.as_str();
    plugins.insert(
        "trueup.pax8".to_owned(),
        entry(
            plugins_dir,
            "trueup.pax8",
            p8,
            &[
                ("base_url", format!("{p8}/v1")),
                ("client_id", pax8::CLIENT_ID.to_owned()),
            ],
            &["client_secret"],
        ),
    );
    let nj = emulators.ninjaone.base_url.as_str();
    plugins.insert(
        "trueup.ninjaone".to_owned(),
        entry(
            plugins_dir,
            "trueup.ninjaone",
            nj,
            &[
                ("base_url", nj.to_owned()),
                ("client_id", ninjaone::CLIENT_ID.to_owned()),
            ],
            &["client_secret"],
        ),
    );
    let hu = emulators.huntress.base_url.as_str();
    plugins.insert(
        "trueup.huntress".to_owned(),
        entry(
            plugins_dir,
            "trueup.huntress",
            hu,
            &[
                ("base_url", format!("{hu}/v1")),
                ("api_key", huntress::PUBLIC_KEY.to_owned()),
            ],
            &["api_secret"],
        ),
    );
    Config {
        data_dir: data_dir.to_owned(),
        store: StoreConfig {
            url: Some(format!("sqlite://{}", data_dir.join("trueup.db").display())),
        },
        psa: Some(PsaConfig {
            plugin: PSA_PLUGIN.to_owned(),
            contract_types: CONTRACT_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        }),
        vendors: VENDORS
            .iter()
            .map(|(id, name, plugin)| VendorConfig {
                id: (*id).to_owned(),
                name: (*name).to_owned(),
                plugin: (*plugin).to_owned(),
            })
            .collect(),
        plugins,
        rules: RulesConfig {
            path: rules.to_owned(),
        },
        ..Config::default()
    }
}

/// The emulators' credentials: (plugin, secret name, value).
pub fn secrets() -> Vec<(&'static str, &'static str, &'static str)> {
    use trueup_emulators::{connectwise as cw, huntress, microsoft, ninjaone, pax8};
    vec![
        (PSA_PLUGIN, "public_key", cw::PUBLIC_KEY),
        (PSA_PLUGIN, "private_key", cw::PRIVATE_KEY),
        (
            "trueup.microsoft365",
            "client_secret",
            microsoft::CLIENT_SECRET,
        ),
        ("trueup.pax8", "client_secret", pax8::CLIENT_SECRET),
        ("trueup.ninjaone", "client_secret", ninjaone::CLIENT_SECRET),
        ("trueup.huntress", "api_secret", huntress::PRIVATE_KEY),
    ]
}

/// The repository's built plugins and default rules, relative to `root`.
pub fn repo_paths(root: &Path) -> (PathBuf, PathBuf) {
    (root.join("target/plugins"), root.join("rules/default.rhai"))
}

/// Writes the demo's `trueup.toml` into `data_dir` (the repository at
/// `root`: its built plugins and default rules) and returns its path and
/// the configuration loaded back from it — what `trueup serve --config
/// DATA_DIR/trueup.toml` will read, from any working directory.
///
/// Paths in a configuration file are relative to the file's directory, so
/// the data directory is written as `.` (the file sits in it) and the
/// repository's plugins and rules as absolute paths: `--root .` means the
/// directory `trueup demo` ran in, which the file must not depend on.
///
/// # Errors
/// The data directory or the repository root cannot be resolved, or the
/// file cannot be written or read back.
pub fn write_config(
    data_dir: &Path,
    root: &Path,
    bind: SocketAddr,
    emulators: &Emulators,
) -> Result<(PathBuf, Config), ConfigError> {
    let config_path = data_dir.join(DEFAULT_CONFIG_FILE);
    let error = |problem: String| ConfigError {
        file: config_path.clone(),
        problem,
    };
    let root = std::path::absolute(root)
        .map_err(|e| error(format!("the repository root {}: {e}", root.display())))?;
    let (plugins, rules) = repo_paths(&root);
    let mut written = config(Path::new("."), &plugins, &rules, emulators);
    // The default store, `sqlite://<data_dir>/trueup.db`, beside the file.
    written.store.url = None;
    written.server.bind = bind;
    let text = toml::to_string_pretty(&written)
        .map_err(|e| error(format!("cannot be written as TOML: {e}")))?;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| error(format!("cannot create its directory: {e}")))?;
    std::fs::write(&config_path, text).map_err(|e| error(format!("cannot be written: {e}")))?;
    let loaded = Config::load(&config_path, true)?;
    Ok((config_path, loaded))
}
