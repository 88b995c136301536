//! HaloPSA records as the API serves them (lower-case, underscore names;
//! dates without an offset, `2025-01-01T00:00:00`) and their mapping to the
//! WIT records. Unknown fields are ignored.
//!
//! A Trueup contract is a Halo client contract (`/api/ClientContract`); its
//! billing comes from the recurring invoices linked to it (`contract_id`):
//! their `frequency` is the cycle, `bill_in_advance` the timing, and their
//! lines the recurring services. A contract with no recurring invoice bills
//! nothing recurring (cycle `none`).

use rust_decimal::Decimal;
use serde::Deserialize;
use trueup_connector::prelude::*;
use trueup_connector::psa::{
    BillingCycle, BillingTiming, Company, Contract, ContractStatus, RecurringService,
};
use trueup_connector::values::{self, days_from_civil, opt_date};

/// `/api/Client` record.
#[derive(Debug, Deserialize)]
pub struct HaloClient {
    /// Id.
    pub id: i64,
    name: String,
    #[serde(default)]
    inactive: bool,
    #[serde(default)]
    website: Option<String>,
    #[serde(default)]
    toplevel_name: Option<String>,
}

/// `/api/ClientContract` record.
#[derive(Debug, Deserialize)]
pub struct HaloContract {
    /// Id.
    pub id: i64,
    /// The client.
    pub client_id: i64,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    /// The contract type's name.
    #[serde(default)]
    pub contract_type: Option<String>,
    #[serde(default)]
    billing_period: Option<String>,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
    /// Whether it is active.
    #[serde(default)]
    pub active: Option<bool>,
}

/// `/api/RecurringInvoice` record (`lines` only with `includelines=true`).
#[derive(Debug, Deserialize)]
pub struct HaloInvoice {
    /// Id (`ihid` on its lines).
    pub id: i64,
    /// The linked client contract.
    #[serde(default)]
    pub contract_id: Option<i64>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    frequency: Option<String>,
    #[serde(default)]
    bill_in_advance: Option<bool>,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default)]
    next_creation_date: Option<String>,
    /// Whether the schedule is switched off.
    #[serde(default)]
    pub disabled: bool,
    /// Its lines.
    #[serde(default)]
    pub lines: Vec<HaloLine>,
}

/// A recurring invoice line.
#[derive(Debug, Clone, Deserialize)]
pub struct HaloLine {
    /// Id.
    pub id: i64,
    /// The recurring invoice.
    pub ihid: i64,
    #[serde(default)]
    item_id: Option<i64>,
    #[serde(default)]
    item_code: Option<String>,
    /// The short description: the catalogue identifier unless edited.
    #[serde(default)]
    pub item_shortdescription: Option<String>,
    #[serde(default)]
    item_longdescription: Option<String>,
    /// Quantity.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub qty_order: Decimal,
    /// Price per unit.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub unit_price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    unit_cost: Option<Decimal>,
    /// First day billed.
    #[serde(default)]
    pub start_date: Option<String>,
    /// Last day billed (inclusive).
    #[serde(default)]
    pub end_date: Option<String>,
    #[serde(default)]
    nominal_code: Option<String>,
}

/// `/api/Item` record: a catalogue item, the price and cost a new line of
/// it is billed at.
#[derive(Debug, Clone, Deserialize)]
pub struct HaloItem {
    /// Id (`item_id` on lines).
    pub id: i64,
    /// The name: a new line's short description, the identifier vendor
    /// SKUs are mapped to.
    pub name: String,
    /// Price per unit.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub baseprice: Option<Decimal>,
    /// Cost per unit.
    #[serde(default, with = "rust_decimal::serde::arbitrary_precision_option")]
    pub costprice: Option<Decimal>,
    /// Whether it was retired.
    #[serde(default)]
    pub inactive: bool,
}

/// The lower-case web domain of a website, when it has one.
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

impl HaloClient {
    /// The WIT company.
    pub fn into_wit(self) -> Company {
        let mut attributes = Vec::new();
        if let Some(top) = self.toplevel_name {
            attributes.push(("top-level".to_owned(), top));
        }
        Company {
            id: self.id.to_string(),
            name: self.name,
            identifier: None,
            domains: self
                .website
                .as_deref()
                .and_then(domain_of)
                .into_iter()
                .collect(),
            active: !self.inactive,
            attributes,
        }
    }
}

/// A recurring invoice `frequency` as a WIT cycle.
pub fn billing_cycle(frequency: Option<&str>) -> BillingCycle {
    let Some(name) = frequency.map(str::trim).filter(|f| !f.is_empty()) else {
        return BillingCycle::None;
    };
    match name.to_ascii_lowercase().as_str() {
        "monthly" => BillingCycle::Monthly,
        "quarterly" => BillingCycle::Quarterly,
        "six monthly" | "half yearly" | "half-yearly" | "semi-annual" | "semi-annually" => {
            BillingCycle::SemiAnnual
        }
        "yearly" | "annually" | "annual" => BillingCycle::Annual,
        "one time" | "one-time" | "once" => BillingCycle::OneTime,
        _ => BillingCycle::Other(name.to_owned()),
    }
}

fn day(date: &Date) -> i64 {
    days_from_civil(date)
}

impl HaloContract {
    /// The WIT contract given its recurring invoices (without lines).
    ///
    /// Status: ended (its end date, or the end dates of all its invoices,
    /// before `as_of`) is `cancelled` when every invoice was also switched
    /// off, `expired` otherwise; not ended but inactive, or with every
    /// invoice switched off, is `inactive`.
    ///
    /// # Errors
    /// `internal` for a malformed date.
    pub fn to_wit(
        &self,
        invoices: &[HaloInvoice],
        as_of: &Date,
    ) -> Result<Contract, ConnectorError> {
        let start = opt_date(self.start_date.as_deref())?;
        let end = opt_date(self.end_date.as_deref())?;
        let before = |d: &Option<Date>| d.as_ref().is_some_and(|d| day(d) < day(as_of));
        let mut invoices_ended = !invoices.is_empty();
        for invoice in invoices {
            invoices_ended &= before(&opt_date(invoice.end_date.as_deref())?);
        }
        let all_disabled = !invoices.is_empty() && invoices.iter().all(|i| i.disabled);
        let ended = before(&end) || invoices_ended;
        let status = if ended {
            if all_disabled {
                ContractStatus::Cancelled
            } else {
                ContractStatus::Expired
            }
        } else if self.active == Some(false) || all_disabled {
            ContractStatus::Inactive
        } else {
            ContractStatus::Active
        };
        // The invoice that bills: the first one switched on, else the first.
        let billing = invoices.iter().find(|i| !i.disabled).or(invoices.first());
        let cycle = billing.map_or(BillingCycle::None, |i| {
            billing_cycle(i.frequency.as_deref())
        });
        let timing = match billing.and_then(|i| i.bill_in_advance) {
            Some(false) => BillingTiming::Arrears,
            _ => BillingTiming::Advance,
        };
        let mut attributes = Vec::new();
        if let Some(period) = &self.billing_period {
            attributes.push(("billing-period".to_owned(), period.clone()));
        }
        attributes.push((
            "recurring-invoices".to_owned(),
            invoices
                .iter()
                .map(|i| i.id.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ));
        if let Some(next) = billing.and_then(|i| i.next_creation_date.clone()) {
            attributes.push(("next-creation-date".to_owned(), next));
        }
        if invoices.len() > 1 {
            attributes.push((
                "note".to_owned(),
                format!(
                    "{} recurring invoices; the cycle and timing are those of invoice {}",
                    invoices.len(),
                    billing.map(|i| i.id).unwrap_or_default()
                ),
            ));
        }
        let name = self
            .reference
            .clone()
            .filter(|r| !r.trim().is_empty())
            .or_else(|| billing.and_then(|i| i.reference.clone()))
            .unwrap_or_else(|| format!("Contract {}", self.id));
        Ok(Contract {
            id: self.id.to_string(),
            company_id: self.client_id.to_string(),
            name,
            contract_type: self.contract_type.clone().unwrap_or_default(),
            status,
            billing_cycle: cycle,
            start_date: start,
            end_date: end,
            timing,
            // Halo bills recurring invoice lines in whole periods.
            prorate: false,
            posted_through: None,
            attributes,
        })
    }
}

impl HaloLine {
    /// The catalogue identifier vendor SKUs map to: the short description
    /// (the item's name unless edited), else the item code.
    pub fn identifier(&self) -> String {
        self.item_shortdescription
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| self.item_code.clone())
            .unwrap_or_default()
    }

    /// The WIT line on `contract`. A line at a zero price (a courtesy line)
    /// or on a switched-off invoice is not billed to the customer.
    ///
    /// # Errors
    /// `internal` for a malformed date or a number that does not fit.
    pub fn to_wit(
        &self,
        contract: &str,
        invoice_disabled: bool,
    ) -> Result<RecurringService, ConnectorError> {
        let price = self.unit_price.unwrap_or_default();
        let identifier = self.identifier();
        let mut attributes = vec![("ihid".to_owned(), self.ihid.to_string())];
        if let Some(code) = &self.nominal_code {
            attributes.push(("nominal-code".to_owned(), code.clone()));
        }
        if price.is_zero() {
            attributes.push(("no-charge".to_owned(), "true".to_owned()));
        }
        if invoice_disabled {
            attributes.push(("invoice-disabled".to_owned(), "true".to_owned()));
        }
        Ok(RecurringService {
            id: self.id.to_string(),
            contract_id: contract.to_owned(),
            product_id: self.item_id.map(|i| i.to_string()).unwrap_or_default(),
            description: self
                .item_longdescription
                .clone()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| identifier.clone()),
            product_identifier: identifier,
            quantity: values::decimal(self.qty_order)?,
            unit_price: values::decimal(price)?,
            unit_cost: values::decimal(self.unit_cost.unwrap_or_default())?,
            effective_date: opt_date(self.start_date.as_deref())?,
            cancelled_date: opt_date(self.end_date.as_deref())?,
            billable: !price.is_zero() && !invoice_disabled,
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

    fn contract(active: bool, end: Option<&str>) -> HaloContract {
        serde_json::from_value(serde_json::json!({
            "id": 500, "client_id": 100, "ref": "CON-500", "contract_type": "Managed Services",
            "billing_period": "Monthly", "start_date": "2024-01-01T00:00:00",
            "end_date": end, "active": active
        }))
        .expect("contract JSON")
    }

    fn invoice(frequency: &str, advance: bool, disabled: bool, end: Option<&str>) -> HaloInvoice {
        serde_json::from_value(serde_json::json!({
            "id": 2000, "contract_id": 500, "reference": "Monthly", "frequency": frequency,
            "bill_in_advance": advance, "disabled": disabled, "end_date": end
        }))
        .expect("invoice JSON")
    }

    #[test]
    fn status_cycle_and_timing_come_from_contract_and_invoices() {
        let past = Some("2026-06-30T00:00:00");
        let cases = [
            (
                contract(true, None),
                vec![invoice("Monthly", true, false, None)],
                "Active",
                "Monthly",
                "Advance",
            ),
            (
                contract(false, past),
                vec![invoice("Monthly", true, true, past)],
                "Cancelled",
                "Monthly",
                "Advance",
            ),
            (
                contract(false, past),
                vec![invoice("Monthly", true, false, past)],
                "Expired",
                "Monthly",
                "Advance",
            ),
            (
                contract(false, None),
                vec![invoice("Monthly", true, true, None)],
                "Inactive",
                "Monthly",
                "Advance",
            ),
            (
                contract(true, None),
                vec![invoice("Yearly", false, false, None)],
                "Active",
                "Annual",
                "Arrears",
            ),
            (contract(true, None), vec![], "Active", "None", "Advance"),
            (
                contract(true, None),
                vec![invoice("Fortnightly", true, false, None)],
                "Active",
                "Other(\"Fortnightly\")",
                "Advance",
            ),
        ];
        for (contract, invoices, status, cycle, timing) in cases {
            let wit = contract.to_wit(&invoices, &as_of()).expect("maps");
            assert_eq!(
                format!("{:?}", wit.status),
                format!("ContractStatus::{status}")
            );
            assert_eq!(
                format!("{:?}", wit.billing_cycle),
                format!("BillingCycle::{cycle}")
            );
            assert_eq!(
                format!("{:?}", wit.timing),
                format!("BillingTiming::{timing}")
            );
        }
    }

    #[test]
    fn zero_price_and_switched_off_lines_are_not_billed() {
        let line: HaloLine = serde_json::from_value(serde_json::json!({
            "id": 40000, "ihid": 2000, "item_id": 70, "item_code": "M365-BP",
            "item_shortdescription": "M365-BP", "qty_order": 12, "unit_price": 26.4,
            "start_date": "2025-01-01T00:00:00", "end_date": null
        }))
        .expect("line JSON");
        assert!(line.to_wit("500", false).expect("maps").billable);
        assert!(!line.to_wit("500", true).expect("maps").billable);
        let free: HaloLine = serde_json::from_value(serde_json::json!({
            "id": 40001, "ihid": 2000, "item_shortdescription": "EDR", "qty_order": 2, "unit_price": 0
        }))
        .expect("line JSON");
        let wit = free.to_wit("500", false).expect("maps");
        assert!(!wit.billable);
        assert_eq!(wit.product_identifier, "EDR");
    }
}
