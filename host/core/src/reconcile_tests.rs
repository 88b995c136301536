//! Reconcile tests over the hand-made world in `testkit`.

use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;
use crate::card::CardCategory as C;
use crate::cycles::CycleAnchor;
use crate::eligibility::{ExclusionCode, Severity, Subject};
use crate::mapping::{PolicyContext, ProductPolicy, RowDependence, SkuTableMapper, UsageMeasure};
use crate::model::{AccountMapping, BillingCycle, VendorId};
use crate::snapshot::Snapshot;
use crate::testkit::*;

fn run(snapshot: &Snapshot, mapper: &dyn UsageMapper) -> ReconcileOutput {
    let outcomes = snapshot.resolve_mappings(Default::default());
    let mappings: Vec<AccountMapping> = outcomes.iter().map(|o| o.mapping.clone()).collect();
    reconcile(&snapshot.reconcile_input(as_of(), &mappings, &outcomes, mapper))
}

fn card(out: &ReconcileOutput, pick: impl Fn(&ServiceCard) -> bool) -> &ServiceCard {
    let found: Vec<&ServiceCard> = out.cards.iter().filter(|c| pick(c)).collect();
    assert_eq!(found.len(), 1, "expected exactly one matching card");
    found[0]
}

fn line_card<'a>(out: &'a ReconcileOutput, line: &str) -> &'a ServiceCard {
    card(out, |c| c.line.as_ref().is_some_and(|l| l.as_str() == line))
}

#[test]
fn every_category_with_hand_computed_numbers() {
    let world = world();
    let mapper = FailingMapper::new(&world);
    let out = run(&world, &mapper);

    // LA1: 10 billed, snapshot of 21 Mar = 12 → Reconcile +2.
    // Money: before 10 × 22.00 = 220.00, after 12 × 22.00 = 264.00,
    // delta 44.00; cost 12 × 19.80 = 237.60, margin 26.40.
    let la1 = line_card(&out, "LA1");
    assert_eq!(la1.category, C::Reconcile);
    assert_eq!(la1.psa_quantity, Some(dec!(10)));
    assert_eq!(la1.vendor_quantity.map(|v| v.billable), Some(dec!(12)));
    assert_eq!(la1.target_quantity, Some(dec!(12)));
    assert_eq!(la1.variance, Some(dec!(2)));
    let money = la1.money.unwrap();
    assert_eq!(
        (money.before.price, money.after.price, money.delta),
        (dec!(220.00), dec!(264.00), dec!(44.00))
    );
    assert_eq!(
        (money.after.cost, money.after.margin),
        (dec!(237.60), dec!(26.40))
    );
    // Default policy: first day of next month; 1 Apr starts April, so the
    // next invoice carries the full +44.00.
    assert_eq!(la1.effective().unwrap().date, d(2025, 4, 1));
    let proration = la1.proration().unwrap();
    assert_eq!(
        (proration.next_invoice_delta, proration.days_charged),
        (dec!(44.00), 30)
    );
    // The rows behind 12 are the 21 Mar observation only (row 1); row 0 is
    // an earlier day, row 5 is after the as-of date.
    assert_eq!(la1.usage_rows.as_slice(), [1]);
    assert_eq!(la1.mapper_version.as_ref(), "test-rules-1");
    assert_eq!(la1.mappings.len(), 1);
    assert!(
        la1.mappings[0].trace.steps[0]
            .outcome
            .contains("SPB → M365-BP")
    );
    assert_eq!(la1.vendors.as_ref(), [VendorId::from("m365")]);

    // LA2: 5 devices on 27 Mar = 5 billed → NoChange, no proposal.
    let la2 = line_card(&out, "LA2");
    assert_eq!(la2.category, C::NoChange);
    assert_eq!(
        (la2.variance, la2.target_quantity),
        (Some(Decimal::ZERO), None)
    );
    assert_eq!(la2.usage_rows.as_slice(), [8, 9, 10, 11, 12]);
    assert!(la2.change.is_none());

    // LA3: nothing reports MSP-FLAT → NoVendorData.
    let la3 = line_card(&out, "LA3");
    assert_eq!(la3.category, C::NoVendorData);
    assert_eq!(la3.vendor_quantity, None);

    // LB1: 8 billed, 6 agents → Reconcile −2 × 6.00 = −12.00; KB1 does not
    // prorate, and 1 Apr is a period start anyway.
    let lb1 = line_card(&out, "LB1");
    assert_eq!(lb1.category, C::Reconcile);
    assert_eq!(
        (lb1.target_quantity, lb1.variance),
        (Some(dec!(6)), Some(dec!(-2)))
    );
    assert_eq!(lb1.money.unwrap().delta, dec!(-12.00));
    assert_eq!(lb1.usage_rows.as_slice(), [13, 14, 15, 16, 17, 18]);

    // EXO-ARCHIVE: 3 used, no line → NewRevenue on KA1, which already
    // carries M365 services; 3 × 3.00 = 9.00.
    let archive = card(&out, |c| {
        c.product
            .as_ref()
            .is_some_and(|p| p.as_str() == "EXO-ARCHIVE")
    });
    assert_eq!(archive.category, C::NewRevenue);
    assert_eq!(archive.contract, Some("KA1".into()));
    let proposal = archive
        .change
        .as_ref()
        .unwrap()
        .contract_proposal
        .as_ref()
        .unwrap();
    assert!(
        proposal.reason.contains("reported by m365"),
        "{}",
        proposal.reason
    );
    assert_eq!(
        (archive.psa_quantity, archive.target_quantity),
        (Some(dec!(0)), Some(dec!(3)))
    );
    assert_eq!(archive.money.unwrap().delta, dec!(9.00));
    assert_eq!(archive.line, None);

    // FLOW_FREE: company known, SKU not mapped → Unmapped with company.
    let flow = card(&out, |c| {
        c.source
            .as_ref()
            .is_some_and(|s| s.sku.as_str() == "FLOW_FREE")
    });
    assert_eq!(
        (flow.category, flow.company.clone()),
        (C::Unmapped, Some("A".into()))
    );
    assert_eq!(flow.vendor_quantity.map(|v| v.billable), Some(dec!(100)));
    assert!(flow.notes[0].contains("not mapped to a PSA product"));

    // tenant-x: account not mapped → Unmapped without company, with the
    // matcher's suggestion ("contoso pharmacy", 15 bigrams, vs "contoso",
    // 6, all 6 shared: 12 / 21 = 0.5714, below 0.90, so only suggested).
    let x = card(&out, |c| {
        c.source
            .as_ref()
            .is_some_and(|s| s.account.as_str() == "tenant-x")
    });
    assert_eq!((x.category, x.company.clone()), (C::Unmapped, None));
    assert_eq!(x.vendor_quantity.map(|v| v.billable), Some(dec!(4)));
    assert_eq!(
        x.suggestions.first().map(|s| s.company.clone()),
        Some("A".into())
    );
    assert_eq!(
        x.source.as_ref().unwrap().account_name.as_deref(),
        Some("Contoso Pharmacy")
    );

    // BROKEN: the mapper failed → RuleError with its message and position.
    let broken = card(&out, |c| c.category == C::RuleError);
    assert_eq!(broken.error.as_deref(), Some(&broken_rule()));
    assert_eq!(broken.usage_rows.as_slice(), [4]);

    // Nothing else: 4 lines + new revenue + 2 unmapped + 1 rule error.
    assert_eq!(out.cards.len(), 8);
    // Totals: under 44.00 + 9.00 = 53.00; over 12.00; at stake 65.00.
    assert_eq!(
        (
            out.totals.under_billed,
            out.totals.over_billed,
            out.totals.at_stake
        ),
        (dec!(53.00), dec!(12.00), dec!(65.00))
    );
    // Excluded tenant and the late row are kept as exclusions, not dropped.
    let codes: Vec<_> = out.exclusions.iter().map(|e| e.code).collect();
    assert!(codes.contains(&ExclusionCode::AccountExcluded), "{codes:?}");
    assert!(codes.contains(&ExclusionCode::UsageAfterAsOf), "{codes:?}");
    assert_eq!(out.stats.rows_excluded, 1);
    assert_eq!(out.stats.rows_after_as_of, 1);
    assert_eq!(out.stats.rows_rule_error, 1);
    // Cards are sorted: company A first, cards without a company last.
    assert_eq!(out.cards.first().unwrap().company, Some("A".into()));
    assert_eq!(out.cards.last().unwrap().company, None);
}

#[test]
fn keys_are_stable_across_runs_and_input_order() {
    let world = world();
    let mapper = FailingMapper::new(&world);
    let first = run(&world, &mapper);
    let mut reversed = world.clone();
    reversed.service_lines.reverse();
    reversed.contracts.reverse();
    reversed.companies.reverse();
    let second = run(&reversed, &mapper);
    let keys = |o: &ReconcileOutput| {
        o.cards
            .iter()
            .map(|c| (c.key, c.category))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&first), keys(&second));
    assert_eq!(
        line_card(&first, "LA1").key,
        crate::card::CardKey::for_line(&"A".into(), &"KA1".into(), &"LA1".into())
    );
}

#[test]
fn integer_psa_rounds_averages_and_posted_periods_shift_dates() {
    let mut world = world();
    world.psa = crate::effective::PsaProfile::autotask();
    // March is posted through 2025-04-30 on KA1: the 1 Apr default moves to
    // the first unposted day, 1 May.
    world.contracts[0].posted_through = Some(d(2025, 4, 30));
    // Daily average of M365-BP over the days seen this period: 7 Mar = 11,
    // 21 Mar = 12 → 23 / 2 = 11.5, rounded to nearest (Autotask default) = 12.
    let policies = vec![ProductPolicy {
        product: "M365-BP".into(),
        policy: ServicePolicy {
            measure: UsageMeasure::DailyAverage,
            ..ServicePolicy::default_for(&world.psa)
        },
    }];
    let mapper = FailingMapper::with_policies(&world, policies);
    let out = run(&world, &mapper);
    let la1 = line_card(&out, "LA1");
    assert_eq!(la1.vendor_quantity.unwrap().measured.quantity, dec!(11.5));
    assert_eq!(la1.vendor_quantity.unwrap().billable, dec!(12));
    assert_eq!(
        la1.usage_rows.as_slice(),
        [0, 1],
        "an average stands on every day of the period"
    );
    let effective = la1.effective().unwrap();
    assert_eq!(
        (effective.date, effective.shifted_from),
        (d(2025, 5, 1), Some(d(2025, 4, 1)))
    );
    assert!(la1.constraints.unwrap().integer_units);
}

#[test]
fn a_rule_without_rounding_still_gets_whole_units_on_an_integer_psa() {
    let mut world = world();
    world.psa = crate::effective::PsaProfile::autotask();
    // A quarter unit per M365 licence, and a rule that asks for no rounding.
    world.sku_map[0].multiplier = dec!(0.25);
    let policies = vec![ProductPolicy {
        product: "M365-BP".into(),
        policy: ServicePolicy {
            measure: UsageMeasure::Peak,
            rounding: crate::mapping::Rounding::None,
            ..ServicePolicy::default()
        },
    }];
    // Peak over 7 Mar (11 × 0.25 = 2.75) and 21 Mar (12 × 0.25 = 3): 3.
    let out = run(
        &world,
        &FailingMapper::with_policies(&world, policies.clone()),
    );
    assert_eq!(
        line_card(&out, "LA1").vendor_quantity.unwrap().billable,
        dec!(3)
    );
    // Drop the 21 Mar row: peak is 2.75, which the PSA cannot bill → 3,
    // with a note saying so.
    world.usage.remove(1);
    let out = run(&world, &FailingMapper::with_policies(&world, policies));
    let la1 = line_card(&out, "LA1");
    assert_eq!(la1.vendor_quantity.unwrap().billable, dec!(3));
    assert!(
        la1.notes.iter().any(|n| n.contains("whole units")),
        "{:?}",
        la1.notes
    );
}

#[test]
fn tolerance_turns_small_differences_into_no_change() {
    let world = world();
    let policies = vec![ProductPolicy {
        product: "M365-BP".into(),
        policy: ServicePolicy {
            tolerance: crate::mapping::Tolerance {
                units: dec!(2),
                percent: Decimal::ZERO,
            },
            ..ServicePolicy::default()
        },
    }];
    let out = run(&world, &FailingMapper::with_policies(&world, policies));
    let la1 = line_card(&out, "LA1");
    // |12 − 10| = 2 ≤ 2 → NoChange, variance still shown.
    assert_eq!((la1.category, la1.variance), (C::NoChange, Some(dec!(2))));
    assert!(la1.notes.iter().any(|n| n.contains("within the tolerance")));
}

#[test]
fn quarterly_contract_start_prorates_over_the_quarter() {
    let mut world = world();
    world.contracts[0].billing_cycle = BillingCycle::Quarterly;
    world.contracts[0].start_date = Some(d(2024, 2, 15));
    world.contracts[0].cycle_anchor = Some(CycleAnchor::ContractStart);
    let out = run(&world, &FailingMapper::new(&world));
    let la1 = line_card(&out, "LA1");
    // Period 15 Feb..14 May 2025 = 14 + 31 + 30 + 14 = 89 days; from 1 Apr:
    // 30 + 14 = 44 days. +2 × 22.00 = 44.00 per quarter; 4400¢ × 44 / 89 =
    // 2175.28 → 2175, other piece 4400 × 45 / 89 = 2224.71 → 2224; the
    // spare cent goes to the larger remainder (.71), so 21.75.
    assert_eq!(
        la1.period,
        crate::cycles::Period::new(d(2025, 2, 15), d(2025, 5, 14))
    );
    let p = la1.proration().unwrap();
    assert_eq!(
        (p.days_charged, p.days_in_period, p.next_invoice_delta),
        (44, 89, dec!(21.75))
    );
    // The snapshot now spans the quarter, 15 Feb..28 Mar: still 21 Mar.
    assert_eq!(la1.usage_rows.as_slice(), [1]);
}

#[test]
fn several_lines_of_one_product_share_the_usage() {
    let mut world = world();
    // A second M365-BP line of 4 on KA2 (annual): 10 + 4 = 14 billed vs 12
    // used → the primary (KA1/LA1, lowest contract id) goes to 12 − 4 = 8.
    world.service_lines.push(line(
        "LA9",
        "KA2",
        "M365-BP",
        dec!(4),
        dec!(22.00),
        dec!(19.80),
    ));
    let out = run(&world, &FailingMapper::new(&world));
    let la1 = line_card(&out, "LA1");
    assert_eq!(
        (la1.category, la1.target_quantity, la1.variance),
        (C::Reconcile, Some(dec!(8)), Some(dec!(-2)))
    );
    // The card's numbers add up: 12 − (10 + 4 elsewhere) = −2.
    assert_eq!(la1.psa_quantity_elsewhere, Some(dec!(4)));
    assert_numbers_add_up(la1);
    let la9 = line_card(&out, "LA9");
    assert_eq!(la9.category, C::NoChange);
    assert!(
        la9.notes[0].contains("also billed on line LA1"),
        "{:?}",
        la9.notes
    );
}

/// A line card's variance is what vendors report less everything the PSA
/// bills that the comparison counted, so the numbers on the card add up.
fn assert_numbers_add_up(card: &ServiceCard) {
    let (Some(psa), Some(vendor), Some(variance)) =
        (card.psa_quantity, card.vendor_quantity, card.variance)
    else {
        return;
    };
    let elsewhere = card.psa_quantity_elsewhere.unwrap_or_default();
    assert_eq!(
        vendor.billable - (psa + elsewhere),
        variance,
        "card {} shows PSA {psa} (+{elsewhere} elsewhere), vendor {}, variance {variance}",
        card.key,
        vendor.billable
    );
}

/// Seen in a browser: "No change · PSA 1 · vendor 3 · variance 0". The
/// product was billed on two agreements (1 + 2 = 3, matching the vendors'
/// 3), but the card showed only its own line's 1. Every card's numbers
/// must agree with its category.
#[test]
fn a_no_change_card_over_several_lines_shows_the_other_lines() {
    let mut world = world();
    // LA1 is M365-BP × 10 against 12 used; a second line of 2 makes 12.
    world.service_lines.push(line(
        "LA9",
        "KA2",
        "M365-BP",
        dec!(2),
        dec!(22.00),
        dec!(19.80),
    ));
    let out = run(&world, &FailingMapper::new(&world));
    let la1 = line_card(&out, "LA1");
    assert_eq!(
        (
            la1.category,
            la1.psa_quantity,
            la1.psa_quantity_elsewhere,
            la1.variance
        ),
        (C::NoChange, Some(dec!(10)), Some(dec!(2)), Some(dec!(0)))
    );
    for card in &out.cards {
        assert_numbers_add_up(card);
    }
}

#[test]
fn a_failing_policy_rule_marks_only_its_card() {
    let mut world = world();
    world.service_lines[2].product_identifier = "POLICY-BROKEN".into();
    let out = run(&world, &FailingMapper::new(&world));
    let la3 = line_card(&out, "LA3");
    assert_eq!(la3.category, C::RuleError);
    assert_eq!(
        la3.error.as_ref().map(|e| e.message.as_str()),
        Some("policy rule divided by zero")
    );
    assert_eq!(line_card(&out, "LA1").category, C::Reconcile);
}

#[test]
fn excluded_lines_and_contracts_are_reported_not_dropped() {
    let mut world = world();
    world.service_lines.push(line(
        "LOST",
        "K-MISSING",
        "M365-BP",
        dec!(1),
        dec!(1),
        dec!(1),
    ));
    world.contracts[2].billing_cycle = BillingCycle::OneTime;
    let out = run(&world, &FailingMapper::new(&world));
    let code_of = |id: &str| {
        out.exclusions
            .iter()
            .find(|e| match &e.subject {
                Subject::Line(l) => l.as_str() == id,
                Subject::Contract(c) => c.as_str() == id,
                _ => false,
            })
            .map(|e| e.code)
    };
    assert_eq!(code_of("LOST"), Some(ExclusionCode::UnknownContract));
    assert_eq!(code_of("KB1"), Some(ExclusionCode::NonRecurringCycle));
    assert_eq!(code_of("LB1"), Some(ExclusionCode::ContractNotEligible));
    // KB1's company B still uses EDR: with no eligible contract it is new
    // revenue without a contract to put it on.
    let edr = card(&out, |c| {
        c.product.as_ref().is_some_and(|p| p.as_str() == "EDR-WS")
    });
    assert_eq!((edr.category, edr.contract.clone()), (C::NewRevenue, None));
    assert!(
        edr.notes
            .iter()
            .any(|n| n.contains("no active recurring contract"))
    );
}

#[test]
fn sku_only_memo_gives_the_same_cards_as_per_row_mapping() {
    /// The SKU table, declared as reading whole rows: the engine calls it
    /// per row instead of per (account, SKU).
    struct PerRow(SkuTableMapper);
    impl UsageMapper for PerRow {
        fn version(&self) -> &str {
            self.0.version()
        }
        fn row_dependence(&self) -> RowDependence {
            RowDependence::WholeRow
        }
        fn map_usage(
            &self,
            usage: &crate::model::UsageObservation,
            company: Option<&crate::model::Company>,
        ) -> Result<Arc<UsageMapping>, MappingFailure> {
            self.0.map_usage(usage, company)
        }
        fn service_policy(&self, ctx: &PolicyContext<'_>) -> Result<ServicePolicy, MappingFailure> {
            self.0.service_policy(ctx)
        }
    }
    let config = crate::synth::SynthConfig {
        seed: 11,
        companies: 40,
        usage_rows: 8_000,
        as_of: d(2025, 3, 31),
    };
    let world = crate::synth::generate(&config);
    let memo = world.sku_mapper();
    let per_row = PerRow(world.sku_mapper());
    let a = reconcile(&world.reconcile_input(config.as_of, &world.account_mappings, &[], &memo));
    let b = reconcile(&world.reconcile_input(config.as_of, &world.account_mappings, &[], &per_row));
    assert_eq!(a.cards, b.cards);
    assert_eq!(a.stats, b.stats);
    // Every category the generator aims for shows up.
    for category in [
        C::NewRevenue,
        C::Reconcile,
        C::NoChange,
        C::NoVendorData,
        C::Unmapped,
    ] {
        assert!(
            a.totals.cards.get(&category).copied().unwrap_or(0) > 0,
            "{category}"
        );
    }
}

/// A random small world: companies, contracts and lines with random
/// quantities, usage over random days, some accounts unmapped.
fn arbitrary_world() -> impl Strategy<Value = Snapshot> {
    let lines = proptest::collection::vec((0usize..3, 0usize..4, 0i64..20), 0..12);
    let rows = proptest::collection::vec((0usize..3, 0usize..5, 0i64..10, 1u32..31), 0..60);
    (lines, rows, proptest::collection::vec(any::<bool>(), 3)).prop_map(
        |(lines, rows, mapped_flags)| {
            let mut s = world();
            let products = ["M365-BP", "RMM-WS", "EDR-WS", "EXTRA"];
            let contracts = ["KA1", "KA2", "KB1"];
            for (i, (c, p, q)) in lines.into_iter().enumerate() {
                s.service_lines.push(line(
                    &format!("R{i}"),
                    contracts[c],
                    products[p],
                    Decimal::from(q),
                    dec!(5),
                    dec!(1),
                ));
            }
            let accounts = [
                ("m365", "tenant-a"),
                ("ninja", "org-a"),
                ("huntress", "org-b"),
            ];
            let skus = ["SPB", "WS", "AGENT", "ARCHIVE", "NOPE"];
            for (a, k, q, day) in rows {
                let (vendor, account) = accounts[a];
                s.usage.push(usage(
                    vendor,
                    account,
                    skus[k],
                    Decimal::from(q),
                    at(2025, 3, day),
                ));
            }
            for (i, flag) in mapped_flags.into_iter().enumerate() {
                if !flag {
                    s.account_mappings[i].status = crate::model::AccountMappingStatus::Unmapped;
                }
            }
            s
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reconcile_is_deterministic_and_complete(world in arbitrary_world()) {
        let mapper = FailingMapper::new(&world);
        let first = run(&world, &mapper);
        let second = run(&world, &mapper);
        prop_assert_eq!(&first, &second);
        // Card keys are unique.
        let mut keys: Vec<_> = first.cards.iter().map(|c| c.key).collect();
        keys.sort();
        keys.dedup();
        prop_assert_eq!(keys.len(), first.cards.len());
        // Every eligible line has exactly one card; every line has a card
        // or an exclusion.
        for l in &world.service_lines {
            let cards = first.cards.iter().filter(|c| c.line.as_ref() == Some(&l.id)).count();
            let excluded = first.exclusions.iter().any(|e| e.subject == Subject::Line(l.id.clone()));
            prop_assert_eq!(cards + usize::from(excluded), 1, "line {}", l.id);
        }
        // Totals add up, and match the cards.
        prop_assert_eq!(first.totals.at_stake, first.totals.under_billed + first.totals.over_billed);
        let delta_sum: Decimal = first
            .cards
            .iter()
            .filter(|c| c.category.proposes_change())
            .filter_map(|c| c.money.map(|m| m.delta))
            .sum();
        prop_assert_eq!(delta_sum, first.totals.under_billed - first.totals.over_billed);
        // Every row is accounted for exactly once in the stats.
        let s = &first.stats;
        prop_assert_eq!(
            s.rows_mapped + s.rows_unmapped + s.rows_rule_error + s.rows_excluded + s.rows_after_as_of,
            world.usage.len()
        );
        // Usage rows on cards are ascending and in range.
        for c in &first.cards {
            prop_assert!(c.usage_rows.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(c.usage_rows.iter().all(|&r| (r as usize) < world.usage.len()));
        }
    }
}

/// Ignores `FLOW_FREE` on purpose, as a rule would; defers the rest.
struct IgnoringMapper(FailingMapper);

impl UsageMapper for IgnoringMapper {
    fn version(&self) -> &str {
        "ignoring-rules"
    }

    fn map_usage(
        &self,
        usage: &UsageObservation,
        company: Option<&Company>,
    ) -> Result<Arc<UsageMapping>, MappingFailure> {
        if usage.sku_id.as_str() == "FLOW_FREE" {
            return Ok(Arc::new(UsageMapping {
                targets: Vec::new(),
                ignored: Some(Arc::from("free SKU")),
                trace: Default::default(),
            }));
        }
        self.0.map_usage(usage, company)
    }

    fn service_policy(&self, ctx: &PolicyContext<'_>) -> Result<ServicePolicy, MappingFailure> {
        self.0.service_policy(ctx)
    }
}

#[test]
fn usage_a_rule_ignores_makes_no_card_and_is_noted_per_account() {
    let mut world = world();
    // An unmapped tenant's free SKU is not work for the MSP either.
    world.usage.push(usage(
        "m365",
        "tenant-x",
        "FLOW_FREE",
        dec!(25),
        at(2025, 3, 21),
    ));
    let plain = run(&world, &FailingMapper::new(&world));
    let is_flow = |c: &ServiceCard| {
        c.source
            .as_ref()
            .is_some_and(|s| s.sku.as_str() == "FLOW_FREE")
    };
    assert_eq!(plain.cards.iter().filter(|c| is_flow(c)).count(), 2);

    let out = run(&world, &IgnoringMapper(FailingMapper::new(&world)));
    assert_eq!(out.cards.iter().filter(|c| is_flow(c)).count(), 0);
    assert_eq!(out.stats.rows_ignored, 2);
    assert_eq!(out.stats.rows_unmapped, plain.stats.rows_unmapped - 2);
    let notes: Vec<&Exclusion> = out
        .exclusions
        .iter()
        .filter(|e| e.code == ExclusionCode::UsageIgnoredByRule)
        .collect();
    assert_eq!(notes.len(), 2, "one note per account");
    assert!(notes.iter().all(|e| e.severity == Severity::Noted));
    assert!(
        notes.iter().any(|e| e.reason
            == "1 usage row(s) of m365 account tenant-a are not billed by rule (free SKU)"),
        "{notes:?}"
    );
    // The other cards are the same as without the rule.
    assert_eq!(out.cards.len(), plain.cards.len() - 2);
}

/// Issue 17 (1): a pushed quantity of `Decimal::MAX` made every reconcile
/// after it panic ("Addition overflowed"). Rows and lines past the input
/// limits are now left out as `value_out_of_range` exclusions, and the
/// rest reconciles as before.
#[test]
fn values_past_the_limits_are_excluded_never_a_panic() {
    let mut world = world();
    // Same account, SKU and day as LA1's 12: the bucket add overflowed.
    world.usage.push(usage(
        "m365",
        "tenant-a",
        "SPB",
        Decimal::MAX,
        at(2025, 3, 21),
    ));
    world.usage.push(usage(
        "m365",
        "tenant-a",
        "SPB",
        Decimal::MAX,
        at(2025, 3, 21),
    ));
    // A PSA line with a price no money arithmetic can take.
    world
        .service_lines
        .push(line("LB2", "KB1", "EDR-WS", dec!(2), Decimal::MAX, dec!(1)));
    let mapper = FailingMapper::new(&world);
    let out = run(&world, &mapper);

    let la1 = line_card(&out, "LA1");
    assert_eq!(la1.vendor_quantity.map(|v| v.billable), Some(dec!(12)));
    let lb1 = line_card(&out, "LB1");
    assert_eq!(lb1.psa_quantity, Some(dec!(8)), "LB2 is not added to LB1");
    let out_of_range: Vec<&Exclusion> = out
        .exclusions
        .iter()
        .filter(|e| e.code == ExclusionCode::ValueOutOfRange)
        .collect();
    assert_eq!(out_of_range.len(), 2, "{out_of_range:#?}");
    let account = out_of_range
        .iter()
        .find(|e| matches!(&e.subject, Subject::Account(a) if a.account.as_str() == "tenant-a"))
        .expect("the account's rows are named");
    assert_eq!(account.severity, Severity::Excluded);
    assert!(
        account.reason.starts_with("2 usage row(s)") && account.reason.contains("10000000000"),
        "{}",
        account.reason
    );
    let line = out_of_range
        .iter()
        .find(|e| matches!(&e.subject, Subject::Line(l) if l.as_str() == "LB2"))
        .expect("the line is named");
    assert!(line.reason.contains("unit price"), "{}", line.reason);
    assert!(line_card_absent(&out, "LB2"));
    assert_eq!(
        out.stats.rows_excluded, 3,
        "the excluded tenant's row and the two"
    );
}

fn line_card_absent(out: &ReconcileOutput, line: &str) -> bool {
    !out.cards
        .iter()
        .any(|c| c.line.as_ref().is_some_and(|l| l.as_str() == line))
}

/// A rule's multiplier is not bounded: a product past the routed limit
/// leaves the row out instead of overflowing.
#[test]
fn a_huge_multiplier_leaves_the_row_out() {
    let mut world = world();
    for entry in &mut world.sku_map {
        if entry.sku.as_str() == "AGENT" {
            entry.multiplier = Decimal::MAX;
        }
    }
    world.usage.push(usage(
        "huntress",
        "org-b",
        "AGENT",
        dec!(2),
        at(2025, 3, 28),
    ));
    let mapper = FailingMapper::new(&world);
    let out = run(&world, &mapper);
    let e = out
        .exclusions
        .iter()
        .find(|e| e.code == ExclusionCode::ValueOutOfRange)
        .expect("excluded");
    assert!(e.reason.contains("multiplier"), "{}", e.reason);
}
