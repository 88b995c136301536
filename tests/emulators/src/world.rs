//! The emulated MSP's book of customers, shared by every emulator.
//!
//! Every PSA and vendor emulator derives its records from the same [`World`],
//! so the same customer shows up in ConnectWise, Microsoft 365 and NinjaOne
//! with related names, domains and counts, the way a real MSP's systems
//! overlap. The differences between what a PSA bills and what vendors report
//! are chosen deterministically from the seed so that a reconcile run finds
//! every card category (new revenue, quantity differs, no change, no vendor
//! data, unmapped).
//!
//! Nothing here is random at run time: the same `(seed, customers)` always
//! yields the same world.

/// A deterministic pseudo-random generator (SplitMix64). Small, fast and
/// stable across Rust releases, which `rand`'s generators do not promise.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one named stream of `seed` (e.g. per customer and
    /// per emulator), so adding records to one stream leaves others unchanged.
    pub fn stream(seed: u64, name: &str, index: u64) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Self(seed ^ h ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u32, high: u32) -> u32 {
        if high <= low {
            return low;
        }
        let span = u64::from(high - low) + 1;
        low + (self.next_u64() % span) as u32
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.next_u64() % 100 < u64::from(percent)
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let index = (self.next_u64() % items.len().max(1) as u64) as usize;
        &items[index.min(items.len().saturating_sub(1))]
    }
}

/// How a customer's PSA billing relates to what the vendors report; chosen
/// per customer so that every card category appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// The PSA bills exactly what vendors report.
    InSync,
    /// The PSA bills fewer units than used (under-billing: money found).
    UnderBilled,
    /// The PSA bills more units than used (over-billing).
    OverBilled,
    /// Vendors report a service the PSA does not bill at all.
    MissingService,
    /// The PSA bills a service no vendor reports.
    NoVendorData,
}

/// One customer of the emulated MSP.
#[derive(Debug, Clone)]
pub struct Customer {
    /// Position in the world, 0-based; stable for a seed.
    pub index: usize,
    /// Legal name as the PSA knows it, e.g. "Northwind Dental Group".
    pub name: String,
    /// Web/e-mail domain, lower-case, e.g. "northwinddental.com".
    pub domain: String,
    /// How the vendor systems spell the name (sometimes differs from `name`,
    /// e.g. "NORTHWIND DENTAL GRP LTD"), to exercise fuzzy matching.
    pub vendor_name: String,
    /// Whether the customer is only in vendor systems (a prospect or a
    /// customer the MSP forgot to set up): its accounts stay unmapped.
    pub vendor_only: bool,
    /// Whether the customer is only in the PSA (no vendor tenants).
    pub psa_only: bool,
    /// Licensed Microsoft 365 users (the truth vendors report).
    pub m365_users: u32,
    /// Workstations under management (RMM/EDR truth).
    pub workstations: u32,
    /// Servers under management.
    pub servers: u32,
    /// Network devices (switches, firewalls, APs) the RMM monitors.
    pub network_devices: u32,
    /// How the PSA's billed quantities relate to the truth above.
    pub drift: Drift,
}

/// The whole emulated MSP.
#[derive(Debug, Clone)]
pub struct World {
    /// The seed the world was built from.
    pub seed: u64,
    /// Customers in a stable order.
    pub customers: Vec<Customer>,
}

const FIRST: &[&str] = &[
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Adventure",
    "Litware",
    "Proseware",
    "Wingtip",
    "Alpine",
    "Blue Yonder",
    "Coho",
    "Fourth Coffee",
    "Humongous",
    "Lucerne",
    "Margie's",
    "Trey",
    "Wide World",
    "Woodgrove",
    "Graphic",
    "Datum",
    "Southridge",
    "Bellows",
    "Relecloud",
    "Cronus",
];
const SECOND: &[&str] = &[
    "Dental",
    "Legal",
    "Logistics",
    "Accounting",
    "Engineering",
    "Medical",
    "Realty",
    "Foods",
    "Insurance",
    "Architects",
    "Manufacturing",
    "Travel",
    "Vineyards",
    "Clinic",
    "Partners",
    "Labs",
];
const SUFFIX: &[&str] = &[
    "Group",
    "LLC",
    "Inc",
    "Ltd",
    "Co",
    "Associates",
    "Holdings",
    "PC",
];

impl World {
    /// Builds the world for `seed` with `customers` customers.
    pub fn new(seed: u64, customers: usize) -> Self {
        let customers = (0..customers)
            .map(|index| build_customer(seed, index))
            .collect();
        Self { seed, customers }
    }

    /// Customers the PSA knows (everyone but the vendor-only ones).
    pub fn psa_customers(&self) -> impl Iterator<Item = &Customer> {
        self.customers.iter().filter(|c| !c.vendor_only)
    }

    /// Customers that have vendor tenants/organisations.
    pub fn vendor_customers(&self) -> impl Iterator<Item = &Customer> {
        self.customers.iter().filter(|c| !c.psa_only)
    }
}

fn build_customer(seed: u64, index: usize) -> Customer {
    let mut rng = SeededRng::stream(seed, "customer", index as u64);
    // Name parts follow the index (shifted by the seed) so names are unique;
    // a number is added only once every combination is taken, which keeps
    // small worlds looking like real customer lists.
    let combos = FIRST.len() * SECOND.len();
    let slot = (index + (seed as usize % combos)) % combos;
    let first = FIRST[slot % FIRST.len()];
    let second = SECOND[slot / FIRST.len()];
    let suffix = rng.pick(SUFFIX);
    let number = if index < combos {
        String::new()
    } else {
        format!(" {}", index + 1)
    };
    let name = format!("{first} {second}{number} {suffix}");
    let slug: String = format!("{first}{second}{number}")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    let domain = format!("{slug}.com");
    let vendor_name = match rng.range(0, 9) {
        0 => name.to_uppercase(),
        1 => format!("{first} {second}{number}"),
        2 => format!("{first} {second}{number} {suffix}.").replace("  ", " "),
        _ => name.clone(),
    };
    let roll = rng.range(0, 99);
    let vendor_only = roll < 4;
    let psa_only = (4..7).contains(&roll);
    let drift = match rng.range(0, 99) {
        0..=44 => Drift::InSync,
        45..=69 => Drift::UnderBilled,
        70..=79 => Drift::OverBilled,
        80..=89 => Drift::MissingService,
        _ => Drift::NoVendorData,
    };
    let m365_users = rng.range(3, 60);
    let workstations = m365_users.saturating_sub(rng.range(0, 3)).max(1);
    let servers = rng.range(0, 4);
    let network_devices = rng.range(1, 6);
    Customer {
        index,
        name,
        domain,
        vendor_name,
        vendor_only,
        psa_only,
        m365_users,
        workstations,
        servers,
        network_devices,
        drift,
    }
}

/// The quantity a PSA bills for a service whose vendor truth is `truth`,
/// given the customer's drift. `salt` varies the amount between services.
pub fn billed_quantity(customer: &Customer, truth: u32, salt: u64) -> u32 {
    let mut rng = SeededRng::stream(customer.index as u64, "billed", salt);
    match customer.drift {
        Drift::InSync | Drift::MissingService | Drift::NoVendorData => truth,
        Drift::UnderBilled => truth.saturating_sub(rng.range(1, 5)),
        Drift::OverBilled => truth + rng.range(1, 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_builds_the_same_world() {
        let a = World::new(7, 50);
        let b = World::new(7, 50);
        let names_a: Vec<_> = a
            .customers
            .iter()
            .map(|c| (&c.name, c.m365_users))
            .collect();
        let names_b: Vec<_> = b
            .customers
            .iter()
            .map(|c| (&c.name, c.m365_users))
            .collect();
        assert_eq!(names_a, names_b);
    }

    #[test]
    fn a_different_seed_builds_a_different_world() {
        let a = World::new(7, 50);
        let b = World::new(8, 50);
        assert_ne!(
            a.customers.iter().map(|c| &c.name).collect::<Vec<_>>(),
            b.customers.iter().map(|c| &c.name).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_drift_appears_in_a_world_of_a_hundred() {
        let world = World::new(1, 100);
        for drift in [
            Drift::InSync,
            Drift::UnderBilled,
            Drift::OverBilled,
            Drift::MissingService,
            Drift::NoVendorData,
        ] {
            assert!(
                world.customers.iter().any(|c| c.drift == drift),
                "{drift:?} missing"
            );
        }
        assert!(world.customers.iter().any(|c| c.vendor_only));
        assert!(world.customers.iter().any(|c| c.psa_only));
    }

    #[test]
    fn names_and_domains_are_unique_in_a_large_world() {
        let world = World::new(3, 5000);
        let mut domains: Vec<_> = world.customers.iter().map(|c| c.domain.clone()).collect();
        domains.sort();
        domains.dedup();
        assert_eq!(domains.len(), 5000);
    }
}
