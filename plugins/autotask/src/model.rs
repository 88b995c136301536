//! Autotask entities as the API serves them and their mapping to the WIT
//! records. Parsed tolerantly (the SDK's `tolerant` helpers): unknown
//! fields are ignored, ids and picklist values may come as numbers or
//! strings, dates as date-times or dates, and a sentinel date is no date.
//! Field names and their sources: `docs/connectors/autotask.md`.
//!
//! Enumerations (picklists): contract `status` 1 active / 0 inactive;
//! `contractType` 1 Time & Materials, 3 Fixed Price, 4 Block Hours,
//! 6 Retainer, 7 Recurring Service, 8 Per Ticket; `contractPeriodType`
//! (recurring contracts) 1 monthly, 2 quarterly, 3 semi-annual, 4 yearly.

use rust_decimal::Decimal;
use serde::Deserialize;
use trueup_connector::prelude::*;
use trueup_connector::psa::{BillingCycle, BillingTiming, Company, Contract, ContractStatus};
use trueup_connector::tolerant::{self, opt_date};
use trueup_connector::values::days_from_civil;

use crate::api::HasId;

/// `contractType` of a Recurring Service contract, the only type with
/// contract services.
pub const RECURRING_SERVICE: i64 = 7;
/// `contractType` of a Fixed Price contract (billed once).
pub const FIXED_PRICE: i64 = 3;

/// Contract type names by `contractType`.
pub const CONTRACT_TYPES: &[(i64, &str)] = &[
    (1, "Time & Materials"),
    (3, "Fixed Price"),
    (4, "Block Hours"),
    (6, "Retainer"),
    (7, "Recurring Service"),
    (8, "Per Ticket"),
];

/// The name of `contractType` `kind`.
pub fn contract_type_name(kind: i64) -> String {
    CONTRACT_TYPES.iter().find(|(k, _)| *k == kind).map_or_else(
        || format!("Contract type {kind}"),
        |(_, name)| (*name).to_owned(),
    )
}

fn normalized(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(" and ", " & ")
}

/// A contract filter entry: a type name (`Recurring Service`), a
/// `contractType` number (`7`), or a contract category `category:<id>`.
pub enum TypeFilter {
    /// `contractType` in these.
    Type(i64),
    /// `contractCategory` in these.
    Category(i64),
}

/// Parses the filter's `types`.
///
/// # Errors
/// `invalid-config` naming an entry that is none of the above.
pub fn type_filters(types: &[String]) -> Result<Vec<TypeFilter>, ConnectorError> {
    types
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|entry| {
            let text = entry.trim();
            if let Some(category) = text.strip_prefix("category:") {
                return category.trim().parse().map(TypeFilter::Category).map_err(|_| {
                    ConnectorError::InvalidConfig(format!(
                        "contract type filter {entry:?}: a category is written category:<id>, e.g. category:3"
                    ))
                });
            }
            if let Ok(kind) = text.parse() {
                return Ok(TypeFilter::Type(kind));
            }
            CONTRACT_TYPES
                .iter()
                .find(|(_, name)| normalized(name) == normalized(text))
                .map(|(kind, _)| TypeFilter::Type(*kind))
                .ok_or_else(|| {
                    ConnectorError::InvalidConfig(format!(
                        "contract type filter {entry:?} is not an Autotask contract type; use one of {}, a contractType number, or category:<id>",
                        CONTRACT_TYPES
                            .iter()
                            .map(|(_, n)| format!("{n:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        })
        .collect()
}

/// `Companies` record.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AtCompany {
    #[serde(deserialize_with = "tolerant::id")]
    id: i64,
    company_name: String,
    #[serde(default)]
    company_number: Option<String>,
    #[serde(default, deserialize_with = "tolerant::opt_id")]
    company_type: Option<i64>,
    #[serde(default)]
    is_active: Option<bool>,
    #[serde(default)]
    web_address: Option<String>,
}

impl HasId for AtCompany {
    fn id(&self) -> i64 {
        self.id
    }
}

/// Fields asked for on `Companies`.
pub const COMPANY_FIELDS: &[&str] = &[
    "id",
    "companyName",
    "companyNumber",
    "companyType",
    "isActive",
    "webAddress",
];

/// The lower-case web domain of a web address, when it has one.
pub fn domain_of(web: &str) -> Option<String> {
    let text = web.trim().to_ascii_lowercase();
    let text = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(&text);
    let host = text
        .split(['/', '?', '#', ':'])
        .next()
        .unwrap_or_default()
        .trim_start_matches("www.");
    (host.contains('.') && !host.starts_with('.') && !host.ends_with('.')).then(|| host.to_owned())
}

impl AtCompany {
    /// The WIT company.
    pub fn into_wit(self) -> Company {
        let mut attributes = Vec::new();
        if let Some(kind) = self.company_type {
            attributes.push(("company-type".to_owned(), kind.to_string()));
        }
        Company {
            id: self.id.to_string(),
            name: self.company_name,
            identifier: self.company_number.filter(|n| !n.trim().is_empty()),
            domains: self
                .web_address
                .as_deref()
                .and_then(domain_of)
                .into_iter()
                .collect(),
            active: self.is_active.unwrap_or(true),
            attributes,
        }
    }
}

/// `Contracts` record.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AtContract {
    /// Id.
    #[serde(deserialize_with = "tolerant::id")]
    pub id: i64,
    #[serde(rename = "companyID")]
    #[serde(deserialize_with = "tolerant::id")]
    company_id: i64,
    contract_name: String,
    #[serde(default)]
    contract_number: Option<String>,
    /// `contractType`.
    #[serde(deserialize_with = "tolerant::id")]
    pub contract_type: i64,
    #[serde(default, deserialize_with = "tolerant::opt_id")]
    contract_category: Option<i64>,
    #[serde(default, deserialize_with = "tolerant::opt_id")]
    contract_period_type: Option<i64>,
    #[serde(deserialize_with = "tolerant::id")]
    status: i64,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default)]
    is_default_contract: Option<bool>,
}

impl HasId for AtContract {
    fn id(&self) -> i64 {
        self.id
    }
}

/// Fields asked for on `Contracts`.
pub const CONTRACT_FIELDS: &[&str] = &[
    "id",
    "companyID",
    "contractName",
    "contractNumber",
    "contractType",
    "contractCategory",
    "contractPeriodType",
    "status",
    "startDate",
    "endDate",
    "isDefaultContract",
];

/// The WIT cycle of a contract.
pub fn billing_cycle(contract_type: i64, period_type: Option<i64>) -> BillingCycle {
    match (contract_type, period_type) {
        (RECURRING_SERVICE, Some(1)) => BillingCycle::Monthly,
        (RECURRING_SERVICE, Some(2)) => BillingCycle::Quarterly,
        (RECURRING_SERVICE, Some(3)) => BillingCycle::SemiAnnual,
        (RECURRING_SERVICE, Some(4)) => BillingCycle::Annual,
        (RECURRING_SERVICE, Some(other)) => {
            BillingCycle::Other(format!("contractPeriodType {other}"))
        }
        (RECURRING_SERVICE, None) => BillingCycle::None,
        (FIXED_PRICE, _) => BillingCycle::OneTime,
        _ => BillingCycle::None,
    }
}

impl AtContract {
    /// The WIT contract. Autotask has only active (1) and inactive (0):
    /// an active contract whose end date is before `as_of` is `expired`.
    /// (An inactive contract still bills in Autotask; the attribute
    /// `autotask-status` keeps the raw value.) Recurring services bill in
    /// advance and are prorated by default.
    ///
    /// # Errors
    /// `internal` for a malformed date.
    pub fn to_wit(
        &self,
        as_of: &Date,
        posted_through: Option<Date>,
    ) -> Result<Contract, ConnectorError> {
        // WIT 0.1 cannot exclude one record: an unreadable date fails the
        // call, naming the contract and the field so the MSP can fix it.
        let date = |field: &str, text: Option<&str>| {
            opt_date(text).map_err(|error| {
                ConnectorError::Internal(format!(
                    "contract {}: {field} {:?} is not a date ({error}); correct it in Autotask and sync again",
                    self.id,
                    text.unwrap_or_default()
                ))
            })
        };
        let start = date("startDate", self.start_date.as_deref())?;
        let end = date("endDate", self.end_date.as_deref())?;
        let ended = end
            .as_ref()
            .is_some_and(|e| days_from_civil(e) < days_from_civil(as_of));
        let status = match (self.status, ended) {
            (1, false) => ContractStatus::Active,
            (1, true) => ContractStatus::Expired,
            _ => ContractStatus::Inactive,
        };
        let mut attributes = vec![
            ("autotask-status".to_owned(), self.status.to_string()),
            (
                "contract-type-id".to_owned(),
                self.contract_type.to_string(),
            ),
        ];
        if let Some(category) = self.contract_category {
            attributes.push(("contract-category".to_owned(), category.to_string()));
        }
        if let Some(number) = &self.contract_number {
            attributes.push(("contract-number".to_owned(), number.clone()));
        }
        if let Some(default) = self.is_default_contract {
            attributes.push(("default-contract".to_owned(), default.to_string()));
        }
        Ok(Contract {
            id: self.id.to_string(),
            company_id: self.company_id.to_string(),
            name: self.contract_name.clone(),
            contract_type: contract_type_name(self.contract_type),
            status,
            billing_cycle: billing_cycle(self.contract_type, self.contract_period_type),
            start_date: start,
            end_date: end,
            timing: BillingTiming::Advance,
            prorate: self.contract_type == RECURRING_SERVICE,
            posted_through,
            attributes,
        })
    }
}

/// `ContractServices` record (no quantity: units are per period).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AtContractService {
    /// Id.
    #[serde(deserialize_with = "tolerant::id")]
    pub id: i64,
    /// `contractID`.
    #[serde(rename = "contractID")]
    #[serde(deserialize_with = "tolerant::id")]
    pub contract_id: i64,
    /// `serviceID`.
    #[serde(rename = "serviceID")]
    #[serde(deserialize_with = "tolerant::id")]
    pub service_id: i64,
    /// `unitPrice`.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub unit_price: Option<Decimal>,
    /// `unitCost`.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub unit_cost: Option<Decimal>,
    /// `internalCurrencyAdjustedPrice` (REST has no `adjustedPrice`, the
    /// SOAP API's name, which a REST query's IncludeFields refuses).
    #[serde(
        default,
        rename = "internalCurrencyAdjustedPrice",
        with = "rust_decimal::serde::arbitrary_precision_option"
    )]
    pub adjusted_price: Option<Decimal>,
    /// `invoiceDescription`.
    #[serde(default)]
    pub invoice_description: Option<String>,
}

impl HasId for AtContractService {
    fn id(&self) -> i64 {
        self.id
    }
}

/// Fields asked for on `ContractServices`.
pub const SERVICE_FIELDS: &[&str] = &[
    "id",
    "contractID",
    "serviceID",
    "unitPrice",
    "unitCost",
    "internalCurrencyAdjustedPrice",
    "invoiceDescription",
];

/// `ContractServiceUnits` record: the units of one service for one period,
/// or (a proration) for part of one.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AtUnit {
    /// Id.
    #[serde(deserialize_with = "tolerant::id")]
    pub id: i64,
    /// `contractServiceID`.
    #[serde(rename = "contractServiceID")]
    #[serde(deserialize_with = "tolerant::id")]
    pub contract_service_id: i64,
    /// First day.
    pub start_date: String,
    /// Last day (inclusive).
    pub end_date: String,
    /// Units (whole numbers).
    #[serde(deserialize_with = "tolerant::id")]
    pub units: i64,
    /// When the period was approved and posted.
    #[serde(default)]
    pub approve_and_post_date: Option<String>,
}

impl HasId for AtUnit {
    fn id(&self) -> i64 {
        self.id
    }
}

/// Fields asked for on `ContractServiceUnits`.
pub const UNIT_FIELDS: &[&str] = &[
    "id",
    "contractServiceID",
    "startDate",
    "endDate",
    "units",
    "approveAndPostDate",
];

/// A unit record's dates as day numbers.
///
/// # Errors
/// `internal` for a malformed date.
pub fn span(unit: &AtUnit) -> Result<(i64, i64), ConnectorError> {
    let start = trueup_connector::values::date_from_iso(&unit.start_date)?;
    let end = trueup_connector::values::date_from_iso(&unit.end_date)?;
    Ok((days_from_civil(&start), days_from_civil(&end)))
}

/// The units in effect on `day`: the sum over the records covering it (a
/// period's record plus the proration records Autotask adds for changes
/// inside the period). When no record covers `day` (a period not generated
/// yet), the units in effect on the last day covered before it, which
/// Autotask carries into new periods. `None` when nothing covers `day` or
/// any day before it.
///
/// # Errors
/// `internal` for a malformed date.
pub fn units_on(units: &[&AtUnit], day: i64) -> Result<Option<i64>, ConnectorError> {
    let mut spans = Vec::with_capacity(units.len());
    for unit in units {
        spans.push((span(unit)?, unit.units));
    }
    let covering = |d: i64| -> Option<i64> {
        let mut any = false;
        let mut sum = 0;
        for ((start, end), n) in &spans {
            if *start <= d && d <= *end {
                any = true;
                sum += n;
            }
        }
        any.then_some(sum)
    };
    if let Some(sum) = covering(day) {
        return Ok(Some(sum));
    }
    let last = spans
        .iter()
        .map(|((_, end), _)| *end)
        .filter(|end| *end < day)
        .max();
    Ok(last.and_then(covering))
}

/// `Services` record (the catalogue): `name` is the identifier vendor SKUs
/// are mapped to.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AtService {
    /// Id.
    #[serde(deserialize_with = "tolerant::id")]
    pub id: i64,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Price per unit, when asked for ([`SERVICE_PRICE_FIELDS`]).
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub unit_price: Option<Decimal>,
    /// Cost per unit, when asked for.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub unit_cost: Option<Decimal>,
    /// Whether it may be sold, when asked for.
    #[serde(default)]
    pub is_active: Option<bool>,
}

impl HasId for AtService {
    fn id(&self) -> i64 {
        self.id
    }
}

/// Fields asked for on `Services`.
pub const CATALOG_FIELDS: &[&str] = &["id", "name", "description"];

/// Fields asked for on `Services` when adding one to a contract: the
/// catalogue price and cost the new contract service gets.
pub const SERVICE_PRICE_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "unitPrice",
    "unitCost",
    "isActive",
];

/// The WIT line of a contract service, with the units in effect on `on`
/// (from `units`, the service's unit records). A service with no units on
/// or before `on` has quantity 0 and the attribute `units` = `none`.
///
/// # Errors
/// `internal` for a malformed date or a number that does not fit.
pub fn service_line(
    service: &AtContractService,
    catalog: Option<&AtService>,
    units: &[&AtUnit],
    on: &Date,
) -> Result<trueup_connector::psa::RecurringService, ConnectorError> {
    use trueup_connector::values;
    let day = days_from_civil(on);
    let quantity = units_on(units, day)?;
    let mut attributes = vec![("units-on".to_owned(), values::date_to_iso(on))];
    if quantity.is_none() {
        attributes.push(("units".to_owned(), "none".to_owned()));
    }
    let mut posted = false;
    for unit in units {
        let (start, end) = span(unit)?;
        if start <= day && day <= end && unit.approve_and_post_date.is_some() {
            posted = true;
        }
    }
    if posted {
        attributes.push(("period-posted".to_owned(), "true".to_owned()));
    }
    if let Some(adjusted) = service.adjusted_price {
        attributes.push((
            "adjusted-price".to_owned(),
            adjusted.normalize().to_string(),
        ));
    }
    let identifier = catalog.map(|c| c.name.clone()).unwrap_or_default();
    let description = service
        .invoice_description
        .clone()
        .filter(|d| !d.trim().is_empty())
        .or_else(|| catalog.and_then(|c| c.description.clone()))
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| identifier.clone());
    Ok(trueup_connector::psa::RecurringService {
        id: service.id.to_string(),
        contract_id: service.contract_id.to_string(),
        product_id: service.service_id.to_string(),
        product_identifier: identifier,
        description,
        quantity: values::integer(quantity.unwrap_or(0)),
        unit_price: values::decimal(service.unit_price.unwrap_or_default())?,
        unit_cost: values::decimal(service.unit_cost.unwrap_or_default())?,
        // Autotask keeps a service's history in its unit records, not in
        // dates on the service.
        effective_date: None,
        cancelled_date: None,
        billable: true,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(id: i64, start: &str, end: &str, units: i64) -> AtUnit {
        AtUnit {
            id,
            contract_service_id: 1,
            start_date: format!("{start}T00:00:00Z"),
            end_date: format!("{end}T00:00:00Z"),
            units,
            approve_and_post_date: None,
        }
    }

    fn day(text: &str) -> i64 {
        days_from_civil(&trueup_connector::values::date_from_iso(text).expect("date"))
    }

    #[test]
    fn records_parse_tolerantly() {
        // Ids and picklist values as strings, a date without a time, a
        // sentinel end date and unknown fields: an open-ended active
        // monthly contract (the old strict parsing refused the string ids).
        let contract: AtContract = serde_json::from_value(serde_json::json!({
            "id": "29684001", "companyID": "0174", "contractName": "Managed",
            "contractType": "7", "contractPeriodType": 1, "status": "1",
            "startDate": "2025-01-01", "endDate": "9999-12-31T00:00:00Z",
            "userDefinedFields": [], "someFutureField": 1
        }))
        .expect("contract JSON");
        let as_of = Date {
            year: 2026,
            month: 11,
            day: 25,
        };
        let wit = contract.to_wit(&as_of, None).expect("maps");
        assert_eq!(
            (wit.id.as_str(), wit.company_id.as_str()),
            ("29684001", "174")
        );
        assert!(wit.end_date.is_none(), "{wit:?}");
        assert_eq!(format!("{:?}", wit.status), "ContractStatus::Active");
        assert_eq!(format!("{:?}", wit.billing_cycle), "BillingCycle::Monthly");
        let service: AtContractService = serde_json::from_value(serde_json::json!({
            "id": 5, "contractID": "29684001", "serviceID": "31",
            "unitPrice": 4.5, "internalCurrencyAdjustedPrice": 4.0
        }))
        .expect("service JSON");
        assert_eq!((service.contract_id, service.service_id), (29_684_001, 31));
        let error = serde_json::from_value::<AtContract>(serde_json::json!({
            "id": 1, "companyID": {"id": 2}, "contractName": "x",
            "contractType": 7, "status": 1
        }))
        .expect_err("an object is no id");
        assert!(error.to_string().contains("expected an id"), "{error}");
        let bad: AtContract = serde_json::from_value(serde_json::json!({
            "id": 88, "companyID": 2, "contractName": "x", "contractType": 7,
            "status": 1, "endDate": "not a date"
        }))
        .expect("contract JSON");
        let text = format!("{:?}", bad.to_wit(&as_of, None).expect_err("no date"));
        assert!(
            text.contains("contract 88") && text.contains("endDate"),
            "{text}"
        );
    }

    #[test]
    fn units_on_a_day_sum_the_period_and_its_prorations() {
        let records = [
            unit(1, "2026-10-01", "2026-10-31", 10),
            unit(2, "2026-11-01", "2026-11-30", 10),
            // +3 from the 16th: a proration inside November.
            unit(3, "2026-11-16", "2026-11-30", 3),
            unit(4, "2026-12-01", "2026-12-31", 13),
        ];
        let refs: Vec<&AtUnit> = records.iter().collect();
        let cases = [
            ("2026-10-20", Some(10)),
            ("2026-11-15", Some(10)),
            ("2026-11-16", Some(13)),
            ("2026-12-01", Some(13)),
            // Beyond the generated periods: what the last day carried.
            ("2027-02-01", Some(13)),
            ("2026-09-30", None),
        ];
        for (on, expected) in cases {
            assert_eq!(units_on(&refs, day(on)).expect("dates"), expected, "{on}");
        }
        assert_eq!(units_on(&[], day("2026-11-01")).expect("dates"), None);
    }

    #[test]
    fn contract_types_parse_by_name_number_or_category() {
        let parsed = type_filters(&[
            "Recurring Service".into(),
            "time and materials".into(),
            "4".into(),
            "category:9".into(),
            " ".into(),
        ])
        .expect("valid");
        let kinds: Vec<String> = parsed
            .iter()
            .map(|f| match f {
                TypeFilter::Type(t) => format!("type {t}"),
                TypeFilter::Category(c) => format!("category {c}"),
            })
            .collect();
        assert_eq!(kinds, ["type 7", "type 1", "type 4", "category 9"]);
        assert!(type_filters(&["Managed Services".into()]).is_err());
        assert!(type_filters(&["category:x".into()]).is_err());
    }

    #[test]
    fn cycles_follow_type_and_period_type() {
        let cases = [
            (7, Some(1), "BillingCycle::Monthly"),
            (7, Some(2), "BillingCycle::Quarterly"),
            (7, Some(3), "BillingCycle::SemiAnnual"),
            (7, Some(4), "BillingCycle::Annual"),
            (7, Some(9), "BillingCycle::Other(\"contractPeriodType 9\")"),
            (3, None, "BillingCycle::OneTime"),
            (1, None, "BillingCycle::None"),
            (4, Some(1), "BillingCycle::None"),
        ];
        for (kind, period, expected) in cases {
            assert_eq!(
                format!("{:?}", billing_cycle(kind, period)),
                expected,
                "{kind} {period:?}"
            );
        }
    }
}
