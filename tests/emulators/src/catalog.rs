//! The emulated MSP's service catalogue and what each customer really uses.
//!
//! PSA emulators bill [`Product`]s (by `identifier`) on contracts; vendor
//! emulators report the usage that feeds them ([`VendorSource`]). The
//! shipped `rules/default.rhai` maps those vendor SKUs to these identifiers,
//! so a demo reconcile against the emulators finds real differences.

use crate::world::{Customer, Drift, SeededRng};

/// Which vendor system reports the usage behind a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorSource {
    /// Microsoft Graph `subscribedSkus` (`consumedUnits` of `sku_part_number`).
    MicrosoftSku {
        /// The `skuPartNumber`.
        sku_part_number: &'static str,
    },
    /// NinjaOne devices of the given node classes.
    NinjaDevices {
        /// `nodeClass` values counted.
        node_classes: &'static [&'static str],
    },
    /// Huntress agents (`agents_count`).
    HuntressAgents,
    /// A Pax8 subscription of this product name (quantity).
    Pax8Subscription {
        /// Pax8 `productName`.
        product_name: &'static str,
    },
}

/// A recurring service the MSP sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// Catalogue identifier (ConnectWise `product.identifier`, Autotask
    /// service name, Halo item short description).
    pub identifier: &'static str,
    /// Description as invoiced.
    pub description: &'static str,
    /// Price per unit per month, in cents.
    pub unit_price_cents: i64,
    /// Cost per unit per month, in cents.
    pub unit_cost_cents: i64,
    /// What reports its usage.
    pub source: VendorSource,
}

/// Windows/Mac/Linux workstations, as NinjaOne classes them.
pub const WORKSTATION_CLASSES: &[&str] = &["WINDOWS_WORKSTATION", "MAC", "LINUX_WORKSTATION"];
/// Servers, physical or virtual.
pub const SERVER_CLASSES: &[&str] = &[
    "WINDOWS_SERVER",
    "LINUX_SERVER",
    "VMWARE_VM_GUEST",
    "HYPERV_VMM_GUEST",
];
/// Network devices monitored through NinjaOne's NMS.
pub const NETWORK_CLASSES: &[&str] = &[
    "NMS_SWITCH",
    "NMS_ROUTER",
    "NMS_FIREWALL",
    "NMS_WAP",
    "NMS_PRINTER",
];

/// The catalogue, in a stable order.
pub const PRODUCTS: &[Product] = &[
    Product {
        identifier: "M365-BP",
        description: "Microsoft 365 Business Premium",
        unit_price_cents: 2640,
        unit_cost_cents: 2200,
        source: VendorSource::MicrosoftSku {
            sku_part_number: "SPB",
        },
    },
    Product {
        identifier: "M365-BS",
        description: "Microsoft 365 Business Standard",
        unit_price_cents: 1500,
        unit_cost_cents: 1250,
        source: VendorSource::MicrosoftSku {
            sku_part_number: "O365_BUSINESS_PREMIUM",
        },
    },
    Product {
        identifier: "EXO-P1",
        description: "Exchange Online (Plan 1)",
        unit_price_cents: 480,
        unit_cost_cents: 400,
        source: VendorSource::MicrosoftSku {
            sku_part_number: "EXCHANGESTANDARD",
        },
    },
    Product {
        identifier: "RMM-WS",
        description: "Managed Workstation",
        unit_price_cents: 4500,
        unit_cost_cents: 300,
        source: VendorSource::NinjaDevices {
            node_classes: WORKSTATION_CLASSES,
        },
    },
    Product {
        identifier: "RMM-SRV",
        description: "Managed Server",
        unit_price_cents: 15000,
        unit_cost_cents: 600,
        source: VendorSource::NinjaDevices {
            node_classes: SERVER_CLASSES,
        },
    },
    Product {
        identifier: "NET-DEV",
        description: "Managed Network Device",
        unit_price_cents: 2000,
        unit_cost_cents: 100,
        source: VendorSource::NinjaDevices {
            node_classes: NETWORK_CLASSES,
        },
    },
    Product {
        identifier: "EDR",
        description: "Huntress Managed EDR",
        unit_price_cents: 800,
        unit_cost_cents: 350,
        source: VendorSource::HuntressAgents,
    },
    Product {
        identifier: "BACKUP-M365",
        description: "Microsoft 365 Backup (per user)",
        unit_price_cents: 400,
        unit_cost_cents: 160,
        source: VendorSource::Pax8Subscription {
            product_name: "Dropsuite Microsoft 365 Backup",
        },
    },
];

/// The product with `identifier`.
pub fn product(identifier: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.identifier == identifier)
}

/// How many units of `product` the customer really uses (what vendors
/// report), or `None` when the customer does not take the product at all.
pub fn truth(customer: &Customer, product: &Product) -> Option<u32> {
    let mut rng = SeededRng::stream(customer.index as u64, "takes", product_salt(product));
    match product.identifier {
        "M365-BP" => Some(customer.m365_users),
        "M365-BS" => rng.chance(25).then(|| rng.range(1, 8)),
        "EXO-P1" => rng.chance(35).then(|| rng.range(1, 12)),
        "RMM-WS" => Some(customer.workstations),
        "RMM-SRV" => (customer.servers > 0).then_some(customer.servers),
        "NET-DEV" => Some(customer.network_devices),
        "EDR" => rng
            .chance(70)
            .then_some(customer.workstations + customer.servers),
        "BACKUP-M365" => rng.chance(50).then_some(customer.m365_users),
        _ => None,
    }
}

/// The product this customer's drift affects (the one missing from the PSA
/// for [`Drift::MissingService`], or billed without vendor data for
/// [`Drift::NoVendorData`]).
pub fn drifted_product(customer: &Customer) -> &'static Product {
    let taken: Vec<&'static Product> = PRODUCTS
        .iter()
        .filter(|p| truth(customer, p).is_some())
        .collect();
    let mut rng = SeededRng::stream(customer.index as u64, "drifted", 0);
    if taken.is_empty() {
        &PRODUCTS[0]
    } else {
        let picked: &&'static Product = rng.pick(&taken);
        picked
    }
}

/// The lines a PSA bills this customer: `(product, quantity)`.
///
/// Follows the customer's [`Drift`]: under/over-billing changes quantities,
/// a missing service drops one line, "no vendor data" adds a line for a
/// product no vendor reports for this customer.
pub fn billed_lines(customer: &Customer) -> Vec<(&'static Product, u32)> {
    let drifted = drifted_product(customer);
    let mut lines = Vec::new();
    for (salt, product) in PRODUCTS.iter().enumerate() {
        match truth(customer, product) {
            Some(units) => {
                if customer.drift == Drift::MissingService && product == drifted {
                    continue;
                }
                lines.push((
                    product,
                    crate::world::billed_quantity(customer, units, salt as u64),
                ));
            }
            None if customer.drift == Drift::NoVendorData
                && !lines.iter().any(|(p, _)| *p == product) =>
            {
                // Bill one product the customer does not use: the card shows
                // "no vendor data" for it.
                let mut rng = SeededRng::stream(customer.index as u64, "phantom", salt as u64);
                if rng.chance(40) {
                    lines.push((product, rng.range(1, 5)));
                }
            }
            None => {}
        }
    }
    lines
}

/// What vendors report for this customer: `(product, units)` for every
/// product the customer takes. Vendor-only customers report usage too.
pub fn reported_usage(customer: &Customer) -> Vec<(&'static Product, u32)> {
    if customer.psa_only {
        return Vec::new();
    }
    PRODUCTS
        .iter()
        .filter_map(|p| truth(customer, p).map(|units| (p, units)))
        .collect()
}

fn product_salt(product: &Product) -> u64 {
    product
        .identifier
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::World;

    #[test]
    fn missing_service_customers_lack_exactly_the_drifted_line() {
        let world = World::new(5, 300);
        let customer = world
            .customers
            .iter()
            .find(|c| c.drift == Drift::MissingService && !c.vendor_only)
            .expect("a world of 300 has a missing-service customer");
        let billed = billed_lines(customer);
        let drifted = drifted_product(customer);
        assert!(billed.iter().all(|(p, _)| *p != drifted));
        assert!(reported_usage(customer).iter().any(|(p, _)| *p == drifted));
    }

    #[test]
    fn in_sync_customers_are_billed_what_they_use() {
        let world = World::new(5, 300);
        for customer in world
            .customers
            .iter()
            .filter(|c| c.drift == Drift::InSync && !c.psa_only)
        {
            assert_eq!(billed_lines(customer), reported_usage(customer));
        }
    }

    #[test]
    fn every_product_is_billed_somewhere() {
        let world = World::new(5, 300);
        for product in PRODUCTS {
            assert!(
                world
                    .customers
                    .iter()
                    .any(|c| billed_lines(c).iter().any(|(p, _)| *p == product)),
                "{} never billed",
                product.identifier
            );
        }
    }
}
