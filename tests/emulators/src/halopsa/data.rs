//! HaloPSA records (clients, client contracts, recurring invoices and their
//! lines, catalogue items), seeded from the world's [`CustomerPlan`]s, and
//! their JSON.
//!
//! Field names are Halo's own, from its published API description (the
//! models `InvoiceHeader`, `InvoiceDetail`, `ContractHeader`, `Item` of a
//! client generated from it; api-facts §3.3). Every field served and where
//! it comes from is listed in `docs/connectors/halopsa.md`. In short:
//! invoices `id, client_id, client_name, contract_id, contract_ref,
//! reference, period` (an integer code, [`PERIOD_MONTHLY`],
//! [`PERIOD_YEARLY`]; the codes are \[I\]) `, periodname, startdate,
//! enddate, nextcreationdate, disabled, total`; lines `id, ihid, sequenceid,
//! _itemid, item_code, item_shortdescription, item_longdescription,
//! qty_order, unit_price, unit_cost, net_amount, nominal_code, tax_code,
//! startdate, enddate`; contracts `id, client_id, client_name, ref,
//! contracttype, contracttype_name, billingperiod, billing_period_string,
//! start_date, end_date, active, onlybillatendofperiod`. An unset date is
//! served as Halo's SQL Server zero date [`SENTINEL_DATE`]
//! (`1900-01-01T00:00:00`), never as null, and dates carry no offset.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::catalog::{PRODUCTS, Product};
use crate::common::{CustomerPlan, Extra, add_months, cents, money, month_start, round_money};
use crate::world::World;

/// First client id.
pub const FIRST_CLIENT_ID: i64 = 100;
/// First contract id.
pub const FIRST_CONTRACT_ID: i64 = 500;
/// First recurring invoice id.
pub const FIRST_INVOICE_ID: i64 = 2_000;
/// First line id.
pub const FIRST_LINE_ID: i64 = 40_000;
/// First item id.
pub const FIRST_ITEM_ID: i64 = 70;
/// The nominal (GL) code recurring service lines post to.
pub const NOMINAL_CODE: &str = "4000";

/// The date Halo sends for an unset date (SQL Server's zero date).
pub const SENTINEL_DATE: &str = "1900-01-01T00:00:00";
/// The `period` code of a monthly schedule \[I\].
pub const PERIOD_MONTHLY: i64 = 2;
/// The `period` code of a yearly schedule \[I\].
pub const PERIOD_YEARLY: i64 = 5;

/// The display name (`periodname`) of a `period` code \[I\].
pub fn period_name(code: i64) -> &'static str {
    match code {
        0 => "One Time",
        PERIOD_MONTHLY => "Monthly",
        3 => "Quarterly",
        4 => "Six Monthly",
        PERIOD_YEARLY => "Yearly",
        _ => "Custom",
    }
}

/// `2025-01-01T00:00:00` (Halo sends local times without an offset).
pub fn halo_date(date: NaiveDate) -> String {
    format!("{}T00:00:00", date.format("%Y-%m-%d"))
}

/// A date as served; unset is the sentinel.
fn opt_date(date: Option<NaiveDate>) -> Value {
    Value::String(date.map_or_else(|| SENTINEL_DATE.to_owned(), halo_date))
}

/// A client.
#[derive(Debug, Clone)]
pub struct Client {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Web address.
    pub website: String,
    /// Whether the client is inactive.
    pub inactive: bool,
}

/// A client contract.
#[derive(Debug, Clone)]
pub struct Contract {
    /// Id.
    pub id: i64,
    /// Client id.
    pub client_id: i64,
    /// Reference, e.g. `MSP-0101`.
    pub reference: String,
    /// Contract type name.
    pub contract_type: &'static str,
    /// `Monthly` or `Yearly`.
    pub billing_period: &'static str,
    /// First day.
    pub start: NaiveDate,
    /// Last day, when set.
    pub end: Option<NaiveDate>,
    /// Whether it is active.
    pub active: bool,
    /// Billed at the end of each period (in arrears).
    pub arrears: bool,
}

/// A recurring invoice (its lines are kept apart in [`HaloData::lines`]).
#[derive(Debug, Clone)]
pub struct Invoice {
    /// Id (`ihid` on its lines).
    pub id: i64,
    /// Client id.
    pub client_id: i64,
    /// Contract id, when linked.
    pub contract_id: Option<i64>,
    /// Reference shown on the invoice.
    pub reference: String,
    /// The `period` code ([`PERIOD_MONTHLY`], [`PERIOD_YEARLY`]).
    pub period: i64,
    /// First day.
    pub start: NaiveDate,
    /// Last day, when set.
    pub end: Option<NaiveDate>,
    /// Next time an invoice is created.
    pub next_creation: Option<NaiveDate>,
    /// Whether the schedule is switched off.
    pub disabled: bool,
}

/// A recurring invoice line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Id.
    pub id: i64,
    /// The recurring invoice's id.
    pub ihid: i64,
    /// The catalogue item.
    pub product: &'static Product,
    /// Short description (the catalogue identifier unless changed).
    pub short_description: Cow<'static, str>,
    /// Long description.
    pub long_description: Cow<'static, str>,
    /// Quantity.
    pub qty: Decimal,
    /// Price per unit.
    pub unit_price: Decimal,
    /// Cost per unit.
    pub unit_cost: Decimal,
    /// GL code.
    pub nominal_code: Cow<'static, str>,
    /// Tax code.
    pub tax_code: i64,
    /// Order on the invoice.
    pub seq: i64,
    /// First day billed.
    pub start: Option<NaiveDate>,
    /// Last day billed.
    pub end: Option<NaiveDate>,
}

/// Everything the HaloPSA emulator serves.
#[derive(Debug, Clone, Default)]
pub struct HaloData {
    /// Clients by ascending id.
    pub clients: Vec<Client>,
    /// Contracts by ascending id.
    pub contracts: Vec<Contract>,
    /// Recurring invoices by ascending id.
    pub invoices: Vec<Invoice>,
    /// Lines by ascending id.
    pub lines: Vec<Line>,
    /// Next invoice id.
    pub next_invoice_id: i64,
    /// Next line id.
    pub next_line_id: i64,
}

/// The `contracttype` id of a contract type name \[I\].
fn contract_type_id(name: &str) -> i64 {
    match name {
        "Managed Services" => 1,
        "Licensing" => 2,
        "Block Hours" => 3,
        "Ad hoc" => 4,
        _ => 5,
    }
}

/// The item id of `product`.
pub fn item_id(product: &Product) -> i64 {
    PRODUCTS
        .iter()
        .position(|p| p == product)
        .map_or(0, |i| FIRST_ITEM_ID + i as i64)
}

/// The product with item id `id`.
pub fn product_by_item(id: i64) -> Option<&'static Product> {
    usize::try_from(id - FIRST_ITEM_ID)
        .ok()
        .and_then(|i| PRODUCTS.get(i))
}

impl HaloData {
    /// Seeds the data for `world`'s PSA customers.
    pub fn seed(world: &World, plans: &[CustomerPlan], today: NaiveDate) -> Self {
        let mut data = HaloData {
            next_invoice_id: FIRST_INVOICE_ID,
            next_line_id: FIRST_LINE_ID,
            ..HaloData::default()
        };
        let next_month = add_months(month_start(today), 1);
        for plan in plans {
            let customer = &world.customers[plan.customer];
            let client_id = FIRST_CLIENT_ID + plan.position as i64;
            data.clients.push(Client {
                id: client_id,
                name: customer.name.clone(),
                website: format!("https://www.{}", customer.domain),
                inactive: false,
            });
            let contract_id = data.push_contract(
                client_id,
                "Managed Services",
                "Monthly",
                plan.start,
                None,
                (true, false),
            );
            let main = data.push_invoice(Invoice {
                id: 0,
                client_id,
                contract_id: Some(contract_id),
                reference: "Monthly Managed Services".to_owned(),
                period: PERIOD_MONTHLY,
                start: plan.start,
                end: None,
                next_creation: Some(next_month),
                disabled: false,
            });
            for (index, line) in plan.lines.iter().enumerate() {
                match plan.replaced.filter(|r| r.line == index) {
                    Some(replaced) => {
                        data.push_line(
                            main,
                            line.product,
                            replaced.old_quantity,
                            Some(line.effective),
                            Some(replaced.ended),
                        );
                        data.push_line(
                            main,
                            line.product,
                            line.quantity,
                            replaced.ended.succ_opt(),
                            None,
                        );
                    }
                    None => {
                        data.push_line(
                            main,
                            line.product,
                            line.quantity,
                            Some(line.effective),
                            None,
                        );
                    }
                }
            }
            if let Some((product, quantity)) = plan.no_charge {
                let id = data.push_line(main, product, quantity, Some(plan.start), None);
                if let Some(line) = data.lines.iter_mut().find(|l| l.id == id) {
                    line.unit_price = Decimal::ZERO;
                    line.long_description =
                        Cow::Owned(format!("{} (courtesy)", product.description));
                }
            }
            let Some(extra) = plan.extra else {
                continue;
            };
            let (contract_type, period, invoice) = match extra {
                Extra::Cancelled => (
                    "Managed Services",
                    "Monthly",
                    Some(("Managed Services (previous)", "Monthly", true, true)),
                ),
                Extra::Inactive => (
                    "Managed Services",
                    "Monthly",
                    Some(("Managed Services (on hold)", "Monthly", true, true)),
                ),
                Extra::Expired => (
                    "Managed Services",
                    "Monthly",
                    Some(("Managed Services 2-year term", "Monthly", true, false)),
                ),
                Extra::Annual => (
                    "Licensing",
                    "Yearly",
                    Some(("Annual Licensing", "Yearly", true, false)),
                ),
                Extra::Arrears => (
                    "Licensing",
                    "Monthly",
                    Some(("Licences (in arrears)", "Monthly", false, false)),
                ),
                Extra::OtherType => ("Block Hours", "Monthly", None),
                Extra::NoCycle => ("Ad hoc", "Monthly", None),
                Extra::OneTime => ("Project", "Monthly", None),
            };
            let ended = matches!(extra, Extra::Cancelled | Extra::Expired);
            let end = if ended { plan.extra_end } else { None };
            let active = !matches!(extra, Extra::Cancelled | Extra::Expired | Extra::Inactive);
            let arrears = matches!(extra, Extra::Arrears);
            let contract_id = data.push_contract(
                client_id,
                contract_type,
                period,
                plan.extra_start,
                end,
                (active, arrears),
            );
            // The third field (in advance) is the contract's
            // `onlybillatendofperiod` in Halo, set above.
            if let Some((reference, frequency, _, disabled)) = invoice {
                let period = if frequency == "Yearly" {
                    PERIOD_YEARLY
                } else {
                    PERIOD_MONTHLY
                };
                let next = (!disabled && !ended).then_some(next_month);
                let id = data.push_invoice(Invoice {
                    id: 0,
                    client_id,
                    contract_id: Some(contract_id),
                    reference: reference.to_owned(),
                    period,
                    start: plan.extra_start,
                    end,
                    next_creation: next,
                    disabled,
                });
                for line in plan.moved.iter().chain(plan.stale.iter()) {
                    data.push_line(id, line.product, line.quantity, Some(line.effective), end);
                }
            }
        }
        // Clients entered twice, the copy made inactive.
        let copies: Vec<Client> = plans
            .iter()
            .filter(|p| p.position % 17 == 8)
            .enumerate()
            .map(|(n, plan)| {
                let original = &data.clients[plan.position];
                Client {
                    id: FIRST_CLIENT_ID + plans.len() as i64 + n as i64,
                    name: original.name.clone(),
                    website: original.website.clone(),
                    inactive: true,
                }
            })
            .collect();
        data.clients.extend(copies);
        data
    }

    fn push_contract(
        &mut self,
        client_id: i64,
        contract_type: &'static str,
        billing_period: &'static str,
        start: NaiveDate,
        end: Option<NaiveDate>,
        (active, arrears): (bool, bool),
    ) -> i64 {
        let id = FIRST_CONTRACT_ID + self.contracts.len() as i64;
        self.contracts.push(Contract {
            id,
            client_id,
            reference: format!("CON-{id}"),
            contract_type,
            billing_period,
            start,
            end,
            active,
            arrears,
        });
        id
    }

    /// Stores `invoice` under the next id and returns the id.
    pub fn push_invoice(&mut self, invoice: Invoice) -> i64 {
        let id = self.next_invoice_id;
        self.next_invoice_id += 1;
        self.invoices.push(Invoice { id, ..invoice });
        id
    }

    /// Adds a line for `product` to invoice `ihid`; returns its id.
    pub fn push_line(
        &mut self,
        ihid: i64,
        product: &'static Product,
        qty: u32,
        start: Option<NaiveDate>,
        end: Option<NaiveDate>,
    ) -> i64 {
        let id = self.next_line_id;
        self.next_line_id += 1;
        let seq = self.lines.iter().filter(|l| l.ihid == ihid).count() as i64 + 1;
        self.lines.push(Line {
            id,
            ihid,
            product,
            short_description: Cow::Borrowed(product.identifier),
            long_description: Cow::Borrowed(product.description),
            qty: Decimal::from(qty),
            unit_price: cents(product.unit_price_cents),
            unit_cost: cents(product.unit_cost_cents),
            nominal_code: Cow::Borrowed(NOMINAL_CODE),
            tax_code: 1,
            seq,
            start,
            end,
        });
        id
    }

    /// The client with `id` (clients are kept in id order).
    pub fn client(&self, id: i64) -> Option<&Client> {
        self.clients
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .map(|i| &self.clients[i])
    }

    /// The invoice with `id` (invoices are kept in id order).
    pub fn invoice(&self, id: i64) -> Option<&Invoice> {
        self.invoices
            .binary_search_by_key(&id, |i| i.id)
            .ok()
            .map(|i| &self.invoices[i])
    }

    fn client_name(&self, id: i64) -> String {
        self.client(id).map(|c| c.name.clone()).unwrap_or_default()
    }

    /// A client as served.
    pub fn client_json(&self, client: &Client) -> Value {
        json!({
            "id": client.id,
            "name": client.name,
            "toplevel_id": 1,
            "toplevel_name": "Customers",
            "inactive": client.inactive,
            "website": client.website,
            "colour": "#2b6cb0",
        })
    }

    /// A contract as served.
    pub fn contract_json(&self, contract: &Contract) -> Value {
        json!({
            "id": contract.id,
            "client_id": contract.client_id,
            "client_name": self.client_name(contract.client_id),
            "ref": contract.reference,
            "contracttype": contract_type_id(contract.contract_type),
            "contracttype_name": contract.contract_type,
            "billingperiod": if contract.billing_period == "Yearly" { PERIOD_YEARLY } else { PERIOD_MONTHLY },
            "billing_period_string": contract.billing_period,
            "start_date": halo_date(contract.start),
            "end_date": opt_date(contract.end),
            "active": contract.active,
            "onlybillatendofperiod": contract.arrears,
        })
    }

    /// A line as served.
    pub fn line_json(&self, line: &Line) -> Value {
        json!({
            "id": line.id,
            "ihid": line.ihid,
            "sequenceid": line.seq,
            "_itemid": item_id(line.product),
            "item_code": line.product.identifier,
            "item_shortdescription": line.short_description,
            "item_longdescription": line.long_description,
            "qty_order": money(line.qty),
            "unit_price": money(line.unit_price),
            "unit_cost": money(line.unit_cost),
            "net_amount": money(round_money(line.unit_price * line.qty)),
            "nominal_code": line.nominal_code,
            "tax_code": line.tax_code,
            "startdate": opt_date(line.start),
            "enddate": opt_date(line.end),
        })
    }

    /// Lines grouped by recurring invoice id.
    pub fn lines_by_invoice(&self) -> HashMap<i64, Vec<&Line>> {
        let mut index: HashMap<i64, Vec<&Line>> = HashMap::new();
        for line in &self.lines {
            index.entry(line.ihid).or_default().push(line);
        }
        index
    }

    /// An invoice as served, with its lines when `with_lines`.
    pub fn invoice_json(&self, invoice: &Invoice, with_lines: bool) -> Value {
        let lines: Vec<&Line> = self.lines.iter().filter(|l| l.ihid == invoice.id).collect();
        self.invoice_json_with(invoice, &lines, with_lines)
    }

    /// An invoice as served, given its lines.
    pub fn invoice_json_with(&self, invoice: &Invoice, lines: &[&Line], with_lines: bool) -> Value {
        let total: Decimal = lines
            .iter()
            .filter(|l| l.end.is_none())
            .map(|l| round_money(l.unit_price * l.qty))
            .sum();
        let mut value = json!({
            "id": invoice.id,
            "client_id": invoice.client_id,
            "client_name": self.client_name(invoice.client_id),
            "contract_id": invoice.contract_id,
            "contract_ref": invoice.contract_id.map(|id| format!("CON-{id}")),
            "reference": invoice.reference,
            "period": invoice.period,
            "periodname": period_name(invoice.period),
            "startdate": halo_date(invoice.start),
            "enddate": opt_date(invoice.end),
            "nextcreationdate": opt_date(invoice.next_creation),
            "disabled": invoice.disabled,
            "total": money(total),
        });
        if with_lines {
            value["lines"] = Value::Array(lines.iter().map(|l| self.line_json(l)).collect());
        }
        value
    }

    /// A catalogue item as served.
    pub fn item_json(&self, product: &Product) -> Value {
        json!({
            "id": item_id(product),
            "name": product.identifier,
            "description": product.description,
            "baseprice": money(cents(product.unit_price_cents)),
            "costprice": money(cents(product.unit_cost_cents)),
            "nominalcode": NOMINAL_CODE,
            "isrecurringitem": true,
        })
    }
}
