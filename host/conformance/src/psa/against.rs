//! The bundled PSA emulators a connector is tested against, and the
//! settings and credentials that point a connector at one.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use trueup_emulators::{Kind, Settings};
use trueup_plugin_host::manifest::PluginManifest;
use trueup_plugin_host::{Grants, PluginSecrets, PluginSettings, SecretValue};

/// A bundled PSA emulator to test against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Against {
    /// ConnectWise PSA (Manage).
    ConnectWise,
    /// Autotask.
    Autotask,
    /// HaloPSA.
    HaloPsa,
}

impl Against {
    /// Every bundled PSA emulator.
    pub const ALL: [Against; 3] = [Against::ConnectWise, Against::Autotask, Against::HaloPsa];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Against::ConnectWise => "connectwise",
            Against::Autotask => "autotask",
            Against::HaloPsa => "halopsa",
        }
    }

    /// The emulator.
    pub fn kind(self) -> Kind {
        match self {
            Against::ConnectWise => Kind::ConnectWise,
            Against::Autotask => Kind::Autotask,
            Against::HaloPsa => Kind::HaloPsa,
        }
    }

    /// Emulator settings with "today" pinned to `today`.
    pub fn emulator_settings(self, today: NaiveDate) -> Settings {
        let mut settings = Settings::default();
        settings.connectwise.today = Some(today);
        settings.autotask.today = Some(today);
        settings.halopsa.today = Some(today);
        settings
    }

    /// Emulator settings (as [`Against::emulator_settings`]) with pages
    /// capped at `cap` records whatever a client asks for, or `None` when
    /// this emulator has no such knob (HaloPSA's emulator, owned with its
    /// connector, has none yet).
    pub fn page_capped_settings(self, today: NaiveDate, cap: usize) -> Option<Settings> {
        let mut settings = self.emulator_settings(today);
        match self {
            Against::ConnectWise => settings.connectwise.max_page_size = cap,
            Against::Autotask => settings.autotask.max_records = cap,
            Against::HaloPsa => return None,
        }
        Some(settings)
    }

    /// Emulator settings (as [`Against::emulator_settings`]) where one
    /// contract among the good ones has an unreadable start date, or
    /// `None` when this emulator has no such knob (HaloPSA's, for now).
    pub fn malformed_settings(self, today: NaiveDate) -> Option<Settings> {
        let mut settings = self.emulator_settings(today);
        match self {
            Against::ConnectWise => settings.connectwise.malformed_date = true,
            Against::Autotask => settings.autotask.malformed_date = true,
            Against::HaloPsa => return None,
        }
        Some(settings)
    }

    /// The unreadable start date [`Against::malformed_settings`] serves.
    pub fn malformed_date(self) -> &'static str {
        match self {
            Against::ConnectWise => trueup_emulators::connectwise::MALFORMED_DATE,
            Against::Autotask | Against::HaloPsa => trueup_emulators::autotask::MALFORMED_DATE,
        }
    }

    /// Whether the PSA authenticates with OAuth tokens (HaloPSA); the
    /// others send credentials on every request (ConnectWise Basic + a
    /// `clientId`, Autotask's three headers) and request no token.
    pub fn uses_tokens(self) -> bool {
        matches!(self, Against::HaloPsa)
    }

    /// Config values pointing the shipped connector at the emulator at
    /// `origin` (e.g. `http://127.0.0.1:41234`).
    pub fn config(self, origin: &str) -> Vec<(&'static str, String)> {
        use trueup_emulators::{autotask as at, connectwise as cw, halopsa as halo};
        match self {
            Against::ConnectWise => vec![
                ("base_url", format!("{origin}{}", cw::BASE_PATH)),
                ("company_id", cw::COMPANY_ID.to_owned()),
                ("client_id", cw::CLIENT_ID.to_owned()),
            ],
            Against::Autotask => vec![
                ("username", at::USERNAME.to_owned()),
                ("zone_lookup_url", origin.to_owned()),
            ],
            Against::HaloPsa => vec![
                ("base_url", origin.to_owned()),
                ("tenant", halo::TENANT.to_owned()),
                ("client_id", halo::CLIENT_ID.to_owned()),
            ],
        }
    }

    /// The emulator's credentials, by the shipped connector's secret names.
    pub fn secrets(self) -> Vec<(&'static str, &'static str)> {
        use trueup_emulators::{autotask as at, connectwise as cw, halopsa as halo};
        match self {
            Against::ConnectWise => vec![
                ("public_key", cw::PUBLIC_KEY),
                ("private_key", cw::PRIVATE_KEY),
            ],
            Against::Autotask => vec![
                ("integration_code", at::INTEGRATION_CODE),
                ("secret", at::SECRET),
            ],
            Against::HaloPsa => vec![("client_secret", halo::CLIENT_SECRET)],
        }
    }

    /// The contract types an MSP selects in this PSA for recurring
    /// services (the emulator seeds other types the sync must leave out).
    pub fn contract_types(self) -> Vec<String> {
        let types: &[&str] = match self {
            Against::ConnectWise => &["Managed Services", "Microsoft Licensing"],
            Against::Autotask => &["Recurring Service"],
            Against::HaloPsa => &["Managed Services", "Licensing"],
        };
        types.iter().map(|t| (*t).to_owned()).collect()
    }
}

impl fmt::Display for Against {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Against {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "connectwise" | "connect-wise" | "cw" => Ok(Against::ConnectWise),
            "autotask" => Ok(Against::Autotask),
            "halopsa" | "halo-psa" | "halo" => Ok(Against::HaloPsa),
            _ => Err(format!(
                "{text:?} is not a bundled PSA emulator; use one of {}",
                Against::ALL.map(Against::name).join(", ")
            )),
        }
    }
}

/// `base`'s settings (from `trueup.toml`, or none) pointed at the emulator
/// at `origin`: its config keys set where the manifest declares them, its
/// origin and loopback granted, and every declared secret granted.
pub fn settings_for(
    manifest: &PluginManifest,
    base: &PluginSettings,
    against: Against,
    origin: &str,
) -> PluginSettings {
    let mut config = base.config.clone();
    for (key, value) in against.config(origin) {
        if manifest.config.get(key).is_some_and(|k| !k.secret) {
            config.insert(key.to_owned(), value);
        }
    }
    PluginSettings {
        config,
        grants: Grants {
            http: vec![origin.to_owned()],
            private_networks: vec!["127.0.0.1/32".to_owned()],
            secrets: manifest.capabilities.secrets.clone(),
        },
        limits: base.limits,
    }
}

/// The emulator's credentials for the secrets the manifest declares.
pub fn secrets_for(manifest: &PluginManifest, against: Against) -> PluginSecrets {
    PluginSecrets::new(
        against
            .secrets()
            .into_iter()
            .filter(|(name, _)| manifest.capabilities.secrets.iter().any(|s| s == name))
            .map(|(name, value)| (name.to_owned(), SecretValue::new(value))),
    )
}
