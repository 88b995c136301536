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

use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use chrono::NaiveDate;
use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FnPtr, INT, NativeCallContext, OptimizationLevel,
    Position,
};
use rust_decimal::Decimal;
use trueup_core::effective::EffectiveDatePolicy;
use trueup_core::mapping::{MappingTarget, Rounding, SourcePosition, UsageMeasure};
use trueup_core::model::{BillingCycle, BillingTiming, ProductId};

use crate::glob::Glob;
use crate::limits::*;
use crate::table::{
    Closure, ClosureId, ClosureKind, Condition, PolicyCondition, PolicySettings, Rule, RuleKind,
    RuleTable, ServiceDecl, leading_date,
};

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

/// Locks the state; a panic elsewhere does not make it unusable (it holds
/// plain data).
pub fn lock(state: &SharedState) -> MutexGuard<'_, DeclState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

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

// --------------------------------------------------------------- rules

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

fn new_rule(
    ctx: &NativeCallContext,
    state: &SharedState,
    kind: RuleKind,
    vendor: &str,
    skus: Option<&Dynamic>,
) -> RhaiResult<RuleHandle> {
    let function = ctx.fn_name().to_owned();
    declare(ctx, state, |s, position| {
        let vendor = text(vendor, "the vendor id")?;
        let skus = match skus {
            Some(value) => texts(value, "the SKU id")?,
            None => Vec::new(),
        };
        if s.table.rules.len() >= MAX_RULES {
            return Err(fail(
                format!("more than {MAX_RULES} rules"),
                "split the rules, or use patterns",
            ));
        }
        let Some(position) = position else {
            return Err(fail(
                "a rule has no position",
                "declare rules in the rule file",
            ));
        };
        let sku_text = if skus.is_empty() {
            "*".to_owned()
        } else {
            skus.iter()
                .map(|s| s.as_ref())
                .collect::<Vec<_>>()
                .join(",")
        };
        s.table.rules.push(Rule {
            name: Arc::from(format!("{function} {vendor} {sku_text}")),
            position,
            kind,
            vendor,
            skus,
            sku_like: None,
            name_like: None,
            conditions: Vec::new(),
            targets: Vec::new(),
            chooser: None,
            reason: None,
        });
        Ok(RuleHandle(s.table.rules.len() - 1))
    })
}

/// Edits rule `handle` and returns it for chaining.
fn edit_rule(
    ctx: &NativeCallContext,
    state: &SharedState,
    handle: RuleHandle,
    edit: impl FnOnce(&mut Rule) -> Result<(), Fail>,
) -> RhaiResult<RuleHandle> {
    declare(ctx, state, |s, _| {
        let rule = s
            .table
            .rules
            .get_mut(handle.0)
            .ok_or_else(|| fail("unknown rule", "use the value map_sku(...) returned"))?;
        edit(rule)?;
        Ok(handle)
    })
}

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

fn push_target(rule: &mut Rule, product: &str, multiplier: Decimal) -> Result<(), Fail> {
    if rule.kind == RuleKind::Ignore {
        return Err(fail(
            format!("{} ignores usage, so it cannot map to {product}", rule.name),
            "use map_sku or map_vendor to map usage to a product",
        ));
    }
    if rule.targets.len() >= MAX_TARGETS_PER_RULE {
        return Err(fail(
            format!("a rule may map to at most {MAX_TARGETS_PER_RULE} products"),
            "split the bundle into also_sku rules",
        ));
    }
    if multiplier <= Decimal::ZERO {
        return Err(fail(
            format!("the multiplier is {multiplier}"),
            "a multiplier must be more than zero",
        ));
    }
    rule.targets.push(MappingTarget {
        product: ProductId::from(text(product, "the product id")?),
        multiplier,
    });
    Ok(())
}

fn push_condition(rule: &mut Rule, condition: Condition) -> Result<(), Fail> {
    rule.conditions.push(condition);
    Ok(())
}

fn register_rules(engine: &mut Engine, state: &SharedState) {
    // Constructors.
    let kinds = [
        ("map_sku", "map_vendor", RuleKind::Map),
        ("ignore_sku", "ignore_vendor", RuleKind::Ignore),
        ("also_sku", "also_vendor", RuleKind::Also),
    ];
    for (by_sku, by_vendor, kind) in kinds {
        let s = Arc::clone(state);
        engine.register_fn(
            by_sku,
            move |ctx: NativeCallContext, vendor: &str, skus: Dynamic| {
                new_rule(&ctx, &s, kind, vendor, Some(&skus))
            },
        );
        let s = Arc::clone(state);
        engine.register_fn(by_vendor, move |ctx: NativeCallContext, vendor: &str| {
            new_rule(&ctx, &s, kind, vendor, None)
        });
    }

    // Targets.
    let s = Arc::clone(state);
    engine.register_fn(
        "to",
        move |ctx: NativeCallContext, r: &mut RuleHandle, products: Dynamic| {
            edit_rule(&ctx, &s, *r, |rule| {
                for product in texts(&products, "the product id")? {
                    push_target(rule, &product, Decimal::ONE)?;
                }
                Ok(())
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "to",
        move |ctx: NativeCallContext, r: &mut RuleHandle, product: &str, multiplier: Dynamic| {
            edit_rule(&ctx, &s, *r, |rule| {
                let m = amount(&multiplier, "the multiplier")?;
                push_target(rule, product, m)
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "multiplier",
        move |ctx: NativeCallContext, r: &mut RuleHandle, multiplier: Dynamic| {
            edit_rule(&ctx, &s, *r, |rule| {
                let m = amount(&multiplier, "the multiplier")?;
                if m <= Decimal::ZERO {
                    return Err(fail(
                        format!("the multiplier is {m}"),
                        "a multiplier must be more than zero",
                    ));
                }
                let name = rule.name.clone();
                let last = rule.targets.last_mut().ok_or_else(|| {
                    fail(
                        format!("{name} has no product to multiply yet"),
                        "call .to(\"PRODUCT\") before .multiplier(...)",
                    )
                })?;
                last.multiplier = m;
                Ok(())
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "choose",
        move |ctx: NativeCallContext, r: &mut RuleHandle, attrs: Array, f: FnPtr| {
            let attrs = attribute_list(&attrs).map_err(|e| raise(&ctx, &s, e))?;
            let id = add_closure(&ctx, &s, f, attrs, ClosureKind::RowChooser)?;
            edit_rule(&ctx, &s, *r, |rule| set_chooser(rule, id))
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "choose",
        move |ctx: NativeCallContext, r: &mut RuleHandle, f: FnPtr| {
            let id = add_closure(&ctx, &s, f, Vec::new(), ClosureKind::RowChooser)?;
            edit_rule(&ctx, &s, *r, |rule| set_chooser(rule, id))
        },
    );

    // SKU filters.
    let s = Arc::clone(state);
    engine.register_fn(
        "sku_like",
        move |ctx: NativeCallContext, r: &mut RuleHandle, pattern: &str| {
            edit_rule(&ctx, &s, *r, |rule| {
                rule.sku_like = Some(Glob::new(&text(pattern, "the SKU pattern")?));
                Ok(())
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "sku_named",
        move |ctx: NativeCallContext, r: &mut RuleHandle, pattern: &str| {
            edit_rule(&ctx, &s, *r, |rule| {
                rule.name_like = Some(Glob::new(&text(pattern, "the SKU name pattern")?));
                Ok(())
            })
        },
    );

    // Attribute conditions.
    for (name, negate) in [("when_attr", false), ("unless_attr", true)] {
        let s = Arc::clone(state);
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, r: &mut RuleHandle, key: &str, values: Dynamic| {
                edit_rule(&ctx, &s, *r, |rule| {
                    let key = text(key, "the attribute name")?;
                    let values = texts(&values, "the attribute value")?;
                    push_condition(
                        rule,
                        Condition::AttrIn {
                            key,
                            values,
                            negate,
                        },
                    )
                })
            },
        );
    }
    for (name, negate) in [("when_attr_like", false), ("unless_attr_like", true)] {
        let s = Arc::clone(state);
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, r: &mut RuleHandle, key: &str, pattern: &str| {
                edit_rule(&ctx, &s, *r, |rule| {
                    let key = text(key, "the attribute name")?;
                    let pattern = Glob::new(&text(pattern, "the pattern")?);
                    push_condition(
                        rule,
                        Condition::AttrLike {
                            key,
                            pattern,
                            negate,
                        },
                    )
                })
            },
        );
    }
    for (name, negate) in [("has_attr", false), ("lacks_attr", true)] {
        let s = Arc::clone(state);
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, r: &mut RuleHandle, key: &str| {
                edit_rule(&ctx, &s, *r, |rule| {
                    let key = text(key, "the attribute name")?;
                    push_condition(rule, Condition::AttrPresent { key, negate })
                })
            },
        );
    }
    for (name, at_least) in [("when_attr_at_least", true), ("when_attr_at_most", false)] {
        let s = Arc::clone(state);
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, r: &mut RuleHandle, key: &str, bound: Dynamic| {
                edit_rule(&ctx, &s, *r, |rule| {
                    let key = text(key, "the attribute name")?;
                    let bound = amount(&bound, "the bound")?;
                    push_condition(
                        rule,
                        Condition::AttrBound {
                            key,
                            bound,
                            at_least,
                        },
                    )
                })
            },
        );
    }
    for (name, negate) in [("seen_within_days", false), ("not_seen_within_days", true)] {
        let s = Arc::clone(state);
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, r: &mut RuleHandle, days: INT| {
                edit_rule(&ctx, &s, *r, |rule| {
                    seen_within(rule, DEFAULT_SEEN_ATTRIBUTE, days, negate)
                })
            },
        );
        let s = Arc::clone(state);
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, r: &mut RuleHandle, key: &str, days: INT| {
                edit_rule(&ctx, &s, *r, |rule| seen_within(rule, key, days, negate))
            },
        );
    }
    for (name, negate) in [("when_term", false), ("unless_term", true)] {
        let s = Arc::clone(state);
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, r: &mut RuleHandle, values: Dynamic| {
                edit_rule(&ctx, &s, *r, |rule| {
                    let values = texts(&values, "the billing term")?;
                    push_condition(rule, Condition::TermIn { values, negate })
                })
            },
        );
    }
    for (name, negate) in [("for_company", false), ("except_company", true)] {
        let s = Arc::clone(state);
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, r: &mut RuleHandle, ids: Dynamic| {
                edit_rule(&ctx, &s, *r, |rule| {
                    let ids = texts(&ids, "the company id")?;
                    push_condition(rule, Condition::CompanyIn { ids, negate })
                })
            },
        );
    }
    let s = Arc::clone(state);
    engine.register_fn(
        "when",
        move |ctx: NativeCallContext, r: &mut RuleHandle, attrs: Array, f: FnPtr| {
            let attrs = attribute_list(&attrs).map_err(|e| raise(&ctx, &s, e))?;
            let id = add_closure(&ctx, &s, f, attrs, ClosureKind::RowPredicate)?;
            edit_rule(&ctx, &s, *r, |rule| {
                push_condition(rule, Condition::Predicate(id))
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "when",
        move |ctx: NativeCallContext, r: &mut RuleHandle, f: FnPtr| {
            let id = add_closure(&ctx, &s, f, Vec::new(), ClosureKind::RowPredicate)?;
            edit_rule(&ctx, &s, *r, |rule| {
                push_condition(rule, Condition::Predicate(id))
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "when_company",
        move |ctx: NativeCallContext, r: &mut RuleHandle, f: FnPtr| {
            let id = add_closure(&ctx, &s, f, Vec::new(), ClosureKind::CompanyPredicate)?;
            edit_rule(&ctx, &s, *r, |rule| {
                push_condition(rule, Condition::CompanyPredicate(id))
            })
        },
    );

    // Names and reasons.
    let s = Arc::clone(state);
    engine.register_fn(
        "named",
        move |ctx: NativeCallContext, r: &mut RuleHandle, name: &str| {
            edit_rule(&ctx, &s, *r, |rule| {
                rule.name = text(name, "the rule name")?;
                Ok(())
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "because",
        move |ctx: NativeCallContext, r: &mut RuleHandle, reason: &str| {
            edit_rule(&ctx, &s, *r, |rule| {
                rule.reason = Some(text(reason, "the reason")?.to_string());
                Ok(())
            })
        },
    );
}

/// The attribute `seen_within_days(n)` reads: NinjaOne's `last-contact`.
pub const DEFAULT_SEEN_ATTRIBUTE: &str = "last-contact";

fn seen_within(rule: &mut Rule, key: &str, days: INT, negate: bool) -> Result<(), Fail> {
    if days < 0 {
        return Err(fail(
            format!("{days} days is negative"),
            "give a number of days, 0 or more",
        ));
    }
    let key = text(key, "the attribute name")?;
    push_condition(rule, Condition::SeenWithin { key, days, negate })
}

fn set_chooser(rule: &mut Rule, id: ClosureId) -> Result<(), Fail> {
    if rule.kind == RuleKind::Ignore {
        return Err(fail(
            format!("{} ignores usage, so it cannot choose products", rule.name),
            "use map_vendor(...).choose(...) to choose products",
        ));
    }
    if rule.chooser.is_some() {
        return Err(fail(
            format!("{} already has a choose(...)", rule.name),
            "give a rule one choose(...)",
        ));
    }
    rule.chooser = Some(id);
    Ok(())
}

// ------------------------------------------------------------ services

fn new_service(
    ctx: &NativeCallContext,
    state: &SharedState,
    products: Vec<Arc<str>>,
    like: Option<Glob>,
) -> RhaiResult<ServiceHandle> {
    let function = ctx.fn_name().to_owned();
    declare(ctx, state, |s, position| {
        if s.table.services.len() >= MAX_SERVICE_DECLARATIONS {
            return Err(fail(
                format!("more than {MAX_SERVICE_DECLARATIONS} service declarations"),
                "give several products to one service([...]) declaration",
            ));
        }
        let position = position
            .ok_or_else(|| fail("a declaration has no position", "declare in the rule file"))?;
        let what = match (&like, products.as_slice()) {
            (Some(g), _) => format!("{function} {g}"),
            (None, []) => function.clone(),
            (None, many) => format!(
                "{function} {}",
                many.iter()
                    .map(|p| p.as_ref())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        s.table.services.push(ServiceDecl {
            name: Arc::from(what),
            position,
            products,
            product_like: like,
            conditions: Vec::new(),
            settings: PolicySettings::default(),
        });
        Ok(ServiceHandle(s.table.services.len() - 1))
    })
}

fn edit_service(
    ctx: &NativeCallContext,
    state: &SharedState,
    handle: ServiceHandle,
    edit: impl FnOnce(&mut ServiceDecl) -> Result<(), Fail>,
) -> RhaiResult<ServiceHandle> {
    declare(ctx, state, |s, _| {
        let decl = s.table.services.get_mut(handle.0).ok_or_else(|| {
            fail(
                "unknown service declaration",
                "use the value service(...) returned",
            )
        })?;
        edit(decl)?;
        Ok(handle)
    })
}

/// Methods of `service(...)` declarations (for hints when one is called on
/// a mapping rule).
pub const SERVICE_METHODS: [&str; 22] = [
    "effective",
    "effective_on_day",
    "effective_on",
    "prorate",
    "measure",
    "tolerance_units",
    "tolerance_percent",
    "minimum",
    "maximum",
    "no_minimum",
    "no_maximum",
    "round",
    "auto_approve_increases_up_to",
    "never_auto_approve",
    "for_contract",
    "for_contract_type",
    "for_contract_named",
    "when_billed_in",
    "when_cycle",
    "when_contract",
    "for_company",
    "except_company",
];

/// Methods of mapping rules (for hints when one is called on a service
/// declaration).
pub const RULE_METHODS: [&str; 23] = [
    "to",
    "multiplier",
    "choose",
    "sku_like",
    "sku_named",
    "when_attr",
    "unless_attr",
    "when_attr_like",
    "unless_attr_like",
    "has_attr",
    "lacks_attr",
    "when_attr_at_least",
    "when_attr_at_most",
    "seen_within_days",
    "not_seen_within_days",
    "when_term",
    "unless_term",
    "for_company",
    "except_company",
    "when",
    "when_company",
    "named",
    "because",
];

/// The effective-date names scripts use.
pub const EFFECTIVE_NAMES: &str = "first_of_next_month, next_period_start, arrears, immediate";

fn effective_policy(name: &str) -> Result<EffectiveDatePolicy, Fail> {
    match name {
        "first_of_next_month" => Ok(EffectiveDatePolicy::FirstOfNextMonth),
        "next_period_start" => Ok(EffectiveDatePolicy::NextPeriodStart),
        "arrears" => Ok(EffectiveDatePolicy::Arrears),
        "immediate" => Ok(EffectiveDatePolicy::Immediate),
        other => Err(fail(
            format!("unknown effective-date policy {other:?}"),
            format!(
                "use one of {EFFECTIVE_NAMES}; for a mid-month anchor use .effective_on_day(15), for a fixed date .effective_on(\"2025-04-15\")"
            ),
        )),
    }
}

fn measure(name: &str) -> Result<UsageMeasure, Fail> {
    match name {
        "month_end" | "month_end_snapshot" => Ok(UsageMeasure::MonthEndSnapshot),
        "peak" => Ok(UsageMeasure::Peak),
        "daily_average" => Ok(UsageMeasure::DailyAverage),
        other => Err(fail(
            format!("unknown usage measure {other:?}"),
            "use one of month_end, peak, daily_average",
        )),
    }
}

fn rounding(name: &str) -> Result<Rounding, Fail> {
    match name {
        "none" => Ok(Rounding::None),
        "up" => Ok(Rounding::Up),
        "down" => Ok(Rounding::Down),
        "nearest" => Ok(Rounding::Nearest),
        other => Err(fail(
            format!("unknown rounding {other:?}"),
            "use one of none, up, down, nearest",
        )),
    }
}

fn timing(name: &str) -> Result<BillingTiming, Fail> {
    match name {
        "advance" => Ok(BillingTiming::Advance),
        "arrears" => Ok(BillingTiming::Arrears),
        other => Err(fail(
            format!("unknown billing timing {other:?}"),
            "use advance or arrears",
        )),
    }
}

fn cycle(name: &str) -> Result<BillingCycle, Fail> {
    match name {
        "monthly" => Ok(BillingCycle::Monthly),
        "quarterly" => Ok(BillingCycle::Quarterly),
        "semi_annual" => Ok(BillingCycle::SemiAnnual),
        "annual" => Ok(BillingCycle::Annual),
        other => Err(fail(
            format!("unknown billing cycle {other:?}"),
            "use one of monthly, quarterly, semi_annual, annual",
        )),
    }
}

fn check_limits(decl: &ServiceDecl) -> Result<(), Fail> {
    if let (Some(Some(min)), Some(Some(max))) =
        (decl.settings.min_quantity, decl.settings.max_quantity)
        && min > max
    {
        return Err(fail(
            format!("{}: minimum {min} is more than maximum {max}", decl.name),
            "make the minimum at most the maximum",
        ));
    }
    Ok(())
}

/// Registers a setter `name(value)` on services.
fn service_setter(
    engine: &mut Engine,
    state: &SharedState,
    name: &'static str,
    set: impl Fn(&mut PolicySettings, &Dynamic) -> Result<(), Fail> + Send + Sync + 'static,
) {
    let s = Arc::clone(state);
    engine.register_fn(
        name,
        move |ctx: NativeCallContext, h: &mut ServiceHandle, value: Dynamic| {
            edit_service(&ctx, &s, *h, |decl| {
                set(&mut decl.settings, &value)?;
                check_limits(decl)
            })
        },
    );
}

/// Registers a setter `name()` on services.
fn service_flag(
    engine: &mut Engine,
    state: &SharedState,
    name: &'static str,
    set: impl Fn(&mut PolicySettings) + Send + Sync + 'static,
) {
    let s = Arc::clone(state);
    engine.register_fn(
        name,
        move |ctx: NativeCallContext, h: &mut ServiceHandle| {
            edit_service(&ctx, &s, *h, |decl| {
                set(&mut decl.settings);
                Ok(())
            })
        },
    );
}

fn as_text(value: &Dynamic, what: &str) -> Result<String, Fail> {
    value.clone().into_string().map_err(|t| {
        fail(
            format!("{what} must be a string, not {t}"),
            format!("write {what} in quotes"),
        )
    })
}

fn register_services(engine: &mut Engine, state: &SharedState) {
    let s = Arc::clone(state);
    engine.register_fn(
        "service",
        move |ctx: NativeCallContext, products: Dynamic| {
            let products = texts(&products, "the product id").map_err(|e| raise(&ctx, &s, e))?;
            new_service(&ctx, &s, products, None)
        },
    );
    let s = Arc::clone(state);
    engine.register_fn("all_services", move |ctx: NativeCallContext| {
        new_service(&ctx, &s, Vec::new(), None)
    });
    let s = Arc::clone(state);
    engine.register_fn(
        "services_like",
        move |ctx: NativeCallContext, pattern: &str| {
            let pattern = text(pattern, "the product pattern").map_err(|e| raise(&ctx, &s, e))?;
            new_service(&ctx, &s, Vec::new(), Some(Glob::new(&pattern)))
        },
    );

    // Conditions.
    for (name, negate) in [("for_company", false), ("except_company", true)] {
        let s = Arc::clone(state);
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, h: &mut ServiceHandle, ids: Dynamic| {
                edit_service(&ctx, &s, *h, |decl| {
                    let ids = texts(&ids, "the company id")?;
                    decl.conditions
                        .push(PolicyCondition::CompanyIn { ids, negate });
                    Ok(())
                })
            },
        );
    }
    let s = Arc::clone(state);
    engine.register_fn(
        "for_contract",
        move |ctx: NativeCallContext, h: &mut ServiceHandle, ids: Dynamic| {
            edit_service(&ctx, &s, *h, |decl| {
                decl.conditions
                    .push(PolicyCondition::ContractIn(texts(&ids, "the contract id")?));
                Ok(())
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "for_contract_type",
        move |ctx: NativeCallContext, h: &mut ServiceHandle, types: Dynamic| {
            edit_service(&ctx, &s, *h, |decl| {
                decl.conditions.push(PolicyCondition::ContractTypeIn(texts(
                    &types,
                    "the contract type",
                )?));
                Ok(())
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "for_contract_named",
        move |ctx: NativeCallContext, h: &mut ServiceHandle, pattern: &str| {
            edit_service(&ctx, &s, *h, |decl| {
                let pattern = Glob::new(&text(pattern, "the contract name pattern")?);
                decl.conditions
                    .push(PolicyCondition::ContractNameLike(pattern));
                Ok(())
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "when_billed_in",
        move |ctx: NativeCallContext, h: &mut ServiceHandle, name: &str| {
            edit_service(&ctx, &s, *h, |decl| {
                decl.conditions.push(PolicyCondition::Timing(timing(name)?));
                Ok(())
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "when_cycle",
        move |ctx: NativeCallContext, h: &mut ServiceHandle, name: &str| {
            edit_service(&ctx, &s, *h, |decl| {
                decl.conditions.push(PolicyCondition::Cycle(cycle(name)?));
                Ok(())
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "when_contract",
        move |ctx: NativeCallContext, h: &mut ServiceHandle, f: FnPtr| {
            let id = add_closure(&ctx, &s, f, Vec::new(), ClosureKind::ContractPredicate)?;
            edit_service(&ctx, &s, *h, |decl| {
                decl.conditions.push(PolicyCondition::ContractPredicate(id));
                Ok(())
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "named",
        move |ctx: NativeCallContext, h: &mut ServiceHandle, name: &str| {
            edit_service(&ctx, &s, *h, |decl| {
                decl.name = text(name, "the declaration name")?;
                Ok(())
            })
        },
    );

    // Settings.
    service_setter(engine, state, "effective", |p, v| {
        p.effective = Some(effective_policy(&as_text(v, "the effective-date policy")?)?);
        Ok(())
    });
    service_setter(engine, state, "effective_on_day", |p, v| {
        let day = v.as_int().map_err(|t| {
            fail(
                format!("the day must be a whole number, not {t}"),
                "write .effective_on_day(15)",
            )
        })?;
        let day = u32::try_from(day)
            .ok()
            .filter(|d| (1..=31).contains(d))
            .ok_or_else(|| {
                fail(
                    format!("day {day} is not a day of the month"),
                    "use a day from 1 to 31",
                )
            })?;
        p.effective = Some(EffectiveDatePolicy::AnchorDay { day });
        Ok(())
    });
    service_setter(engine, state, "effective_on", |p, v| {
        let text = as_text(v, "the date")?;
        let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
            fail(
                format!("{text:?} is not a date"),
                "write the date as \"YYYY-MM-DD\"",
            )
        })?;
        p.effective = Some(EffectiveDatePolicy::Explicit { date });
        Ok(())
    });
    service_setter(engine, state, "prorate", |p, v| {
        let on = v.as_bool().map_err(|t| {
            fail(
                format!("prorate takes true or false, not {t}"),
                "write .prorate(false)",
            )
        })?;
        p.prorate = Some(on);
        Ok(())
    });
    service_setter(engine, state, "measure", |p, v| {
        p.measure = Some(measure(&as_text(v, "the measure")?)?);
        Ok(())
    });
    service_setter(engine, state, "tolerance_units", |p, v| {
        p.tolerance_units = Some(amount(v, "the tolerance")?);
        Ok(())
    });
    service_setter(engine, state, "tolerance_percent", |p, v| {
        p.tolerance_percent = Some(amount(v, "the tolerance")?);
        Ok(())
    });
    service_setter(engine, state, "minimum", |p, v| {
        p.min_quantity = Some(Some(amount(v, "the minimum")?));
        Ok(())
    });
    service_setter(engine, state, "maximum", |p, v| {
        p.max_quantity = Some(Some(amount(v, "the maximum")?));
        Ok(())
    });
    service_setter(engine, state, "round", |p, v| {
        p.rounding = Some(rounding(&as_text(v, "the rounding")?)?);
        Ok(())
    });
    service_setter(engine, state, "auto_approve_increases_up_to", |p, v| {
        p.auto_approve = Some(Some(amount(v, "the largest auto-approved increase")?));
        Ok(())
    });
    service_flag(engine, state, "no_minimum", |p| p.min_quantity = Some(None));
    service_flag(engine, state, "no_maximum", |p| p.max_quantity = Some(None));
    service_flag(engine, state, "never_auto_approve", |p| {
        p.auto_approve = Some(None)
    });
}
