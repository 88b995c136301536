//! The Microsoft side of the world: one Entra tenant per vendor customer
//! (plus the MSP's internal tenant), each with Graph `subscribedSkus` and
//! Partner Center (CSP, new commerce) subscriptions derived from
//! [`crate::catalog::reported_usage`].
//!
//! Truth: for every catalogue product reported by a Microsoft SKU,
//! `consumedUnits` is the customer's reported usage; the seats bought
//! (`prepaidUnits.enabled`, the CSP `quantity`) are that plus 0–2 spares.
//! Noise the rules must filter: free SKUs with huge prepaid counts
//! (`FLOW_FREE`, `POWER_BI_STANDARD`, `TEAMS_EXPLORATORY`, none sold through
//! CSP), a suspended or locked-out Business Basic, a Visio plan in its
//! `Warning` grace period (CSP status `expired`) and deleted CSP
//! subscriptions left over from earlier terms.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};

use super::REFUND_WINDOW_HOURS;
use crate::catalog::{VendorSource, reported_usage};
use crate::vendor_common::{MSP_DOMAIN, guid, internal_account_name};
use crate::world::{SeededRng, World};

/// A Microsoft SKU the emulator knows: Graph identity plus the new-commerce
/// offer it is sold as.
#[derive(Debug)]
pub(super) struct SkuDef {
    /// Graph `skuPartNumber`.
    pub part_number: &'static str,
    /// Graph `skuId`.
    pub sku_id: &'static str,
    /// New-commerce offer id (`productId:skuId`) in Partner Center.
    pub offer_id: &'static str,
    /// Partner Center `offerName`.
    pub offer_name: &'static str,
    /// Graph `servicePlans`: `(servicePlanId, servicePlanName, appliesTo)`.
    pub service_plans: &'static [(&'static str, &'static str, &'static str)],
}

const TEAMS1: (&str, &str, &str) = ("57ff2da0-773e-42df-b2af-ffb7a2317929", "TEAMS1", "User");
const EXO_P1: (&str, &str, &str) = (
    "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
    "EXCHANGE_S_STANDARD",
    "User",
);
const SPO_P1: (&str, &str, &str) = (
    "c7699d2e-19aa-44de-8edf-1736da088ca1",
    "SHAREPOINTSTANDARD",
    "User",
);
const INTUNE: (&str, &str, &str) = ("c1ec4a95-1f05-45b3-a911-aa3fa01094f5", "INTUNE_A", "User");
const AAD_P1: (&str, &str, &str) = (
    "41781fb2-bc02-4b7c-bd55-b576c07bb09d",
    "AAD_PREMIUM",
    "User",
);
const OFFICE_APPS: (&str, &str, &str) = (
    "43de0ff5-c92c-492b-9116-175376d08c38",
    "OFFICESUBSCRIPTION",
    "User",
);
const EXO_FOUNDATION: (&str, &str, &str) = (
    "113feb6c-3fe4-4440-bddc-54d774bf0318",
    "EXCHANGE_S_FOUNDATION",
    "Company",
);

/// Microsoft 365 Business Premium.
pub(super) const SPB: SkuDef = SkuDef {
    part_number: "SPB",
    sku_id: "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
    offer_id: "CFQ7TTC0LCHC:0002",
    offer_name: "Microsoft 365 Business Premium",
    service_plans: &[EXO_P1, SPO_P1, TEAMS1, OFFICE_APPS, INTUNE, AAD_P1],
};
/// Microsoft 365 Business Standard.
pub(super) const BUSINESS_STANDARD: SkuDef = SkuDef {
    part_number: "O365_BUSINESS_PREMIUM",
    sku_id: "f245ecc8-75af-4f8e-b61f-27d8114de5f3",
    offer_id: "CFQ7TTC0LDPB:0001",
    offer_name: "Microsoft 365 Business Standard",
    service_plans: &[EXO_P1, SPO_P1, TEAMS1, OFFICE_APPS],
};
/// Exchange Online (Plan 1).
pub(super) const EXCHANGE_P1: SkuDef = SkuDef {
    part_number: "EXCHANGESTANDARD",
    sku_id: "4b9405b0-7788-4568-add1-99614e613b69",
    offer_id: "CFQ7TTC0LH16:0001",
    offer_name: "Exchange Online (Plan 1)",
    service_plans: &[EXO_P1],
};
/// Microsoft 365 Business Basic (only ever present as suspended/locked-out
/// noise).
pub(super) const BUSINESS_BASIC: SkuDef = SkuDef {
    part_number: "O365_BUSINESS_ESSENTIALS",
    sku_id: "3b555118-da6a-4418-894f-7df1e2096870",
    offer_id: "CFQ7TTC0LH18:0001",
    offer_name: "Microsoft 365 Business Basic",
    service_plans: &[EXO_P1, SPO_P1, TEAMS1],
};
/// Visio Plan 2 (only ever present as grace-period noise).
pub(super) const VISIO_P2: SkuDef = SkuDef {
    part_number: "VISIOCLIENT",
    sku_id: "c5928f49-12ba-48f7-ada3-0d743a3601d5",
    offer_id: "CFQ7TTC0HD32:0001",
    offer_name: "Visio Plan 2",
    service_plans: &[(
        "663a804f-1c30-4ff0-9915-9db84f0d1cea",
        "VISIO_CLIENT_SUBSCRIPTION",
        "User",
    )],
};
/// Power Automate Free (viral, free).
pub(super) const FLOW_FREE: SkuDef = SkuDef {
    part_number: "FLOW_FREE",
    sku_id: "f30db892-07e9-47e9-837c-80727f46fd3d",
    offer_id: "",
    offer_name: "Microsoft Power Automate Free",
    service_plans: &[
        (
            "50e68c76-46c6-4674-81f9-75456511b170",
            "FLOW_P2_VIRAL",
            "User",
        ),
        EXO_FOUNDATION,
    ],
};
/// Power BI (free).
pub(super) const POWER_BI_FREE: SkuDef = SkuDef {
    part_number: "POWER_BI_STANDARD",
    sku_id: "a403ebcc-fae0-4ca2-8c8c-7a907fd6c235",
    offer_id: "",
    offer_name: "Microsoft Fabric (Free)",
    service_plans: &[
        (
            "2049e525-b859-401b-b2a0-e0a31c4b1fe4",
            "BI_AZURE_P0",
            "User",
        ),
        EXO_FOUNDATION,
    ],
};
/// Microsoft Teams Exploratory (free).
pub(super) const TEAMS_EXPLORATORY: SkuDef = SkuDef {
    part_number: "TEAMS_EXPLORATORY",
    sku_id: "710779e8-3d4a-4c88-adb9-386c958d1fdf",
    offer_id: "",
    offer_name: "Microsoft Teams Exploratory",
    service_plans: &[TEAMS1, EXO_FOUNDATION],
};

/// Every SKU the emulator may serve.
pub(super) const SKUS: [&SkuDef; 8] = [
    &SPB,
    &BUSINESS_STANDARD,
    &EXCHANGE_P1,
    &BUSINESS_BASIC,
    &VISIO_P2,
    &FLOW_FREE,
    &POWER_BI_FREE,
    &TEAMS_EXPLORATORY,
];

/// Prepaid counts Microsoft shows for the free SKUs.
const FLOW_FREE_PREPAID: u32 = 10_000;
const POWER_BI_FREE_PREPAID: u32 = 1_000_000;
const TEAMS_EXPLORATORY_PREPAID: u32 = 100;

/// One `subscribedSku` of a tenant.
#[derive(Debug, Clone)]
pub(super) struct TenantSku {
    pub def: &'static SkuDef,
    /// `capabilityStatus`.
    pub status: &'static str,
    pub consumed: u32,
    pub enabled: u32,
    pub suspended: u32,
    pub warning: u32,
    pub locked_out: u32,
}

/// Seats bought in one increase, reducible until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RefundWindow {
    pub quantity: u32,
    pub until: DateTime<Utc>,
}

/// One Partner Center subscription of a customer.
#[derive(Debug, Clone)]
pub(super) struct Subscription {
    pub id: String,
    pub def: &'static SkuDef,
    pub friendly_name: String,
    pub quantity: u32,
    /// `active`, `suspended`, `expired` or `deleted`.
    pub status: &'static str,
    /// `monthly` or `annual`.
    pub billing_cycle: &'static str,
    /// `P1M` or `P1Y`.
    pub term_duration: &'static str,
    pub creation_date: DateTime<Utc>,
    pub effective_start: DateTime<Utc>,
    /// Inclusive last day of the current term (new commerce).
    pub commitment_end: DateTime<Utc>,
    pub auto_renew: bool,
    pub refund_windows: Vec<RefundWindow>,
    pub order_id: String,
    /// Bumped by every change; part of the `etag`.
    pub version: u64,
}

/// One Entra tenant / CSP customer.
#[derive(Debug, Clone)]
pub(super) struct Tenant {
    pub id: String,
    /// The world customer, `None` for the MSP's internal tenant.
    pub customer_index: Option<usize>,
    pub name: String,
    /// Primary (verified) domain.
    pub domain: String,
    /// The initial `*.onmicrosoft.com` domain.
    pub initial_domain: String,
    pub skus: Vec<TenantSku>,
    pub subscriptions: Vec<Subscription>,
}

impl Tenant {
    /// Recomputes `prepaidUnits` of the SKUs sold through CSP from the
    /// subscriptions, after a quantity change.
    pub fn sync_prepaid(&mut self) {
        for sku in &mut self.skus {
            if sku.status != "Enabled" || sku.def.offer_id.is_empty() {
                continue;
            }
            sku.enabled = self
                .subscriptions
                .iter()
                .filter(|s| s.status == "active" && s.def.part_number == sku.def.part_number)
                .map(|s| s.quantity)
                .sum();
        }
    }
}

fn sku_def(part_number: &str) -> Option<&'static SkuDef> {
    SKUS.into_iter().find(|d| d.part_number == part_number)
}

fn midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.from_utc_datetime(&at.date_naive().and_time(NaiveTime::MIN))
}

fn add_months(at: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    at.checked_add_months(chrono::Months::new(months))
        .unwrap_or(at)
}

/// The current term of a subscription that started on `start`: its start and
/// its inclusive last day (new-commerce end dates are inclusive).
fn current_term(
    start: DateTime<Utc>,
    months: u32,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let mut term_start = start;
    loop {
        let next = add_months(term_start, months);
        if next > now || next <= term_start {
            return (term_start, next - Duration::days(1));
        }
        term_start = next;
    }
}

struct Builder<'a> {
    seed: u64,
    now: DateTime<Utc>,
    rng: SeededRng,
    tenant_key: &'a str,
    serial: u64,
}

impl Builder<'_> {
    fn subscription(
        &mut self,
        def: &'static SkuDef,
        quantity: u32,
        status: &'static str,
    ) -> Subscription {
        self.serial += 1;
        let annual = self.rng.chance(40);
        let (term_duration, months) = if annual { ("P1Y", 12) } else { ("P1M", 1) };
        let billing_cycle = if annual && self.rng.chance(50) {
            "annual"
        } else {
            "monthly"
        };
        let age_days = i64::from(self.rng.range(20, 900));
        let start = midnight(self.now - Duration::days(age_days));
        let (term_start, term_end) = current_term(start, months, self.now);
        let (effective_start, commitment_end) = if status == "active" {
            (term_start, term_end)
        } else {
            // Deleted/expired subscriptions ended before today.
            let ended = midnight(self.now - Duration::days(i64::from(self.rng.range(5, 120))));
            (start.min(ended), ended)
        };
        let mut refund_windows = Vec::new();
        if status == "active" && quantity > 1 && self.rng.chance(20) {
            let added = self.rng.range(1, quantity.min(3));
            let hours_ago = i64::from(self.rng.range(1, 120));
            refund_windows.push(RefundWindow {
                quantity: added,
                until: self.now - Duration::hours(hours_ago) + Duration::hours(REFUND_WINDOW_HOURS),
            });
        }
        let key = format!("{}:{}", self.tenant_key, self.serial);
        Subscription {
            id: guid(self.seed, "ms-subscription", hash(&key)).to_uppercase(),
            def,
            friendly_name: def.offer_name.to_owned(),
            quantity,
            status,
            billing_cycle,
            term_duration,
            creation_date: start + Duration::minutes(i64::from(self.rng.range(60, 1400))),
            effective_start,
            commitment_end,
            auto_renew: status == "active" && !self.rng.chance(10),
            refund_windows,
            order_id: guid(self.seed, "ms-order", hash(&key)).to_uppercase(),
            version: 1,
        }
    }
}

fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn enabled_sku(def: &'static SkuDef, consumed: u32, enabled: u32) -> TenantSku {
    TenantSku {
        def,
        status: "Enabled",
        consumed,
        enabled,
        suspended: 0,
        warning: 0,
        locked_out: 0,
    }
}

/// Builds every tenant: the vendor customers in world order, then the
/// MSP's internal tenant.
pub(super) fn build(world: &World, now: DateTime<Utc>) -> Vec<Tenant> {
    let mut tenants: Vec<Tenant> = world
        .vendor_customers()
        .map(|customer| {
            let usage: Vec<(&'static SkuDef, u32)> = reported_usage(customer)
                .into_iter()
                .filter_map(|(product, units)| match product.source {
                    VendorSource::MicrosoftSku { sku_part_number } => {
                        sku_def(sku_part_number).map(|d| (d, units))
                    }
                    _ => None,
                })
                .collect();
            let initial: String = customer
                .vendor_name
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase();
            build_tenant(
                world.seed,
                now,
                guid(world.seed, "ms-tenant", customer.index as u64),
                Some(customer.index),
                customer.vendor_name.clone(),
                customer.domain.clone(),
                format!("{initial}.onmicrosoft.com"),
                customer.m365_users,
                &usage,
            )
        })
        .collect();
    let internal_name = internal_account_name();
    tenants.push(build_tenant(
        world.seed,
        now,
        guid(world.seed, "ms-tenant-internal", 0),
        None,
        internal_name,
        MSP_DOMAIN.to_owned(),
        format!("{}.onmicrosoft.com", MSP_DOMAIN.trim_end_matches(".com")),
        12,
        &[(&SPB, 12)],
    ));
    tenants
}

#[allow(clippy::too_many_arguments)]
fn build_tenant(
    seed: u64,
    now: DateTime<Utc>,
    id: String,
    customer_index: Option<usize>,
    name: String,
    domain: String,
    initial_domain: String,
    users: u32,
    usage: &[(&'static SkuDef, u32)],
) -> Tenant {
    let mut builder = Builder {
        seed,
        now,
        rng: SeededRng::stream(seed, "ms-tenant-data", hash(&id)),
        tenant_key: &id,
        serial: 0,
    };
    let mut skus = Vec::new();
    let mut subscriptions = Vec::new();
    for &(def, units) in usage {
        let spare = builder.rng.range(0, 2);
        let quantity = units + spare;
        skus.push(enabled_sku(def, units, quantity));
        // Larger customers sometimes split a SKU over a monthly and an
        // annual subscription; Graph sums them into one subscribedSku.
        if quantity >= 10 && builder.rng.chance(25) {
            let first = quantity / 2;
            subscriptions.push(builder.subscription(def, first, "active"));
            subscriptions.push(builder.subscription(def, quantity - first, "active"));
        } else {
            subscriptions.push(builder.subscription(def, quantity, "active"));
        }
        if builder.rng.chance(15) {
            let old = builder.rng.range(1, units.max(1));
            subscriptions.push(builder.subscription(def, old, "deleted"));
        }
    }
    let users = users.max(1);
    if builder.rng.chance(55) {
        skus.push(enabled_sku(
            &FLOW_FREE,
            builder.rng.range(1, users),
            FLOW_FREE_PREPAID,
        ));
    }
    if builder.rng.chance(45) {
        skus.push(enabled_sku(
            &POWER_BI_FREE,
            builder.rng.range(0, users),
            POWER_BI_FREE_PREPAID,
        ));
    }
    if builder.rng.chance(20) {
        skus.push(enabled_sku(
            &TEAMS_EXPLORATORY,
            builder.rng.range(1, users.min(10)),
            TEAMS_EXPLORATORY_PREPAID,
        ));
    }
    let roll = builder.rng.range(0, 99);
    if roll < 12 {
        let seats = builder.rng.range(1, 5);
        let locked = roll < 3;
        skus.push(TenantSku {
            def: &BUSINESS_BASIC,
            status: if locked { "LockedOut" } else { "Suspended" },
            consumed: seats,
            enabled: 0,
            suspended: if locked { 0 } else { seats },
            warning: 0,
            locked_out: if locked { seats } else { 0 },
        });
        let mut sub = builder.subscription(&BUSINESS_BASIC, seats, "suspended");
        if locked {
            sub.status = "deleted";
        }
        subscriptions.push(sub);
    } else if roll < 20 {
        let seats = builder.rng.range(1, 3);
        skus.push(TenantSku {
            def: &VISIO_P2,
            status: "Warning",
            consumed: seats,
            enabled: 0,
            suspended: 0,
            warning: seats,
            locked_out: 0,
        });
        subscriptions.push(builder.subscription(&VISIO_P2, seats, "expired"));
    }
    Tenant {
        id,
        customer_index,
        name,
        domain,
        initial_domain,
        skus,
        subscriptions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .expect("valid date")
    }

    #[test]
    fn terms_end_the_day_before_the_next_term_starts() {
        let (start, end) = current_term(at(2024, 1, 15), 1, at(2024, 3, 20));
        assert_eq!(start, at(2024, 3, 15));
        assert_eq!(end, at(2024, 4, 14));
        let (start, end) = current_term(at(2023, 6, 1), 12, at(2024, 3, 20));
        assert_eq!(start, at(2023, 6, 1));
        assert_eq!(end, at(2024, 5, 31));
    }

    #[test]
    fn consumed_units_follow_reported_usage() {
        let world = World::new(11, 80);
        let now = at(2025, 6, 30);
        let tenants = build(&world, now);
        assert_eq!(tenants.len(), world.vendor_customers().count() + 1);
        for tenant in &tenants {
            let Some(index) = tenant.customer_index else {
                continue;
            };
            let customer = &world.customers[index];
            for (product, units) in reported_usage(customer) {
                let VendorSource::MicrosoftSku { sku_part_number } = product.source else {
                    continue;
                };
                let sku = tenant
                    .skus
                    .iter()
                    .find(|s| s.def.part_number == sku_part_number)
                    .expect("reported SKU present");
                assert_eq!(sku.consumed, units);
                assert_eq!(sku.status, "Enabled");
                let bought: u32 = tenant
                    .subscriptions
                    .iter()
                    .filter(|s| s.status == "active" && s.def.part_number == sku_part_number)
                    .map(|s| s.quantity)
                    .sum();
                assert_eq!(bought, sku.enabled);
                assert!(sku.enabled >= units);
            }
        }
    }
}
