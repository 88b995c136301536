//! The script API for service declarations: `service("PRODUCT")` and the
//! settings that say how a service is counted and changed.

use std::sync::Arc;

use chrono::NaiveDate;
use rhai::{Dynamic, Engine, FnPtr, NativeCallContext};
use trueup_core::effective::EffectiveDatePolicy;
use trueup_core::mapping::{Rounding, UsageMeasure};
use trueup_core::model::{BillingCycle, BillingTiming};

use super::{
    Fail, RhaiResult, ServiceHandle, SharedState, add_closure, amount, declare, fail, raise, text,
    texts,
};
use crate::glob::Glob;
use crate::limits::*;
use crate::table::{ClosureKind, PolicyCondition, PolicySettings, ServiceDecl};

pub(super) fn new_service(
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

pub(super) fn edit_service(
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

pub(super) fn effective_policy(name: &str) -> Result<EffectiveDatePolicy, Fail> {
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

pub(super) fn measure(name: &str) -> Result<UsageMeasure, Fail> {
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

pub(super) fn rounding(name: &str) -> Result<Rounding, Fail> {
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

pub(super) fn timing(name: &str) -> Result<BillingTiming, Fail> {
    match name {
        "advance" => Ok(BillingTiming::Advance),
        "arrears" => Ok(BillingTiming::Arrears),
        other => Err(fail(
            format!("unknown billing timing {other:?}"),
            "use advance or arrears",
        )),
    }
}

pub(super) fn cycle(name: &str) -> Result<BillingCycle, Fail> {
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

pub(super) fn check_limits(decl: &ServiceDecl) -> Result<(), Fail> {
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
pub(super) fn service_setter(
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
pub(super) fn service_flag(
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

pub(super) fn as_text(value: &Dynamic, what: &str) -> Result<String, Fail> {
    value.clone().into_string().map_err(|t| {
        fail(
            format!("{what} must be a string, not {t}"),
            format!("write {what} in quotes"),
        )
    })
}

pub(super) fn register_services(engine: &mut Engine, state: &SharedState) {
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
