//! The mapper: memoisation, traces, rule order, dependent lines, policies,
//! and broken rules inside a reconcile.

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use trueup_core::card::CardCategory;
use trueup_core::effective::{EffectiveDatePolicy, PsaProfile};
use trueup_core::mapping::{PolicyContext, Rounding, RowDependence, UsageMapper, UsageMeasure};
use trueup_core::model::*;
use trueup_core::reconcile::{ReconcileInput, reconcile};

use crate::compile::{CompiledRules, RuleVersion};
use crate::mapper::RulesMapper;

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 3, 31).unwrap()
}

fn compile(source: &str) -> Arc<CompiledRules> {
    let version = RuleVersion::new(
        "rules/t.rhai",
        source,
        None,
        "test",
        Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap(),
    );
    Arc::new(CompiledRules::compile(&version).unwrap_or_else(|e| panic!("{e}")))
}

fn mapper(source: &str) -> RulesMapper {
    compile(source).mapper(as_of())
}

fn row(vendor: &str, account: &str, sku: &str, attrs: &[(&str, &str)]) -> UsageObservation {
    UsageObservation {
        vendor: vendor.into(),
        account: account.into(),
        sku_id: sku.into(),
        sku_name: Arc::from(format!("{sku} name")),
        quantity: Decimal::ONE,
        unit: Arc::from("device"),
        unit_cost: None,
        billing_term: None,
        commitment_end: None,
        attributes: Attributes::new(attrs.iter().map(|(k, v)| (Arc::from(*k), Arc::from(*v)))),
        observed_at: as_of().and_hms_opt(6, 0, 0).unwrap().and_utc(),
    }
}

fn company(id: &str, name: &str) -> Company {
    Company {
        id: id.into(),
        name: name.into(),
        identifier: None,
        domains: vec![],
        status: CompanyStatus::Active,
        account_links: vec![],
    }
}

fn contract(id: &str, company: &str, kind: &str) -> Contract {
    Contract {
        id: id.into(),
        company_id: company.into(),
        name: format!("Contract {id}"),
        contract_type: kind.into(),
        status: ContractStatus::Active,
        billing_cycle: BillingCycle::Monthly,
        start_date: NaiveDate::from_ymd_opt(2024, 1, 1),
        end_date: None,
        timing: BillingTiming::Advance,
        prorate: false,
        posted_through: None,
        cycle_anchor: None,
    }
}

fn products(
    mapper: &RulesMapper,
    usage: &UsageObservation,
    company: Option<&Company>,
) -> Vec<String> {
    let mapping = mapper
        .map_usage(usage, company)
        .unwrap_or_else(|f| panic!("{f}"));
    mapping
        .targets
        .iter()
        .map(|t| format!("{}×{}", t.product, t.multiplier.normalize()))
        .collect()
}

#[test]
fn decisions_are_memoised_per_key_not_per_row() {
    let source = r#"
ignore_vendor("ninjaone").unless_attr("status", "APPROVED").named("pending");
map_vendor("ninjaone")
    .when(["os"], |row| row.attrs.os.contains("Server"))
    .to("RMM-SRV")
    .named("server OS");
map_vendor("ninjaone").to("RMM-WS").named("the rest");
"#;
    let m = mapper(source);
    let oses: [Arc<str>; 3] = [
        Arc::from("Windows 11"),
        Arc::from("Windows Server 2022"),
        Arc::from("macOS 14"),
    ];
    let statuses: [Arc<str>; 2] = [Arc::from("APPROVED"), Arc::from("PENDING")];
    let base = row("ninjaone", "org-1", "WINDOWS_WORKSTATION", &[]);
    const ROWS: usize = 100_000;
    let c = company("C1", "Contoso");
    let mut first_of_key: std::collections::HashMap<
        (usize, usize),
        Arc<trueup_core::mapping::UsageMapping>,
    > = Default::default();
    for i in 0..ROWS {
        let mut usage = base.clone();
        // Every row is its own device: ids differ, but no rule reads them.
        usage.attributes = Attributes::new([
            (Arc::from("device-id"), Arc::from(i.to_string())),
            (Arc::from("os"), Arc::clone(&oses[i % 3])),
            (Arc::from("status"), Arc::clone(&statuses[(i / 3) % 2])),
        ]);
        let mapping = m.map_usage(&usage, Some(&c)).unwrap();
        let key = (i % 3, (i / 3) % 2);
        match first_of_key.get(&key) {
            Some(first) => assert!(
                Arc::ptr_eq(first, &mapping),
                "the same key shares one decision"
            ),
            None => {
                first_of_key.insert(key, mapping);
            }
        }
    }
    let stats = m.stats();
    assert_eq!(stats.map_calls, ROWS as u64);
    // 3 OSes × 2 statuses = 6 keys; the closure only sees approved rows,
    // and reads only `os`: 3 calls for 100,000 rows.
    assert_eq!(stats.decisions, 6);
    assert_eq!(stats.closure_calls, 3);
    assert_eq!(stats.memo_hits, ROWS as u64 - 6);
    assert_eq!(first_of_key[&(1, 0)].targets[0].product.as_str(), "RMM-SRV");
    assert_eq!(first_of_key[&(0, 0)].targets[0].product.as_str(), "RMM-WS");
    assert!(first_of_key[&(0, 1)].targets.is_empty());

    // The counter counts: a closure that reads a per-device attribute runs
    // once per device.
    let per_device = mapper(
        r#"map_vendor("ninjaone").when(["device-id"], |row| row.attrs["device-id"] != "0").to("X");"#,
    );
    for i in 0..500 {
        let mut usage = base.clone();
        usage.attributes = Attributes::new([(Arc::from("device-id"), Arc::from(i.to_string()))]);
        per_device.map_usage(&usage, None).unwrap();
        per_device.map_usage(&usage, None).unwrap();
    }
    let stats = per_device.stats();
    assert_eq!(
        (stats.map_calls, stats.decisions, stats.closure_calls),
        (1000, 500, 500)
    );
}

#[test]
fn equal_text_in_different_allocations_maps_alike() {
    let m = mapper(r#"map_sku("v", "S").when_attr("k", "a").to("X"); map_sku("v", "S").to("Y");"#);
    // Fresh strings for every row: no pointer is shared.
    for _ in 0..3 {
        assert_eq!(
            products(&m, &row("v", "acct", "S", &[("k", "a")]), None),
            ["X×1"]
        );
        assert_eq!(
            products(&m, &row("v", "acct", "S", &[("k", "b")]), None),
            ["Y×1"]
        );
    }
    let stats = m.stats();
    assert_eq!((stats.plans, stats.decisions), (1, 2));
}

#[test]
fn the_first_matching_rule_decides_and_the_trace_says_why_others_did_not() {
    let source = "ignore_vendor(\"ninjaone\")\n    .unless_attr(\"approval-status\", \"APPROVED\")\n    .named(\"pending\")\n    .because(\"not approved\");\nmap_vendor(\"ninjaone\").when_attr(\"device-role\", \"server\").to(\"RMM-SRV\").named(\"servers\");\nmap_vendor(\"ninjaone\").when_attr(\"device-role\", \"workstation\").to(\"RMM-WS\").named(\"workstations\");\nmap_sku(\"microsoft-365\", \"SPB\").to(\"M365-BP\");\n";
    let m = mapper(source);
    let ws = m
        .map_usage(
            &row(
                "ninjaone",
                "o",
                "MAC",
                &[
                    ("approval-status", "APPROVED"),
                    ("device-role", "workstation"),
                ],
            ),
            None,
        )
        .unwrap();
    let steps: Vec<(&str, u32, bool, &str)> = ws
        .trace
        .steps
        .iter()
        .map(|s| {
            (
                s.rule.as_ref(),
                s.position.as_ref().unwrap().line,
                s.matched,
                s.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("pending", 1, false, "approval-status is APPROVED"),
            (
                "servers",
                5,
                false,
                "device-role is workstation, not server"
            ),
            (
                "workstations",
                6,
                true,
                "→ RMM-WS ×1 (device-role is workstation)"
            ),
        ]
    );
    let pending = m
        .map_usage(
            &row(
                "ninjaone",
                "o",
                "MAC",
                &[
                    ("approval-status", "PENDING"),
                    ("device-role", "workstation"),
                ],
            ),
            None,
        )
        .unwrap();
    assert!(pending.targets.is_empty());
    assert_eq!(
        pending.trace.steps[0].outcome,
        "not billed: not approved (approval-status is PENDING, not APPROVED)"
    );
    assert!(pending.trace.steps[0].matched);

    // Why nothing decided: no rule for the vendor, none for the SKU, or
    // none whose conditions hold.
    let outcome = |usage: &UsageObservation| {
        let mapping = m.map_usage(usage, None).unwrap();
        assert!(mapping.targets.is_empty());
        mapping.trace.steps.last().unwrap().outcome.clone()
    };
    assert_eq!(
        outcome(&row("huntress", "h", "agent", &[])),
        "no rule mentions vendor huntress"
    );
    assert_eq!(
        outcome(&row("microsoft-365", "t", "FLOW_FREE", &[])),
        "no rule for microsoft-365 applies to SKU FLOW_FREE (FLOW_FREE name)"
    );
    assert_eq!(
        outcome(&row(
            "ninjaone",
            "o",
            "ANDROID",
            &[("approval-status", "APPROVED"), ("device-role", "mobile")]
        )),
        "no rule maps ninjaone SKU ANDROID (ANDROID name)"
    );
}

#[test]
fn matching_by_sku_list_pattern_name_term_and_company() {
    let source = r#"
map_sku("v", ["A", "B"]).for_company("ACME").to("ACME-AB");
map_sku("v", ["A", "B"]).to("AB");
map_vendor("v").sku_like("NMS_*").to("NET");
map_vendor("v").sku_named("*backup*").to("BACKUP");
map_vendor("v").when_term("Annual").to("ANNUAL");
map_vendor("v").except_company(["C9"]).has_attr("tag").to("TAGGED");
"#;
    let m = mapper(source);
    let mut acme = company("C1", "Acme Inc");
    acme.identifier = Some("ACME".into());
    let other = company("C9", "Other");
    let named = |sku: &str, name: &str| {
        let mut r = row("v", "a", sku, &[]);
        r.sku_name = Arc::from(name);
        r
    };
    let mut annual = row("v", "a", "Z", &[]);
    annual.billing_term = Some(Arc::from("Annual"));
    // (row, company, products)
    let table: Vec<(UsageObservation, Option<&Company>, Vec<&str>)> = vec![
        (row("v", "a", "A", &[]), Some(&acme), vec!["ACME-AB×1"]),
        (row("v", "a", "B", &[]), Some(&other), vec!["AB×1"]),
        (row("v", "a", "B", &[]), None, vec!["AB×1"]),
        (row("v", "a", "NMS_SWITCH", &[]), None, vec!["NET×1"]),
        (named("X1", "Cloud BACKUP plan"), None, vec!["BACKUP×1"]),
        (named("X2", "Cloud archive"), None, vec![]),
        (annual, None, vec!["ANNUAL×1"]),
        (
            row("v", "a", "Q", &[("tag", "")]),
            Some(&acme),
            vec!["TAGGED×1"],
        ),
        (row("v", "a", "Q", &[("tag", "")]), Some(&other), vec![]),
    ];
    for (usage, company, expected) in table {
        assert_eq!(
            products(&m, &usage, company),
            expected,
            "{} {:?}",
            usage.sku_id,
            company.map(|c| &c.id)
        );
    }
}

#[test]
fn dependent_lines_follow_mapped_rows_only() {
    let source = r#"
ignore_sku("m", "SPB").when_attr("status", "Suspended");
map_sku("m", "SPB").to("BP");
also_sku("m", "SPB").to("BACKUP").named("backup seat");
also_sku("m", "SPB").for_company("C2").to("ARCHIVE", 2).named("archive for C2");
also_sku("m", "E3").to("NEVER");
"#;
    let m = mapper(source);
    let (c1, c2) = (company("C1", "One"), company("C2", "Two"));
    assert_eq!(
        products(&m, &row("m", "t", "SPB", &[]), Some(&c1)),
        ["BP×1", "BACKUP×1"]
    );
    assert_eq!(
        products(&m, &row("m", "t", "SPB", &[]), Some(&c2)),
        ["BP×1", "BACKUP×1", "ARCHIVE×2"]
    );
    // Ignored or unmapped usage gets no dependent line.
    assert!(
        products(
            &m,
            &row("m", "t", "SPB", &[("status", "Suspended")]),
            Some(&c1)
        )
        .is_empty()
    );
    assert!(products(&m, &row("m", "t", "E3", &[]), Some(&c1)).is_empty());
    let trace = m.map_usage(&row("m", "t", "SPB", &[]), Some(&c1)).unwrap();
    let last = trace.trace.steps.last().unwrap();
    assert_eq!(
        (last.rule.as_ref(), last.matched),
        ("archive for C2", false)
    );
    assert_eq!(last.outcome, "company is C1, not C2");
}

#[test]
fn choosers_return_products_maps_arrays_or_nothing() {
    let source = r#"
map_vendor("v")
    .choose(["kind"], |row| switch row.attrs.kind {
        "one" => "P1",
        "weighted" => #{ product: "P2", multiplier: 0.25 },
        "bundle" => ["P1", #{ product: "P3", multiplier: 3 }],
        "none" => [],
        "number" => 42,
        _ => ()
    })
    .named("chooser");
map_vendor("v").to("FALLBACK");
"#;
    let m = mapper(source);
    let kind = |k: &str| row("v", "a", "S", &[("kind", k)]);
    assert_eq!(products(&m, &kind("one"), None), ["P1×1"]);
    assert_eq!(products(&m, &kind("weighted"), None), ["P2×0.25"]);
    assert_eq!(products(&m, &kind("bundle"), None), ["P1×1", "P3×3"]);
    let none = m.map_usage(&kind("none"), None).unwrap();
    assert!(
        none.targets.is_empty() && none.trace.steps[0].matched,
        "[] means not billed"
    );
    assert_eq!(
        products(&m, &kind("other"), None),
        ["FALLBACK×1"],
        "() lets later rules decide"
    );
    let failure = m.map_usage(&kind("number"), None).unwrap_err();
    assert!(
        failure.message.contains("choose(...) returned i64"),
        "{}",
        failure.message
    );
    assert_eq!(failure.position.unwrap().line, 3);

    let m = mapper("map_vendor(\"v\").when(|row| 1).to(\"X\");");
    let failure = m.map_usage(&row("v", "a", "S", &[]), None).unwrap_err();
    assert!(
        failure.message.contains("must return true or false"),
        "{}",
        failure.message
    );
}

#[test]
fn row_dependence_follows_what_the_rules_read() {
    // (rules, dependence)
    let table = [
        (r#"map_sku("v", "S").to("X");"#, RowDependence::SkuOnly),
        (
            r#"map_sku("v", "S").for_company("C1").to("X");"#,
            RowDependence::SkuOnly,
        ),
        (
            r#"map_sku("v", "S").when_company(|c| c.active).to("X");"#,
            RowDependence::SkuOnly,
        ),
        (
            r#"map_sku("v", "S").when_attr("k", "v").to("X");"#,
            RowDependence::WholeRow,
        ),
        (
            r#"map_vendor("v").sku_named("*x*").to("X");"#,
            RowDependence::WholeRow,
        ),
        (
            r#"map_vendor("v").when_term("Annual").to("X");"#,
            RowDependence::WholeRow,
        ),
        (
            r#"map_vendor("v").choose(|row| "X");"#,
            RowDependence::WholeRow,
        ),
    ];
    for (source, dependence) in table {
        assert_eq!(mapper(source).row_dependence(), dependence, "{source}");
    }
}

fn world_input<'a>(
    companies: &'a [Company],
    contracts: &'a [Contract],
    lines: &'a [ServiceLine],
    usage: &'a [UsageObservation],
    mappings: &'a [AccountMapping],
    psa: &'a PsaProfile,
    mapper: &'a RulesMapper,
) -> ReconcileInput<'a> {
    ReconcileInput {
        as_of: as_of(),
        psa,
        companies,
        contracts,
        lines,
        catalog: &[],
        accounts: &[],
        usage,
        mappings,
        suggestions: &[],
        mapper,
    }
}

fn mapped(vendor: &str, account: &str, company: &str) -> AccountMapping {
    AccountMapping {
        vendor: vendor.into(),
        account: account.into(),
        status: AccountMappingStatus::Mapped(company.into()),
        method: MappingMethod::Manual { by: "test".into() },
        reason: "test".into(),
    }
}

fn line(id: &str, contract: &str, product: &str, quantity: Decimal) -> ServiceLine {
    ServiceLine {
        id: id.into(),
        contract_id: contract.into(),
        product_id: "1".into(),
        product_identifier: product.into(),
        description: product.into(),
        quantity,
        unit_price: dec!(10),
        unit_cost: dec!(5),
        effective_date: NaiveDate::from_ymd_opt(2024, 1, 1),
        cancelled_date: None,
        billable: true,
    }
}

#[test]
fn a_broken_rule_marks_only_the_cards_it_affects() {
    // The closure throws for Linux servers (line 4) and loops for BSD
    // (line 5); Windows servers and the other company are unaffected.
    let source = "map_vendor(\"ninjaone\")\n    .when([\"os\"], |row| {\n        let os = row.attrs.os;\n        if os == \"Linux\" { throw \"cannot classify Linux\"; }\n        if os == \"BSD\" { loop {} }\n        true\n    })\n    .to(\"RMM-SRV\")\n    .named(\"servers\");\n";
    let m = mapper(source);
    let companies = [company("C1", "One"), company("C2", "Two")];
    let contracts = [
        contract("K1", "C1", "Managed"),
        contract("K2", "C2", "Managed"),
    ];
    let lines = [
        line("L1", "K1", "RMM-SRV", dec!(5)),
        line("L2", "K2", "RMM-SRV", dec!(2)),
    ];
    let mappings = [
        mapped("ninjaone", "org-1", "C1"),
        mapped("ninjaone", "org-2", "C2"),
    ];
    let mut usage = Vec::new();
    for (os, sku, n) in [
        ("Windows", "WINDOWS_SERVER", 3),
        ("Linux", "LINUX_SERVER", 2),
        ("BSD", "BSD_SERVER", 1),
    ] {
        for i in 0..n {
            usage.push(row(
                "ninjaone",
                "org-1",
                sku,
                &[("os", os), ("id", &i.to_string())],
            ));
        }
    }
    for i in 0..4 {
        usage.push(row(
            "ninjaone",
            "org-2",
            "WINDOWS_SERVER",
            &[("os", "Windows"), ("id", &i.to_string())],
        ));
    }
    let psa = PsaProfile::connectwise();
    let out = reconcile(&world_input(
        &companies, &contracts, &lines, &usage, &mappings, &psa, &m,
    ));
    assert_eq!(
        out.stats.rows_rule_error, 3,
        "two Linux rows and one BSD row"
    );
    assert_eq!(out.stats.rows_mapped, 7);
    let errors: Vec<_> = out
        .cards
        .iter()
        .filter(|c| c.category == CardCategory::RuleError)
        .collect();
    assert_eq!(errors.len(), 2);
    let linux = errors
        .iter()
        .find(|c| c.source.as_ref().unwrap().sku.as_str() == "LINUX_SERVER")
        .unwrap();
    let failure = linux.error.as_ref().unwrap();
    assert!(
        failure.message.ends_with("failed: cannot classify Linux"),
        "{}",
        failure.message
    );
    assert_eq!(failure.position.as_ref().unwrap().line, 4);
    assert_eq!(linux.vendor_quantity.unwrap().billable, dec!(2));
    let bsd = errors
        .iter()
        .find(|c| c.source.as_ref().unwrap().sku.as_str() == "BSD_SERVER")
        .unwrap();
    assert!(
        bsd.error.as_ref().unwrap().message.contains("operations"),
        "{:?}",
        bsd.error
    );
    // The rest is produced: each company's servers are counted without the
    // failing rows.
    let billable = |company: &str| {
        let card = out
            .cards
            .iter()
            .find(|c| c.company.as_ref().is_some_and(|x| x.as_str() == company) && c.line.is_some())
            .unwrap();
        (card.category, card.vendor_quantity.unwrap().billable)
    };
    assert_eq!(billable("C1"), (CardCategory::Reconcile, dec!(3)));
    assert_eq!(billable("C2"), (CardCategory::Reconcile, dec!(4)));
    assert_eq!(out.mapper_version.as_ref(), m.rules().label());
}

#[test]
fn a_broken_policy_marks_only_that_service() {
    let source = "map_sku(\"h\", \"agent\").to(\"EDR\");\nservice(\"EDR\")\n    .when_contract(|k| if k.type == \"Broken\" { throw \"no such type\" } else { false })\n    .tolerance_units(5);\n";
    let m = mapper(source);
    let companies = [company("C1", "One"), company("C2", "Two")];
    let contracts = [
        contract("K1", "C1", "Managed"),
        contract("K2", "C2", "Broken"),
    ];
    let lines = [
        line("L1", "K1", "EDR", dec!(5)),
        line("L2", "K2", "EDR", dec!(5)),
    ];
    let mappings = [mapped("h", "a1", "C1"), mapped("h", "a2", "C2")];
    let mut usage = vec![row("h", "a1", "agent", &[]), row("h", "a2", "agent", &[])];
    usage[0].quantity = dec!(7);
    usage[1].quantity = dec!(7);
    let psa = PsaProfile::connectwise();
    let out = reconcile(&world_input(
        &companies, &contracts, &lines, &usage, &mappings, &psa, &m,
    ));
    let card = |c: &str| {
        out.cards
            .iter()
            .find(|x| x.company.as_ref().is_some_and(|y| y.as_str() == c))
            .unwrap()
    };
    assert_eq!(card("C1").category, CardCategory::Reconcile);
    assert_eq!(card("C1").target_quantity, Some(dec!(7)));
    assert_eq!(card("C2").category, CardCategory::RuleError);
    let failure = card("C2").error.as_ref().unwrap();
    assert!(
        failure.message.contains("no such type"),
        "{}",
        failure.message
    );
    assert_eq!(failure.position.as_ref().unwrap().line, 3);
}

#[test]
fn service_policies_layer_in_order() {
    let source = r#"
all_services().effective("first_of_next_month").named("default");
service(["A", "B"]).tolerance_units(1).minimum(5).named("A and B");
services_like("B*").measure("peak").round("up").named("B family");
service("A").for_company("C2").no_minimum().auto_approve_increases_up_to(3).named("C2 override");
service("A").for_contract_type("Arrears").effective("arrears").named("arrears type");
service("A").when_cycle("quarterly").effective("next_period_start").named("quarterly");
service("A").for_contract("K9").effective_on_day(15).prorate(false).named("K9");
service("A").for_contract_named("*Onboard*").effective_on("2025-04-10").named("onboarding");
service("A").when_billed_in("arrears").never_auto_approve().maximum(100).tolerance_percent(10).named("arrears timing");
"#;
    let m = mapper(source);
    let psa = PsaProfile::connectwise();
    let (c1, c2) = (company("C1", "One"), company("C2", "Two"));
    let policy = |product: &str, company: &Company, contract: &Contract| {
        let product = ProductId::from(product);
        let ctx = PolicyContext {
            company,
            contract,
            product: &product,
            line: None,
            psa: &psa,
            as_of: as_of(),
        };
        m.service_policy(&ctx).unwrap()
    };
    let k1 = contract("K1", "C1", "Managed");
    let a = policy("A", &c1, &k1);
    assert_eq!(
        (a.tolerance.units, a.min_quantity, a.measure),
        (dec!(1), Some(dec!(5)), UsageMeasure::MonthEndSnapshot)
    );
    let b = policy("B", &c1, &k1);
    assert_eq!(
        (b.measure, b.rounding, b.min_quantity),
        (UsageMeasure::Peak, Rounding::Up, Some(dec!(5)))
    );
    let other = policy("Z", &c1, &k1);
    assert_eq!(
        (other.min_quantity, other.tolerance.units),
        (None, Decimal::ZERO)
    );
    let a2 = policy("A", &c2, &contract("K2", "C2", "Managed"));
    assert_eq!(
        (a2.min_quantity, a2.auto_approve.max_increase),
        (None, Some(dec!(3)))
    );
    assert_eq!(
        policy("A", &c1, &contract("K3", "C1", "Arrears")).effective_date,
        EffectiveDatePolicy::Arrears
    );
    let mut quarterly = contract("K4", "C1", "Managed");
    quarterly.billing_cycle = BillingCycle::Quarterly;
    assert_eq!(
        policy("A", &c1, &quarterly).effective_date,
        EffectiveDatePolicy::NextPeriodStart
    );
    let k9 = policy("A", &c1, &contract("K9", "C1", "Managed"));
    assert_eq!(
        (k9.effective_date, k9.prorate),
        (EffectiveDatePolicy::AnchorDay { day: 15 }, Some(false))
    );
    let mut onboarding = contract("K5", "C1", "Managed");
    onboarding.name = "Onboarding Q2".into();
    assert_eq!(
        policy("A", &c1, &onboarding).effective_date,
        EffectiveDatePolicy::Explicit {
            date: NaiveDate::from_ymd_opt(2025, 4, 10).unwrap()
        }
    );
    let mut arrears = contract("K6", "C2", "Managed");
    arrears.timing = BillingTiming::Arrears;
    let late = policy("A", &c2, &arrears);
    assert_eq!(
        (
            late.auto_approve.max_increase,
            late.max_quantity,
            late.tolerance.percent
        ),
        (None, Some(dec!(100)), dec!(10))
    );
    // PSA defaults come first: Autotask rounds to whole units.
    let autotask = PsaProfile::autotask();
    let product = ProductId::from("Z");
    let ctx = PolicyContext {
        company: &c1,
        contract: &k1,
        product: &product,
        line: None,
        psa: &autotask,
        as_of: as_of(),
    };
    assert_eq!(m.service_policy(&ctx).unwrap().rounding, Rounding::Nearest);
    // The explanation lists every declaration for the product, applied or not.
    let product = ProductId::from("A");
    let ctx = PolicyContext {
        company: &c2,
        contract: &k1,
        product: &product,
        line: None,
        psa: &psa,
        as_of: as_of(),
    };
    let (_, steps) = m.explain_policy(&ctx).unwrap();
    let summary: Vec<(&str, bool)> = steps.iter().map(|s| (s.rule.as_ref(), s.matched)).collect();
    assert_eq!(
        summary,
        [
            ("psa default", true),
            ("default", true),
            ("A and B", true),
            ("C2 override", true),
            ("arrears type", false),
            ("quarterly", false),
            ("K9", false),
            ("onboarding", false),
            ("arrears timing", false),
        ]
    );
    assert_eq!(
        steps[3].outcome,
        "no minimum, auto-approve increases up to 3"
    );
    assert_eq!(steps[4].outcome, "contract type is Managed, not Arrears");
}

#[test]
fn negated_conditions_and_vendor_wide_dependent_lines() {
    let source = r#"
map_sku("v", "A").unless_attr_like("name", "test-*").lacks_attr("retired").unless_term(["Trial"]).to("A");
also_vendor("v").when_attr_at_least("seats", 10).to("VOLUME-DISCOUNT", 0.1).named("volume");
"#;
    let m = mapper(source);
    let with = |attrs: &[(&str, &str)], term: Option<&str>| {
        let mut r = row("v", "a", "A", attrs);
        r.billing_term = term.map(Arc::from);
        products(&m, &r, None)
    };
    // (attributes, term, products)
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, Vec<&'a str>);
    let table: Vec<Case<'_>> = vec![
        (&[], None, vec!["A×1"]),
        (&[("name", "TEST-box")], None, vec![]),
        (&[("name", "prod-box")], Some("Monthly"), vec!["A×1"]),
        (&[("retired", "yes")], None, vec![]),
        (&[], Some("Trial"), vec![]),
        (&[("seats", "12")], None, vec!["A×1", "VOLUME-DISCOUNT×0.1"]),
        (&[("seats", "9")], None, vec!["A×1"]),
        (&[("seats", "many")], None, vec!["A×1"]),
    ];
    for (attrs, term, expected) in table {
        assert_eq!(with(attrs, term), expected, "{attrs:?} {term:?}");
    }
}
