//! NinjaOne device pages → usage rows, read with serde_json into typed
//! structs like every connector's answers.
//!
//! Mirrors the device list endpoints of the NinjaOne public API v2:
//! `GET /api/v2/devices`, `GET /api/v2/devices-detailed` (adds `os`) and
//! `GET /api/v2/organization/{id}/devices`. Each answers a plain JSON array
//! of devices in ascending `id` order; the next page is asked for with
//! `after=<last id of this page>`. Fields read (unknown ones are ignored):
//! `id`, `organizationId`, `nodeClass`, `approvalStatus`, `offline`,
//! `displayName`, `systemName`, `lastContact` (epoch seconds, fractional)
//! and `os.name`.
//!
//! Every device becomes one row (quantity 1, unit [`UNIT`]) whose SKU is its
//! `nodeClass`; rules decide which rows to bill (approved, recently seen,
//! of a billable class).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer as _};
use trueup_connector::values::{civil_from_days, date_to_iso};

/// The unit of every device row.
pub const UNIT: &str = "device";

/// `device-role` values, the roll-up of `nodeClass`:
///
/// | role | node classes |
/// |---|---|
/// | `workstation` | `WINDOWS_WORKSTATION`, `MAC`, `LINUX_WORKSTATION` |
/// | `server` | `WINDOWS_SERVER`, `LINUX_SERVER`, `MAC_SERVER`, `VMWARE_VM_GUEST`, `HYPERV_VMM_GUEST` (a virtual machine is billed as the server it is) |
/// | `virtualization-host` | `VMWARE_VM_HOST`, `HYPERV_VMM_HOST`, `NMS_VM_HOST` |
/// | `mobile` | `ANDROID`, `APPLE_IOS`, `APPLE_IPADOS` |
/// | `network` | every other `NMS_*` class: devices NinjaOne monitors agentlessly through its NMS (switches, routers, firewalls, access points, printers, SNMP-monitored computers, ...) |
/// | `other` | `NMS_OTHER`, `CLOUD_MONITOR_TARGET`, `UNMANAGED_DEVICE`, `MANAGED_DEVICE` and any class this version does not know |
pub mod role {
    /// Managed desktops and laptops.
    pub const WORKSTATION: &str = "workstation";
    /// Managed servers, physical or virtual.
    pub const SERVER: &str = "server";
    /// Hypervisor hosts.
    pub const VIRTUALIZATION_HOST: &str = "virtualization-host";
    /// Phones and tablets.
    pub const MOBILE: &str = "mobile";
    /// Devices monitored through NinjaOne's NMS.
    pub const NETWORK: &str = "network";
    /// Anything else.
    pub const OTHER: &str = "other";
}

/// Every documented `nodeClass` with its display name and role.
const NODE_CLASSES: [(&str, &str, &str); 33] = [
    ("WINDOWS_SERVER", "Windows Server", role::SERVER),
    (
        "WINDOWS_WORKSTATION",
        "Windows Workstation",
        role::WORKSTATION,
    ),
    ("LINUX_WORKSTATION", "Linux Workstation", role::WORKSTATION),
    ("MAC", "Mac", role::WORKSTATION),
    ("ANDROID", "Android Device", role::MOBILE),
    ("APPLE_IOS", "iOS Device", role::MOBILE),
    ("APPLE_IPADOS", "iPadOS Device", role::MOBILE),
    ("VMWARE_VM_HOST", "VMware Host", role::VIRTUALIZATION_HOST),
    ("VMWARE_VM_GUEST", "VMware Virtual Machine", role::SERVER),
    ("HYPERV_VMM_HOST", "Hyper-V Host", role::VIRTUALIZATION_HOST),
    ("HYPERV_VMM_GUEST", "Hyper-V Virtual Machine", role::SERVER),
    ("LINUX_SERVER", "Linux Server", role::SERVER),
    ("MAC_SERVER", "Mac Server", role::SERVER),
    ("CLOUD_MONITOR_TARGET", "Cloud Monitor Target", role::OTHER),
    ("NMS_SWITCH", "Network Switch", role::NETWORK),
    ("NMS_ROUTER", "Network Router", role::NETWORK),
    ("NMS_FIREWALL", "Network Firewall", role::NETWORK),
    (
        "NMS_PRIVATE_NETWORK_GATEWAY",
        "Private Network Gateway",
        role::NETWORK,
    ),
    ("NMS_PRINTER", "Network Printer", role::NETWORK),
    ("NMS_SCANNER", "Network Scanner", role::NETWORK),
    ("NMS_DIAL_MANAGER", "Dial Manager", role::NETWORK),
    ("NMS_WAP", "Wireless Access Point", role::NETWORK),
    ("NMS_IPSLA", "IP SLA Target", role::NETWORK),
    ("NMS_COMPUTER", "Network-Monitored Computer", role::NETWORK),
    (
        "NMS_VM_HOST",
        "Network-Monitored VM Host",
        role::VIRTUALIZATION_HOST,
    ),
    ("NMS_APPLIANCE", "Network Appliance", role::NETWORK),
    ("NMS_OTHER", "Other Network Device", role::OTHER),
    ("NMS_SERVER", "Network-Monitored Server", role::NETWORK),
    ("NMS_PHONE", "Network Phone", role::NETWORK),
    (
        "NMS_VIRTUAL_MACHINE",
        "Network-Monitored Virtual Machine",
        role::NETWORK,
    ),
    (
        "NMS_NETWORK_MANAGEMENT_AGENT",
        "Network Management Agent",
        role::NETWORK,
    ),
    ("UNMANAGED_DEVICE", "Unmanaged Device", role::OTHER),
    ("MANAGED_DEVICE", "Managed Device", role::OTHER),
];

/// The display name and role of a `nodeClass`; unknown classes keep their
/// code as the name and the role [`role::OTHER`].
pub fn class_info(node_class: &str) -> (&str, &'static str) {
    NODE_CLASSES
        .iter()
        .find(|(class, _, _)| *class == node_class)
        .map_or((node_class, role::OTHER), |(_, name, role)| (*name, *role))
}

/// One device of a list page, borrowed from the body where it can be.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Device<'a> {
    id: u64,
    organization_id: u64,
    #[serde(borrow)]
    node_class: Cow<'a, str>,
    #[serde(borrow, default)]
    approval_status: Option<Cow<'a, str>>,
    #[serde(default)]
    offline: bool,
    #[serde(borrow, default)]
    display_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    system_name: Option<Cow<'a, str>>,
    /// Epoch seconds with a fraction. Only its UTC calendar day is used, so
    /// a binary float (exact to well under a millisecond for any date this
    /// century) is enough; this is a timestamp, not an amount.
    #[serde(default)]
    last_contact: Option<f64>,
    #[serde(borrow, default)]
    os: Option<Os<'a>>,
}

#[derive(Deserialize)]
struct Os<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

/// One device as a usage row: quantity 1 of unit [`UNIT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// The NinjaOne device id (the paging position).
    pub device_id: u64,
    /// `organizationId`, the account.
    pub account_id: String,
    /// `nodeClass`.
    pub sku_id: String,
    /// The class's display name.
    pub sku_name: String,
    /// `device-class`, `device-role`, `approval-status`, `offline`,
    /// `last-contact` (UTC `YYYY-MM-DD`, when the device has been in
    /// contact), `os-name` (when the page carries `os`), `display-name`
    /// (`systemName` when there is no display name).
    pub attributes: Vec<(String, String)>,
}

/// Parses one device page (a JSON array) into rows, in page order.
///
/// The array is read element by element straight into rows (no vector of
/// parsed devices in between), and strings are borrowed from `body` until a
/// row needs its own copy.
///
/// # Errors
/// The JSON error, with its line and column, when the body is not an array
/// of devices.
pub fn parse_page(body: &[u8]) -> Result<Vec<DeviceRow>, serde_json::Error> {
    // One UTF-8 check of the whole page, then no check per string (what
    // `from_slice` would do): measurably cheaper inside WebAssembly.
    let text =
        std::str::from_utf8(body).map_err(<serde_json::Error as serde::de::Error>::custom)?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let rows = deserializer.deserialize_seq(RowsVisitor)?;
    deserializer.end()?;
    Ok(rows)
}

/// Builds rows while the array is read.
struct RowsVisitor;

impl<'de> serde::de::Visitor<'de> for RowsVisitor {
    type Value = Vec<DeviceRow>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of NinjaOne devices")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<Vec<DeviceRow>, A::Error> {
        let mut rows = Vec::new();
        while let Some(device) = seq.next_element::<Device<'de>>()? {
            rows.push(row(device));
        }
        Ok(rows)
    }
}

/// The usage row of one device.
fn row(device: Device<'_>) -> DeviceRow {
    let (class_name, role) = class_info(&device.node_class);
    let mut attributes = Vec::with_capacity(7);
    attributes.push(("device-class".to_owned(), device.node_class.to_string()));
    attributes.push(("device-role".to_owned(), role.to_owned()));
    if let Some(status) = &device.approval_status {
        attributes.push(("approval-status".to_owned(), status.to_string()));
    }
    attributes.push((
        "offline".to_owned(),
        if device.offline { "true" } else { "false" }.to_owned(),
    ));
    if let Some(seconds) = device.last_contact.filter(|s| s.is_finite()) {
        attributes.push(("last-contact".to_owned(), iso_date_of_epoch(seconds)));
    }
    if let Some(name) = device.os.as_ref().and_then(|os| os.name.as_ref()) {
        attributes.push(("os-name".to_owned(), name.to_string()));
    }
    // `systemName` when there is no display name, or an empty one.
    if let Some(name) = device
        .display_name
        .as_ref()
        .filter(|name| !name.is_empty())
        .or(device.system_name.as_ref())
    {
        attributes.push(("display-name".to_owned(), name.to_string()));
    }
    DeviceRow {
        device_id: device.id,
        account_id: device.organization_id.to_string(),
        sku_name: class_name.to_owned(),
        sku_id: device.node_class.into_owned(),
        attributes,
    }
}

/// 0000-01-01, in days since 1970-01-01: the first day a `last-contact`
/// can be (its `YYYY` has four digits).
const FIRST_DAY: i64 = -719_528;
/// 9999-12-31, in days since 1970-01-01: the last day a `last-contact` can
/// be.
const LAST_DAY: i64 = 2_932_896;

/// The UTC calendar day (`YYYY-MM-DD`) of an epoch time in seconds; a time
/// before year 0 or after year 9999 reads as the nearest end of that range.
pub fn iso_date_of_epoch(seconds: f64) -> String {
    let day = ((seconds / 86_400.0).floor() as i64).clamp(FIRST_DAY, LAST_DAY);
    date_to_iso(&civil_from_days(day))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row's attributes as string pairs, for comparing with literals.
    fn attributes(row: &DeviceRow) -> Vec<(&str, &str)> {
        row.attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn a_page_becomes_rows_with_rolled_up_roles() {
        let body = br#"[
          {"id":7,"organizationId":3,"nodeClass":"WINDOWS_WORKSTATION","approvalStatus":"APPROVED",
           "offline":false,"displayName":"NORTHW-WS001","systemName":"NORTHW-WS001",
           "lastContact":1719705599.999,"uid":"x","os":{"name":"Windows 11 Professional Edition"}},
          {"id":9,"organizationId":3,"nodeClass":"NMS_SWITCH","approvalStatus":"PENDING",
           "offline":true,"displayName":"","systemName":"core-sw\u00e9"},
          {"id":11,"organizationId":4,"nodeClass":"SOMETHING_NEW","offline":false}
        ]"#;
        let rows = parse_page(body).expect("valid page");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].account_id, "3");
        assert_eq!(
            rows.iter().map(|r| r.device_id).collect::<Vec<_>>(),
            [7, 9, 11]
        );
        assert_eq!(rows[0].sku_id, "WINDOWS_WORKSTATION");
        assert_eq!(rows[0].sku_name, "Windows Workstation");
        let attrs = |i: usize| attributes(&rows[i]);
        assert_eq!(
            attrs(0),
            [
                ("device-class", "WINDOWS_WORKSTATION"),
                ("device-role", "workstation"),
                ("approval-status", "APPROVED"),
                ("offline", "false"),
                ("last-contact", "2024-06-29"),
                ("os-name", "Windows 11 Professional Edition"),
                ("display-name", "NORTHW-WS001"),
            ]
        );
        assert_eq!(
            attrs(1),
            [
                ("device-class", "NMS_SWITCH"),
                ("device-role", "network"),
                ("approval-status", "PENDING"),
                ("offline", "true"),
                ("display-name", "core-swé"),
            ]
        );
        assert_eq!(rows[2].sku_name, "SOMETHING_NEW");
        assert!(
            rows[2]
                .attributes
                .contains(&("device-role".into(), "other".into()))
        );
    }

    #[test]
    fn every_documented_class_has_a_role() {
        assert_eq!(class_info("VMWARE_VM_GUEST").1, role::SERVER);
        assert_eq!(class_info("HYPERV_VMM_HOST").1, role::VIRTUALIZATION_HOST);
        assert_eq!(class_info("APPLE_IPADOS").1, role::MOBILE);
        assert_eq!(class_info("NMS_OTHER").1, role::OTHER);
        assert_eq!(class_info("NMS_WAP").1, role::NETWORK);
        for (class, _, _) in NODE_CLASSES {
            let role = class_info(class).1;
            assert!(
                class.starts_with("NMS_") || role != role::NETWORK,
                "{class} is not an NMS class"
            );
        }
    }

    #[test]
    fn epoch_days_are_utc_calendar_days() {
        assert_eq!(iso_date_of_epoch(0.0), "1970-01-01");
        assert_eq!(iso_date_of_epoch(86_399.9), "1970-01-01");
        assert_eq!(iso_date_of_epoch(951_782_400.0), "2000-02-29");
        assert_eq!(iso_date_of_epoch(-1.0), "1969-12-31");
        assert_eq!(iso_date_of_epoch(1e13), "9999-12-31");
        assert_eq!(iso_date_of_epoch(-1e13), "0000-01-01");
        assert_eq!(iso_date_of_epoch(f64::MAX), "9999-12-31");
    }

    #[test]
    fn the_day_range_is_years_0_to_9999() {
        let day = |text: &str| {
            trueup_connector::values::days_from_civil(
                &trueup_connector::values::date_from_iso(text).expect("date"),
            )
        };
        assert_eq!(FIRST_DAY, day("0000-01-01"));
        assert_eq!(LAST_DAY, day("9999-12-31"));
    }

    #[test]
    fn a_malformed_page_names_the_position() {
        let error = parse_page(br#"[{"id":1,"organizationId":2,"nodeClass":"MAC"},{"id":"#)
            .expect_err("truncated");
        assert_eq!(error.line(), 1);
        assert!(error.column() > 40, "{error}");
    }

    #[test]
    fn statuses_and_names_this_version_does_not_know_are_kept() {
        let body = br#"[
          {"id":1,"organizationId":2,"nodeClass":"MAC","approvalStatus":"REJECTED",
           "displayName":"","systemName":"","lastContact":-86400.5,"os":{}},
          {"id":2,"organizationId":2,"nodeClass":"SOMETHING_NEW","approvalStatus":"APPROVED",
           "systemName":"mac-2","os":{"name":"mac\u004fS"}}
        ]"#;
        let rows = parse_page(body).expect("valid page");
        let attrs = |i: usize| attributes(&rows[i]);
        assert_eq!(
            attrs(0),
            [
                ("device-class", "MAC"),
                ("device-role", "workstation"),
                ("approval-status", "REJECTED"),
                ("offline", "false"),
                ("last-contact", "1969-12-30"),
                ("display-name", ""),
            ]
        );
        assert_eq!(
            attrs(1),
            [
                ("device-class", "SOMETHING_NEW"),
                ("device-role", "other"),
                ("approval-status", "APPROVED"),
                ("offline", "false"),
                ("os-name", "macOS"),
                ("display-name", "mac-2"),
            ]
        );
        assert_eq!(
            (rows[1].sku_id.as_str(), rows[1].sku_name.as_str()),
            ("SOMETHING_NEW", "SOMETHING_NEW")
        );
    }

    #[test]
    fn devices_serde_refuses_are_errors_naming_the_position() {
        for body in [
            &br#"[{"id":1,"organizationId":2,"nodeClass":"MAC","id":3}]"#[..],
            br#"[{"id":1,"organizationId":2}]"#,
            br#"[{"id":-1,"organizationId":2,"nodeClass":"MAC"}]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"MAC","offline":null}]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"MAC","os":{"name":1}}]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"MAC"},]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"MAC"}] x"#,
            br#"{"id":1}"#,
        ] {
            let error = parse_page(body).expect_err(&String::from_utf8_lossy(body));
            assert_eq!(error.line(), 1, "{error}");
            assert!(error.to_string().contains(" at line 1 column "), "{error}");
        }
    }
}
