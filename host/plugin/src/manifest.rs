//! `plugin.toml`: what a plugin is and what it may ask for.
//!
//! ```toml
//! id = "trueup.connectwise"          # lower-case, dots/dashes; immutable
//! name = "ConnectWise PSA"
//! version = "0.1.0"                  # the plugin's semver
//! kind = "psa"                       # or "vendor"
//! api = "0.1.0"                      # trueup:connector version it was built for
//! description = "…"
//! authors = ["…"]
//! license = "Apache-2.0"
//! component = "plugin.wasm"          # optional, this is the default
//!
//! [config.site]                      # one table per setting
//! description = "…"
//! required = true
//! default = "…"                      # optional
//! secret = false                     # secrets are listed in capabilities too
//!
//! [capabilities]
//! http = ["https://*.myconnectwise.net", "{{config.site}}"]
//! secrets = ["private_key"]
//!
//! [limits]                           # requests; the admin may cap them
//! memory_mib = 64
//! call_timeout_ms = 30000
//! cpu_budget_ms = 5000
//! max_response_bytes = 33554432
//! ```
//!
//! Unknown fields are refused, and every error names the file and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::error::ManifestError;
use crate::limits::{LimitSettings, MAX_PLUGIN_ID_LEN};
use crate::network::HostPattern;
pub use crate::types::PluginKind;

/// The file name Trueup looks for beside a component.
pub const MANIFEST_FILE: &str = "plugin.toml";
/// The component file name when `component` is not given.
pub const DEFAULT_COMPONENT_FILE: &str = "plugin.wasm";

/// One `[config.<key>]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigKey {
    /// What the setting is, shown in the UI.
    #[serde(default)]
    pub description: String,
    /// Whether the plugin cannot work without it.
    #[serde(default)]
    pub required: bool,
    /// The value when the admin sets none (never for secrets).
    #[serde(default)]
    pub default: Option<String>,
    /// Whether the value is a secret (stored encrypted, never shown, only
    /// placed into requests by the host).
    #[serde(default)]
    pub secret: bool,
}

/// `[capabilities]`: what the plugin may do, if the admin also grants it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredCapabilities {
    /// Outbound hosts as `scheme://host[:port]`; `*.example.com` matches
    /// sub-domains; `{{config.KEY}}` stands for the origin of a URL setting.
    #[serde(default)]
    pub http: Vec<String>,
    /// Names of secrets the plugin may place into requests.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// A parsed, validated `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    /// Stable id, e.g. `trueup.connectwise`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The plugin's own semantic version.
    pub version: String,
    /// PSA or vendor.
    pub kind: PluginKind,
    /// The `trueup:connector` version it was built for, e.g. `0.1.0`.
    pub api: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Who wrote it.
    #[serde(default)]
    pub authors: Vec<String>,
    /// SPDX licence expression.
    #[serde(default)]
    pub license: Option<String>,
    /// Where its source lives.
    #[serde(default)]
    pub repository: Option<String>,
    /// The component file, relative to the manifest.
    #[serde(default)]
    pub component: Option<String>,
    /// Settings, by key.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigKey>,
    /// What it may do.
    #[serde(default)]
    pub capabilities: DeclaredCapabilities,
    /// Limits it asks for.
    #[serde(default)]
    pub limits: LimitSettings,
}

fn is_plugin_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= MAX_PLUGIN_ID_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        && !id.ends_with(['.', '-', '_'])
}

fn is_config_key(key: &str) -> bool {
    key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `text` is `MAJOR.MINOR.PATCH` with an optional `-pre`/`+build`.
pub fn is_semver(text: &str) -> bool {
    semver::Version::parse(text).is_ok()
}

impl PluginManifest {
    /// Reads and validates the manifest at `path`.
    ///
    /// # Errors
    /// [`ManifestError`] naming the file and the field.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_owned(),
            problem: format!("cannot be read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates manifest `text`; `path` names it in errors.
    ///
    /// # Errors
    /// [`ManifestError`] naming the file and the field.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let error = |problem: String| ManifestError {
            file: path.to_owned(),
            problem,
        };
        let manifest: PluginManifest = toml::from_str(text).map_err(|e| {
            let mut message = e.message().to_owned();
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                message = format!("line {line}: {message}");
            }
            error(message)
        })?;
        manifest.validate().map_err(error)?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), String> {
        if !is_plugin_id(&self.id) {
            return Err(format!(
                "field `id`: {:?} is not a plugin id (lower-case letters, digits, '.', '-', '_'; starting with a letter; at most {MAX_PLUGIN_ID_LEN} characters)",
                self.id
            ));
        }
        if self.name.trim().is_empty() {
            return Err("field `name`: must not be empty".into());
        }
        if !is_semver(&self.version) {
            return Err(format!(
                "field `version`: {:?} is not a semantic version like 1.2.3",
                self.version
            ));
        }
        if !is_semver(&self.api) {
            return Err(format!(
                "field `api`: {:?} is not a trueup:connector version like 0.1.0",
                self.api
            ));
        }
        if let Some(component) = &self.component
            && (component.contains("..") || component.starts_with('/') || component.is_empty())
        {
            return Err(format!(
                "field `component`: {component:?} must be a file name beside plugin.toml"
            ));
        }
        for (key, entry) in &self.config {
            if !is_config_key(key) {
                return Err(format!(
                    "field `config.{key}`: config keys are lower_snake_case"
                ));
            }
            if entry.secret && entry.default.is_some() {
                return Err(format!(
                    "field `config.{key}.default`: a secret cannot have a default value"
                ));
            }
            if entry.secret && !self.capabilities.secrets.contains(key) {
                return Err(format!(
                    "field `config.{key}`: the key is secret, so list it in `capabilities.secrets` too"
                ));
            }
        }
        for name in &self.capabilities.secrets {
            match self.config.get(name) {
                Some(entry) if entry.secret => {}
                Some(_) => {
                    return Err(format!(
                        "field `capabilities.secrets`: {name:?} is declared in [config.{name}] without `secret = true`"
                    ));
                }
                None => {
                    return Err(format!(
                        "field `capabilities.secrets`: {name:?} has no [config.{name}] entry with `secret = true` describing it"
                    ));
                }
            }
        }
        for pattern in &self.capabilities.http {
            let parsed = HostPattern::parse(pattern)
                .map_err(|e| format!("field `capabilities.http`: {e}"))?;
            if let Some(key) = parsed.config_key() {
                match self.config.get(key) {
                    Some(entry) if !entry.secret => {}
                    Some(_) => {
                        return Err(format!(
                            "field `capabilities.http`: {pattern:?} refers to the secret config key `{key}`; use a non-secret URL setting"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "field `capabilities.http`: {pattern:?} refers to config key `{key}`, which [config] does not declare"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The component file's path, given the manifest's directory.
    pub fn component_path(&self, dir: &Path) -> PathBuf {
        dir.join(self.component.as_deref().unwrap_or(DEFAULT_COMPONENT_FILE))
    }

    /// Whether `key` is declared as a secret.
    pub fn is_secret(&self, key: &str) -> bool {
        self.config.get(key).is_some_and(|k| k.secret)
    }

    /// The declared HTTP patterns, parsed (validated at load).
    pub fn http_patterns(&self) -> Vec<HostPattern> {
        self.capabilities
            .http
            .iter()
            .filter_map(|p| HostPattern::parse(p).ok())
            .collect()
    }
}
