//! Autotask entities (Companies, Contracts, ContractServices,
//! ContractServiceUnits, ContractServiceAdjustments, Services), seeded from
//! the world's [`CustomerPlan`]s.
//!
//! Each entity declares its fields once ([`Entity::FIELDS`]); the same
//! table drives query filters, `IncludeFields` and the JSON served (every
//! field, nulls included, as Autotask sends them).

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::catalog::{PRODUCTS, Product};
use crate::common::{
    CustomerPlan, Extra, FieldType, Period, add_months, cents, instant_z, money, month_end,
    month_start, period_containing,
};
use crate::world::World;

/// `contractType` of a Time & Materials contract.
pub const CONTRACT_TYPE_TIME_AND_MATERIALS: i64 = 1;
/// `contractType` of a Fixed Price contract.
pub const CONTRACT_TYPE_FIXED_PRICE: i64 = 3;
/// `contractType` of a Block Hours contract.
pub const CONTRACT_TYPE_BLOCK_HOURS: i64 = 4;
/// `contractType` of a Recurring Service contract (the only type with
/// services and service adjustments).
pub const CONTRACT_TYPE_RECURRING: i64 = 7;
/// `contractPeriodType`: monthly \[I\].
pub const PERIOD_MONTHLY: i64 = 1;
/// `contractPeriodType`: quarterly \[I\].
pub const PERIOD_QUARTERLY: i64 = 2;
/// `contractPeriodType`: semi-annual \[I\].
pub const PERIOD_SEMI_ANNUAL: i64 = 3;
/// `contractPeriodType`: yearly \[I\].
pub const PERIOD_YEARLY: i64 = 4;
/// `status` of an active contract.
pub const STATUS_ACTIVE: i64 = 1;
/// `status` of an inactive contract (which Autotask keeps billing).
pub const STATUS_INACTIVE: i64 = 0;
/// `companyType` of a customer.
pub const COMPANY_TYPE_CUSTOMER: i64 = 1;
/// `companyType` of a dead (former) company.
pub const COMPANY_TYPE_DEAD: i64 = 4;

/// First id of each entity.
pub const FIRST_COMPANY_ID: i64 = 1_000;
/// First contract id.
pub const FIRST_CONTRACT_ID: i64 = 20_000;
/// First contract-service id.
pub const FIRST_CONTRACT_SERVICE_ID: i64 = 100_000;
/// First contract-service-unit id.
pub const FIRST_UNIT_ID: i64 = 1_000_000;
/// First adjustment id.
pub const FIRST_ADJUSTMENT_ID: i64 = 50_000;
/// First service id.
pub const FIRST_SERVICE_ID: i64 = 3_001;

const D: FieldType = FieldType::DateTime;
const I: FieldType = FieldType::Int;
const N: FieldType = FieldType::Decimal;
const T: FieldType = FieldType::Text;
const B: FieldType = FieldType::Bool;

/// A queryable Autotask entity.
pub trait Entity {
    /// The entity's path name, e.g. `"Contracts"`.
    const NAME: &'static str;
    /// Its singular name for messages, e.g. `"Contract"`.
    const SINGULAR: &'static str;
    /// Every field, in the order served.
    const FIELDS: &'static [(&'static str, FieldType)];

    /// The record id.
    fn id(&self) -> i64;

    /// The value of a field from [`Entity::FIELDS`] (canonical name).
    fn value(&self, field: &str) -> Value;

    /// The canonical name and type of `field` (case-insensitive).
    fn field(field: &str) -> Option<(&'static str, FieldType)> {
        Self::FIELDS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(field))
            .copied()
    }

    /// The record as served, limited to `include` when given.
    fn json(&self, include: Option<&[&'static str]>) -> Value {
        let mut map = Map::new();
        for (name, _) in Self::FIELDS {
            if include.is_none_or(|fields| fields.contains(name)) {
                map.insert((*name).to_owned(), self.value(name));
            }
        }
        if include.is_none() && has_udfs(Self::NAME) {
            map.insert("userDefinedFields".to_owned(), Value::Array(Vec::new()));
        }
        Value::Object(map)
    }
}

fn has_udfs(entity: &str) -> bool {
    matches!(entity, "Companies" | "Contracts")
}

fn date(value: Option<NaiveDate>) -> Value {
    value.map_or(Value::Null, |d| Value::String(instant_z(midnight(d))))
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(NaiveTime::MIN).and_utc()
}

fn int(value: Option<i64>) -> Value {
    value.map_or(Value::Null, Value::from)
}

fn text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, Value::from)
}

fn dec(value: Option<Decimal>) -> Value {
    value.map_or(Value::Null, money)
}

/// A company.
#[derive(Debug, Clone)]
pub struct Company {
    /// Id.
    pub id: i64,
    /// `companyName`.
    pub name: String,
    /// `companyNumber`.
    pub number: String,
    /// `companyType`.
    pub company_type: i64,
    /// `isActive`.
    pub active: bool,
    /// `webAddress`.
    pub web: String,
    /// `createDate`.
    pub created: DateTime<Utc>,
}

impl Entity for Company {
    const NAME: &'static str = "Companies";
    const SINGULAR: &'static str = "Company";
    const FIELDS: &'static [(&'static str, FieldType)] = &[
        ("id", I),
        ("companyName", T),
        ("companyNumber", T),
        ("companyType", I),
        ("isActive", B),
        ("phone", T),
        ("webAddress", T),
        ("city", T),
        ("state", T),
        ("postalCode", T),
        ("countryID", I),
        ("ownerResourceID", I),
        ("parentCompanyID", I),
        ("createDate", D),
        ("lastActivityDate", D),
        ("lastTrackedModifiedDateTime", D),
    ];

    fn id(&self) -> i64 {
        self.id
    }

    fn value(&self, field: &str) -> Value {
        match field {
            "id" => self.id.into(),
            "companyName" => self.name.as_str().into(),
            "companyNumber" => self.number.as_str().into(),
            "companyType" => self.company_type.into(),
            "isActive" => self.active.into(),
            "webAddress" => self.web.as_str().into(),
            "countryID" => 237.into(),
            "ownerResourceID" => 29_682_885.into(),
            "createDate" | "lastActivityDate" | "lastTrackedModifiedDateTime" => {
                instant_z(self.created).into()
            }
            _ => Value::Null,
        }
    }
}

/// A contract.
#[derive(Debug, Clone)]
pub struct Contract {
    /// Id.
    pub id: i64,
    /// `companyID`.
    pub company_id: i64,
    /// `contractName`.
    pub name: String,
    /// `contractType`.
    pub contract_type: i64,
    /// `contractPeriodType`.
    pub period_type: i64,
    /// `status` (1 active, 0 inactive).
    pub status: i64,
    /// `startDate`.
    pub start: NaiveDate,
    /// `endDate` (inclusive).
    pub end: NaiveDate,
    /// `isDefaultContract`.
    pub is_default: bool,
    /// `setupFee`.
    pub setup_fee: Option<Decimal>,
    /// `lastModifiedDateTime`.
    pub modified: DateTime<Utc>,
}

impl Contract {
    /// Months per billing period.
    pub fn period_months(&self) -> u32 {
        match self.period_type {
            PERIOD_QUARTERLY => 3,
            PERIOD_SEMI_ANNUAL => 6,
            PERIOD_YEARLY => 12,
            _ => 1,
        }
    }

    /// The billing period containing `date`.
    pub fn period(&self, date: NaiveDate) -> Period {
        period_containing(self.start, self.period_months(), date)
    }
}

impl Entity for Contract {
    const NAME: &'static str = "Contracts";
    const SINGULAR: &'static str = "Contract";
    const FIELDS: &'static [(&'static str, FieldType)] = &[
        ("id", I),
        ("companyID", I),
        ("contractName", T),
        ("contractNumber", T),
        ("contractType", I),
        ("contractCategory", I),
        ("contractPeriodType", I),
        ("status", I),
        ("startDate", D),
        ("endDate", D),
        ("billingPreference", I),
        ("billToCompanyID", I),
        ("billToCompanyContactID", I),
        ("contactID", I),
        ("isDefaultContract", B),
        ("renewedContractID", I),
        ("setupFee", N),
        ("serviceLevelAgreementID", I),
        ("opportunityID", I),
        ("purchaseOrderNumber", T),
        ("description", T),
        ("estimatedRevenue", N),
        ("lastModifiedDateTime", D),
    ];

    fn id(&self) -> i64 {
        self.id
    }

    fn value(&self, field: &str) -> Value {
        match field {
            "id" => self.id.into(),
            "companyID" => self.company_id.into(),
            "contractName" => self.name.as_str().into(),
            "contractNumber" => format!("C{}", self.id).into(),
            "contractType" => self.contract_type.into(),
            "contractCategory" => 1.into(),
            "contractPeriodType" => {
                int((self.contract_type == CONTRACT_TYPE_RECURRING).then_some(self.period_type))
            }
            "status" => self.status.into(),
            "startDate" => date(Some(self.start)),
            "endDate" => date(Some(self.end)),
            "billingPreference" => 2.into(),
            "isDefaultContract" => self.is_default.into(),
            "setupFee" => dec(self.setup_fee),
            "serviceLevelAgreementID" => 1.into(),
            "lastModifiedDateTime" => instant_z(self.modified).into(),
            _ => Value::Null,
        }
    }
}

/// A service on a contract (no quantity: units live in
/// [`ContractServiceUnit`]s).
#[derive(Debug, Clone)]
pub struct ContractService {
    /// Id.
    pub id: i64,
    /// `contractID`.
    pub contract_id: i64,
    /// `serviceID`.
    pub service_id: i64,
    /// `unitPrice`.
    pub unit_price: Decimal,
    /// `unitCost`.
    pub unit_cost: Decimal,
    /// `invoiceDescription`.
    pub invoice_description: Option<String>,
}

impl Entity for ContractService {
    const NAME: &'static str = "ContractServices";
    const SINGULAR: &'static str = "ContractService";
    const FIELDS: &'static [(&'static str, FieldType)] = &[
        ("id", I),
        ("contractID", I),
        ("serviceID", I),
        ("unitPrice", N),
        ("unitCost", N),
        // No `adjustedPrice`: that is the SOAP API's name; REST has only
        // `internalCurrencyAdjustedPrice` (api-facts §3.2 [A10]), and an
        // unknown IncludeFields name is refused.
        ("internalCurrencyUnitPrice", N),
        ("internalCurrencyAdjustedPrice", N),
        ("invoiceDescription", T),
        ("internalDescription", T),
        ("quoteItemID", I),
    ];

    fn id(&self) -> i64 {
        self.id
    }

    fn value(&self, field: &str) -> Value {
        match field {
            "id" => self.id.into(),
            "contractID" => self.contract_id.into(),
            "serviceID" => self.service_id.into(),
            "unitPrice" | "internalCurrencyUnitPrice" | "internalCurrencyAdjustedPrice" => {
                money(self.unit_price)
            }
            "unitCost" => money(self.unit_cost),
            "invoiceDescription" => text(self.invoice_description.as_deref()),
            _ => Value::Null,
        }
    }
}

/// The units of one contract service for one period (or, for a proration,
/// part of a period).
#[derive(Debug, Clone)]
pub struct ContractServiceUnit {
    /// Id.
    pub id: i64,
    /// `contractID`.
    pub contract_id: i64,
    /// `contractServiceID`.
    pub contract_service_id: i64,
    /// `serviceID`.
    pub service_id: i64,
    /// `startDate`.
    pub start: NaiveDate,
    /// `endDate` (inclusive).
    pub end: NaiveDate,
    /// `units`.
    pub units: i64,
    /// `price` per unit for this span.
    pub price: Decimal,
    /// `cost` per unit for this span.
    pub cost: Decimal,
    /// `approveAndPostDate`: set once the period is invoiced.
    pub posted: Option<NaiveDate>,
    /// Whether this is a proration for part of a period.
    pub proration: bool,
}

impl Entity for ContractServiceUnit {
    const NAME: &'static str = "ContractServiceUnits";
    const SINGULAR: &'static str = "ContractServiceUnit";
    const FIELDS: &'static [(&'static str, FieldType)] = &[
        ("id", I),
        ("contractID", I),
        ("contractServiceID", I),
        ("serviceID", I),
        ("startDate", D),
        ("endDate", D),
        ("units", I),
        ("price", N),
        ("cost", N),
        ("internalCurrencyPrice", N),
        ("approveAndPostDate", D),
        ("vendorCompanyID", I),
        ("organizationalLevelAssociationID", I),
    ];

    fn id(&self) -> i64 {
        self.id
    }

    fn value(&self, field: &str) -> Value {
        match field {
            "id" => self.id.into(),
            "contractID" => self.contract_id.into(),
            "contractServiceID" => self.contract_service_id.into(),
            "serviceID" => self.service_id.into(),
            "startDate" => date(Some(self.start)),
            "endDate" => date(Some(self.end)),
            "units" => self.units.into(),
            "price" | "internalCurrencyPrice" => money(self.price),
            "cost" => money(self.cost),
            "approveAndPostDate" => date(self.posted),
            _ => Value::Null,
        }
    }
}

/// A unit change posted to a contract service (create-only in the API).
#[derive(Debug, Clone)]
pub struct Adjustment {
    /// Id.
    pub id: i64,
    /// `contractID`.
    pub contract_id: i64,
    /// `serviceID`.
    pub service_id: i64,
    /// `contractServiceID`.
    pub contract_service_id: i64,
    /// `effectiveDate`.
    pub effective: NaiveDate,
    /// `unitChange`.
    pub unit_change: i64,
    /// `adjustedUnitPrice`.
    pub adjusted_unit_price: Option<Decimal>,
    /// `adjustedUnitCost`.
    pub adjusted_unit_cost: Option<Decimal>,
}

impl Entity for Adjustment {
    const NAME: &'static str = "ContractServiceAdjustments";
    const SINGULAR: &'static str = "ContractServiceAdjustment";
    const FIELDS: &'static [(&'static str, FieldType)] = &[
        ("id", I),
        ("contractID", I),
        ("serviceID", I),
        ("contractServiceID", I),
        ("effectiveDate", D),
        ("unitChange", I),
        ("adjustedUnitPrice", N),
        ("adjustedUnitCost", N),
        ("allowRepeatService", B),
        ("quoteItemID", I),
    ];

    fn id(&self) -> i64 {
        self.id
    }

    fn value(&self, field: &str) -> Value {
        match field {
            "id" => self.id.into(),
            "contractID" => self.contract_id.into(),
            "serviceID" => self.service_id.into(),
            "contractServiceID" => self.contract_service_id.into(),
            "effectiveDate" => date(Some(self.effective)),
            "unitChange" => self.unit_change.into(),
            "adjustedUnitPrice" => dec(self.adjusted_unit_price),
            "adjustedUnitCost" => dec(self.adjusted_unit_cost),
            "allowRepeatService" => false.into(),
            _ => Value::Null,
        }
    }
}

/// A catalogue service (`Services`); its `name` is the catalogue
/// identifier.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// Id.
    pub id: i64,
    /// The product.
    pub product: &'static Product,
}

impl Entity for Service {
    const NAME: &'static str = "Services";
    const SINGULAR: &'static str = "Service";
    const FIELDS: &'static [(&'static str, FieldType)] = &[
        ("id", I),
        ("name", T),
        ("description", T),
        ("invoiceDescription", T),
        ("unitPrice", N),
        ("unitCost", N),
        ("markupRate", N),
        ("isActive", B),
        ("periodType", I),
        ("billingCodeID", I),
        ("vendorCompanyID", I),
        ("serviceLevelAgreementID", I),
        ("createDate", D),
        ("lastModifiedDate", D),
    ];

    fn id(&self) -> i64 {
        self.id
    }

    fn value(&self, field: &str) -> Value {
        match field {
            "id" => self.id.into(),
            "name" => self.product.identifier.into(),
            "description" | "invoiceDescription" => self.product.description.into(),
            "unitPrice" => money(cents(self.product.unit_price_cents)),
            "unitCost" => money(cents(self.product.unit_cost_cents)),
            "isActive" => true.into(),
            "periodType" => PERIOD_MONTHLY.into(),
            "billingCodeID" => 29_682_801.into(),
            "createDate" | "lastModifiedDate" => "2020-01-01T00:00:00Z".into(),
            _ => Value::Null,
        }
    }
}

/// The services, one per catalogue product.
pub fn services() -> Vec<Service> {
    PRODUCTS
        .iter()
        .enumerate()
        .map(|(i, product)| Service {
            id: FIRST_SERVICE_ID + i as i64,
            product,
        })
        .collect()
}

/// Everything the Autotask emulator serves.
#[derive(Debug, Clone, Default)]
pub struct AtData {
    /// Companies by ascending id.
    pub companies: Vec<Company>,
    /// Contracts by ascending id.
    pub contracts: Vec<Contract>,
    /// Contract services by ascending id.
    pub contract_services: Vec<ContractService>,
    /// Units by ascending id.
    pub units: Vec<ContractServiceUnit>,
    /// Adjustments by ascending id.
    pub adjustments: Vec<Adjustment>,
    /// The catalogue.
    pub services: Vec<Service>,
    /// Next ids.
    pub next_contract_service_id: i64,
    /// Next unit id.
    pub next_unit_id: i64,
    /// Next adjustment id.
    pub next_adjustment_id: i64,
}

/// The first day of the window of periods seeded with units: two months
/// before today's month (both posted), the current month and the next.
pub fn window(today: NaiveDate) -> Period {
    Period {
        start: add_months(month_start(today), -2),
        end: month_end(add_months(today, 1)),
    }
}

/// Days after a period's end when the seeded periods were approved and
/// posted.
pub const POSTED_AFTER_DAYS: u64 = 2;

/// Whether the period ending `end` is approved and posted (periods ending
/// before today's month began are).
pub fn is_posted(end: NaiveDate, today: NaiveDate) -> bool {
    end < month_start(today)
}

fn at(date: NaiveDate, hour: u32) -> DateTime<Utc> {
    date.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or_default())
        .and_utc()
}

impl AtData {
    /// Seeds the data for `world`'s PSA customers relative to `today`.
    pub fn seed(world: &World, plans: &[CustomerPlan], today: NaiveDate) -> Self {
        let mut data = AtData {
            services: services(),
            next_contract_service_id: FIRST_CONTRACT_SERVICE_ID,
            next_unit_id: FIRST_UNIT_ID,
            next_adjustment_id: FIRST_ADJUSTMENT_ID,
            ..AtData::default()
        };
        let mut next_contract = FIRST_CONTRACT_ID;
        let term_end = month_end(add_months(today, 18));
        for plan in plans {
            let customer = &world.customers[plan.customer];
            let company_id = FIRST_COMPANY_ID + plan.position as i64;
            data.companies.push(Company {
                id: company_id,
                name: customer.name.clone(),
                number: format!("CUST{:05}", plan.position + 1),
                company_type: COMPANY_TYPE_CUSTOMER,
                active: true,
                web: customer.domain.clone(),
                created: at(plan.start, 9),
            });
            let main = Contract {
                id: next_contract,
                company_id,
                name: format!("Managed Services - {}", customer.name),
                contract_type: CONTRACT_TYPE_RECURRING,
                period_type: PERIOD_MONTHLY,
                status: STATUS_ACTIVE,
                start: plan.start,
                end: term_end,
                is_default: true,
                setup_fee: None,
                modified: at(plan.start, 10),
            };
            next_contract += 1;
            for (index, line) in plan.lines.iter().enumerate() {
                let history = plan
                    .replaced
                    .filter(|r| r.line == index)
                    .map(|r| (r.old_quantity, r.ended));
                data.seed_service(
                    &main,
                    line.product,
                    line.quantity,
                    line.effective,
                    history,
                    today,
                );
            }
            let extra = match plan.extra {
                // Autotask has no arrears flag per contract: the line stays
                // on the main contract.
                Some(Extra::Arrears) => {
                    if let Some(line) = plan.moved {
                        data.seed_service(
                            &main,
                            line.product,
                            line.quantity,
                            line.effective,
                            None,
                            today,
                        );
                    }
                    None
                }
                other => other,
            };
            data.contracts.push(main);
            let Some(extra) = extra else {
                continue;
            };
            let mut contract = Contract {
                id: next_contract,
                company_id,
                name: String::new(),
                contract_type: CONTRACT_TYPE_RECURRING,
                period_type: PERIOD_MONTHLY,
                status: STATUS_ACTIVE,
                start: plan.extra_start,
                end: term_end,
                is_default: false,
                setup_fee: None,
                modified: at(plan.extra_start, 11),
            };
            next_contract += 1;
            let mut with_services = true;
            match extra {
                Extra::Cancelled => {
                    contract.name = "Managed Services (previous)".to_owned();
                    contract.status = STATUS_INACTIVE;
                    contract.end = plan.extra_end.unwrap_or(term_end);
                }
                Extra::Annual => {
                    contract.name = "Annual Licensing".to_owned();
                    contract.period_type = PERIOD_YEARLY;
                }
                Extra::Inactive => {
                    contract.name = "Managed Services (on hold)".to_owned();
                    contract.status = STATUS_INACTIVE;
                }
                Extra::Expired => {
                    contract.name = "Managed Services 2-year term".to_owned();
                    contract.end = plan.extra_end.unwrap_or(term_end);
                }
                Extra::OtherType => {
                    contract.name = "Block Hours 10".to_owned();
                    contract.contract_type = CONTRACT_TYPE_BLOCK_HOURS;
                    with_services = false;
                }
                Extra::NoCycle => {
                    contract.name = "Time & Materials".to_owned();
                    contract.contract_type = CONTRACT_TYPE_TIME_AND_MATERIALS;
                    with_services = false;
                }
                Extra::OneTime => {
                    contract.name = "Onboarding".to_owned();
                    contract.contract_type = CONTRACT_TYPE_FIXED_PRICE;
                    contract.setup_fee = Some(cents(150_000));
                    contract.end = month_end(contract.start);
                    with_services = false;
                }
                Extra::Arrears => {}
            }
            if with_services {
                for line in plan.moved.iter().chain(plan.stale.iter()) {
                    data.seed_service(
                        &contract,
                        line.product,
                        line.quantity,
                        line.effective,
                        None,
                        today,
                    );
                }
            }
            data.contracts.push(contract);
        }
        // Former customers entered twice, now "Dead" and inactive.
        let dead: Vec<Company> = plans
            .iter()
            .filter(|p| p.position % 13 == 6)
            .enumerate()
            .map(|(n, plan)| {
                let original = &data.companies[plan.position];
                Company {
                    id: FIRST_COMPANY_ID + plans.len() as i64 + n as i64,
                    name: original.name.clone(),
                    number: format!("{}-OLD", original.number),
                    company_type: COMPANY_TYPE_DEAD,
                    active: false,
                    web: original.web.clone(),
                    created: original.created + chrono::Duration::days(3),
                }
            })
            .collect();
        data.companies.extend(dead);
        data
    }

    /// Adds a contract service with units for every period of the window
    /// it covers. `history` is an earlier quantity and the last day it was
    /// billed; the adjustment that changed it is recorded too.
    fn seed_service(
        &mut self,
        contract: &Contract,
        product: &'static Product,
        quantity: u32,
        effective: NaiveDate,
        history: Option<(u32, NaiveDate)>,
        today: NaiveDate,
    ) {
        let service_id = self.service_for(product).map_or(0, |s| s.id);
        let service = ContractService {
            id: self.next_contract_service_id,
            contract_id: contract.id,
            service_id,
            unit_price: cents(product.unit_price_cents),
            unit_cost: cents(product.unit_cost_cents),
            invoice_description: None,
        };
        self.next_contract_service_id += 1;
        let window = window(today);
        let mut period = contract.period(window.start.max(contract.start).max(effective));
        while period.start <= window.end && period.start <= contract.end {
            let units = match history {
                Some((old, ended)) if period.end <= ended => old,
                _ => quantity,
            };
            self.push_unit(contract, &service, period, i64::from(units), today);
            let Some(next) = period.end.succ_opt() else {
                break;
            };
            period = contract.period(next);
        }
        if let Some((old, ended)) = history {
            let id = self.next_adjustment_id;
            self.next_adjustment_id += 1;
            self.adjustments.push(Adjustment {
                id,
                contract_id: contract.id,
                service_id,
                contract_service_id: service.id,
                effective: ended.succ_opt().unwrap_or(ended),
                unit_change: i64::from(quantity) - i64::from(old),
                adjusted_unit_price: None,
                adjusted_unit_cost: None,
            });
        }
        self.contract_services.push(service);
    }

    /// Appends a full-period unit record (posted when the period is past).
    pub fn push_unit(
        &mut self,
        contract: &Contract,
        service: &ContractService,
        period: Period,
        units: i64,
        today: NaiveDate,
    ) {
        let end = period.end.min(contract.end);
        let posted = is_posted(end, today)
            .then(|| end.checked_add_days(Days::new(POSTED_AFTER_DAYS)))
            .flatten();
        self.units.push(ContractServiceUnit {
            id: self.next_unit_id,
            contract_id: contract.id,
            contract_service_id: service.id,
            service_id: service.service_id,
            start: period.start,
            end,
            units,
            price: service.unit_price,
            cost: service.unit_cost,
            posted,
            proration: false,
        });
        self.next_unit_id += 1;
    }

    /// The service for a product.
    pub fn service_for(&self, product: &Product) -> Option<&Service> {
        self.services.iter().find(|s| s.product == product)
    }

    /// The contract with `id`.
    pub fn contract(&self, id: i64) -> Option<&Contract> {
        find(&self.contracts, id)
    }
}

/// Binary search by id in a list sorted by id.
pub fn find<E: Entity>(records: &[E], id: i64) -> Option<&E> {
    records
        .binary_search_by_key(&id, Entity::id)
        .ok()
        .map(|i| &records[i])
}
