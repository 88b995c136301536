//! ConnectWise records as the API serves them (camelCase, reference
//! objects, null fields left out) and their mapping to the WIT records.
//!
//! Parsed tolerantly (the SDK's `tolerant` helpers): unknown fields are
//! ignored, so a newer API version's additions do not break a sync; ids
//! may come as numbers or strings, flags as booleans, numbers or strings,
//! dates as dates or date-times, and a sentinel date (`0001-01-01`,
//! `1900-01-01`, `9999-12-31`) is no date. Field names: see
//! `docs/connectors/connectwise.md`.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use trueup_connector::prelude::*;
use trueup_connector::psa::{
    BillingCycle, BillingTiming, Company, Contract, ContractStatus, RecurringService,
};
use trueup_connector::tolerant::{self, opt_date};
use trueup_connector::values;

/// A record id sent as a number or a string (ConnectWise ids are positive).
fn id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let id = tolerant::id(deserializer)?;
    u64::try_from(id)
        .map_err(|_| serde::de::Error::custom(format!("expected a positive id, found {id}")))
}

/// An optional record id (a number, a string, or null / `""` / `0`).
fn opt_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    match tolerant::opt_id(deserializer)? {
        None => Ok(None),
        Some(id) => u64::try_from(id)
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected a positive id, found {id}"))),
    }
}

/// Fields asked for on `/company/companies` (`fields=`).
pub const COMPANY_FIELDS: &str = "id,identifier,name,website,status/name,deletedFlag";
/// Fields asked for on `/finance/agreements`.
pub const AGREEMENT_FIELDS: &str = "id,name,type/name,company/id,startDate,endDate,noEndingDateFlag,cancelledFlag,dateCancelled,billingCycle/name,prorateFlag,periodType,nextInvoiceDate,agreementStatus";
/// Fields asked for on `/finance/agreements/{id}/additions`.
pub const ADDITION_FIELDS: &str = "id,product/id,product/identifier,description,invoiceDescription,quantity,lessIncluded,unitPrice,unitCost,billCustomer,effectiveDate,cancelledDate,taxableFlag";

/// Fields asked for on `/procurement/catalog`.
pub const CATALOG_FIELDS: &str =
    "id,identifier,description,customerDescription,price,cost,taxableFlag,inactiveFlag";

/// A reference object such as `{"id": 1, "name": "Monthly"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Reference {
    /// Its id.
    #[serde(default, deserialize_with = "opt_id")]
    pub id: Option<u64>,
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// Its identifier (products, companies).
    #[serde(default)]
    pub identifier: Option<String>,
}

/// `GET /company/companies` item.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwCompany {
    #[serde(deserialize_with = "id")]
    id: u64,
    #[serde(default)]
    identifier: Option<String>,
    name: String,
    #[serde(default)]
    website: Option<String>,
    #[serde(default)]
    status: Option<Reference>,
    #[serde(default, deserialize_with = "tolerant::flag")]
    deleted_flag: bool,
}

/// `GET /finance/agreements` item.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwAgreement {
    #[serde(deserialize_with = "id")]
    id: u64,
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<Reference>,
    #[serde(default)]
    company: Option<Reference>,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default, deserialize_with = "tolerant::flag")]
    cancelled_flag: bool,
    #[serde(default)]
    date_cancelled: Option<String>,
    #[serde(default)]
    billing_cycle: Option<Reference>,
    #[serde(default, deserialize_with = "tolerant::flag")]
    prorate_flag: bool,
    #[serde(default)]
    period_type: Option<String>,
    #[serde(default)]
    next_invoice_date: Option<String>,
    #[serde(default)]
    agreement_status: Option<String>,
}

/// `GET /finance/agreements/{id}/additions` item (also the answer to a
/// single GET, POST or PATCH).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwAddition {
    /// Id.
    #[serde(deserialize_with = "id")]
    pub id: u64,
    /// The catalogue product.
    pub product: Reference,
    /// `description`.
    #[serde(default)]
    pub description: Option<String>,
    /// `invoiceDescription`.
    #[serde(default)]
    pub invoice_description: Option<String>,
    /// Units.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub quantity: Decimal,
    /// Units included at no charge.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub less_included: Option<Decimal>,
    /// Price per unit per cycle.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub unit_price: Option<Decimal>,
    /// Cost per unit per cycle.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub unit_cost: Option<Decimal>,
    /// `Billable`, `DoNotBill` or `NoCharge`.
    #[serde(default)]
    pub bill_customer: Option<String>,
    /// First day billed.
    #[serde(default)]
    pub effective_date: Option<String>,
    /// Last day billed (inclusive).
    #[serde(default)]
    pub cancelled_date: Option<String>,
    /// `taxableFlag`.
    #[serde(default)]
    pub taxable_flag: Option<bool>,
}

/// `GET /procurement/catalog` item: a product of the catalogue, with the
/// price and cost a new addition of it is billed at.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwCatalogItem {
    /// Id (the `product.id` of its additions).
    #[serde(deserialize_with = "id")]
    pub id: u64,
    /// The identifier vendor SKUs are mapped to.
    pub identifier: String,
    /// The internal description.
    #[serde(default)]
    pub description: Option<String>,
    /// The description customers see on invoices.
    #[serde(default)]
    pub customer_description: Option<String>,
    /// Price per unit.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub price: Option<Decimal>,
    /// Cost per unit.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub cost: Option<Decimal>,
    /// Whether it is taxed.
    #[serde(default)]
    pub taxable_flag: Option<bool>,
    /// Whether it was retired from the catalogue.
    #[serde(default, deserialize_with = "tolerant::flag")]
    pub inactive_flag: bool,
}

/// The lower-case web domain of a website field (`https://www.x.com/a`
/// → `x.com`), when it has one.
pub fn domain_of(website: &str) -> Option<String> {
    let text = website.trim().to_ascii_lowercase();
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

impl CwCompany {
    /// The WIT company. Active unless in the recycle bin or marked
    /// `Inactive` (company statuses are the MSP's own list; only the name
    /// "Inactive" is taken to mean inactive).
    pub fn into_wit(self) -> Company {
        let status = self
            .status
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_default();
        let active = !self.deleted_flag && !status.eq_ignore_ascii_case("inactive");
        let mut attributes = vec![("status".to_owned(), status)];
        if let Some(website) = &self.website {
            attributes.push(("website".to_owned(), website.clone()));
        }
        Company {
            id: self.id.to_string(),
            name: self.name,
            identifier: self.identifier.filter(|i| !i.trim().is_empty()),
            domains: self
                .website
                .as_deref()
                .and_then(domain_of)
                .into_iter()
                .collect(),
            active,
            attributes,
        }
    }
}

/// A ConnectWise billing cycle name as a WIT cycle. No cycle (`None` in
/// the UI, absent in the API) is `none`; `Not Recurring` and `One Time`
/// are `one-time`; cycles Trueup does not model keep their name.
pub fn billing_cycle(name: Option<&str>) -> BillingCycle {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return BillingCycle::None;
    };
    match name.to_ascii_lowercase().as_str() {
        "none" => BillingCycle::None,
        "not recurring" | "one time" | "one-time" | "onetime" => BillingCycle::OneTime,
        "monthly" => BillingCycle::Monthly,
        "quarterly" => BillingCycle::Quarterly,
        "semi-annual" | "semi-annually" | "semiannual" => BillingCycle::SemiAnnual,
        "yearly" | "annual" | "annually" => BillingCycle::Annual,
        _ => BillingCycle::Other(name.to_owned()),
    }
}

/// The date in `field` of `record` `id`, or an error naming the record,
/// the field and what was seen: WIT 0.1 cannot exclude one record from a
/// page, so an unreadable date fails the call, and the message must let
/// the MSP find and fix the record.
fn named(
    record: &str,
    id: u64,
    field: &str,
    text: Option<&str>,
) -> Result<Option<Date>, ConnectorError> {
    opt_date(text).map_err(|error| {
        ConnectorError::Internal(format!(
            "{record} {id}: {field} {:?} is not a date ({error}); correct it in ConnectWise and sync again",
            text.unwrap_or_default()
        ))
    })
}

impl CwAgreement {
    /// The WIT contract. `as_of` decides `expired` when the API gives no
    /// `agreementStatus`.
    ///
    /// # Errors
    /// [`ConnectorError::Internal`] for a malformed date.
    pub fn into_wit(self, as_of: &Date) -> Result<Contract, ConnectorError> {
        let date = |field: &str, text: Option<&str>| named("agreement", self.id, field, text);
        let start = date("startDate", self.start_date.as_deref())?;
        let mut end = date("endDate", self.end_date.as_deref())?;
        let cancelled = date("dateCancelled", self.date_cancelled.as_deref())?;
        if self.cancelled_flag
            && let Some(cancelled) = cancelled
            && end
                .as_ref()
                .is_none_or(|e| values::days_from_civil(&cancelled) < values::days_from_civil(e))
        {
            end = Some(cancelled);
        }
        let ended = end
            .as_ref()
            .is_some_and(|e| values::days_from_civil(e) < values::days_from_civil(as_of));
        let status_name = self.agreement_status.clone().unwrap_or_default();
        let status = match status_name.to_ascii_lowercase().as_str() {
            "active" => ContractStatus::Active,
            "inactive" => ContractStatus::Inactive,
            "cancelled" | "canceled" => ContractStatus::Cancelled,
            "expired" => ContractStatus::Expired,
            // A status the API did not send: judge by the flags.
            _ if self.cancelled_flag => ContractStatus::Cancelled,
            _ if ended => ContractStatus::Expired,
            _ => ContractStatus::Active,
        };
        let cycle_name = self.billing_cycle.as_ref().and_then(|c| c.name.clone());
        let period_type = self.period_type.clone().unwrap_or_default();
        // "Current" bills the period when it ends; "Future" (the default)
        // bills it before it starts.
        let timing = if period_type.eq_ignore_ascii_case("current") {
            BillingTiming::Arrears
        } else {
            BillingTiming::Advance
        };
        let mut attributes = vec![
            ("agreement-status".to_owned(), status_name),
            (
                "billing-cycle".to_owned(),
                cycle_name.clone().unwrap_or_else(|| "None".to_owned()),
            ),
            ("period-type".to_owned(), period_type),
        ];
        if let Some(next) = &self.next_invoice_date {
            attributes.push(("next-invoice-date".to_owned(), next.clone()));
        }
        if let Some(cancelled) = &self.date_cancelled {
            attributes.push(("date-cancelled".to_owned(), cancelled.clone()));
        }
        Ok(Contract {
            id: self.id.to_string(),
            company_id: self
                .company
                .as_ref()
                .and_then(|c| c.id)
                .map(|id| id.to_string())
                .unwrap_or_default(),
            name: self.name,
            contract_type: self.kind.and_then(|t| t.name).unwrap_or_default(),
            status,
            billing_cycle: billing_cycle(cycle_name.as_deref()),
            start_date: start,
            end_date: end,
            timing,
            prorate: self.prorate_flag,
            // ConnectWise does not lock additions by invoiced period:
            // backdated changes flow into the next invoice.
            posted_through: None,
            attributes,
        })
    }
}

impl CwAddition {
    /// Whether `billCustomer` is `Billable` (`NoCharge` lines show on the
    /// invoice at no charge and `DoNotBill` lines not at all: neither is
    /// billed to the customer).
    pub fn billable(&self) -> bool {
        self.bill_customer
            .as_deref()
            .is_some_and(|b| b.eq_ignore_ascii_case("Billable"))
    }

    /// The WIT line on agreement `agreement`.
    ///
    /// # Errors
    /// [`ConnectorError::Internal`] for a malformed date or a number that
    /// does not fit the WIT encoding.
    pub fn to_wit(&self, agreement: &str) -> Result<RecurringService, ConnectorError> {
        let identifier = self.product.identifier.clone().unwrap_or_default();
        let description = self
            .description
            .clone()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| identifier.clone());
        let mut attributes = vec![(
            "bill-customer".to_owned(),
            self.bill_customer.clone().unwrap_or_default(),
        )];
        if let Some(included) = self.less_included.filter(|l| !l.is_zero()) {
            attributes.push(("less-included".to_owned(), included.normalize().to_string()));
        }
        if let Some(taxable) = self.taxable_flag {
            attributes.push(("taxable".to_owned(), taxable.to_string()));
        }
        if let Some(invoice) = self.invoice_description.as_ref().filter(|d| !d.is_empty()) {
            attributes.push(("invoice-description".to_owned(), invoice.clone()));
        }
        Ok(RecurringService {
            id: self.id.to_string(),
            contract_id: agreement.to_owned(),
            product_id: self.product.id.map(|id| id.to_string()).unwrap_or_default(),
            product_identifier: identifier,
            description,
            quantity: values::decimal(self.quantity)?,
            unit_price: values::decimal(self.unit_price.unwrap_or_default())?,
            unit_cost: values::decimal(self.unit_cost.unwrap_or_default())?,
            effective_date: named(
                "addition",
                self.id,
                "effectiveDate",
                self.effective_date.as_deref(),
            )?,
            cancelled_date: named(
                "addition",
                self.id,
                "cancelledDate",
                self.cancelled_date.as_deref(),
            )?,
            billable: self.billable(),
            attributes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_of() -> Date {
        Date {
            year: 2026,
            month: 11,
            day: 25,
        }
    }

    fn agreement(json: serde_json::Value) -> Contract {
        serde_json::from_value::<CwAgreement>(json)
            .expect("agreement JSON")
            .into_wit(&as_of())
            .expect("maps")
    }

    #[test]
    fn cycles_map_to_wit_cycles() {
        let cases = [
            (None, "BillingCycle::None"),
            (Some("None"), "BillingCycle::None"),
            (Some("Not Recurring"), "BillingCycle::OneTime"),
            (Some("One Time"), "BillingCycle::OneTime"),
            (Some("Monthly"), "BillingCycle::Monthly"),
            (Some("Quarterly"), "BillingCycle::Quarterly"),
            (Some("Semi-Annual"), "BillingCycle::SemiAnnual"),
            (Some("Yearly"), "BillingCycle::Annual"),
            (Some("Bi-Weekly"), "BillingCycle::Other(\"Bi-Weekly\")"),
        ];
        for (name, expected) in cases {
            assert_eq!(format!("{:?}", billing_cycle(name)), expected, "{name:?}");
        }
    }

    #[test]
    fn agreements_map_status_timing_and_end() {
        let cancelled = agreement(serde_json::json!({
            "id": 1, "name": "Old", "type": {"id": 1, "name": "Managed Services"},
            "company": {"id": 250}, "startDate": "2024-01-01T00:00:00Z",
            "cancelledFlag": true, "dateCancelled": "2026-06-30T00:00:00Z",
            "billingCycle": {"id": 3, "name": "Monthly"}, "periodType": "Current",
            "agreementStatus": "Cancelled"
        }));
        assert_eq!(
            format!("{:?}", cancelled.status),
            "ContractStatus::Cancelled"
        );
        assert_eq!(format!("{:?}", cancelled.timing), "BillingTiming::Arrears");
        let end = cancelled.end_date.expect("ends when cancelled");
        assert_eq!((end.year, end.month, end.day), (2026, 6, 30));
        assert_eq!(cancelled.company_id, "250");
        // No agreementStatus: judged by the end date.
        let ended = agreement(serde_json::json!({
            "id": 2, "name": "Term", "endDate": "2026-01-31T00:00:00Z"
        }));
        assert_eq!(format!("{:?}", ended.status), "ContractStatus::Expired");
        assert_eq!(format!("{:?}", ended.billing_cycle), "BillingCycle::None");
        assert_eq!(format!("{:?}", ended.timing), "BillingTiming::Advance");
    }

    #[test]
    fn only_billable_additions_are_billed() {
        for (bill, billable) in [
            ("Billable", true),
            ("DoNotBill", false),
            ("NoCharge", false),
        ] {
            let addition: CwAddition = serde_json::from_value(serde_json::json!({
                "id": 9, "product": {"id": 1, "identifier": "M365-BP"}, "quantity": 12.5,
                "unitPrice": 26.4, "billCustomer": bill, "effectiveDate": "2026-01-01T00:00:00Z"
            }))
            .expect("addition JSON");
            let line = addition.to_wit("10001").expect("maps");
            assert_eq!(line.billable, billable, "{bill}");
            assert_eq!((line.quantity.digits, line.quantity.scale), (125, 1));
            assert_eq!((line.unit_price.digits, line.unit_price.scale), (264, 1));
            assert_eq!(line.product_identifier, "M365-BP");
        }
    }

    #[test]
    fn records_parse_tolerantly() {
        // Ids as strings, flags as strings or numbers, a sentinel end date
        // and unknown fields: the agreement is open-ended and active (the
        // old strict parsing refused the string id, and read the
        // 0001-01-01 end as a real one: "expired").
        let open = agreement(serde_json::json!({
            "id": "3", "name": "Open", "company": {"id": "250", "name": "X"},
            "startDate": "2025-01-01", "endDate": "0001-01-01T00:00:00Z",
            "cancelledFlag": "false", "prorateFlag": 1,
            "billingCycle": {"id": "3", "name": "Monthly"},
            "someFutureField": {"nested": true}
        }));
        assert_eq!(open.id, "3");
        assert_eq!(open.company_id, "250");
        assert!(open.end_date.is_none(), "{open:?}");
        assert!(open.prorate);
        assert_eq!(format!("{:?}", open.status), "ContractStatus::Active");
        let start = open.start_date.expect("a date without a time");
        assert_eq!((start.year, start.month, start.day), (2025, 1, 1));
        let addition: CwAddition = serde_json::from_value(serde_json::json!({
            "id": "9", "product": {"id": "17", "identifier": "EDR"}, "quantity": 4,
            "billCustomer": "Billable", "effectiveDate": "2026-01-01T00:00:00Z",
            "cancelledDate": "9999-12-31T00:00:00Z"
        }))
        .expect("addition JSON");
        let line = addition.to_wit("3").expect("maps");
        assert_eq!((line.id.as_str(), line.product_id.as_str()), ("9", "17"));
        assert!(line.cancelled_date.is_none(), "{line:?}");
        // An id that is no number names what was seen.
        let error = serde_json::from_value::<CwAddition>(serde_json::json!({
            "id": "nine", "product": {}, "quantity": 1
        }))
        .expect_err("not an id");
        assert!(error.to_string().contains("\"nine\""), "{error}");
        // An unreadable date names the record and the field.
        let bad: CwAgreement = serde_json::from_value(serde_json::json!({
            "id": 77, "name": "Bad", "startDate": "31/12/2026"
        }))
        .expect("agreement JSON");
        let error = bad.into_wit(&as_of()).expect_err("no date");
        let text = format!("{error:?}");
        assert!(
            text.contains("agreement 77") && text.contains("startDate"),
            "{text}"
        );
    }

    #[test]
    fn websites_become_domains() {
        assert_eq!(
            domain_of("https://www.Northwind.com/about").as_deref(),
            Some("northwind.com")
        );
        assert_eq!(domain_of("contoso.co.uk").as_deref(), Some("contoso.co.uk"));
        assert_eq!(domain_of("http://localhost:8080"), None);
        assert_eq!(domain_of(""), None);
    }
}
