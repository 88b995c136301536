//! ConnectWise records (companies, agreements, additions and the lookup
//! tables), seeded from the world's [`CustomerPlan`]s, and their JSON as
//! ConnectWise serves it (camelCase, reference objects with `_info`, null
//! fields omitted, dates as `2025-01-01T00:00:00Z`).

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::conditions::Schema;
use crate::catalog::{PRODUCTS, Product};
use crate::common::{
    CustomerPlan, Extra, FieldType, Period, cents, date_z, days_inclusive, instant_z, money,
    period_containing, round_money,
};
use crate::world::World;

/// Who ConnectWise shows as having entered or updated seeded records.
pub const SEED_MEMBER: &str = "jsmith";
/// Who ConnectWise shows as having updated records through the API (the
/// integration's API member).
pub const API_MEMBER: &str = "TrueupAPI";

/// An agreement type (`/finance/agreements/types`).
#[derive(Debug, Clone, Copy)]
pub struct AgreementType {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: &'static str,
    /// The type preselected in ConnectWise's UI.
    pub default_flag: bool,
}

/// Agreement types. Connectors usually select the managed-services and
/// licensing types; block time is a type they leave out by default.
pub const AGREEMENT_TYPES: &[AgreementType] = &[
    AgreementType {
        id: 1,
        name: "Managed Services",
        default_flag: true,
    },
    AgreementType {
        id: 2,
        name: "Microsoft Licensing",
        default_flag: false,
    },
    AgreementType {
        id: 3,
        name: "Block Time",
        default_flag: false,
    },
    AgreementType {
        id: 4,
        name: "Project Retainer",
        default_flag: false,
    },
];

/// The managed-services type id.
pub const TYPE_MANAGED: i64 = 1;
/// The licensing type id.
pub const TYPE_LICENSING: i64 = 2;
/// The block-time type id.
pub const TYPE_BLOCK_TIME: i64 = 3;

/// How long one billing cycle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleLength {
    /// Every `n` days.
    Days(u64),
    /// Every `n` months.
    Months(u32),
    /// Bills once ("Not Recurring").
    Once,
}

/// A billing cycle (`/finance/billingCycles`, an agreement's
/// `billingCycle`).
#[derive(Debug, Clone, Copy)]
pub struct BillingCycle {
    /// Id.
    pub id: i64,
    /// Name as ConnectWise shows it.
    pub name: &'static str,
    /// Period length.
    pub length: CycleLength,
}

/// ConnectWise's billing cycles.
pub const BILLING_CYCLES: &[BillingCycle] = &[
    BillingCycle {
        id: 1,
        name: "Weekly",
        length: CycleLength::Days(7),
    },
    BillingCycle {
        id: 2,
        name: "Bi-Weekly",
        length: CycleLength::Days(14),
    },
    BillingCycle {
        id: 3,
        name: "Monthly",
        length: CycleLength::Months(1),
    },
    BillingCycle {
        id: 4,
        name: "Bi-Monthly",
        length: CycleLength::Months(2),
    },
    BillingCycle {
        id: 5,
        name: "Quarterly",
        length: CycleLength::Months(3),
    },
    BillingCycle {
        id: 6,
        name: "Semi-Annual",
        length: CycleLength::Months(6),
    },
    BillingCycle {
        id: 7,
        name: "Yearly",
        length: CycleLength::Months(12),
    },
    BillingCycle {
        id: 8,
        name: "Not Recurring",
        length: CycleLength::Once,
    },
];

/// The monthly cycle id.
pub const CYCLE_MONTHLY: i64 = 3;
/// The yearly cycle id.
pub const CYCLE_YEARLY: i64 = 7;
/// The not-recurring cycle id.
pub const CYCLE_NOT_RECURRING: i64 = 8;

/// The cycle with `id`.
pub fn billing_cycle(id: i64) -> Option<&'static BillingCycle> {
    BILLING_CYCLES.iter().find(|c| c.id == id)
}

/// The catalogue product id ConnectWise uses for `product`.
pub fn product_id(product: &Product) -> i64 {
    PRODUCTS
        .iter()
        .position(|p| p == product)
        .map_or(0, |i| i as i64 + 1)
}

/// The catalogue product with ConnectWise id `id`.
pub fn product_by_id(id: i64) -> Option<&'static Product> {
    usize::try_from(id - 1).ok().and_then(|i| PRODUCTS.get(i))
}

/// `agreementStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgreementStatus {
    /// Billing.
    Active,
    /// Switched off by the MSP.
    Inactive,
    /// Cancelled (`cancelledFlag`).
    Cancelled,
    /// Past its end date.
    Expired,
}

impl AgreementStatus {
    fn name(self) -> &'static str {
        match self {
            AgreementStatus::Active => "Active",
            AgreementStatus::Inactive => "Inactive",
            AgreementStatus::Cancelled => "Cancelled",
            AgreementStatus::Expired => "Expired",
        }
    }
}

/// `billCustomer` of an addition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillCustomer {
    /// Invoiced.
    Billable,
    /// Tracked, not invoiced.
    DoNotBill,
    /// Shown on the invoice at no charge.
    NoCharge,
}

impl BillCustomer {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            BillCustomer::Billable => "Billable",
            BillCustomer::DoNotBill => "DoNotBill",
            BillCustomer::NoCharge => "NoCharge",
        }
    }

    /// Parses a wire name (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Billable, Self::DoNotBill, Self::NoCharge]
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(text))
    }
}

/// A company.
#[derive(Debug, Clone)]
pub struct Company {
    /// Id.
    pub id: i64,
    /// Short unique identifier (≤ 25 characters).
    pub identifier: String,
    /// Name.
    pub name: String,
    /// Web address.
    pub website: String,
    /// Whether the company is in the recycle bin.
    pub deleted: bool,
    /// When it was entered.
    pub entered: DateTime<Utc>,
}

/// An agreement.
#[derive(Debug, Clone)]
pub struct Agreement {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Agreement type id.
    pub type_id: i64,
    /// Company id.
    pub company_id: i64,
    /// First day.
    pub start: NaiveDate,
    /// Last day, when not open-ended.
    pub end: Option<NaiveDate>,
    /// Cancel date and reason.
    pub cancelled: Option<(NaiveDate, &'static str)>,
    /// Billing cycle id; `None` is the "None" the UI shows.
    pub cycle: Option<i64>,
    /// Fixed amount billed each cycle.
    pub bill_amount: Decimal,
    /// `prorateFlag`.
    pub prorate: bool,
    /// `periodType`: `"Future"` bills in advance, `"Current"` in arrears.
    pub period_type: &'static str,
    /// Status.
    pub status: AgreementStatus,
    /// When it was entered.
    pub entered: DateTime<Utc>,
}

impl Agreement {
    /// The billing period containing `date`, for recurring cycles.
    pub fn period(&self, date: NaiveDate) -> Option<Period> {
        match billing_cycle(self.cycle?)?.length {
            CycleLength::Months(months) => Some(period_containing(self.start, months, date)),
            CycleLength::Days(days) => {
                let offset = (date - self.start).num_days().div_euclid(days as i64);
                let start = if offset >= 0 {
                    self.start
                        .checked_add_days(Days::new(offset as u64 * days))?
                } else {
                    self.start
                        .checked_sub_days(Days::new(offset.unsigned_abs() * days))?
                };
                Some(Period {
                    start,
                    end: start.checked_add_days(Days::new(days - 1))?,
                })
            }
            CycleLength::Once => None,
        }
    }
}

/// An addition (a recurring product line on an agreement).
#[derive(Debug, Clone)]
pub struct Addition {
    /// Id.
    pub id: i64,
    /// Parent agreement id.
    pub agreement_id: i64,
    /// The product.
    pub product: &'static Product,
    /// Units.
    pub quantity: Decimal,
    /// Units included at no charge.
    pub less_included: Decimal,
    /// Price per unit per cycle.
    pub unit_price: Decimal,
    /// Cost per unit per cycle.
    pub unit_cost: Decimal,
    /// Billing treatment.
    pub bill_customer: BillCustomer,
    /// First day billed.
    pub effective: Option<NaiveDate>,
    /// Last day billed.
    pub cancelled: Option<NaiveDate>,
    /// `taxableFlag`.
    pub taxable: bool,
    /// `description`.
    pub description: Cow<'static, str>,
    /// `invoiceDescription`.
    pub invoice_description: Option<String>,
    /// `serialNumber`.
    pub serial_number: Option<String>,
    /// `purchaseItemFlag`.
    pub purchase_item: bool,
    /// `specialOrderFlag`.
    pub special_order: bool,
    /// `sequenceNumber`.
    pub sequence: i64,
    /// When it was entered.
    pub entered: DateTime<Utc>,
    /// When it was last changed.
    pub updated: DateTime<Utc>,
    /// Who entered it.
    pub entered_by: &'static str,
    /// Who changed it last.
    pub updated_by: &'static str,
}

/// Everything the ConnectWise emulator serves.
#[derive(Debug, Clone, Default)]
pub struct CwData {
    /// Companies by ascending id.
    pub companies: Vec<Company>,
    /// Agreements by ascending id.
    pub agreements: Vec<Agreement>,
    /// Additions by ascending id.
    pub additions: Vec<Addition>,
    /// The id the next created addition gets.
    pub next_addition_id: i64,
}

/// First company id.
pub const FIRST_COMPANY_ID: i64 = 250;
/// First agreement id.
pub const FIRST_AGREEMENT_ID: i64 = 10_001;
/// First addition id.
pub const FIRST_ADDITION_ID: i64 = 100_001;

fn at(date: NaiveDate, hour: u32) -> DateTime<Utc> {
    date.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or_default())
        .and_utc()
}

fn identifier(name: &str, taken: &mut HashSet<String>) -> String {
    let words: String = name
        .split_whitespace()
        .filter(|w| {
            !matches!(
                *w,
                "Group" | "LLC" | "Inc" | "Ltd" | "Co" | "Associates" | "Holdings" | "PC"
            )
        })
        .flat_map(|w| w.chars().filter(char::is_ascii_alphanumeric))
        .take(25)
        .collect();
    let mut candidate = words.clone();
    let mut n = 1;
    while !taken.insert(candidate.clone()) {
        let suffix = n.to_string();
        candidate = format!("{}{suffix}", &words[..words.len().min(25 - suffix.len())]);
        n += 1;
    }
    candidate
}

impl CwData {
    /// Seeds the data for `world`'s PSA customers.
    pub fn seed(world: &World, plans: &[CustomerPlan]) -> Self {
        let mut data = CwData {
            next_addition_id: FIRST_ADDITION_ID,
            ..CwData::default()
        };
        let mut taken = HashSet::new();
        let mut next_agreement = FIRST_AGREEMENT_ID;
        for plan in plans {
            let customer = &world.customers[plan.customer];
            let company_id = FIRST_COMPANY_ID + plan.position as i64;
            data.companies.push(Company {
                id: company_id,
                identifier: identifier(&customer.name, &mut taken),
                name: customer.name.clone(),
                website: format!("www.{}", customer.domain),
                deleted: false,
                entered: at(plan.start, 9),
            });
            let main = Agreement {
                id: next_agreement,
                name: "Managed Services".to_owned(),
                type_id: TYPE_MANAGED,
                company_id,
                start: plan.start,
                end: None,
                cancelled: None,
                cycle: Some(CYCLE_MONTHLY),
                bill_amount: Decimal::ZERO,
                prorate: plan.prorate,
                period_type: "Future",
                status: AgreementStatus::Active,
                entered: at(plan.start, 10),
            };
            next_agreement += 1;
            for (index, line) in plan.lines.iter().enumerate() {
                match plan.replaced.filter(|r| r.line == index) {
                    Some(replaced) => {
                        let old = data.push_addition(
                            &main,
                            line.product,
                            replaced.old_quantity,
                            line.effective,
                        );
                        old.cancelled = Some(replaced.ended);
                        let restart = replaced.ended.succ_opt().unwrap_or(replaced.ended);
                        data.push_addition(&main, line.product, line.quantity, restart);
                    }
                    None => {
                        data.push_addition(&main, line.product, line.quantity, line.effective);
                    }
                }
            }
            if let Some((product, quantity)) = plan.do_not_bill {
                let spare = data.push_addition(&main, product, quantity, plan.start);
                spare.bill_customer = BillCustomer::DoNotBill;
                spare.description =
                    Cow::Owned(format!("{} (MSP spare devices)", product.description));
            }
            if let Some((product, quantity)) = plan.no_charge {
                let free = data.push_addition(&main, product, quantity, plan.start);
                free.bill_customer = BillCustomer::NoCharge;
                free.description = Cow::Owned(format!("{} (courtesy)", product.description));
            }
            data.agreements.push(main);
            if let Some(extra) = plan.extra {
                let mut agreement = Agreement {
                    id: next_agreement,
                    name: String::new(),
                    type_id: TYPE_MANAGED,
                    company_id,
                    start: plan.extra_start,
                    end: None,
                    cancelled: None,
                    cycle: Some(CYCLE_MONTHLY),
                    bill_amount: Decimal::ZERO,
                    prorate: false,
                    period_type: "Future",
                    status: AgreementStatus::Active,
                    entered: at(plan.extra_start, 11),
                };
                next_agreement += 1;
                match extra {
                    Extra::Cancelled => {
                        agreement.name = "Managed Services (previous)".to_owned();
                        agreement.cancelled =
                            plan.extra_end.map(|d| (d, "Replaced by a new agreement"));
                        agreement.status = AgreementStatus::Cancelled;
                    }
                    Extra::Annual => {
                        agreement.name = "Annual Licensing".to_owned();
                        agreement.type_id = TYPE_LICENSING;
                        agreement.cycle = Some(CYCLE_YEARLY);
                    }
                    Extra::Inactive => {
                        agreement.name = "Managed Services (on hold)".to_owned();
                        agreement.status = AgreementStatus::Inactive;
                    }
                    Extra::Arrears => {
                        agreement.name = "Usage Billing (arrears)".to_owned();
                        agreement.period_type = "Current";
                        agreement.prorate = true;
                    }
                    Extra::Expired => {
                        agreement.name = "Managed Services 2-year term".to_owned();
                        agreement.end = plan.extra_end;
                        agreement.status = AgreementStatus::Expired;
                    }
                    Extra::OtherType => {
                        agreement.name = "Block Time 10 hours".to_owned();
                        agreement.type_id = TYPE_BLOCK_TIME;
                        agreement.bill_amount = cents(95_000);
                    }
                    Extra::NoCycle => {
                        agreement.name = "Backup Services".to_owned();
                        agreement.cycle = None;
                    }
                    Extra::OneTime => {
                        agreement.name = "Onboarding".to_owned();
                        agreement.cycle = Some(CYCLE_NOT_RECURRING);
                    }
                }
                for line in plan.moved.iter().chain(plan.stale.iter()) {
                    data.push_addition(&agreement, line.product, line.quantity, line.effective);
                }
                data.agreements.push(agreement);
            }
        }
        // Recycle-bin duplicates: companies entered twice and deleted,
        // which still come back from /company/companies.
        let duplicates: Vec<Company> = plans
            .iter()
            .filter(|p| p.position % 11 == 5)
            .enumerate()
            .map(|(n, plan)| {
                let original = &data.companies[plan.position];
                Company {
                    id: FIRST_COMPANY_ID + plans.len() as i64 + n as i64,
                    identifier: identifier(&original.name, &mut taken),
                    name: original.name.clone(),
                    website: original.website.clone(),
                    deleted: true,
                    entered: original.entered + chrono::Duration::days(2),
                }
            })
            .collect();
        data.companies.extend(duplicates);
        data
    }

    fn push_addition(
        &mut self,
        agreement: &Agreement,
        product: &'static Product,
        quantity: u32,
        effective: NaiveDate,
    ) -> &mut Addition {
        let id = self.next_addition_id;
        self.next_addition_id += 1;
        let sequence = self
            .additions
            .iter()
            .rev()
            .take_while(|a| a.agreement_id == agreement.id)
            .count() as i64
            + 1;
        self.additions.push(Addition {
            id,
            agreement_id: agreement.id,
            product,
            quantity: Decimal::from(quantity),
            less_included: Decimal::ZERO,
            unit_price: cents(product.unit_price_cents),
            unit_cost: cents(product.unit_cost_cents),
            bill_customer: BillCustomer::Billable,
            effective: Some(effective),
            cancelled: None,
            taxable: true,
            description: Cow::Borrowed(product.description),
            invoice_description: None,
            serial_number: None,
            purchase_item: false,
            special_order: false,
            sequence,
            entered: at(effective, 12),
            updated: at(effective, 12),
            entered_by: SEED_MEMBER,
            updated_by: SEED_MEMBER,
        });
        let last = self.additions.len() - 1;
        &mut self.additions[last]
    }

    /// The company with `id`.
    pub fn company(&self, id: i64) -> Option<&Company> {
        self.companies
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .map(|i| &self.companies[i])
    }

    /// The agreement with `id`.
    pub fn agreement(&self, id: i64) -> Option<&Agreement> {
        self.agreements
            .binary_search_by_key(&id, |a| a.id)
            .ok()
            .map(|i| &self.agreements[i])
    }

    /// The index of addition `id` of agreement `agreement_id`.
    pub fn addition_index(&self, agreement_id: i64, id: i64) -> Option<usize> {
        self.additions
            .binary_search_by_key(&id, |a| a.id)
            .ok()
            .filter(|&i| self.additions[i].agreement_id == agreement_id)
    }
}

// ---------------------------------------------------------------------------
// Proration
// ---------------------------------------------------------------------------

/// The prorated amounts of an addition whose `effectiveDate` falls after
/// the first day of its billing period on an agreement with `prorateFlag`:
///
/// ```text
/// days_in_period = period.end − period.start + 1
/// days_billed    = period.end − effectiveDate + 1        (the effective day is billed)
/// proratePrice          = round2(unitPrice × days_billed / days_in_period)
/// prorateCost           = round2(unitCost  × days_billed / days_in_period)
/// extendedProratePrice  = round2(proratePrice × (quantity − lessIncluded))
/// extendedProrateCost   = round2(prorateCost  × quantity)
/// ```
///
/// e.g. 10 units at 26.40 effective 16 Feb 2025 on a monthly agreement:
/// 13 of 28 days, `proratePrice` 12.26, `extendedProratePrice` 122.60.
/// (CloudBlue documents `(daysInPeriod − effectiveDay) × price /
/// daysInPeriod`, which leaves the effective day unbilled; the emulator
/// bills it, matching the inclusive dates used everywhere in Trueup.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proration {
    /// Unit price for the partial period.
    pub price: Decimal,
    /// Unit cost for the partial period.
    pub cost: Decimal,
    /// `price` × billed quantity.
    pub extended_price: Decimal,
    /// `cost` × quantity.
    pub extended_cost: Decimal,
    /// Days billed.
    pub days: i64,
    /// The period.
    pub period: Period,
}

/// The proration of `addition` on `agreement`, when there is one.
pub fn proration(agreement: &Agreement, addition: &Addition) -> Option<Proration> {
    if !agreement.prorate {
        return None;
    }
    let effective = addition.effective?;
    let period = agreement.period(effective)?;
    if effective == period.start {
        return None;
    }
    let days = days_inclusive(effective, period.end);
    Some(prorate(addition, period, days))
}

/// `addition`'s unit price and cost scaled to `days` of `period`.
pub fn prorate(addition: &Addition, period: Period, days: i64) -> Proration {
    let share = Decimal::from(days) / Decimal::from(period.days().max(1));
    let price = round_money(addition.unit_price * share);
    let cost = round_money(addition.unit_cost * share);
    Proration {
        price,
        cost,
        extended_price: round_money(price * billed_quantity(addition)),
        extended_cost: round_money(cost * addition.quantity),
        days,
        period,
    }
}

/// Units invoiced: quantity less the included units, never negative.
pub fn billed_quantity(addition: &Addition) -> Decimal {
    (addition.quantity - addition.less_included).max(Decimal::ZERO)
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

/// Builds JSON for ConnectWise records; needs the origin for `_href`s.
#[derive(Debug, Clone)]
pub struct Render<'a> {
    /// `<origin>/v4_6_release/apis/3.0`.
    pub api: &'a str,
    /// Today (for `nextInvoiceDate`).
    pub today: NaiveDate,
}

fn put(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    map.insert(key.to_owned(), value.into());
}

fn put_opt(map: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    // ConnectWise leaves null fields out of its JSON.
    if let Some(value) = value {
        map.insert(key.to_owned(), value.into());
    }
}

impl Render<'_> {
    fn info(
        &self,
        updated: (DateTime<Utc>, &str),
        entered: (DateTime<Utc>, &str),
        hrefs: &[(&str, String)],
    ) -> Value {
        let mut info = Map::new();
        put(&mut info, "lastUpdated", instant_z(updated.0));
        put(&mut info, "updatedBy", updated.1);
        put(&mut info, "dateEntered", instant_z(entered.0));
        put(&mut info, "enteredBy", entered.1);
        for (key, href) in hrefs {
            put(&mut info, key, href.clone());
        }
        Value::Object(info)
    }

    /// A company.
    pub fn company(&self, company: &Company) -> Value {
        let status = if company.deleted {
            json!({"id": 2, "name": "Inactive", "_info": {"status_href": format!("{}/company/companies/statuses/2", self.api)}})
        } else {
            json!({"id": 1, "name": "Active", "_info": {"status_href": format!("{}/company/companies/statuses/1", self.api)}})
        };
        let mut map = Map::new();
        put(&mut map, "id", company.id);
        put(&mut map, "identifier", company.identifier.clone());
        put(&mut map, "name", company.name.clone());
        put(&mut map, "status", status);
        put(
            &mut map,
            "country",
            json!({"id": 1, "name": "United States"}),
        );
        put(&mut map, "website", company.website.clone());
        put(&mut map, "dateAcquired", instant_z(company.entered));
        put(&mut map, "deletedFlag", company.deleted);
        if company.deleted {
            put(
                &mut map,
                "dateDeleted",
                instant_z(company.entered + chrono::Duration::days(1)),
            );
            put(&mut map, "deletedBy", SEED_MEMBER);
        }
        put(&mut map, "types", json!([{"id": 1, "name": "Client"}]));
        put(
            &mut map,
            "_info",
            self.info(
                (company.entered, SEED_MEMBER),
                (company.entered, SEED_MEMBER),
                &[
                    (
                        "agreements_href",
                        format!(
                            "{}/finance/agreements?conditions=company/id={}",
                            self.api, company.id
                        ),
                    ),
                    (
                        "contacts_href",
                        format!(
                            "{}/company/contacts?conditions=company/id={}",
                            self.api, company.id
                        ),
                    ),
                ],
            ),
        );
        Value::Object(map)
    }

    /// An agreement (needs its company for the reference object).
    pub fn agreement(&self, agreement: &Agreement, company: Option<&Company>) -> Value {
        let mut map = Map::new();
        put(&mut map, "id", agreement.id);
        put(&mut map, "name", agreement.name.clone());
        if let Some(kind) = AGREEMENT_TYPES.iter().find(|t| t.id == agreement.type_id) {
            put(
                &mut map,
                "type",
                json!({"id": kind.id, "name": kind.name,
                       "_info": {"type_href": format!("{}/finance/agreements/types/{}", self.api, kind.id)}}),
            );
        }
        if let Some(company) = company {
            put(
                &mut map,
                "company",
                json!({"id": company.id, "identifier": company.identifier, "name": company.name,
                       "_info": {"company_href": format!("{}/company/companies/{}", self.api, company.id)}}),
            );
        }
        put(&mut map, "startDate", date_z(agreement.start));
        put_opt(&mut map, "endDate", agreement.end.map(date_z));
        put(&mut map, "noEndingDateFlag", agreement.end.is_none());
        put(&mut map, "cancelledFlag", agreement.cancelled.is_some());
        put_opt(
            &mut map,
            "dateCancelled",
            agreement.cancelled.map(|(d, _)| date_z(d)),
        );
        put_opt(
            &mut map,
            "reasonCancelled",
            agreement.cancelled.map(|(_, r)| r),
        );
        if let Some(cycle) = agreement.cycle.and_then(billing_cycle) {
            put(
                &mut map,
                "billingCycle",
                json!({"id": cycle.id, "name": cycle.name,
                       "_info": {"billingCycle_href": format!("{}/finance/billingCycles/{}", self.api, cycle.id)}}),
            );
        }
        put(&mut map, "invoicingCycle", "CalendarYear");
        put(&mut map, "billAmount", money(agreement.bill_amount));
        put(&mut map, "billStartDate", date_z(agreement.start));
        put(&mut map, "prorateFlag", agreement.prorate);
        put(&mut map, "invoiceProratedAdditionsFlag", false);
        put(&mut map, "prorateFirstBill", false);
        put(&mut map, "taxable", true);
        put(
            &mut map,
            "currency",
            json!({"id": 7, "symbol": "$", "currencyCode": "USD", "name": "US Dollars"}),
        );
        put(&mut map, "periodType", agreement.period_type);
        if agreement.status == AgreementStatus::Active {
            put_opt(
                &mut map,
                "nextInvoiceDate",
                agreement
                    .period(self.today)
                    .and_then(|p| p.end.succ_opt())
                    .map(date_z),
            );
        }
        put(&mut map, "agreementStatus", agreement.status.name());
        put(&mut map, "applicationUnits", "Amount");
        put(&mut map, "applicationLimit", 0.0);
        put(&mut map, "applicationUnlimitedFlag", false);
        put(&mut map, "billTime", "Billable");
        put(&mut map, "billExpenses", "Billable");
        put(&mut map, "billProducts", "Billable");
        put(&mut map, "customFields", json!([]));
        put(
            &mut map,
            "_info",
            self.info(
                (agreement.entered, SEED_MEMBER),
                (agreement.entered, SEED_MEMBER),
                &[(
                    "additions_href",
                    format!("{}/finance/agreements/{}/additions", self.api, agreement.id),
                )],
            ),
        );
        Value::Object(map)
    }

    /// An addition (needs its agreement for proration and status).
    pub fn addition(&self, addition: &Addition, agreement: &Agreement) -> Value {
        let mut map = Map::new();
        let product_id = product_id(addition.product);
        put(&mut map, "id", addition.id);
        put(
            &mut map,
            "product",
            json!({"id": product_id, "identifier": addition.product.identifier,
                   "_info": {"product_href": format!("{}/procurement/catalog/{product_id}", self.api)}}),
        );
        put(&mut map, "quantity", money(addition.quantity));
        put(&mut map, "lessIncluded", money(addition.less_included));
        put(&mut map, "unitPrice", money(addition.unit_price));
        put(&mut map, "unitCost", money(addition.unit_cost));
        put(&mut map, "billCustomer", addition.bill_customer.name());
        put_opt(&mut map, "effectiveDate", addition.effective.map(date_z));
        put_opt(&mut map, "cancelledDate", addition.cancelled.map(date_z));
        put(&mut map, "taxableFlag", addition.taxable);
        put_opt(&mut map, "serialNumber", addition.serial_number.clone());
        put_opt(
            &mut map,
            "invoiceDescription",
            addition.invoice_description.clone(),
        );
        put(&mut map, "purchaseItemFlag", addition.purchase_item);
        put(&mut map, "specialOrderFlag", addition.special_order);
        put(&mut map, "agreementId", addition.agreement_id);
        put(&mut map, "description", addition.description.to_string());
        let billed = billed_quantity(addition);
        let ext_price = round_money(addition.unit_price * billed);
        let ext_cost = round_money(addition.unit_cost * addition.quantity);
        put(&mut map, "billedQuantity", money(billed));
        put(&mut map, "uom", "Each");
        put(&mut map, "extPrice", money(ext_price));
        put(&mut map, "extCost", money(ext_cost));
        put(&mut map, "sequenceNumber", addition.sequence as f64);
        put(&mut map, "margin", money(ext_price - ext_cost));
        let proration = proration(agreement, addition);
        let zero = Decimal::ZERO;
        put(
            &mut map,
            "prorateCost",
            money(proration.map_or(zero, |p| p.cost)),
        );
        put(
            &mut map,
            "proratePrice",
            money(proration.map_or(zero, |p| p.price)),
        );
        put(
            &mut map,
            "extendedProrateCost",
            money(proration.map_or(zero, |p| p.extended_cost)),
        );
        put(
            &mut map,
            "extendedProratePrice",
            money(proration.map_or(zero, |p| p.extended_price)),
        );
        put(&mut map, "prorateCurrentPeriodFlag", proration.is_some());
        put(&mut map, "agreementStatus", agreement.status.name());
        put(
            &mut map,
            "_info",
            self.info(
                (addition.updated, addition.updated_by),
                (addition.entered, addition.entered_by),
                &[],
            ),
        );
        Value::Object(map)
    }

    /// An agreement type.
    pub fn agreement_type(&self, kind: &AgreementType) -> Value {
        json!({"id": kind.id, "name": kind.name, "prefixSuffixOption": "Prefix",
               "defaultFlag": kind.default_flag, "inactiveFlag": false, "prePaymentFlag": false,
               "_info": {"lastUpdated": "2020-01-01T00:00:00Z", "updatedBy": SEED_MEMBER}})
    }

    /// A billing cycle.
    pub fn billing_cycle(&self, cycle: &BillingCycle) -> Value {
        json!({"id": cycle.id, "name": cycle.name, "defaultFlag": cycle.id == CYCLE_MONTHLY,
               "_info": {"lastUpdated": "2020-01-01T00:00:00Z", "updatedBy": SEED_MEMBER}})
    }

    /// A catalogue item.
    pub fn catalog_item(&self, product: &Product) -> Value {
        json!({"id": product_id(product), "identifier": product.identifier,
               "description": product.description, "inactiveFlag": false,
               "price": money(cents(product.unit_price_cents)),
               "cost": money(cents(product.unit_cost_cents)),
               "taxableFlag": true, "customerDescription": product.description,
               "productClass": "Service", "recurringFlag": true,
               "_info": {"lastUpdated": "2020-01-01T00:00:00Z", "updatedBy": SEED_MEMBER}})
    }
}

// ---------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------

const D: FieldType = FieldType::DateTime;
const I: FieldType = FieldType::Int;
const N: FieldType = FieldType::Decimal;
const T: FieldType = FieldType::Text;
const B: FieldType = FieldType::Bool;

/// Company fields usable in `conditions` and `orderBy`.
pub const COMPANY_SCHEMA: Schema = Schema {
    entity: "company",
    fields: &[
        ("id", I),
        ("identifier", T),
        ("name", T),
        ("status/id", I),
        ("status/name", T),
        ("website", T),
        ("dateAcquired", D),
        ("deletedFlag", B),
        ("dateDeleted", D),
        ("_info/lastUpdated", D),
        ("_info/dateEntered", D),
    ],
};

/// Agreement fields usable in `conditions` and `orderBy`.
pub const AGREEMENT_SCHEMA: Schema = Schema {
    entity: "agreement",
    fields: &[
        ("id", I),
        ("name", T),
        ("type/id", I),
        ("type/name", T),
        ("company/id", I),
        ("company/identifier", T),
        ("company/name", T),
        ("startDate", D),
        ("endDate", D),
        ("noEndingDateFlag", B),
        ("cancelledFlag", B),
        ("dateCancelled", D),
        ("reasonCancelled", T),
        ("billingCycle/id", I),
        ("billingCycle/name", T),
        ("invoicingCycle", T),
        ("billAmount", N),
        ("billStartDate", D),
        ("prorateFlag", B),
        ("taxable", B),
        ("periodType", T),
        ("nextInvoiceDate", D),
        ("agreementStatus", T),
        ("_info/lastUpdated", D),
        ("_info/dateEntered", D),
    ],
};

/// Addition fields usable in `conditions` and `orderBy`.
pub const ADDITION_SCHEMA: Schema = Schema {
    entity: "addition",
    fields: &[
        ("id", I),
        ("product/id", I),
        ("product/identifier", T),
        ("quantity", N),
        ("lessIncluded", N),
        ("unitPrice", N),
        ("unitCost", N),
        ("billCustomer", T),
        ("effectiveDate", D),
        ("cancelledDate", D),
        ("taxableFlag", B),
        ("serialNumber", T),
        ("invoiceDescription", T),
        ("description", T),
        ("agreementId", I),
        ("extPrice", N),
        ("extCost", N),
        ("sequenceNumber", N),
        ("agreementStatus", T),
        ("_info/lastUpdated", D),
        ("_info/dateEntered", D),
    ],
};

/// Agreement-type fields.
pub const TYPE_SCHEMA: Schema = Schema {
    entity: "agreement type",
    fields: &[
        ("id", I),
        ("name", T),
        ("defaultFlag", B),
        ("inactiveFlag", B),
    ],
};

/// Billing-cycle fields.
pub const CYCLE_SCHEMA: Schema = Schema {
    entity: "billing cycle",
    fields: &[("id", I), ("name", T), ("defaultFlag", B)],
};

/// Catalogue-item fields.
pub const CATALOG_SCHEMA: Schema = Schema {
    entity: "catalog item",
    fields: &[
        ("id", I),
        ("identifier", T),
        ("description", T),
        ("inactiveFlag", B),
        ("price", N),
        ("cost", N),
    ],
};
