//! Why a rule file cannot be used ([`RuleError`], with the [`Phase`] it
//! failed in), and problems that do not stop it ([`RuleWarning`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use trueup_core::mapping::SourcePosition;

use crate::limits::MAX_SOURCE_BYTES;

/// When in a rule file's life an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Parsing.
    Compile,
    /// Running the file to declare its rules.
    Declare,
    /// Checking the declarations once the file has run.
    Validate,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Compile => "syntax error",
            Self::Declare => "error while loading the rules",
            Self::Validate => "invalid rule",
        })
    }
}

/// Why a rule file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// The script is wrong: syntax, a failing declaration, a limit hit
    /// while loading, or a declaration that makes no sense.
    #[error("{}: {phase}: {message}{}", location(file, position), hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Script {
        /// The rule file.
        file: String,
        /// Where, when known.
        position: Option<SourcePosition>,
        /// When.
        phase: Phase,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// The file is larger than [`MAX_SOURCE_BYTES`].
    #[error(
        "{file}: the rule file is {bytes} bytes; the limit is {MAX_SOURCE_BYTES}\n  hint: a rule file holds rules, not data"
    )]
    TooLarge {
        /// The rule file.
        file: String,
        /// Its size.
        bytes: usize,
    },
    /// A stored version's checksum does not match its source.
    #[error(
        "{file}: the recorded checksum {recorded} does not match the source ({actual}); the stored version was altered"
    )]
    Checksum {
        /// The rule file.
        file: String,
        /// What the store recorded.
        recorded: String,
        /// The source's checksum.
        actual: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The tests beside the rules are malformed.
    #[error("{file}:{line}:{column}: invalid test file: {message}")]
    TestFile {
        /// The tests file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Some tests beside the rules fail.
    #[error("{failed} of {total} test case(s) fail:\n{report}")]
    TestsFailed {
        /// Failing cases.
        failed: usize,
        /// All cases.
        total: usize,
        /// The readable report.
        report: String,
    },
}

fn location(file: &str, position: &Option<SourcePosition>) -> String {
    match position {
        Some(p) => p.to_string(),
        None => file.to_owned(),
    }
}

impl RuleError {
    /// The position, for script errors.
    pub fn position(&self) -> Option<&SourcePosition> {
        match self {
            Self::Script { position, .. } => position.as_ref(),
            _ => None,
        }
    }
}

/// A problem that does not stop the rules from working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleWarning {
    /// Where.
    pub position: SourcePosition,
    /// What.
    pub message: String,
}

impl fmt::Display for RuleWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.position, self.message)
    }
}
