//! A conformance report: named checks, each passed or failed with what was
//! seen, printed as a table. Generic over what the connector ran against,
//! so every kit reports the same way.

use std::fmt;

use trueup_plugin_host::CallError;

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// The outcome of a scenario run against `A` (e.g. a PSA emulator,
/// [`psa::Against`](crate::psa::Against)).
#[derive(Debug, Clone)]
pub struct Report<A> {
    /// The plugin id.
    pub plugin: String,
    /// The emulator.
    pub against: A,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl<A> Report<A> {
    /// An empty report of `plugin` against `against`.
    pub fn new(plugin: impl Into<String>, against: A) -> Self {
        Self {
            plugin: plugin.into(),
            against,
            checks: Vec::new(),
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }

    /// Records a check: `Ok` passed, `Err` failed, either with what was
    /// seen. Answers whether it passed.
    pub(crate) fn record(&mut self, name: &str, outcome: Result<String, String>) -> bool {
        let (passed, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        self.checks.push(Check {
            name: name.to_owned(),
            passed,
            detail,
        });
        passed
    }
}

impl<A: fmt::Display> fmt::Display for Report<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "conformance of {} against the {} emulator",
            self.plugin, self.against
        )?;
        let width = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(f, "  {:<width$}  {:<6}  DETAIL", "CHECK", "RESULT")?;
        for check in &self.checks {
            let result = if check.passed { "pass" } else { "FAIL" };
            writeln!(f, "  {:<width$}  {result:<6}  {}", check.name, check.detail)?;
        }
        let failed = self.failures().len();
        if failed == 0 {
            write!(f, "all {} checks passed", self.checks.len())
        } else {
            write!(f, "{failed} of {} checks failed", self.checks.len())
        }
    }
}

/// A failed call as a report row's detail (see [`clip`]).
pub(crate) fn describe_failure(error: &CallError) -> String {
    clip(&error.to_string())
}

/// The most characters of a message a report row shows.
const DETAIL_CHARS: usize = 200;

/// `text` shortened to [`DETAIL_CHARS`] by cutting out its middle, so both
/// the URL it starts with and the reason it ends with stay readable.
pub(crate) fn clip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= DETAIL_CHARS {
        return text.to_owned();
    }
    let half = DETAIL_CHARS / 2;
    let head: String = chars[..half].iter().collect();
    let tail: String = chars[chars.len() - half..].iter().collect();
    format!("{head} … {tail}")
}
