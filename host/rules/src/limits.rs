//! Every limit the rules sandbox enforces, as named constants.
//!
//! A rule script runs twice over its life: once per rule version to
//! *declare* its rules (the whole file, top to bottom), and then only its
//! closures run, once per distinct key of the attributes they read. Both
//! phases share the Rhai limits below; the operation budget differs.

use std::time::Duration;

/// Largest rule file accepted, in bytes. A rule file is a few hundred lines;
/// anything near this is a mistake (a pasted data file).
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;

/// Rhai operations the declaration phase (running the whole file once) may
/// use. Declaring a rule costs a few dozen operations, so this allows
/// thousands of rules.
pub const MAX_DECLARATION_OPERATIONS: u64 = 1_000_000;

/// Rhai operations one closure call (a custom predicate or product
/// chooser) may use. A closure looks at a handful of attributes; a loop
/// that runs away hits this long before it costs noticeable time.
pub const MAX_CLOSURE_OPERATIONS: u64 = 100_000;

/// Wall-clock time one evaluation (the declaration phase or one closure
/// call) may take, checked every [`PROGRESS_CHECK_INTERVAL`] operations.
/// Operations bound the steps; this bounds expensive steps.
pub const MAX_EVALUATION_TIME: Duration = Duration::from_secs(2);

/// How many operations pass between two wall-clock checks.
pub const PROGRESS_CHECK_INTERVAL: u64 = 1_024;

/// Nested function calls (script functions and closures), against runaway
/// recursion.
pub const MAX_CALL_LEVELS: usize = 16;

/// Nesting depth of an expression at the top level of the file.
pub const MAX_EXPRESSION_DEPTH: usize = 32;

/// Nesting depth of an expression inside a function or closure body.
pub const MAX_FUNCTION_EXPRESSION_DEPTH: usize = 16;

/// Longest string a script may build, in bytes.
pub const MAX_STRING_SIZE: usize = 16 * 1024;

/// Most elements in one array.
pub const MAX_ARRAY_SIZE: usize = 1_000;

/// Most properties in one object map.
pub const MAX_MAP_SIZE: usize = 256;

/// Most variables alive at once in one evaluation.
pub const MAX_VARIABLES: usize = 128;

/// Most script-defined functions in a rule file.
pub const MAX_FUNCTIONS: usize = 256;

/// Most mapping rules one file may declare.
pub const MAX_RULES: usize = 10_000;

/// Most service-policy declarations one file may declare.
pub const MAX_SERVICE_DECLARATIONS: usize = 10_000;

/// Most products one rule may map to (a bundle).
pub const MAX_TARGETS_PER_RULE: usize = 32;

/// Most attributes one closure may declare it reads.
pub const MAX_DECLARED_ATTRIBUTES: usize = 16;

/// Most products a product-choosing closure may return.
pub const MAX_CHOSEN_TARGETS: usize = MAX_TARGETS_PER_RULE;

/// Most memoised decisions one reconcile run keeps. Past this, decisions
/// are still correct but computed again for each new key; a rule that reads
/// a per-device attribute (an id, a hostname) gets here.
pub const MAX_MEMO_ENTRIES: usize = 1_000_000;

/// Most compiled rule versions kept in a [`crate::RuleCache`]; the least
/// recently used goes first.
pub const MAX_CACHED_VERSIONS: usize = 16;

/// Longest `print`/`debug` output kept from one declaration phase, in
/// lines; the rest is counted, not kept.
pub const MAX_PRINTED_LINES: usize = 200;
