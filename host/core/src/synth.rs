//! A deterministic synthetic MSP for benchmarks and demos: companies with
//! contracts and recurring lines, vendor accounts, and usage rows shaped
//! like real connectors' (per-device rows with attributes from an RMM and
//! an EDR, per-SKU licence rows observed weekly from Microsoft 365 and
//! Pax8, per-server backup rows).
//!
//! The same [`SynthConfig`] always yields the same [`Snapshot`]. Repeated
//! strings (vendor ids, SKUs, units, attribute keys, account ids) are one
//! shared `Arc<str>` each, as a loader that interns would produce.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveTime};
use rust_decimal::Decimal;

use crate::cycles::CycleAnchor;
use crate::effective::PsaProfile;
use crate::mapping::{ProductPolicy, ServicePolicy, SkuMapEntry, Tolerance, UsageMeasure};
use crate::model::{
    AccountMapping, AccountMappingStatus, Attributes, BillingCycle, BillingTiming, CatalogItem,
    Company, CompanyStatus, Contract, ContractStatus, MappingMethod, ServiceLine, UsageObservation,
    UsageSource, VendorAccount, VendorIntegration,
};
use crate::snapshot::Snapshot;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthConfig {
    /// Seed; the same seed gives the same data.
    pub seed: u64,
    /// Number of companies.
    pub companies: usize,
    /// Usage rows in total (exact).
    pub usage_rows: usize,
    /// The month-end the data is taken at; usage falls in its month.
    pub as_of: NaiveDate,
}

impl SynthConfig {
    /// The benchmark size: 10,000 companies × 20 services, 2,000,000 usage
    /// rows, as of 31 March 2025.
    pub fn benchmark() -> Self {
        Self {
            seed: 0x7275_6575_7000_0001,
            companies: 10_000,
            usage_rows: 2_000_000,
            as_of: NaiveDate::from_ymd_opt(2025, 3, 31).unwrap_or(NaiveDate::MIN),
        }
    }
}

/// Services per company: one PSA line each.
pub const SERVICES_PER_COMPANY: usize = 20;

/// Fewest usage rows a company can be given (its licence rows plus one
/// device).
const MIN_ROWS_PER_COMPANY: usize = 64;

/// SplitMix64: small, fast, stable across releases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Interned strings for the generator.
struct Words {
    m365: Arc<str>,
    pax8: Arc<str>,
    ninja: Arc<str>,
    huntress: Arc<str>,
    backup: Arc<str>,
    licence: Arc<str>,
    device: Arc<str>,
    agent: Arc<str>,
    monthly: Arc<str>,
    annual: Arc<str>,
    k_device: Arc<str>,
    k_hostname: Arc<str>,
    k_os: Arc<str>,
    k_status: Arc<str>,
    v_approved: Arc<str>,
    oses: [Arc<str>; 4],
}

fn a(s: &str) -> Arc<str> {
    Arc::from(s)
}

/// (vendor index, SKU, name, products fed) of every SKU a vendor reports.
/// Vendor indices: 0 M365, 1 Pax8, 2 NinjaOne, 3 Huntress, 4 backup.
const SKUS: &[(usize, &str, &str, &[&str])] = &[
    (
        0,
        "SPB",
        "Microsoft 365 Business Premium",
        &["M365-BP", "SAAS-BACKUP"],
    ),
    (
        0,
        "O365_BUSINESS_ESSENTIALS",
        "Microsoft 365 Business Basic",
        &["M365-BS"],
    ),
    (0, "SPE_E3", "Microsoft 365 E3", &["M365-E3"]),
    (
        0,
        "EXCHANGESTANDARD",
        "Exchange Online (Plan 1)",
        &["EXO-P1"],
    ),
    (
        0,
        "O365_BUSINESS",
        "Microsoft 365 Apps for business",
        &["M365-APPS"],
    ),
    (0, "MCOEV", "Teams Phone Standard", &["TEAMS-PHONE"]),
    (
        0,
        "EXCHANGEARCHIVE_ADDON",
        "Exchange Online Archiving",
        &["EXO-ARCHIVE"],
    ),
    (0, "FLOW_FREE", "Power Automate Free", &[]),
    (1, "KEEPER-BUS", "Keeper Business", &["KEEPER"]),
    (1, "DROPBOX-STD", "Dropbox Business Standard", &["DROPBOX"]),
    (
        1,
        "ACRONIS-M365",
        "Acronis Cyber Protect M365",
        &["ACRONIS"],
    ),
    (2, "WINDOWS_WORKSTATION", "Windows workstation", &["RMM-WS"]),
    (2, "MAC", "macOS device", &["RMM-WS"]),
    (2, "WINDOWS_SERVER", "Windows server", &["RMM-SRV"]),
    (2, "LINUX_SERVER", "Linux server", &["RMM-SRV"]),
    (
        3,
        "workstation",
        "Huntress EDR workstation agent",
        &["EDR-WS"],
    ),
    (3, "server", "Huntress EDR server agent", &["EDR-SRV"]),
    (4, "server_agent", "Backup server agent", &["BACKUP-SRV"]),
];

/// (product, description, unit price, unit cost): the 20 billed services.
const PRODUCTS: [(&str, &str, i64, i64); SERVICES_PER_COMPANY] = [
    ("M365-BP", "Microsoft 365 Business Premium", 2200, 1980),
    ("SAAS-BACKUP", "Microsoft 365 backup", 400, 150),
    ("M365-BS", "Microsoft 365 Business Basic", 600, 540),
    ("M365-E3", "Microsoft 365 E3", 3600, 3240),
    ("EXO-P1", "Exchange Online Plan 1", 400, 360),
    ("M365-APPS", "Microsoft 365 Apps", 1100, 990),
    ("TEAMS-PHONE", "Teams Phone", 1000, 800),
    ("KEEPER", "Password manager", 450, 300),
    ("DROPBOX", "File sync", 1500, 1200),
    ("ACRONIS", "Cloud backup", 500, 250),
    ("RMM-WS", "Workstation management", 3500, 300),
    ("RMM-SRV", "Server management", 9500, 600),
    ("EDR-WS", "Endpoint detection, workstation", 600, 250),
    ("EDR-SRV", "Endpoint detection, server", 1200, 500),
    ("BACKUP-SRV", "Server backup", 7500, 2500),
    ("MSP-SUPPORT", "Managed support (flat)", 150_000, 0),
    ("HELPDESK", "Helpdesk block", 50_000, 0),
    ("VCIO", "vCIO service", 40_000, 0),
    ("NETWORK-MON", "Network monitoring", 20_000, 2000),
    ("ONSITE-BLOCK", "Onsite hours block", 30_000, 0),
];

/// Generates the synthetic MSP.
pub fn generate(config: &SynthConfig) -> Snapshot {
    let mut rng = Rng(config.seed);
    let w = Words {
        m365: a("microsoft-365"),
        pax8: a("pax8"),
        ninja: a("ninjaone"),
        huntress: a("huntress"),
        backup: a("datto-backup"),
        licence: a("licence"),
        device: a("device"),
        agent: a("agent"),
        monthly: a("Monthly"),
        annual: a("Annual"),
        k_device: a("device_id"),
        k_hostname: a("hostname"),
        k_os: a("os"),
        k_status: a("approval_status"),
        v_approved: a("APPROVED"),
        oses: [
            a("Windows 11 Pro"),
            a("Windows 10 Pro"),
            a("macOS 14"),
            a("Windows Server 2022"),
        ],
    };
    let vendor_ids = [
        w.m365.clone(),
        w.pax8.clone(),
        w.ninja.clone(),
        w.huntress.clone(),
        w.backup.clone(),
    ];
    let sku_ids: Vec<(Arc<str>, Arc<str>)> = SKUS
        .iter()
        .map(|(_, id, name, _)| (a(id), a(name)))
        .collect();

    let mut snap = Snapshot::new(PsaProfile::connectwise());
    snap.taken_at = config.as_of.and_hms_opt(23, 0, 0).map(|t| t.and_utc());
    snap.vendors = vec![
        vendor(
            &w.m365,
            "Microsoft 365",
            UsageSource::Plugin("microsoft".into()),
        ),
        vendor(&w.pax8, "Pax8", UsageSource::Plugin("pax8".into())),
        vendor(&w.ninja, "NinjaOne", UsageSource::Plugin("ninjaone".into())),
        vendor(
            &w.huntress,
            "Huntress",
            UsageSource::Plugin("huntress".into()),
        ),
        vendor(
            &w.backup,
            "Datto backup",
            UsageSource::Csv("datto-monthly".into()),
        ),
    ];
    for (vendor_index, sku, _, products) in SKUS {
        for product in *products {
            snap.sku_map.push(SkuMapEntry {
                vendor: vendor_ids[*vendor_index].clone().into(),
                sku: (*sku).into(),
                product: (*product).into(),
                multiplier: Decimal::ONE,
            });
        }
    }
    snap.service_policies = vec![
        ProductPolicy {
            product: "EDR-WS".into(),
            policy: ServicePolicy {
                tolerance: Tolerance {
                    units: Decimal::ONE,
                    percent: Decimal::ZERO,
                },
                ..ServicePolicy::default()
            },
        },
        ProductPolicy {
            product: "KEEPER".into(),
            policy: ServicePolicy {
                min_quantity: Some(Decimal::from(5)),
                ..ServicePolicy::default()
            },
        },
        ProductPolicy {
            product: "RMM-WS".into(),
            policy: ServicePolicy {
                measure: UsageMeasure::Peak,
                ..ServicePolicy::default()
            },
        },
    ];
    snap.catalog = PRODUCTS
        .iter()
        .map(|(id, desc, price, cost)| CatalogItem {
            product_identifier: (*id).into(),
            description: (*desc).into(),
            unit_price: Decimal::new(*price, 2),
            unit_cost: Decimal::new(*cost, 2),
        })
        .chain(std::iter::once(CatalogItem {
            product_identifier: "EXO-ARCHIVE".into(),
            description: "Exchange archiving".into(),
            unit_price: Decimal::new(300, 2),
            unit_cost: Decimal::new(200, 2),
        }))
        .collect();

    let budgets = row_budgets(&mut rng, config.companies, config.usage_rows);
    snap.companies.reserve(config.companies);
    snap.contracts.reserve(config.companies * 2);
    snap.service_lines
        .reserve(config.companies * SERVICES_PER_COMPANY);
    snap.accounts.reserve(config.companies * vendor_ids.len());
    snap.account_mappings
        .reserve(config.companies * vendor_ids.len());
    snap.usage.reserve_exact(config.usage_rows);

    let at = |day: u32| {
        let date = NaiveDate::from_ymd_opt(config.as_of.year(), config.as_of.month(), day)
            .unwrap_or(config.as_of);
        date.and_time(NaiveTime::from_hms_opt(6, 0, 0).unwrap_or(NaiveTime::MIN))
            .and_utc()
    };
    let weekly = [at(7), at(14), at(21), at(28)];

    for (ci, &budget) in budgets.iter().enumerate() {
        let company_id: Arc<str> = Arc::from(format!("C{ci:05}"));
        let name = format!(
            "{} {} {}",
            PREFIXES[ci % PREFIXES.len()],
            SUFFIXES[(ci / PREFIXES.len()) % SUFFIXES.len()],
            ci
        );
        snap.companies.push(Company {
            id: company_id.clone().into(),
            name: name.clone(),
            identifier: Some(format!("CUST{ci:05}")),
            domains: vec![format!("customer{ci}.example")],
            status: if rng.chance(1) {
                CompanyStatus::Inactive
            } else {
                CompanyStatus::Active
            },
            account_links: Vec::new(),
        });
        let anchor = if rng.chance(20) {
            Some(CycleAnchor::ContractStart)
        } else {
            None
        };
        let start = NaiveDate::from_ymd_opt(
            2022 + (ci % 3) as i32,
            1 + (ci % 12) as u32,
            1 + (ci % 28) as u32,
        );
        let main_id: Arc<str> = Arc::from(format!("K{ci:05}-MS"));
        snap.contracts.push(contract(
            &main_id,
            &company_id,
            "Managed Services",
            BillingCycle::Monthly,
            start,
            anchor,
        ));
        let licence_contract = if rng.chance(30) {
            let id: Arc<str> = Arc::from(format!("K{ci:05}-LIC"));
            let cycle = if rng.chance(10) {
                BillingCycle::Annual
            } else {
                BillingCycle::Monthly
            };
            snap.contracts
                .push(contract(&id, &company_id, "Licensing", cycle, start, None));
            id
        } else {
            main_id.clone()
        };

        // Accounts: one per vendor.
        let mut accounts: Vec<Arc<str>> = Vec::with_capacity(vendor_ids.len());
        for (vi, vendor_id) in vendor_ids.iter().enumerate() {
            let account: Arc<str> = Arc::from(format!(
                "{}-{ci:05}",
                ["tenant", "pax", "org", "hunt", "dbk"][vi]
            ));
            snap.accounts.push(VendorAccount {
                vendor: vendor_id.clone().into(),
                id: account.clone().into(),
                name: name.clone(),
                domains: vec![format!("customer{ci}.example")],
            });
            let roll = rng.range(0, 199);
            let status = match roll {
                0..=3 => AccountMappingStatus::Unmapped,
                4 => AccountMappingStatus::Excluded,
                _ => AccountMappingStatus::Mapped(company_id.clone().into()),
            };
            snap.account_mappings.push(AccountMapping {
                vendor: vendor_id.clone().into(),
                account: account.clone().into(),
                status,
                method: MappingMethod::Manual { by: "synth".into() },
                reason: "generated".into(),
            });
            accounts.push(account);
        }

        // Licences: six core M365 SKUs and three Pax8 SKUs, observed weekly;
        // some companies also use archiving (new revenue) or a free SKU
        // (unmapped).
        let mut truth = [0i64; SERVICES_PER_COMPANY];
        let mut licence_skus: Vec<usize> = vec![0, 1, 2, 3, 4, 5, 8, 9, 10];
        if rng.chance(15) {
            licence_skus.push(6);
        }
        if rng.chance(20) {
            licence_skus.push(7);
        }
        let mut rows_left = budget;
        for &s in &licence_skus {
            let (vi, _, _, products) = SKUS[s];
            let seats = rng.range(1, 60) as i64;
            for (week, &observed_at) in weekly.iter().enumerate() {
                // Seats drift during the month; the last week is the count.
                let q = if week + 1 == weekly.len() {
                    seats
                } else {
                    (seats - 1 + week as i64).max(0)
                };
                snap.usage.push(UsageObservation {
                    vendor: vendor_ids[vi].clone().into(),
                    account: accounts[vi].clone().into(),
                    sku_id: sku_ids[s].0.clone().into(),
                    sku_name: sku_ids[s].1.clone(),
                    quantity: Decimal::from(q),
                    unit: w.licence.clone(),
                    unit_cost: Some(Decimal::new(rng.range(100, 3000) as i64, 2)),
                    billing_term: Some(if rng.chance(70) {
                        w.monthly.clone()
                    } else {
                        w.annual.clone()
                    }),
                    commitment_end: None,
                    attributes: Attributes::default(),
                    observed_at,
                });
            }
            rows_left -= weekly.len();
            for product in products {
                if let Some(p) = PRODUCTS.iter().position(|(id, ..)| id == product) {
                    truth[p] += seats;
                }
            }
        }

        // Devices: each is two NinjaOne rows (mid-month and month-end) and
        // one Huntress row; servers add a backup row. Row counts are split
        // so the company uses its budget exactly.
        let servers_wanted = rng.range(1, 6) as usize;
        let per_device = 3usize;
        let devices = ((rows_left.saturating_sub(servers_wanted)) / per_device).max(1);
        let servers = servers_wanted.min(devices);
        let backup_rows = rows_left.saturating_sub(devices * per_device);
        for d in 0..devices {
            let is_server = d < servers;
            let is_mac = !is_server && d % 7 == 3;
            let sku = match (is_server, is_mac, d % 2) {
                (true, _, 0) => 13,
                (true, _, _) => 14,
                (false, true, _) => 12,
                (false, false, _) => 11,
            };
            let os = &w.oses[if is_server {
                3
            } else if is_mac {
                2
            } else {
                d % 2
            }];
            let device_id: Arc<str> = Arc::from(format!("{ci:05}-{d:04}"));
            let hostname: Arc<str> = Arc::from(format!(
                "C{ci:05}-{}{d:03}",
                if is_server { "SRV" } else { "WS" }
            ));
            for observed_at in [at(15), at(config.as_of.day())] {
                snap.usage.push(UsageObservation {
                    vendor: w.ninja.clone().into(),
                    account: accounts[2].clone().into(),
                    sku_id: sku_ids[sku].0.clone().into(),
                    sku_name: sku_ids[sku].1.clone(),
                    quantity: Decimal::ONE,
                    unit: w.device.clone(),
                    unit_cost: None,
                    billing_term: None,
                    commitment_end: None,
                    attributes: Attributes::new([
                        (w.k_device.clone(), device_id.clone()),
                        (w.k_hostname.clone(), hostname.clone()),
                        (w.k_os.clone(), os.clone()),
                        (w.k_status.clone(), w.v_approved.clone()),
                    ]),
                    observed_at,
                });
            }
            let edr_sku = if is_server { 16 } else { 15 };
            snap.usage.push(UsageObservation {
                vendor: w.huntress.clone().into(),
                account: accounts[3].clone().into(),
                sku_id: sku_ids[edr_sku].0.clone().into(),
                sku_name: sku_ids[edr_sku].1.clone(),
                quantity: Decimal::ONE,
                unit: w.agent.clone(),
                unit_cost: Some(Decimal::new(250, 2)),
                billing_term: None,
                commitment_end: None,
                attributes: Attributes::new([(w.k_hostname.clone(), hostname.clone())]),
                observed_at: at(config.as_of.day()),
            });
            let product = |id: &str| PRODUCTS.iter().position(|(p, ..)| *p == id).unwrap_or(0);
            if is_server {
                truth[product("RMM-SRV")] += 1;
                truth[product("EDR-SRV")] += 1;
            } else {
                truth[product("RMM-WS")] += 1;
                truth[product("EDR-WS")] += 1;
            }
        }
        for b in 0..backup_rows {
            snap.usage.push(UsageObservation {
                vendor: w.backup.clone().into(),
                account: accounts[4].clone().into(),
                sku_id: sku_ids[17].0.clone().into(),
                sku_name: sku_ids[17].1.clone(),
                quantity: Decimal::ONE,
                unit: w.agent.clone(),
                unit_cost: Some(Decimal::new(2500, 2)),
                billing_term: None,
                commitment_end: None,
                attributes: Attributes::new([(
                    w.k_device.clone(),
                    Arc::from(format!("{ci:05}-bk{b}")),
                )]),
                observed_at: at(30.min(config.as_of.day())),
            });
        }
        if let Some(p) = PRODUCTS.iter().position(|(id, ..)| *id == "BACKUP-SRV") {
            truth[p] = backup_rows as i64;
        }

        // PSA lines: the truth, with drift on some.
        for (p, (product, description, price, cost)) in PRODUCTS.iter().enumerate() {
            let is_licence = p < 10;
            let contract_id = if is_licence {
                &licence_contract
            } else {
                &main_id
            };
            let base = if p >= 15 { 1 } else { truth[p] };
            let quantity = match rng.range(0, 99) {
                0..=69 => base,
                70..=84 => (base - rng.range(1, 5) as i64).max(0),
                _ => base + rng.range(1, 5) as i64,
            };
            snap.service_lines.push(ServiceLine {
                id: format!("L{ci:05}-{p:02}").into(),
                contract_id: contract_id.clone().into(),
                product_id: format!("{}", 1000 + p),
                product_identifier: (*product).into(),
                description: (*description).into(),
                quantity: Decimal::from(quantity),
                unit_price: Decimal::new(*price, 2),
                unit_cost: Decimal::new(*cost, 2),
                effective_date: start,
                cancelled_date: None,
                billable: true,
            });
        }
    }
    snap
}

/// Splits `total` rows over `companies` with random weights, each at least
/// [`MIN_ROWS_PER_COMPANY`], summing exactly to `total` (when it allows).
fn row_budgets(rng: &mut Rng, companies: usize, total: usize) -> Vec<usize> {
    if companies == 0 {
        return Vec::new();
    }
    let floor = MIN_ROWS_PER_COMPANY.min(total / companies);
    let spare = total - floor * companies;
    let weights: Vec<u64> = (0..companies).map(|_| rng.range(1, 8)).collect();
    let weight_sum: u64 = weights.iter().sum();
    let mut out = Vec::with_capacity(companies);
    let mut given = 0u128;
    let mut cumulative = 0u128;
    for wgt in weights {
        cumulative += u128::from(wgt);
        let upto = spare as u128 * cumulative / u128::from(weight_sum);
        out.push(floor + (upto - given) as usize);
        given = upto;
    }
    out
}

fn vendor(id: &Arc<str>, name: &str, source: UsageSource) -> VendorIntegration {
    VendorIntegration {
        id: id.clone().into(),
        name: name.to_owned(),
        source,
    }
}

fn contract(
    id: &Arc<str>,
    company: &Arc<str>,
    name: &str,
    cycle: BillingCycle,
    start: Option<NaiveDate>,
    anchor: Option<CycleAnchor>,
) -> Contract {
    Contract {
        id: id.clone().into(),
        company_id: company.clone().into(),
        name: name.to_owned(),
        contract_type: "Recurring".to_owned(),
        status: ContractStatus::Active,
        billing_cycle: cycle,
        start_date: start,
        end_date: None,
        timing: BillingTiming::Advance,
        prorate: true,
        posted_through: None,
        cycle_anchor: anchor,
    }
}

const PREFIXES: &[&str] = &[
    "Contoso",
    "Fabrikam",
    "Northwind",
    "Tailspin",
    "Wingtip",
    "Litware",
    "Adatum",
    "Proseware",
    "Woodgrove",
    "Lucerne",
    "Alpine",
    "Coho",
    "Humongous",
    "Margie's",
    "Trey",
    "Blue Yonder",
];

const SUFFIXES: &[&str] = &[
    "Dental",
    "Legal",
    "Logistics",
    "Clinic",
    "Builders",
    "Accounting",
    "Realty",
    "Foods",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_generation_is_exact_and_deterministic() {
        let config = SynthConfig {
            seed: 7,
            companies: 50,
            usage_rows: 10_000,
            as_of: NaiveDate::from_ymd_opt(2025, 3, 31).unwrap(),
        };
        let first = generate(&config);
        assert_eq!(first.usage.len(), 10_000);
        assert_eq!(first.companies.len(), 50);
        assert_eq!(first.service_lines.len(), 50 * SERVICES_PER_COMPANY);
        assert_eq!(first, generate(&config));
        // Strings are shared, not copied per row.
        assert!(Arc::ptr_eq(
            &first.usage[0].vendor.0,
            &first.usage[1].vendor.0
        ));
    }
}
