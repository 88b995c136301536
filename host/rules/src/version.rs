//! Rule versions: the stored, immutable form of a rule file, identified by
//! the SHA-256 of its source.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::RuleError;

/// The prefix of the version cards record: `rules/<sha256 of the source>`.
pub const VERSION_PREFIX: &str = "rules/";

/// The file name tests beside a rule file have: `default.rhai` →
/// `default.tests.toml`.
pub fn tests_path(rules: &Path) -> PathBuf {
    rules.with_extension("tests.toml")
}

/// One immutable version of a rule file, as the store keeps it.
///
/// The store persists every field as is and never edits a row: a changed
/// file is a new version. `checksum` is the hex SHA-256 of `source` (its
/// identity, the key of the compiled cache with `file`, and, as
/// `rules/<checksum>`, the version recorded on every card it produced).
/// `tests` do not change what the rules decide, so they are not part of
/// the checksum; the store keeps the tests a version was validated with
/// beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleVersion {
    /// Hex SHA-256 of `source`.
    pub checksum: String,
    /// The file name positions and traces show (e.g. `rules/default.rhai`).
    pub file: String,
    /// The Rhai source.
    pub source: String,
    /// The test cases beside the rules (`*.tests.toml` text), if any.
    pub tests: Option<String>,
    /// Who made the version.
    pub author: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// Hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl RuleVersion {
    /// A new version of `source`, checksummed.
    pub fn new(
        file: impl Into<String>,
        source: impl Into<String>,
        tests: Option<String>,
        author: impl Into<String>,
        created_at: DateTime<Utc>,
    ) -> Self {
        let source = source.into();
        Self {
            checksum: sha256_hex(&source),
            file: file.into(),
            source,
            tests,
            author: author.into(),
            created_at,
        }
    }

    /// Reads `path` and the tests beside it ([`tests_path`], when
    /// present); the file name in positions is `path` as given.
    ///
    /// # Errors
    /// [`RuleError::Io`] when a file cannot be read.
    pub fn from_file(
        path: &Path,
        author: impl Into<String>,
        created_at: DateTime<Utc>,
    ) -> Result<Self, RuleError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| RuleError::Io {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        let source = read(path)?;
        let tests_file = tests_path(path);
        let tests = if tests_file.is_file() {
            Some(read(&tests_file)?)
        } else {
            None
        };
        Ok(Self::new(
            path.display().to_string(),
            source,
            tests,
            author,
            created_at,
        ))
    }

    /// The version recorded on cards: `rules/<checksum>`.
    pub fn label(&self) -> String {
        format!("{VERSION_PREFIX}{}", self.checksum)
    }

    /// Checks that `checksum` is the SHA-256 of `source` (a row read back
    /// from the store).
    ///
    /// # Errors
    /// [`RuleError::Checksum`] when it is not.
    pub fn verify(&self) -> Result<(), RuleError> {
        let actual = sha256_hex(&self.source);
        if actual == self.checksum {
            Ok(())
        } else {
            Err(RuleError::Checksum {
                file: self.file.clone(),
                recorded: self.checksum.clone(),
                actual,
            })
        }
    }
}
