//! The script API for mapping rules: `map_sku`, `map_vendor`, `ignore_sku`
//! and the rest, and the methods that refine a rule (`.to`, `.when`,
//! `.choose`, ...).

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, FnPtr, INT, NativeCallContext};
use rust_decimal::Decimal;
use trueup_core::mapping::MappingTarget;
use trueup_core::model::ProductId;

use super::{
    Fail, RhaiResult, RuleHandle, SharedState, add_closure, amount, attribute_list, declare, fail,
    raise, text, texts,
};
use crate::glob::Glob;
use crate::limits::*;
use crate::table::{ClosureId, ClosureKind, Condition, Rule, RuleKind};

pub(super) fn new_rule(
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
pub(super) fn edit_rule(
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

pub(super) fn push_target(rule: &mut Rule, product: &str, multiplier: Decimal) -> Result<(), Fail> {
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

pub(super) fn push_condition(rule: &mut Rule, condition: Condition) -> Result<(), Fail> {
    rule.conditions.push(condition);
    Ok(())
}

pub(super) fn register_rules(engine: &mut Engine, state: &SharedState) {
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

pub(super) fn seen_within(rule: &mut Rule, key: &str, days: INT, negate: bool) -> Result<(), Fail> {
    if days < 0 {
        return Err(fail(
            format!("{days} days is negative"),
            "give a number of days, 0 or more",
        ));
    }
    let key = text(key, "the attribute name")?;
    push_condition(rule, Condition::SeenWithin { key, days, negate })
}

pub(super) fn set_chooser(rule: &mut Rule, id: ClosureId) -> Result<(), Fail> {
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
