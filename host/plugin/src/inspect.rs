//! Reading a component's imports and exports without compiling it, to tell
//! which world and `trueup:connector` version it was built for.
//!
//! This runs before anything is compiled or linked, so an incompatible or
//! foreign component is refused with a clear message instead of a linker
//! error deep inside wasmtime.

use wasmtime::wasmparser::{Encoding, Parser, Payload};

pub use crate::error::InspectError;
pub use crate::types::PACKAGE;
use crate::types::PluginKind;

/// What a component imports and exports, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInterface {
    /// Top-level import names, e.g. `trueup:connector/http@0.1.0`.
    pub imports: Vec<String>,
    /// Top-level export names, e.g. `trueup:connector/psa@0.1.0`.
    pub exports: Vec<String>,
}

/// Lists the component's top-level imports and exports.
///
/// # Errors
/// [`InspectError`] for bytes that are not a component.
pub fn interface(bytes: &[u8]) -> Result<ComponentInterface, InspectError> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    // Nested modules and components report their own sections between a
    // `Version` and an `End`; only depth 1 is the component itself.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| InspectError::Malformed(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding == Encoding::Module {
                    return Err(InspectError::CoreModule);
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| InspectError::Malformed(e.to_string()))?;
                    imports.push(import.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| InspectError::Malformed(e.to_string()))?;
                    exports.push(export.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(ComponentInterface { imports, exports })
}

/// `trueup:connector/<interface>@<version>` split into its parts.
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    rest.split_once('@')
}

impl ComponentInterface {
    /// The world and API version the component implements, from its export.
    ///
    /// # Errors
    /// [`InspectError::NotAConnector`] when it exports neither `psa` nor
    /// `vendor`.
    pub fn connector(&self) -> Result<(PluginKind, String), InspectError> {
        self.exports
            .iter()
            .find_map(|name| match split_name(name)? {
                ("psa", version) => Some((PluginKind::Psa, version.to_owned())),
                ("vendor", version) => Some((PluginKind::Vendor, version.to_owned())),
                _ => None,
            })
            .ok_or_else(|| InspectError::NotAConnector {
                exports: if self.exports.is_empty() {
                    "none".to_owned()
                } else {
                    self.exports.join(", ")
                },
            })
    }

    /// Imports that are not from `trueup:connector` (e.g. WASI), which the
    /// host does not provide.
    pub fn foreign_imports(&self) -> Vec<&str> {
        self.imports
            .iter()
            .filter(|name| split_name(name).is_none())
            .map(String::as_str)
            .collect()
    }
}
