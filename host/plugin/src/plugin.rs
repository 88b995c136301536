//! Loading a plugin directory (`plugin.toml` + component) into a
//! [`LoadedPlugin`]: validated manifest, admin settings checked against it,
//! API version checked BEFORE compiling or linking, the component compiled
//! (or taken from the cache), and one `InstancePre` ready for fast
//! instantiation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};

use crate::capabilities::{EffectiveCapabilities, Grants};
use crate::engine::PluginEngine;
use crate::error::LoadError;
use crate::host::{HostState, PluginContext};
use crate::inspect::{self, ComponentInterface};
use crate::limits::{EffectiveLimits, LimitSettings, MAX_COMPONENT_BYTES};
use crate::manifest::{MANIFEST_FILE, PluginManifest};
use crate::types::PluginKind;
use crate::wit::ApiVersion;
use crate::wit::since_v0_1_0::{psa, vendor};
use crate::wit::since_v0_2_0::{psa as psa_v0_2, vendor as vendor_v0_2};

/// What the admin configures for one plugin in `trueup.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Non-secret config values.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Capability grants.
    #[serde(default)]
    pub grants: Grants,
    /// Caps on what the plugin may request.
    #[serde(default)]
    pub limits: LimitSettings,
}

/// The pre-linked component, by API version and world.
pub(crate) enum PluginPre {
    PsaV0_1(psa::PsaConnectorPre<HostState>),
    VendorV0_1(vendor::VendorConnectorPre<HostState>),
    PsaV0_2(psa_v0_2::PsaConnectorPre<HostState>),
    VendorV0_2(vendor_v0_2::VendorConnectorPre<HostState>),
}

/// A plugin ready to be instantiated.
pub struct LoadedPlugin {
    pub(crate) engine: PluginEngine,
    pub(crate) context: Arc<PluginContext>,
    pub(crate) pre: PluginPre,
    dir: PathBuf,
    interface: ComponentInterface,
    api: String,
    component_sha256: String,
    capabilities: Arc<EffectiveCapabilities>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("id", &self.context.manifest.id)
            .field("version", &self.context.manifest.version)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Checks admin config against the manifest's declarations.
///
/// # Errors
/// Unknown keys, secrets written in plain config, missing required keys.
pub fn check_settings(
    manifest: &PluginManifest,
    settings: &PluginSettings,
) -> Result<(), LoadError> {
    let plugin = manifest.id.clone();
    for key in settings.config.keys() {
        match manifest.config.get(key) {
            None => {
                let declared: Vec<&str> = manifest.config.keys().map(String::as_str).collect();
                return Err(LoadError::UnknownConfig {
                    plugin,
                    key: key.clone(),
                    declared: if declared.is_empty() {
                        "none".into()
                    } else {
                        declared.join(", ")
                    },
                });
            }
            Some(entry) if entry.secret => {
                return Err(LoadError::SecretInConfig {
                    plugin,
                    key: key.clone(),
                });
            }
            Some(_) => {}
        }
    }
    let missing: Vec<&str> = manifest
        .config
        .iter()
        .filter(|(key, entry)| {
            entry.required
                && !entry.secret
                && entry.default.is_none()
                && settings
                    .config
                    .get(*key)
                    .is_none_or(|v| v.trim().is_empty())
        })
        .map(|(key, _)| key.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(LoadError::MissingConfig {
            plugin,
            keys: missing.join(", "),
        });
    }
    Ok(())
}

/// Checks that the manifest's API version is one this host supports.
///
/// # Errors
/// [`LoadError::IncompatibleApi`] with the supported range.
pub fn check_api(manifest: &PluginManifest) -> Result<ApiVersion, LoadError> {
    ApiVersion::for_version(&manifest.api).ok_or_else(|| LoadError::IncompatibleApi {
        plugin: manifest.id.clone(),
        version: manifest.version.clone(),
        built_for: manifest.api.clone(),
        supported: ApiVersion::supported_range(),
    })
}

/// Checks a component's interface against its manifest.
///
/// # Errors
/// Not a connector, another world or version than declared, an unsupported
/// version, or imports the host does not provide.
pub fn check_component(
    manifest: &PluginManifest,
    interface: &ComponentInterface,
) -> Result<ApiVersion, LoadError> {
    let plugin = manifest.id.clone();
    let (kind, exported_api) = interface.connector().map_err(|source| LoadError::Inspect {
        plugin: plugin.clone(),
        source,
    })?;
    let line =
        ApiVersion::for_version(&exported_api).ok_or_else(|| LoadError::IncompatibleApi {
            plugin: plugin.clone(),
            version: manifest.version.clone(),
            built_for: exported_api.clone(),
            supported: ApiVersion::supported_range(),
        })?;
    if kind != manifest.kind {
        return Err(LoadError::Mismatch {
            plugin,
            problem: format!(
                "plugin.toml says kind = \"{}\" but the component implements the {} world",
                manifest.kind,
                kind.world()
            ),
        });
    }
    if exported_api != manifest.api {
        return Err(LoadError::Mismatch {
            plugin,
            problem: format!(
                "plugin.toml says api = \"{}\" but the component was built for trueup:connector@{exported_api}",
                manifest.api
            ),
        });
    }
    let foreign = interface.foreign_imports();
    if !foreign.is_empty() {
        return Err(LoadError::ForeignImports {
            plugin,
            imports: foreign.join(", "),
        });
    }
    Ok(line)
}

impl LoadedPlugin {
    /// Loads the plugin in `dir` with the admin's `settings`.
    ///
    /// # Errors
    /// [`LoadError`] naming what is wrong and how to fix it. An unsupported
    /// API version is refused before anything is compiled.
    pub fn load(
        engine: &PluginEngine,
        dir: &Path,
        settings: &PluginSettings,
    ) -> Result<Arc<Self>, LoadError> {
        let manifest = PluginManifest::load(&dir.join(MANIFEST_FILE))?;
        check_api(&manifest)?;
        check_settings(&manifest, settings)?;
        let capabilities = Arc::new(EffectiveCapabilities::resolve(
            &manifest,
            &settings.grants,
            &settings.config,
        )?);
        let path = manifest.component_path(dir);
        let io = |reason: String| LoadError::Io {
            path: path.clone(),
            reason,
        };
        let size = std::fs::metadata(&path)
            .map_err(|e| io(format!("{e} (build it with scripts/setup)")))?
            .len();
        if size > MAX_COMPONENT_BYTES {
            return Err(LoadError::TooLarge {
                path,
                size,
                limit: MAX_COMPONENT_BYTES,
            });
        }
        let bytes = std::fs::read(&path).map_err(|e| io(e.to_string()))?;
        let interface = inspect::interface(&bytes).map_err(|source| LoadError::Inspect {
            plugin: manifest.id.clone(),
            source,
        })?;
        let line = check_component(&manifest, &interface)?;
        let compile_error = |stage: &'static str, e: wasmtime::Error| LoadError::Compile {
            plugin: manifest.id.clone(),
            version: manifest.version.clone(),
            stage,
            reason: format!("{e:#}"),
        };
        let component = engine
            .compile(&bytes)
            .map_err(|e| compile_error("compiling", e))?;
        let mut linker = Linker::<HostState>::new(engine.engine());
        let pre = match (line, manifest.kind) {
            (ApiVersion::V0_1, PluginKind::Psa) => {
                psa::PsaConnector::add_to_linker::<HostState, HasSelf<HostState>>(
                    &mut linker,
                    |s| s,
                )
                .map_err(|e| compile_error("linking", e))?;
                let pre = linker
                    .instantiate_pre(&component)
                    .map_err(|e| compile_error("linking", e))?;
                PluginPre::PsaV0_1(
                    psa::PsaConnectorPre::new(pre).map_err(|e| compile_error("linking", e))?,
                )
            }
            (ApiVersion::V0_1, PluginKind::Vendor) => {
                vendor::VendorConnector::add_to_linker::<HostState, HasSelf<HostState>>(
                    &mut linker,
                    |s| s,
                )
                .map_err(|e| compile_error("linking", e))?;
                let pre = linker
                    .instantiate_pre(&component)
                    .map_err(|e| compile_error("linking", e))?;
                PluginPre::VendorV0_1(
                    vendor::VendorConnectorPre::new(pre)
                        .map_err(|e| compile_error("linking", e))?,
                )
            }
            (ApiVersion::V0_2, PluginKind::Psa) => {
                psa_v0_2::PsaConnector::add_to_linker::<HostState, HasSelf<HostState>>(
                    &mut linker,
                    |s| s,
                )
                .map_err(|e| compile_error("linking", e))?;
                let pre = linker
                    .instantiate_pre(&component)
                    .map_err(|e| compile_error("linking", e))?;
                PluginPre::PsaV0_2(
                    psa_v0_2::PsaConnectorPre::new(pre).map_err(|e| compile_error("linking", e))?,
                )
            }
            (ApiVersion::V0_2, PluginKind::Vendor) => {
                vendor_v0_2::VendorConnector::add_to_linker::<HostState, HasSelf<HostState>>(
                    &mut linker,
                    |s| s,
                )
                .map_err(|e| compile_error("linking", e))?;
                let pre = linker
                    .instantiate_pre(&component)
                    .map_err(|e| compile_error("linking", e))?;
                PluginPre::VendorV0_2(
                    vendor_v0_2::VendorConnectorPre::new(pre)
                        .map_err(|e| compile_error("linking", e))?,
                )
            }
        };
        let http = crate::http::client_for(&manifest.id, &manifest.version, capabilities.clone())
            .map_err(|e| LoadError::HttpClient {
            plugin: manifest.id.clone(),
            reason: e.to_string(),
        })?;
        let limits = EffectiveLimits::resolve(&manifest.limits, &settings.limits);
        let api = manifest.api.clone();
        Ok(Arc::new(Self {
            engine: engine.clone(),
            context: Arc::new(PluginContext {
                capabilities: (*capabilities).clone(),
                config: settings.config.clone(),
                limits,
                http,
                manifest,
            }),
            pre,
            dir: dir.to_owned(),
            interface,
            api,
            component_sha256: hex::encode(Sha256::digest(&bytes)),
            capabilities,
        }))
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &PluginManifest {
        &self.context.manifest
    }

    /// PSA or vendor.
    pub fn kind(&self) -> PluginKind {
        self.context.manifest.kind
    }

    /// The plugin's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API version the component implements, e.g. `0.1.0`.
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The version line of [`LoadedPlugin::api`].
    pub fn api_version(&self) -> ApiVersion {
        match self.pre {
            PluginPre::PsaV0_1(_) | PluginPre::VendorV0_1(_) => ApiVersion::V0_1,
            PluginPre::PsaV0_2(_) | PluginPre::VendorV0_2(_) => ApiVersion::V0_2,
        }
    }

    /// The component's imports and exports.
    pub fn interface(&self) -> &ComponentInterface {
        &self.interface
    }

    /// SHA-256 of the component file.
    pub fn component_sha256(&self) -> &str {
        &self.component_sha256
    }

    /// What it may do: declared AND granted.
    pub fn capabilities(&self) -> &EffectiveCapabilities {
        &self.capabilities
    }

    /// The limits it runs under.
    pub fn limits(&self) -> EffectiveLimits {
        self.context.limits
    }

    /// The admin's config values.
    pub fn config(&self) -> &BTreeMap<String, String> {
        &self.context.config
    }
}
