//! The WIT API versions this host supports, one module per version
//! (Zed's `since_vX_Y_Z` pattern).
//!
//! `0.2.0` was added beside `0.1.0` this way, and the next line is added
//! the same: put its WIT in `wit/since_vX.Y.0/`, add a `since_vX_Y_0`
//! module with its own `bindgen!` (its imports delegating to the existing
//! implementation, see `since_v0_2_0::imports`), a variant in
//! [`ApiVersion`], in the loaded plugin's `PluginPre` and in the session's
//! `Bindings`, and map its types onto the version-independent types in
//! [`crate::types`]. Plugins built for older lines keep loading through
//! their own modules.

pub mod since_v0_1_0;
pub mod since_v0_2_0;

use std::fmt;

/// A supported `trueup:connector` API version line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiVersion {
    /// `trueup:connector@0.1.x`.
    V0_1,
    /// `trueup:connector@0.2.x`: adds the catalogue, billing anchors,
    /// billing kinds, commitments, cost changes and skipped records.
    V0_2,
}

/// The version lines this host supports, oldest first.
pub const SUPPORTED: &[ApiVersion] = &[ApiVersion::V0_1, ApiVersion::V0_2];

impl ApiVersion {
    /// The oldest version of the line.
    pub fn oldest(self) -> (u64, u64, u64) {
        match self {
            ApiVersion::V0_1 => since_v0_1_0::MIN_VERSION,
            ApiVersion::V0_2 => since_v0_2_0::MIN_VERSION,
        }
    }

    /// The newest version of the line this host knows.
    pub fn newest(self) -> (u64, u64, u64) {
        match self {
            ApiVersion::V0_1 => since_v0_1_0::MAX_VERSION,
            ApiVersion::V0_2 => since_v0_2_0::MAX_VERSION,
        }
    }

    /// The line `version` (e.g. `0.1.0`) belongs to, if supported. Within a
    /// `0.x` line only patch releases are compatible (semver for 0.x).
    pub fn for_version(version: &str) -> Option<Self> {
        let parsed = parse_version(version)?;
        SUPPORTED.iter().copied().find(|line| {
            let (min, max) = (line.oldest(), line.newest());
            parsed.0 == min.0 && parsed.1 == min.1 && parsed >= min && parsed <= max
        })
    }

    /// The range this host supports, for messages: `0.1.0–0.2.x`.
    pub fn supported_range() -> String {
        let oldest = SUPPORTED.first().map(|l| l.oldest()).unwrap_or_default();
        let newest = SUPPORTED.last().map(|l| l.newest()).unwrap_or_default();
        format!(
            "{}.{}.{}–{}.{}.x",
            oldest.0, oldest.1, oldest.2, newest.0, newest.1
        )
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor, _) = self.oldest();
        write!(f, "{major}.{minor}")
    }
}

/// `MAJOR.MINOR.PATCH` (pre-release and build suffixes ignored).
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let version = semver::Version::parse(text).ok()?;
    Some((version.major, version.minor, version.patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_their_line() {
        assert_eq!(ApiVersion::for_version("0.1.0"), Some(ApiVersion::V0_1));
        assert_eq!(ApiVersion::for_version("0.2.0"), Some(ApiVersion::V0_2));
        // A patch this host does not know yet is not assumed compatible.
        assert_eq!(ApiVersion::for_version("0.2.1"), None);
        assert_eq!(ApiVersion::for_version("0.3.0"), None);
        assert_eq!(ApiVersion::for_version("1.0.0"), None);
        assert_eq!(ApiVersion::for_version("0.0.9"), None);
        assert_eq!(ApiVersion::for_version("zero"), None);
        assert_eq!(ApiVersion::supported_range(), "0.1.0–0.2.x");
        assert_eq!(ApiVersion::V0_2.to_string(), "0.2");
    }

    #[test]
    fn versions_parse_with_suffixes_ignored() {
        assert_eq!(parse_version("0.1.2"), Some((0, 1, 2)));
        assert_eq!(parse_version("0.1.0-rc.1+build.7"), Some((0, 1, 0)));
        assert_eq!(parse_version("0.1"), None);
        assert_eq!(parse_version("0.1.0.0"), None);
        assert_eq!(parse_version("v0.1.0"), None);
    }
}
