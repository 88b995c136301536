//! NinjaOne device pages → usage rows, with no dependency on the WIT
//! bindings so the same code runs inside the component and natively (the
//! benchmark in `tests/benches/ninjaone_sync.rs` compares the two).
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

mod scan;

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
    known_class(node_class.as_bytes())
        .map_or((node_class, role::OTHER), |(_, name, role)| (*name, *role))
}

/// A documented `nodeClass`: its [`NODE_CLASSES`] entry (code, display
/// name, role).
type KnownClass = &'static (&'static str, &'static str, &'static str);

/// The [`NODE_CLASSES`] entry of a documented `nodeClass`.
fn known_class(node_class: &[u8]) -> Option<KnownClass> {
    NODE_CLASSES
        .iter()
        .find(|(class, _, _)| class.as_bytes() == node_class)
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
///
/// A row owns every text it holds (about 18 small allocations per device).
/// Rows that borrow `'static` texts and build the rest on demand were
/// measured (`tests/benches/ninjaone_sync.rs`): they make a page about 2.3
/// times faster inside WebAssembly and 3 times faster natively, since the
/// host's allocator costs more per allocation than the guest's dlmalloc,
/// and so raise the WASM / native ratio the benchmark holds to 1.5 from
/// about 1.3 to about 1.8.
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
/// This runs for every device of every sync. A page is first read by a
/// scanner written for device pages (`scan`): straight from the bytes into
/// rows, with no serde call per token. It reads exactly the pages the serde
/// path reads, into the same rows, and leaves anything else (malformed
/// pages, rare constructs) to the serde path, which reports the error. In
/// both, the array is read element by element straight into rows (no
/// vector of parsed devices in between), strings are borrowed from `body`
/// until a row needs its own copy, and numbers and dates are written
/// without the formatting machinery.
///
/// # Errors
/// The JSON error, with its line and column, when the body is not an array
/// of devices.
pub fn parse_page(body: &[u8]) -> Result<Vec<DeviceRow>, serde_json::Error> {
    let capacity = (body.len() / MIN_DEVICE_BYTES).min(MAX_ROWS_RESERVED);
    let mut rows = Vec::with_capacity(capacity);
    if scan::rows(body, &mut rows).is_ok() {
        return Ok(rows);
    }
    drop(rows);
    parse_page_with_serde(body, capacity)
}

/// [`parse_page`] through serde_json alone: for the pages the scan leaves
/// (and their errors).
fn parse_page_with_serde(
    body: &[u8],
    capacity: usize,
) -> Result<Vec<DeviceRow>, serde_json::Error> {
    // One UTF-8 check of the whole page, then no check per string (what
    // `from_slice` would do): measurably cheaper inside WebAssembly.
    let text =
        std::str::from_utf8(body).map_err(<serde_json::Error as serde::de::Error>::custom)?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let rows = deserializer.deserialize_seq(RowsVisitor { capacity })?;
    deserializer.end()?;
    Ok(rows)
}

/// Fewer bytes than any device of a list page takes (the brief list gives
/// about 370 per device): sizes the row vector from the body, so it is not
/// grown (and copied) a dozen times per page.
const MIN_DEVICE_BYTES: usize = 256;

/// The most rows reserved up front, whatever the body's size: NinjaOne's
/// largest page.
const MAX_ROWS_RESERVED: usize = 10_000;

/// Builds rows while the array is read; `capacity` rows are reserved.
struct RowsVisitor {
    capacity: usize,
}

impl<'de> serde::de::Visitor<'de> for RowsVisitor {
    type Value = Vec<DeviceRow>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of NinjaOne devices")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<Vec<DeviceRow>, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(self.capacity));
        let mut accounts = Accounts::default();
        while let Some(device) = seq.next_element::<Device<'de>>()? {
            let account_id = accounts.of(device.organization_id);
            rows.push(row(device, account_id));
        }
        Ok(rows)
    }
}

/// The account id text of the organisations met on a page: devices come
/// grouped by organisation more often than not, so the last one is kept.
#[derive(Default)]
struct Accounts(Option<(u64, String)>);

impl Accounts {
    fn of(&mut self, organization_id: u64) -> String {
        match &self.0 {
            Some((id, text)) if *id == organization_id => text.clone(),
            _ => {
                let text = decimal(organization_id);
                self.0 = Some((organization_id, text.clone()));
                text
            }
        }
    }
}

/// A device's values as either path read them, its texts borrowed from
/// the page where they can be.
struct Parts<'a> {
    device_id: u64,
    account_id: String,
    node_class: Cow<'a, str>,
    /// `node_class`'s entry when it is documented.
    known: Option<KnownClass>,
    approval_status: Option<Cow<'a, str>>,
    offline: bool,
    /// The UTC calendar day of `lastContact`.
    last_contact: Option<String>,
    os_name: Option<Cow<'a, str>>,
    /// `displayName`, or `systemName` when there is no display name.
    display_name: Option<Cow<'a, str>>,
}

fn row(device: Device<'_>, account_id: String) -> DeviceRow {
    let display_name = match device.display_name {
        Some(name) if !name.is_empty() => Some(name),
        _ => device.system_name,
    };
    DeviceRow::from(Parts {
        device_id: device.id,
        account_id,
        known: known_class(device.node_class.as_bytes()),
        node_class: device.node_class,
        approval_status: device.approval_status,
        offline: device.offline,
        last_contact: device
            .last_contact
            .filter(|s| s.is_finite())
            .map(iso_date_of_epoch),
        os_name: device.os.and_then(|os| os.name),
        display_name,
    })
}

impl From<Parts<'_>> for DeviceRow {
    fn from(parts: Parts<'_>) -> Self {
        let (class_name, role) = parts
            .known
            .map_or((&*parts.node_class, role::OTHER), |(_, name, role)| {
                (*name, *role)
            });
        let mut attributes = Vec::with_capacity(7);
        attributes.push(("device-class".to_owned(), parts.node_class.to_string()));
        attributes.push(("device-role".to_owned(), role.to_owned()));
        if let Some(status) = &parts.approval_status {
            attributes.push(("approval-status".to_owned(), status.to_string()));
        }
        attributes.push((
            "offline".to_owned(),
            if parts.offline { "true" } else { "false" }.to_owned(),
        ));
        if let Some(day) = parts.last_contact {
            attributes.push(("last-contact".to_owned(), day));
        }
        if let Some(name) = &parts.os_name {
            attributes.push(("os-name".to_owned(), name.to_string()));
        }
        if let Some(name) = &parts.display_name {
            attributes.push(("display-name".to_owned(), name.to_string()));
        }
        Self {
            device_id: parts.device_id,
            account_id: parts.account_id,
            sku_name: class_name.to_owned(),
            sku_id: parts.node_class.into_owned(),
            attributes,
        }
    }
}

/// The decimal text of `n`.
fn decimal(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[start..].iter().map(|&d| char::from(d)).collect()
}

/// Writes `value` as exactly `out.len()` decimal digits (zero-padded).
fn write_padded(out: &mut [u8], mut value: i64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// A UTC calendar day as its `YYYY-MM-DD` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IsoDate([u8; 10]);

impl IsoDate {
    fn as_str(&self) -> &str {
        // Always ASCII digits and dashes (see `iso_date_of_day`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The UTC calendar day (`YYYY-MM-DD`) of an epoch time in seconds, for
/// years 0 to 9999.
///
/// The guest SDK has the same civil-date arithmetic (`values`), but this
/// module must build without the SDK.
pub fn iso_date_of_epoch(seconds: f64) -> String {
    iso_date_of_day(epoch_day(seconds)).as_str().to_owned()
}

/// The day since 1970-01-01 (UTC) of an epoch time in seconds.
fn epoch_day(seconds: f64) -> i64 {
    (seconds / 86_400.0).floor() as i64
}

/// The calendar day `days` after 1970-01-01, for years 0 to 9999.
fn iso_date_of_day(days: i64) -> IsoDate {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999);
    let mut text = *b"0000-00-00";
    write_padded(&mut text[0..4], year);
    write_padded(&mut text[5..7], month);
    write_padded(&mut text[8..10], day);
    IsoDate(text)
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
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 4_294_967_296, u64::MAX] {
            assert_eq!(decimal(n), n.to_string());
        }
    }

    #[test]
    fn epoch_days_are_utc_calendar_days() {
        assert_eq!(iso_date_of_epoch(0.0), "1970-01-01");
        assert_eq!(iso_date_of_epoch(86_399.9), "1970-01-01");
        assert_eq!(iso_date_of_epoch(951_782_400.0), "2000-02-29");
        assert_eq!(iso_date_of_epoch(-1.0), "1969-12-31");
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

    /// Both paths on `body`: the scan's rows when it reads the page, and
    /// the serde path's result.
    fn both(body: &[u8]) -> (Option<Vec<DeviceRow>>, Result<Vec<DeviceRow>, String>) {
        let mut rows = Vec::new();
        let scanned = scan::rows(body, &mut rows).ok().map(|()| rows);
        let serde = parse_page_with_serde(body, 0).map_err(|e| e.to_string());
        (scanned, serde)
    }

    /// The scan never reads a page differently from the serde path: when
    /// it reads one, serde reads it too, into the same rows.
    fn assert_same(body: &[u8]) {
        let (scanned, serde) = both(body);
        if let Some(rows) = scanned {
            assert_eq!(
                Ok(&rows),
                serde.as_ref(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let parsed = parse_page(body).map_err(|e| e.to_string());
        assert_eq!(parsed, serde, "{}", String::from_utf8_lossy(body));
    }

    /// A page like NinjaOne's (and the emulator's), with the odd values a
    /// real one may hold.
    const PAGE: &str = r#"[
{"id":1,"uid":"589e7945-464e-4a99-af89-ba2b3e575c9a","organizationId":1,"locationId":1,"nodeClass":"WINDOWS_WORKSTATION","nodeRoleId":2,"rolePolicyId":101,"approvalStatus":"APPROVED","offline":false,"displayName":"GRAPHI-WS001","systemName":"GRAPHI-WS001","dnsName":"graphi-ws001.graphiclegal.com","created":1721438262.0,"lastContact":1795569462.573,"lastUpdate":1795569442.573},
{"id":2,"uid":"506c2cea","organizationId":1,"locationId":1,"nodeClass":"NMS_PRIVATE_NETWORK_GATEWAY","approvalStatus":"PENDING","offline":true,"displayName":"","systemName":"caf\u00e9 \"gw\" \\ 1","lastContact":-86400.5,"os":null},
{"id":3,"organizationId":2,"nodeClass":"SOMETHING_NEW","approvalStatus":"REJECTED","displayName":"Ünïcödé name","lastContact":1e9,"os":{"manufacturer":"x","name":"mac\u004fS","needsReboot":true,"tags":[1,[2,{"a":null}],"s"]}},
{"id":4,"organizationId":2,"nodeClass":"MAC","approvalStatus":null,"offline":false,"displayName":null,"systemName":null,"lastContact":null,"os":{}},
{"id":5,"organizationId":18446744073709551,"nodeClass":"MA\u0043","lastContact":0,"os":{"name":null},"extra":{"nested":[true,false,null,-1.5e-3,"\ud83d\ude00"]}},
{"nodeClass":"LINUX_SERVER","organizationId":3,"id":6,"displayName":"out of order","lastContact":1795569462}
]"#;

    #[test]
    fn the_scan_reads_a_page_as_serde_does() {
        let (scanned, serde) = both(PAGE.as_bytes());
        let scanned = scanned.expect("the scan reads this page");
        assert_eq!(Ok(scanned), serde);
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(PAGE).expect("valid JSON"),
        )
        .expect("pretty");
        let (scanned, serde) = both(pretty.as_bytes());
        assert_eq!(Ok(scanned.expect("the scan reads a pretty page")), serde);
        assert_same(b"[]");
        assert_same(b" [ ] ");
    }

    #[test]
    fn the_scan_leaves_what_serde_refuses_or_reads_differently() {
        for body in [
            &br#"[{"id":1,"organizationId":2,"nodeClass":"MAC","id":3}]"#[..],
            br#"[{"id":1,"organizationId":2}]"#,
            br#"[{"id":1.0,"organizationId":2,"nodeClass":"MAC"}]"#,
            br#"[{"id":-1,"organizationId":2,"nodeClass":"MAC"}]"#,
            br#"[{"id":18446744073709551615,"organizationId":2,"nodeClass":"MAC"}]"#,
            br#"[{"id":18446744073709551616,"organizationId":2,"nodeClass":"MAC"}]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"MAC","offline":null}]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":null}]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"MAC","os":[]}]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"MAC","os":{"name":1}}]"#,
            br#"[[1,2,"MAC"]]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"MAC"},]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"MAC"}] x"#,
            br#"[{"id":01,"organizationId":2,"nodeClass":"MAC"}]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"M\x"}]"#,
            br#"[{"id":1,"organizationId":2,"nodeClass":"\ud800"}]"#,
            b"[{\"id\":1,\"organizationId\":2,\"nodeClass\":\"M\xffC\"}]",
            b"[{\"id\":1,\"organizationId\":2,\"nodeClass\":\"M\tC\"}]",
            br#"[{"id":1,"organizationId":2,"nodeClass":"MAC","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]"#,
            br#"{"id":1}"#,
            b"",
        ] {
            assert_same(body);
        }
    }

    #[test]
    fn the_scan_agrees_with_serde_on_every_damaged_page() {
        let page = br#"[{"id":7,"uid":"a-b","organizationId":3,"nodeClass":"MAC","approvalStatus":"APPROVED","offline":true,"displayName":"d\u00e9","systemName":"s","lastContact":1719705599.5,"os":{"name":"n"},"x":[1,{"y":null}]},{"id":9,"organizationId":3,"nodeClass":"NMS_SWITCH","lastContact":-1e2,"displayName":""}]"#;
        assert!(both(page).0.is_some(), "the scan reads the undamaged page");
        assert_same(page);
        let replacements = [
            b'"', b'\\', b'{', b'}', b'[', b']', b':', b',', b'0', b'9', b'-', b'.', b'e', b' ',
            b'\n', 0x01, 0xC3, 0xFF, b'a', b'n', b't', b'u',
        ];
        for at in 0..page.len() {
            assert_same(&page[..at]);
            let mut shorter = page.to_vec();
            shorter.remove(at);
            assert_same(&shorter);
            for byte in replacements {
                let mut damaged = page.to_vec();
                damaged[at] = byte;
                assert_same(&damaged);
                damaged.insert(at, byte);
                assert_same(&damaged);
            }
        }
    }
}
