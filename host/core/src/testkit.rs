//! A small hand-made MSP for tests: every card category, with numbers
//! simple enough to check by hand (see the comments at each record).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use crate::effective::PsaProfile;
use crate::mapping::{
    MappingFailure, PolicyContext, ProductPolicy, ServicePolicy, SkuMapEntry, SkuTableMapper,
    SourcePosition, UsageMapper, UsageMapping,
};
use crate::model::*;
// The one upward edge, in test builds only: every module's tests share
// these fixtures, and `world()` is a whole snapshot.
use crate::snapshot::Snapshot;

pub fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

pub fn at(y: i32, m: u32, day: u32) -> DateTime<Utc> {
    d(y, m, day).and_hms_opt(9, 0, 0).unwrap().and_utc()
}

/// The as-of date of the world: the Friday before month end.
pub fn as_of() -> NaiveDate {
    d(2025, 3, 28)
}

pub fn company(id: &str, name: &str, status: CompanyStatus) -> Company {
    Company {
        id: id.into(),
        name: name.into(),
        identifier: None,
        domains: vec![],
        status,
        account_links: vec![],
    }
}

pub fn contract(id: &str, company: &str, cycle: BillingCycle, prorate: bool) -> Contract {
    Contract {
        id: id.into(),
        company_id: company.into(),
        name: format!("Contract {id}"),
        contract_type: "Managed".into(),
        status: ContractStatus::Active,
        billing_cycle: cycle,
        start_date: Some(d(2024, 1, 1)),
        end_date: None,
        timing: BillingTiming::Advance,
        prorate,
        posted_through: None,
        cycle_anchor: None,
    }
}

pub fn line(
    id: &str,
    contract: &str,
    product: &str,
    quantity: Decimal,
    price: Decimal,
    cost: Decimal,
) -> ServiceLine {
    ServiceLine {
        id: id.into(),
        contract_id: contract.into(),
        product_id: format!("p-{product}"),
        product_identifier: product.into(),
        description: format!("{product} service"),
        quantity,
        unit_price: price,
        unit_cost: cost,
        effective_date: Some(d(2024, 1, 1)),
        cancelled_date: None,
        billable: true,
    }
}

pub fn usage(
    vendor: &str,
    account: &str,
    sku: &str,
    quantity: Decimal,
    observed_at: DateTime<Utc>,
) -> UsageObservation {
    UsageObservation {
        vendor: vendor.into(),
        account: account.into(),
        sku_id: sku.into(),
        sku_name: Arc::from(format!("{sku} name")),
        quantity,
        unit: Arc::from("unit"),
        unit_cost: None,
        billing_term: None,
        commitment_end: None,
        attributes: Attributes::default(),
        observed_at,
    }
}

pub fn mapped(vendor: &str, account: &str, company: &str) -> AccountMapping {
    AccountMapping {
        vendor: vendor.into(),
        account: account.into(),
        status: AccountMappingStatus::Mapped(company.into()),
        method: MappingMethod::Manual { by: "test".into() },
        reason: "test".into(),
    }
}

pub fn sku(vendor: &str, sku: &str, product: &str) -> SkuMapEntry {
    SkuMapEntry {
        vendor: vendor.into(),
        sku: sku.into(),
        product: product.into(),
        multiplier: Decimal::ONE,
    }
}

/// The world:
///
/// - Contoso (A): contract KA1 (monthly, calendar, prorated) with
///   - LA1 M365-BP: bills 10 × 22.00; M365 reports 11 on 7 Mar and 12 on
///     21 Mar → snapshot 12 → Reconcile +2, +44.00 per month;
///   - LA2 RMM-WS: bills 5 × 35.00; NinjaOne reports 5 devices on 27 Mar →
///     NoChange;
///   - LA3 MSP-FLAT: bills 1 × 1500.00; no vendor → NoVendorData;
///   - and uses EXO-ARCHIVE (3 on 21 Mar, catalogue 3.00/2.00) with no
///     line → NewRevenue on KA1 (it carries M365 services) +9.00;
///   - its tenant also reports FLOW_FREE (100), not in the SKU table →
///     Unmapped (company known);
///   - and BROKEN (1), which the test mapper fails on → RuleError.
///   - KA2 (annual) has no lines; A row observed 30 Mar (after as-of) is
///     ignored and noted.
/// - Fabrikam (B): contract KB1 (monthly, not prorated) with LB1 EDR-WS:
///   bills 8 × 6.00, Huntress reports 6 → Reconcile −2, −12.00.
/// - An unmapped tenant `tenant-x` reports SPB 4 → Unmapped, no company.
/// - An excluded tenant `tenant-internal` reports SPB 50 → excluded.
pub fn world() -> Snapshot {
    let mut s = Snapshot::new(PsaProfile::connectwise());
    s.companies = vec![
        company("A", "Contoso Ltd", CompanyStatus::Active),
        company("B", "Fabrikam Inc", CompanyStatus::Active),
    ];
    s.contracts = vec![
        contract("KA1", "A", BillingCycle::Monthly, true),
        contract("KA2", "A", BillingCycle::Annual, true),
        contract("KB1", "B", BillingCycle::Monthly, false),
    ];
    s.service_lines = vec![
        line("LA1", "KA1", "M365-BP", dec!(10), dec!(22.00), dec!(19.80)),
        line("LA2", "KA1", "RMM-WS", dec!(5), dec!(35.00), dec!(3.00)),
        line("LA3", "KA1", "MSP-FLAT", dec!(1), dec!(1500.00), dec!(0)),
        line("LB1", "KB1", "EDR-WS", dec!(8), dec!(6.00), dec!(2.50)),
    ];
    s.catalog = vec![CatalogItem {
        product_identifier: "EXO-ARCHIVE".into(),
        description: "Archiving".into(),
        unit_price: dec!(3.00),
        unit_cost: dec!(2.00),
    }];
    s.accounts = vec![
        VendorAccount {
            vendor: "m365".into(),
            id: "tenant-a".into(),
            name: "Contoso".into(),
            domains: vec![],
        },
        VendorAccount {
            vendor: "m365".into(),
            id: "tenant-x".into(),
            name: "Contoso Pharmacy".into(),
            domains: vec![],
        },
    ];
    s.account_mappings = vec![
        mapped("m365", "tenant-a", "A"),
        mapped("ninja", "org-a", "A"),
        mapped("huntress", "org-b", "B"),
        AccountMapping {
            vendor: "m365".into(),
            account: "tenant-internal".into(),
            status: AccountMappingStatus::Excluded,
            method: MappingMethod::Manual { by: "test".into() },
            reason: "our own tenant".into(),
        },
    ];
    s.sku_map = vec![
        sku("m365", "SPB", "M365-BP"),
        sku("m365", "ARCHIVE", "EXO-ARCHIVE"),
        sku("m365", "BROKEN", "NEVER"),
        sku("ninja", "WS", "RMM-WS"),
        sku("huntress", "AGENT", "EDR-WS"),
    ];
    let mut u = vec![
        usage("m365", "tenant-a", "SPB", dec!(11), at(2025, 3, 7)), // 0
        usage("m365", "tenant-a", "SPB", dec!(12), at(2025, 3, 21)), // 1
        usage("m365", "tenant-a", "ARCHIVE", dec!(3), at(2025, 3, 21)), // 2
        usage("m365", "tenant-a", "FLOW_FREE", dec!(100), at(2025, 3, 21)), // 3
        usage("m365", "tenant-a", "BROKEN", dec!(1), at(2025, 3, 21)), // 4
        usage("m365", "tenant-a", "SPB", dec!(99), at(2025, 3, 30)), // 5: after as-of
        usage("m365", "tenant-x", "SPB", dec!(4), at(2025, 3, 21)), // 6
        usage("m365", "tenant-internal", "SPB", dec!(50), at(2025, 3, 21)), // 7
    ];
    for device in 0..5 {
        let mut row = usage("ninja", "org-a", "WS", dec!(1), at(2025, 3, 27)); // 8..=12
        row.attributes =
            Attributes::new([(Arc::from("device_id"), Arc::from(format!("dev-{device}")))]);
        u.push(row);
    }
    for _ in 0..6 {
        u.push(usage(
            "huntress",
            "org-b",
            "AGENT",
            dec!(1),
            at(2025, 3, 28),
        )); // 13..=18
    }
    s.usage = u;
    s
}

/// The SKU table of [`world`], failing on SKU `BROKEN` the way a broken
/// rule would.
pub struct FailingMapper {
    pub inner: SkuTableMapper,
}

impl FailingMapper {
    pub fn new(snapshot: &Snapshot) -> Self {
        Self {
            inner: snapshot.sku_mapper(),
        }
    }

    pub fn with_policies(snapshot: &Snapshot, policies: Vec<ProductPolicy>) -> Self {
        Self {
            inner: SkuTableMapper::new("test", snapshot.sku_map.iter().cloned(), policies),
        }
    }
}

pub fn broken_rule() -> MappingFailure {
    MappingFailure {
        message: "function `count_seats` not found".into(),
        position: Some(SourcePosition {
            file: Arc::from("rules/m365.rhai"),
            line: 4,
            column: Some(9),
        }),
    }
}

impl UsageMapper for FailingMapper {
    fn version(&self) -> &str {
        "test-rules-1"
    }

    fn map_usage(
        &self,
        usage: &UsageObservation,
        company: Option<&Company>,
    ) -> Result<Arc<UsageMapping>, MappingFailure> {
        if usage.sku_id.as_str() == "BROKEN" {
            return Err(broken_rule());
        }
        self.inner.map_usage(usage, company)
    }

    fn service_policy(&self, ctx: &PolicyContext<'_>) -> Result<ServicePolicy, MappingFailure> {
        if ctx.product.as_str() == "POLICY-BROKEN" {
            return Err(MappingFailure {
                message: "policy rule divided by zero".into(),
                position: None,
            });
        }
        self.inner.service_policy(ctx)
    }
}
