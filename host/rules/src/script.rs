//! The sandboxed Rhai engine and the script API rules are declared with.
//!
//! The engine starts from [`Engine::new_raw`] with only the packages rules
//! need (arithmetic, logic, strings, arrays, maps, decimal maths, function
//! pointers, ranges); there is no `eval`, no `try`/`catch` (a failing
//! declaration must not be swallowed), no modules, no files, no time, no
//! floats (`0.5` is a decimal). Every limit is a constant in
//! [`crate::limits`]. Undeclared variables are compile errors; reading a
//! map property that is not there is an error.
//!
//! The optimizer is off ([`OptimizationLevel::None`]): a rule file is all
//! side effects (`map_sku(...).to(...);` is a statement whose value is
//! dropped), Rhai has had an optimizer bug that removed side-effecting
//! statements (rhai#1126, fixed in 1.26), and a file is compiled once per
//! version, so optimisation would buy nothing worth that risk.
//!
//! Declaration functions write into a [`DeclState`] shared with the
//! engine; they work only while the file is being run (the declaration
//! phase). Called later, from inside a closure, they fail.

mod rules;
mod services;

use rules::register_rules;
use services::register_services;

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FnPtr, INT, NativeCallContext, OptimizationLevel,
    Position,
};
use rust_decimal::Decimal;
use trueup_core::mapping::SourcePosition;

use crate::glob::Glob;
use crate::limits::*;
use crate::table::{Closure, ClosureId, ClosureKind, RuleTable, leading_date};

/// What the declaration phase collects.
#[derive(Debug)]
pub struct DeclState {
    /// Whether declarations are accepted (only while the file runs).
    pub open: bool,
    /// The file name positions carry.
    pub file: Arc<str>,
    /// The declarations so far.
    pub table: RuleTable,
    /// `print`/`debug` output of the declaration phase.
    pub printed: Vec<String>,
    /// Lines of output dropped past [`MAX_PRINTED_LINES`].
    pub printed_dropped: usize,
    /// A hint for the last declaration that failed.
    pub hint: Option<String>,
}

impl DeclState {
    /// An empty state for `file`.
    pub fn new(file: Arc<str>) -> Self {
        Self {
            open: false,
            file,
            table: RuleTable::default(),
            printed: Vec::new(),
            printed_dropped: 0,
            hint: None,
        }
    }
}

/// The state shared between the engine's functions and the compiler.
pub type SharedState = Arc<Mutex<DeclState>>;

pub use rules::DEFAULT_SEEN_ATTRIBUTE;
pub use services::{EFFECTIVE_NAMES, RULE_METHODS, SERVICE_METHODS};

// The crate's one poison-tolerant lock; this path stays for callers of
// `script::lock`.
pub use crate::sync::lock;

/// A mapping rule being declared (`Rule` in scripts).
#[derive(Debug, Clone, Copy)]
pub struct RuleHandle(usize);

/// A service declaration being built (`Service` in scripts).
#[derive(Debug, Clone, Copy)]
pub struct ServiceHandle(usize);

/// A failed declaration: what, and how to fix it.
struct Fail {
    message: String,
    hint: String,
}

fn fail(message: impl Into<String>, hint: impl Into<String>) -> Fail {
    Fail {
        message: message.into(),
        hint: hint.into(),
    }
}

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Turns a [`Fail`] into a Rhai error at the call, keeping the hint.
fn raise(ctx: &NativeCallContext, state: &SharedState, failure: Fail) -> Box<EvalAltResult> {
    lock(state).hint = Some(failure.hint);
    EvalAltResult::ErrorRuntime(failure.message.into(), ctx.call_position()).into()
}

/// A [`SourcePosition`] in `file` for a Rhai position.
pub fn source_position(file: &Arc<str>, position: Position) -> Option<SourcePosition> {
    let line = u32::try_from(position.line()?).ok()?;
    Some(SourcePosition {
        file: Arc::clone(file),
        line,
        column: position.position().and_then(|c| u32::try_from(c).ok()),
    })
}

// ------------------------------------------------------------ budgets

/// The limits of the evaluation running on this thread.
#[derive(Debug, Clone, Copy)]
struct Budget {
    max_operations: u64,
    deadline: Option<Instant>,
}

thread_local! {
    static BUDGET: Cell<Budget> = const { Cell::new(Budget { max_operations: MAX_DECLARATION_OPERATIONS, deadline: None }) };
}

/// Runs `f` (one evaluation) with at most `max_operations` Rhai operations
/// and `time` of wall clock, enforced by the engine's progress callback.
pub fn with_budget<T>(max_operations: u64, time: std::time::Duration, f: impl FnOnce() -> T) -> T {
    let budget = Budget {
        max_operations,
        deadline: Instant::now().checked_add(time),
    };
    let previous = BUDGET.with(|b| b.replace(budget));
    let out = f();
    BUDGET.with(|b| b.set(previous));
    out
}

/// The progress callback: stops an evaluation past its budget.
fn progress(operations: u64) -> Option<Dynamic> {
    let budget = BUDGET.with(Cell::get);
    if operations > budget.max_operations {
        return Some(Dynamic::from(format!(
            "the rule used more than {} operations (a loop that does not end?)",
            budget.max_operations
        )));
    }
    if operations.is_multiple_of(PROGRESS_CHECK_INTERVAL)
        && let Some(deadline) = budget.deadline
        && Instant::now() >= deadline
    {
        return Some(Dynamic::from(format!(
            "the rule ran for more than {} ms",
            MAX_EVALUATION_TIME.as_millis()
        )));
    }
    None
}

// ------------------------------------------------------------- engine

/// A sandboxed engine whose declaration functions write into `state`.
pub fn engine(state: &SharedState) -> Engine {
    let mut engine = Engine::new_raw();
    for module in [
        ArithmeticPackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BasicStringPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicFnPackage::new().as_shared_module(),
        BasicIteratorPackage::new().as_shared_module(),
    ] {
        engine.register_global_module(module);
    }
    engine
        .set_max_operations(MAX_DECLARATION_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPRESSION_DEPTH, MAX_FUNCTION_EXPRESSION_DEPTH)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_max_variables(MAX_VARIABLES)
        .set_max_functions(MAX_FUNCTIONS)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true)
        .set_optimization_level(OptimizationLevel::None);
    for symbol in ["eval", "try", "catch"] {
        engine.disable_symbol(symbol);
    }
    engine.on_progress(progress);
    let printer = Arc::clone(state);
    engine.on_print(move |text| record_print(&printer, text));
    let debugger = Arc::clone(state);
    engine.on_debug(move |text, _, position| {
        record_print(
            &debugger,
            &format!("{text} (line {})", position.line().unwrap_or(0)),
        );
    });
    engine.register_type_with_name::<RuleHandle>("Rule");
    engine.register_type_with_name::<ServiceHandle>("Service");
    register_helpers(&mut engine);
    register_rules(&mut engine, state);
    register_services(&mut engine, state);
    engine
}

fn record_print(state: &SharedState, text: &str) {
    let mut s = lock(state);
    if !s.open {
        return;
    }
    if s.printed.len() < MAX_PRINTED_LINES {
        s.printed.push(text.to_owned());
    } else {
        s.printed_dropped += 1;
    }
}

/// Functions for closures: patterns and dates.
fn register_helpers(engine: &mut Engine) {
    engine.register_fn("like", |text: &str, pattern: &str| {
        Glob::new(pattern).matches(text)
    });
    engine.register_fn("days_between", |from: &str, to: &str| -> RhaiResult<INT> {
        let parse = |s: &str| {
            leading_date(s).ok_or_else(|| -> Box<EvalAltResult> {
                EvalAltResult::ErrorRuntime(
                    format!("{s:?} is not a date (YYYY-MM-DD)").into(),
                    Position::NONE,
                )
                .into()
            })
        };
        Ok((parse(to)? - parse(from)?).num_days())
    });
}

// ----------------------------------------------------- argument helpers

/// One string or an array of strings, none empty.
fn texts(value: &Dynamic, what: &str) -> Result<Vec<Arc<str>>, Fail> {
    let bad = || {
        fail(
            format!(
                "{what} must be a string or an array of strings, not {}",
                value.type_name()
            ),
            format!("write {what} as \"X\" or [\"X\", \"Y\"]"),
        )
    };
    let items: Vec<Arc<str>> = if value.is_string() {
        vec![Arc::from(
            value
                .clone()
                .into_immutable_string()
                .map_err(|_| bad())?
                .as_str(),
        )]
    } else if value.is_array() {
        let array: Array = value.clone().into_array().map_err(|_| bad())?;
        let mut out = Vec::with_capacity(array.len());
        for item in array {
            out.push(Arc::from(
                item.into_immutable_string().map_err(|_| bad())?.as_str(),
            ));
        }
        out
    } else {
        return Err(bad());
    };
    if items.is_empty() {
        return Err(fail(
            format!("{what} is an empty list"),
            format!("give at least one {what}"),
        ));
    }
    if let Some(empty) = items.iter().find(|s| s.trim().is_empty()) {
        return Err(fail(
            format!("{what} {empty:?} is empty"),
            format!("{what} must be non-empty text"),
        ));
    }
    Ok(items)
}

fn text(value: &str, what: &str) -> Result<Arc<str>, Fail> {
    if value.trim().is_empty() {
        return Err(fail(
            format!("{what} is empty"),
            format!("{what} must be non-empty text"),
        ));
    }
    Ok(Arc::from(value))
}

/// An integer or a decimal, at least zero.
fn amount(value: &Dynamic, what: &str) -> Result<Decimal, Fail> {
    let number = if let Ok(i) = value.as_int() {
        Decimal::from(i)
    } else if let Some(d) = value.clone().try_cast::<Decimal>() {
        d
    } else {
        return Err(fail(
            format!("{what} must be a number, not {}", value.type_name()),
            "write numbers as 5 or 2.5 (decimals, never quoted)",
        ));
    };
    if number < Decimal::ZERO {
        return Err(fail(
            format!("{what} is {number}, which is negative"),
            format!("{what} must be zero or more"),
        ));
    }
    Ok(number)
}

fn attribute_list(value: &Array) -> Result<Vec<Arc<str>>, Fail> {
    if value.len() > MAX_DECLARED_ATTRIBUTES {
        return Err(fail(
            format!(
                "{} attributes declared; a closure may read at most {MAX_DECLARED_ATTRIBUTES}",
                value.len()
            ),
            "read fewer attributes, or split the rule",
        ));
    }
    let mut out: Vec<Arc<str>> = Vec::with_capacity(value.len());
    for item in value {
        let Ok(key) = item.clone().into_immutable_string() else {
            return Err(fail(
                format!("attribute names must be strings, not {}", item.type_name()),
                "list the attributes the closure reads, e.g. [\"device-role\", \"os-name\"]",
            ));
        };
        let key: Arc<str> = text(&key, "an attribute name")?;
        if !out.contains(&key) {
            out.push(key);
        }
    }
    Ok(out)
}

// ------------------------------------------------------- declarations

/// Runs `edit` on the state if declarations are open.
fn declare<T>(
    ctx: &NativeCallContext,
    state: &SharedState,
    edit: impl FnOnce(&mut DeclState, Option<SourcePosition>) -> Result<T, Fail>,
) -> RhaiResult<T> {
    let result = {
        let mut s = lock(state);
        if s.open {
            let position = source_position(&s.file, ctx.call_position());
            edit(&mut s, position)
        } else {
            Err(fail(
                format!(
                    "{} can only be called while the rule file loads, not inside a closure",
                    ctx.fn_name()
                ),
                "declare rules at the top level of the file; closures only decide",
            ))
        }
    };
    result.map_err(|f| raise(ctx, state, f))
}

/// Records a closure a rule or service declaration was given.
fn add_closure(
    ctx: &NativeCallContext,
    state: &SharedState,
    fn_ptr: FnPtr,
    attrs: Vec<Arc<str>>,
    kind: ClosureKind,
) -> RhaiResult<ClosureId> {
    declare(ctx, state, |s, position| {
        let position = position.ok_or_else(|| {
            fail(
                "a closure has no position",
                "pass closures in the rule file",
            )
        })?;
        s.table.closures.push(Closure {
            fn_ptr,
            attrs,
            position,
            kind,
        });
        Ok(s.table.closures.len() - 1)
    })
}
