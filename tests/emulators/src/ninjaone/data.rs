//! NinjaOne organisations, locations and devices, kept compact (a device is
//! a few integers; names and JSON are produced when served) so a world of
//! 1,000 organisations and 100,000 devices builds in milliseconds.
//!
//! Truth: for every catalogue product reported by NinjaOne node classes, an
//! organisation has exactly the reported number of devices of those classes
//! that are `APPROVED` and were last in contact within the last 20 days (a
//! few of them currently offline). Noise on top: devices waiting for
//! approval (`PENDING`), approved devices not seen for 90–400 days, and
//! devices of classes no product bills (phones, tablets, hypervisor hosts,
//! cloud monitors, unclassified NMS targets). The MSP's internal
//! organisation comes last.

use chrono::{DateTime, Utc};

use crate::catalog::{VendorSource, reported_usage};
use crate::vendor_common::internal_account_name;
use crate::world::{SeededRng, World};

/// Every `nodeClass` of the public API, in the documented order; a device
/// stores its class as an index into this list.
pub(super) const NODE_CLASSES: [&str; 33] = [
    "WINDOWS_SERVER",
    "WINDOWS_WORKSTATION",
    "LINUX_WORKSTATION",
    "MAC",
    "ANDROID",
    "APPLE_IOS",
    "APPLE_IPADOS",
    "VMWARE_VM_HOST",
    "VMWARE_VM_GUEST",
    "HYPERV_VMM_HOST",
    "HYPERV_VMM_GUEST",
    "LINUX_SERVER",
    "MAC_SERVER",
    "CLOUD_MONITOR_TARGET",
    "NMS_SWITCH",
    "NMS_ROUTER",
    "NMS_FIREWALL",
    "NMS_PRIVATE_NETWORK_GATEWAY",
    "NMS_PRINTER",
    "NMS_SCANNER",
    "NMS_DIAL_MANAGER",
    "NMS_WAP",
    "NMS_IPSLA",
    "NMS_COMPUTER",
    "NMS_VM_HOST",
    "NMS_APPLIANCE",
    "NMS_OTHER",
    "NMS_SERVER",
    "NMS_PHONE",
    "NMS_VIRTUAL_MACHINE",
    "NMS_NETWORK_MANAGEMENT_AGENT",
    "UNMANAGED_DEVICE",
    "MANAGED_DEVICE",
];

/// Classes no catalogue product counts: the noise devices.
const UNBILLED_CLASSES: [&str; 7] = [
    "ANDROID",
    "APPLE_IOS",
    "APPLE_IPADOS",
    "VMWARE_VM_HOST",
    "HYPERV_VMM_HOST",
    "CLOUD_MONITOR_TARGET",
    "NMS_OTHER",
];

/// Truth devices were last in contact at most this many days ago.
pub(super) const RECENT_DAYS_MAX: u32 = 20;
/// Stale noise devices were last in contact at least this many days ago.
pub(super) const STALE_DAYS_MIN: u32 = 90;

/// One device, compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Device {
    pub id: u32,
    pub org: u32,
    pub loc: u32,
    /// Index into [`NODE_CLASSES`].
    pub class: u8,
    pub approved: bool,
    pub offline: bool,
    /// Epoch seconds.
    pub created: i64,
    /// Epoch milliseconds.
    pub last_contact_ms: i64,
    /// Serial within the organisation, for the host name.
    pub name: u32,
}

impl Device {
    /// The `nodeClass` string.
    pub fn class_name(&self) -> &'static str {
        NODE_CLASSES[usize::from(self.class)]
    }
}

/// One organisation with its locations and the index range of its devices.
#[derive(Debug, Clone)]
pub(super) struct Org {
    pub id: u32,
    pub customer_index: Option<usize>,
    pub name: String,
    /// Upper-case prefix of host names, e.g. `NORTHW`.
    pub host_prefix: String,
    pub domain: String,
    pub locations: Vec<(u32, &'static str)>,
    pub devices: std::ops::Range<usize>,
}

/// Everything the NinjaOne emulator serves.
#[derive(Debug)]
pub(super) struct NinjaData {
    pub orgs: Vec<Org>,
    /// All devices, ascending by id (ids are dense from 1).
    pub devices: Vec<Device>,
}

fn class_index(name: &str) -> u8 {
    NODE_CLASSES
        .iter()
        .position(|c| *c == name)
        .map_or(0, |i| i as u8)
}

const LOCATION_NAMES: [&str; 3] = ["Main Office", "Branch Office", "Remote Workers"];

struct OrgBuilder<'a> {
    rng: SeededRng,
    now_ms: i64,
    org: u32,
    locations: &'a [(u32, &'static str)],
    devices: &'a mut Vec<Device>,
    serial: u32,
}

impl OrgBuilder<'_> {
    fn push(&mut self, class: &str, approved: bool, days_ago: (u32, u32), offline: bool) {
        self.serial += 1;
        let id = self.devices.len() as u32 + 1;
        let loc = self.rng.pick(self.locations).0;
        let contact_ms = i64::from(self.rng.range(days_ago.0 * 86_400, days_ago.1 * 86_400)) * 1000
            + i64::from(self.rng.range(0, 999));
        let last_contact_ms = self.now_ms - contact_ms;
        let age_days = i64::from(self.rng.range(days_ago.1 + 10, days_ago.1 + 1200));
        self.devices.push(Device {
            id,
            org: self.org,
            loc,
            class: class_index(class),
            approved,
            offline,
            created: last_contact_ms / 1000 - age_days * 86_400,
            last_contact_ms,
            name: self.serial,
        });
    }

    /// A truth device of one of `classes` (the first is the most common).
    fn truth(&mut self, classes: &[&'static str]) {
        let class = if self.rng.chance(70) {
            classes[0]
        } else {
            *self.rng.pick(classes)
        };
        let offline = self.rng.chance(15);
        let days = if offline {
            (1, RECENT_DAYS_MAX)
        } else {
            (0, 1)
        };
        self.push(class, true, days, offline);
    }
}

fn host_prefix(name: &str) -> String {
    let letters: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    letters.to_ascii_uppercase()
}

/// Builds the organisations and devices; `devices_per_org` replaces the
/// catalogue-driven counts with that many devices per organisation (spread
/// over billable classes, about 5% pending and 5% stale) for scale runs.
pub(super) fn build(world: &World, now: DateTime<Utc>, devices_per_org: Option<u32>) -> NinjaData {
    let now_ms = now.timestamp_millis();
    let vendor: Vec<_> = world.vendor_customers().collect();
    let mut orgs = Vec::with_capacity(vendor.len() + 1);
    let per_org = devices_per_org.map_or(40, |n| n as usize + 8);
    let mut devices = Vec::with_capacity((vendor.len() + 1) * per_org);
    let mut next_location = 1u32;
    let mut add_org = |customer_index: Option<usize>,
                       name: String,
                       domain: String,
                       orgs: &mut Vec<Org>,
                       devices: &mut Vec<Device>,
                       fill: &mut dyn FnMut(&mut OrgBuilder<'_>)| {
        let id = orgs.len() as u32 + 1;
        let mut rng = SeededRng::stream(world.seed, "ninja-org", u64::from(id));
        let count = 1 + usize::from(rng.chance(30)) + usize::from(rng.chance(10));
        let locations: Vec<(u32, &'static str)> = LOCATION_NAMES[..count]
            .iter()
            .map(|n| {
                next_location += 1;
                (next_location - 1, *n)
            })
            .collect();
        let start = devices.len();
        let mut builder = OrgBuilder {
            rng,
            now_ms,
            org: id,
            locations: &locations,
            devices,
            serial: 0,
        };
        fill(&mut builder);
        let end = builder.devices.len();
        orgs.push(Org {
            id,
            customer_index,
            host_prefix: host_prefix(&name),
            name,
            domain,
            locations,
            devices: start..end,
        });
    };
    for customer in &vendor {
        let usage: Vec<(&'static [&'static str], u32)> = reported_usage(customer)
            .into_iter()
            .filter_map(|(p, units)| match p.source {
                VendorSource::NinjaDevices { node_classes } => Some((node_classes, units)),
                _ => None,
            })
            .collect();
        let mut fill = |b: &mut OrgBuilder<'_>| match devices_per_org {
            Some(n) => {
                let billable: Vec<&'static str> = usage
                    .iter()
                    .flat_map(|(classes, _)| classes.iter().copied())
                    .collect();
                let billable = if billable.is_empty() {
                    vec!["WINDOWS_WORKSTATION"]
                } else {
                    billable
                };
                for _ in 0..n {
                    let roll = b.rng.range(0, 99);
                    let class = if roll < 70 {
                        billable[0]
                    } else {
                        *b.rng.pick(&billable)
                    };
                    match roll % 20 {
                        0 => b.push(class, false, (0, 2), false),
                        1 => b.push(class, true, (STALE_DAYS_MIN, 400), true),
                        _ => b.push(class, true, (0, 1), false),
                    }
                }
            }
            None => {
                for (classes, units) in &usage {
                    for _ in 0..*units {
                        b.truth(classes);
                    }
                }
                let workstation = usage.first().map_or("WINDOWS_WORKSTATION", |(c, _)| c[0]);
                if b.rng.chance(30) {
                    for _ in 0..b.rng.range(1, 2) {
                        b.push(workstation, false, (0, 3), false);
                    }
                }
                if b.rng.chance(35) {
                    for _ in 0..b.rng.range(1, 3) {
                        b.push(workstation, true, (STALE_DAYS_MIN, 400), true);
                    }
                }
                if b.rng.chance(40) {
                    for _ in 0..b.rng.range(1, 3) {
                        let class = *b.rng.pick(&UNBILLED_CLASSES);
                        b.push(class, true, (0, 2), false);
                    }
                }
            }
        };
        add_org(
            Some(customer.index),
            customer.vendor_name.clone(),
            customer.domain.clone(),
            &mut orgs,
            &mut devices,
            &mut fill,
        );
    }
    add_org(
        None,
        internal_account_name(),
        crate::vendor_common::MSP_DOMAIN.to_owned(),
        &mut orgs,
        &mut devices,
        &mut |b: &mut OrgBuilder<'_>| {
            for _ in 0..8 {
                b.truth(&["WINDOWS_WORKSTATION", "MAC"]);
            }
            b.push("WINDOWS_SERVER", true, (0, 1), false);
            b.push("NMS_FIREWALL", true, (0, 1), false);
        },
    );
    NinjaData { orgs, devices }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PRODUCTS;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 30, 12, 0, 0)
            .single()
            .expect("valid instant")
    }

    #[test]
    fn approved_recent_devices_equal_reported_usage() {
        let world = World::new(21, 120);
        let data = build(&world, now(), None);
        let recent_ms = i64::from(RECENT_DAYS_MAX) * 86_400_000;
        let mut noise = 0;
        for org in &data.orgs {
            let Some(index) = org.customer_index else {
                continue;
            };
            let devices = &data.devices[org.devices.clone()];
            for (product, units) in reported_usage(&world.customers[index]) {
                let VendorSource::NinjaDevices { node_classes } = product.source else {
                    continue;
                };
                let counted = devices
                    .iter()
                    .filter(|d| {
                        d.approved
                            && node_classes.contains(&d.class_name())
                            && now().timestamp_millis() - d.last_contact_ms <= recent_ms
                    })
                    .count();
                assert_eq!(counted as u32, units, "{} {}", org.name, product.identifier);
            }
            noise += devices
                .iter()
                .filter(|d| {
                    !d.approved
                        || UNBILLED_CLASSES.contains(&d.class_name())
                        || now().timestamp_millis() - d.last_contact_ms > recent_ms
                })
                .count();
        }
        assert!(noise > 0, "the world should carry noise devices");
        assert!(PRODUCTS.len() > 3);
        for (i, d) in data.devices.iter().enumerate() {
            assert_eq!(d.id as usize, i + 1);
        }
    }

    #[test]
    fn a_scale_world_has_the_requested_device_count() {
        let world = World::new(3, 1000);
        let data = build(&world, now(), Some(100));
        assert_eq!(data.orgs.len(), world.vendor_customers().count() + 1);
        assert_eq!(
            data.devices.len(),
            world.vendor_customers().count() * 100 + 10
        );
    }
}
