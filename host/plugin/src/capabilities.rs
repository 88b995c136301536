//! Capabilities: what a plugin declares in `plugin.toml` AND the admin grants
//! in `trueup.toml`. Either alone gives nothing.
//!
//! ```toml
//! [plugins."trueup.connectwise".grants]
//! http = ["https://na.myconnectwise.net"]
//! secrets = ["public_key", "private_key"]
//! # Private and loopback addresses are refused unless granted by network:
//! private_networks = ["127.0.0.1/32"]
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::Url;

pub use crate::error::GrantError;
use crate::manifest::PluginManifest;
// The patterns and networks grants are written in; re-exported where they
// were first published.
pub use crate::network::{HostPattern, Network, PatternError, is_non_public, origin_of};

/// What the admin grants one plugin, from `trueup.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Allowed outbound hosts, same syntax as the manifest (no templates).
    #[serde(default)]
    pub http: Vec<String>,
    /// Private/loopback networks the plugin may reach (CIDR).
    #[serde(default)]
    pub private_networks: Vec<String>,
    /// Secrets the plugin may use.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// Why a request or secret was refused: the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// The intersection of what a plugin declares and the admin grants.
#[derive(Debug, Clone)]
pub struct EffectiveCapabilities {
    plugin: String,
    declared_http: Vec<HostPattern>,
    granted_http: Vec<HostPattern>,
    private_networks: Vec<Network>,
    declared_secrets: Vec<String>,
    granted_secrets: Vec<String>,
}

impl EffectiveCapabilities {
    /// Resolves the manifest's declarations (templates filled from `config`)
    /// against `grants`.
    ///
    /// # Errors
    /// [`GrantError`] for a grant that does not parse.
    pub fn resolve(
        manifest: &PluginManifest,
        grants: &Grants,
        config: &BTreeMap<String, String>,
    ) -> Result<Self, GrantError> {
        let grant_error = |problem: String| GrantError {
            plugin: manifest.id.clone(),
            problem,
        };
        let granted_http = grants
            .http
            .iter()
            .map(|p| match HostPattern::parse(p) {
                Ok(HostPattern::ConfigOrigin(_)) => Err(grant_error(format!(
                    "http: {p:?}: templates are for manifests; grant the concrete origin"
                ))),
                Ok(pattern) => Ok(pattern),
                Err(e) => Err(grant_error(format!("http: {e}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let private_networks = grants
            .private_networks
            .iter()
            .map(|n| Network::parse(n).map_err(|e| grant_error(format!("private_networks: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            plugin: manifest.id.clone(),
            declared_http: manifest
                .http_patterns()
                .iter()
                .filter_map(|p| p.resolve(config))
                .collect(),
            granted_http,
            private_networks,
            declared_secrets: manifest.capabilities.secrets.clone(),
            granted_secrets: grants.secrets.clone(),
        })
    }

    /// Whether a request to `url` may be sent (the address check comes
    /// later, when the name resolves).
    ///
    /// # Errors
    /// [`Denied`] saying what to add to `plugin.toml` and/or `trueup.toml`.
    pub fn check_url(&self, url: &Url) -> Result<(), Denied> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Denied(format!(
                "{url}: only http and https URLs are allowed"
            )));
        }
        let origin = origin_of(url);
        let id = &self.plugin;
        if !self.declared_http.iter().any(|p| p.matches(url)) {
            return Err(Denied(format!(
                "plugin {id} may not reach {origin}: it is not declared. Add \"{origin}\" to `capabilities.http` in the plugin's plugin.toml and grant it under [plugins.\"{id}\".grants] http in trueup.toml"
            )));
        }
        if !self.granted_http.iter().any(|p| p.matches(url)) {
            return Err(Denied(format!(
                "plugin {id} may not reach {origin}: the plugin declares it but it is not granted. Add \"{origin}\" to [plugins.\"{id}\".grants] http in trueup.toml"
            )));
        }
        Ok(())
    }

    /// Whether a connection to `ip` (resolved for `host`) may be made.
    ///
    /// # Errors
    /// [`Denied`] for a non-public address outside the granted networks.
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), Denied> {
        if is_non_public(ip) && !self.private_networks.iter().any(|n| n.contains(ip)) {
            let id = &self.plugin;
            let width = if ip.is_ipv4() { 32 } else { 128 };
            return Err(Denied(format!(
                "plugin {id} may not reach {host}: it resolves to {ip}, a private or loopback address. If you trust it, add private_networks = [\"{ip}/{width}\"] under [plugins.\"{id}\".grants] in trueup.toml"
            )));
        }
        Ok(())
    }

    /// Whether the plugin may use the secret `name`.
    ///
    /// # Errors
    /// [`Denied`] saying whether the manifest or the admin is missing it.
    pub fn check_secret(&self, name: &str) -> Result<(), Denied> {
        let id = &self.plugin;
        if !self.declared_secrets.iter().any(|s| s == name) {
            return Err(Denied(format!(
                "plugin {id} asked for the secret {name:?}, which its plugin.toml does not declare in `capabilities.secrets`"
            )));
        }
        if !self.granted_secrets.iter().any(|s| s == name) {
            return Err(Denied(format!(
                "plugin {id} asked for the secret {name:?}, which is declared but not granted. Add \"{name}\" to [plugins.\"{id}\".grants] secrets in trueup.toml"
            )));
        }
        Ok(())
    }

    /// The declared hosts after templates were resolved, for display.
    pub fn declared_http(&self) -> &[HostPattern] {
        &self.declared_http
    }

    /// The granted hosts, for display.
    pub fn granted_http(&self) -> &[HostPattern] {
        &self.granted_http
    }

    /// Secrets both declared and granted.
    pub fn usable_secrets(&self) -> Vec<&str> {
        self.declared_secrets
            .iter()
            .filter(|s| self.granted_secrets.contains(s))
            .map(String::as_str)
            .collect()
    }
}
