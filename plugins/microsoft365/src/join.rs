//! One usage record per Graph SKU, joined with the Partner Center
//! subscriptions it is sold through.
//!
//! **How a subscription is matched to a SKU** (first rule that applies):
//! 1. Graph's `subscribedSku.subscriptionIds` lists the commerce
//!    subscriptions behind the SKU; for CSP sales those are the Partner
//!    Center subscription ids. When the list is not empty, exactly the
//!    Partner Center subscriptions with those ids match (case-insensitive);
//!    an id with no Partner Center subscription was bought elsewhere (direct
//!    or another partner) and matches nothing.
//! 2. Otherwise (an empty or missing list): the subscriptions whose
//!    new-commerce `offerId` starts with the SKU's product id (`CFQ7TTC0LCHC`
//!    for `SPB`, from [`KNOWN_SKUS`]).
//! 3. Otherwise: the subscriptions whose `offerName` is the SKU's product
//!    name (from [`KNOWN_SKUS`]), case-insensitive.
//!
//! **When several subscriptions match** (e.g. monthly and annual seats of
//! one SKU, or deleted ones from earlier terms), the attributes describe
//! the ones with the best status (active, then pending, suspended, expired,
//! disabled, deleted): `subscription-status` is that status;
//! `billing-term` lists their distinct `termDuration`s (`P1M,P1Y`);
//! `commitment-end` is the EARLIEST of their commitment ends (the first day
//! on which some seats can be reduced); `refundable-quantity` is the sum of
//! their refundable seats and `refundable-until` the earliest end of a
//! refund window with seats in it; `subscription-quantity` is the sum of
//! their seats (what Microsoft bills), `billing-cycle` and `auto-renew`
//! their distinct values. `subscription-ids` lists every match.
//!
//! **Commitment ends.** New-commerce `commitmentEndDate` is the last day of
//! the term (inclusive); legacy offers give the day after (exclusive), so
//! one day is taken off for them. An offer is new commerce when its
//! `productType.id` is `OnlineServicesNCE` or its `offerId` has the
//! `product:sku` form.

use rust_decimal::Decimal;
use trueup_connector::usage::UsageRecord;
use trueup_connector::{ConnectorError, Date, values};

use crate::graph::SubscribedSku;
use crate::partner_center::Subscription;

/// The unit of `consumedUnits`.
const UNIT: &str = "licence";

/// `(skuPartNumber, product name, new-commerce product id)` of common
/// SKUs, from Microsoft's "Product names and service plan identifiers for
/// licensing" and the CSP price list. Used to name a SKU (Graph gives only
/// the part number) and, when Graph lists no subscription ids, to match
/// offers. A missing entry only loses that fallback.
pub const KNOWN_SKUS: &[(&str, &str, Option<&str>)] = &[
    (
        "SPB",
        "Microsoft 365 Business Premium",
        Some("CFQ7TTC0LCHC"),
    ),
    (
        "O365_BUSINESS_PREMIUM",
        "Microsoft 365 Business Standard",
        Some("CFQ7TTC0LDPB"),
    ),
    (
        "O365_BUSINESS_ESSENTIALS",
        "Microsoft 365 Business Basic",
        Some("CFQ7TTC0LH18"),
    ),
    (
        "EXCHANGESTANDARD",
        "Exchange Online (Plan 1)",
        Some("CFQ7TTC0LH16"),
    ),
    ("VISIOCLIENT", "Visio Plan 2", Some("CFQ7TTC0HD32")),
    ("ENTERPRISEPACK", "Office 365 E3", Some("CFQ7TTC0LF8Q")),
    ("SPE_E3", "Microsoft 365 E3", Some("CFQ7TTC0LFLX")),
    ("SPE_E5", "Microsoft 365 E5", Some("CFQ7TTC0LFLZ")),
    ("ENTERPRISEPREMIUM", "Office 365 E5", None),
    ("EXCHANGEENTERPRISE", "Exchange Online (Plan 2)", None),
    ("O365_BUSINESS", "Microsoft 365 Apps for business", None),
    (
        "OFFICESUBSCRIPTION",
        "Microsoft 365 Apps for enterprise",
        None,
    ),
    ("PROJECTPROFESSIONAL", "Project Plan 3", None),
    ("AAD_PREMIUM", "Microsoft Entra ID P1", None),
    ("AAD_PREMIUM_P2", "Microsoft Entra ID P2", None),
    ("EMS", "Enterprise Mobility + Security E3", None),
    ("POWER_BI_PRO", "Power BI Pro", None),
    ("FLOW_FREE", "Microsoft Power Automate Free", None),
    ("POWER_BI_STANDARD", "Microsoft Fabric (Free)", None),
    ("TEAMS_EXPLORATORY", "Microsoft Teams Exploratory", None),
];

fn known(part_number: &str) -> Option<&'static (&'static str, &'static str, Option<&'static str>)> {
    KNOWN_SKUS
        .iter()
        .find(|(part, _, _)| part.eq_ignore_ascii_case(part_number))
}

/// The Partner Center subscriptions of `sku` (see the module docs).
fn matching<'a>(sku: &SubscribedSku, subscriptions: &'a [Subscription]) -> Vec<&'a Subscription> {
    if !sku.subscription_ids.is_empty() {
        return subscriptions
            .iter()
            .filter(|s| {
                sku.subscription_ids
                    .iter()
                    .any(|id| id.trim().eq_ignore_ascii_case(&s.id))
            })
            .collect();
    }
    let Some((_, name, product)) = known(&sku.sku_part_number) else {
        return Vec::new();
    };
    if let Some(product) = product {
        let by_product: Vec<&Subscription> = subscriptions
            .iter()
            .filter(|s| {
                s.offer_id
                    .as_deref()
                    .and_then(|o| o.split(':').next())
                    .is_some_and(|p| p.eq_ignore_ascii_case(product))
            })
            .collect();
        if !by_product.is_empty() {
            return by_product;
        }
    }
    subscriptions
        .iter()
        .filter(|s| {
            s.offer_name
                .as_deref()
                .is_some_and(|o| o.trim().eq_ignore_ascii_case(name))
        })
        .collect()
}

/// Lower is better: which subscriptions describe the SKU.
fn status_rank(status: Option<&str>) -> u8 {
    match status.map(str::to_ascii_lowercase).as_deref() {
        Some("active") => 0,
        Some("pending") => 1,
        Some("suspended") => 2,
        Some("expired") => 3,
        Some("disabled") => 4,
        Some("deleted") => 5,
        _ => 6,
    }
}

/// Whether the subscription is a new-commerce one (inclusive end dates).
fn is_new_commerce(subscription: &Subscription) -> bool {
    subscription
        .product_type
        .as_ref()
        .and_then(|t| t.id.as_deref())
        .is_some_and(|id| id.eq_ignore_ascii_case("OnlineServicesNCE"))
        || subscription
            .offer_id
            .as_deref()
            .is_some_and(|o| o.contains(':'))
}

/// The inclusive last day of the subscription's commitment.
fn commitment_end(subscription: &Subscription) -> Result<Option<Date>, ConnectorError> {
    let Some(end) = values::opt_date(subscription.commitment_end_date.as_deref())? else {
        return Ok(None);
    };
    if is_new_commerce(subscription) {
        return Ok(Some(end));
    }
    Ok(Some(values::civil_from_days(
        values::days_from_civil(&end) - 1,
    )))
}

/// Distinct non-empty values, sorted, joined with commas.
fn distinct<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Option<String> {
    let mut list: Vec<&str> = values.flatten().filter(|v| !v.is_empty()).collect();
    list.sort_unstable();
    list.dedup();
    (!list.is_empty()).then(|| list.join(","))
}

fn count(value: Option<Decimal>) -> String {
    value.unwrap_or_default().to_string()
}

/// The usage record of `sku` in `tenant`, joined with its subscriptions.
///
/// # Errors
/// [`ConnectorError::Internal`] naming the tenant, SKU and subscription when
/// a date does not parse or a count does not fit the WIT decimal.
pub(crate) fn usage_record(
    tenant: &str,
    sku: SubscribedSku,
    subscriptions: &[Subscription],
) -> Result<UsageRecord, ConnectorError> {
    let context = |e: ConnectorError| match e {
        ConnectorError::Internal(message) => ConnectorError::Internal(format!(
            "tenant {tenant}, SKU {}: {message}",
            sku.sku_part_number
        )),
        other => other,
    };
    let matched = matching(&sku, subscriptions);
    let best = matched
        .iter()
        .map(|s| status_rank(s.status.as_deref()))
        .min();
    let current: Vec<&Subscription> = matched
        .iter()
        .copied()
        .filter(|s| Some(status_rank(s.status.as_deref())) == best)
        .collect();

    let prepaid = sku.prepaid_units.as_ref();
    let mut attributes = vec![
        (
            "capability-status".to_owned(),
            sku.capability_status.clone().unwrap_or_default(),
        ),
        (
            "prepaid-enabled".to_owned(),
            count(prepaid.and_then(|p| p.enabled)),
        ),
        (
            "prepaid-suspended".to_owned(),
            count(prepaid.and_then(|p| p.suspended)),
        ),
        (
            "prepaid-warning".to_owned(),
            count(prepaid.and_then(|p| p.warning)),
        ),
        (
            "prepaid-locked-out".to_owned(),
            count(prepaid.and_then(|p| p.locked_out)),
        ),
        ("consumed-units".to_owned(), sku.consumed_units.to_string()),
        (
            "applies-to".to_owned(),
            sku.applies_to.clone().unwrap_or_default(),
        ),
    ];
    if let Some(guid) = &sku.sku_id {
        attributes.push(("sku-guid".to_owned(), guid.to_ascii_lowercase()));
    }

    let billing_term = distinct(current.iter().map(|s| s.term_duration.as_deref()));
    let mut commitment = None::<Date>;
    for s in &current {
        if let Some(end) = commitment_end(s).map_err(context)? {
            let earlier = commitment
                .is_none_or(|c| values::days_from_civil(&end) < values::days_from_civil(&c));
            if earlier {
                commitment = Some(end);
            }
        }
    }
    if !matched.is_empty() {
        if let Some(status) = current.first().and_then(|s| s.status.clone()) {
            attributes.push(("subscription-status".to_owned(), status));
        }
        if let Some(term) = &billing_term {
            attributes.push(("billing-term".to_owned(), term.clone()));
        }
        if let Some(cycle) = distinct(current.iter().map(|s| s.billing_cycle.as_deref())) {
            attributes.push(("billing-cycle".to_owned(), cycle));
        }
        let seats: Decimal = current.iter().filter_map(|s| s.quantity).sum();
        attributes.push(("subscription-quantity".to_owned(), seats.to_string()));
        let renewals = distinct(current.iter().map(|s| match s.auto_renew_enabled {
            Some(true) => Some("true"),
            Some(false) => Some("false"),
            None => None,
        }));
        if let Some(renewals) = renewals {
            // "false,true" when the subscriptions disagree.
            attributes.push(("auto-renew".to_owned(), renewals));
        }
        if let Some(end) = &commitment {
            attributes.push(("commitment-end".to_owned(), values::date_to_iso(end)));
        }
        let refunds = current
            .iter()
            .filter_map(|s| s.refundable_quantity.as_ref());
        let mut refundable: u64 = 0;
        let mut until: Option<&str> = None;
        for r in refunds {
            refundable += r
                .total_quantity
                .unwrap_or_else(|| r.details.iter().map(|d| d.quantity).sum());
            for d in r.details.iter().filter(|d| d.quantity > 0) {
                if let Some(at) = d.allowed_until_date_time.as_deref() {
                    // ISO-8601 UTC instants in one format sort as text.
                    if until.is_none_or(|u| at < u) {
                        until = Some(at);
                    }
                }
            }
        }
        attributes.push(("refundable-quantity".to_owned(), refundable.to_string()));
        if let Some(until) = until {
            attributes.push(("refundable-until".to_owned(), until.to_owned()));
        }
        let ids: Vec<&str> = matched.iter().map(|s| s.id.as_str()).collect();
        attributes.push(("subscription-ids".to_owned(), ids.join(",")));
    }

    let sku_name = current
        .first()
        .and_then(|s| s.offer_name.clone())
        .filter(|n| !n.trim().is_empty())
        .or_else(|| known(&sku.sku_part_number).map(|(_, name, _)| (*name).to_owned()))
        .unwrap_or_else(|| sku.sku_part_number.clone());
    Ok(UsageRecord {
        account_id: tenant.to_owned(),
        quantity: values::decimal(sku.consumed_units).map_err(context)?,
        sku_id: sku.sku_part_number,
        sku_name,
        unit: UNIT.to_owned(),
        unit_cost: None,
        billing_term,
        commitment_end: commitment,
        attributes,
    })
}
