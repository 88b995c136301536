//! Building usage pages. On the wire a page is a string table plus rows of
//! indices (see `vendor.wit`); connector code pushes plain records and
//! [`UsagePageBuilder`] keeps the table, sending each distinct text once.

use std::collections::HashMap;

use crate::vendor::{UsagePage, UsageRow};
use crate::{ConnectorError, Date, WitDecimal};

/// One observation of usage, with owned text.
#[derive(Debug, Clone)]
pub struct UsageRecord {
    /// The vendor account.
    pub account_id: String,
    /// SKU id.
    pub sku_id: String,
    /// SKU display name.
    pub sku_name: String,
    /// Units (never rounded by a connector).
    pub quantity: WitDecimal,
    /// Unit of measure.
    pub unit: String,
    /// Cost per unit, when the vendor reports it.
    pub unit_cost: Option<WitDecimal>,
    /// Billing term.
    pub billing_term: Option<String>,
    /// Last day of the commitment (inclusive).
    pub commitment_end: Option<Date>,
    /// Attributes for rules.
    pub attributes: Vec<(String, String)>,
}

/// One observation of usage, borrowing its text (no allocation per row).
#[derive(Debug, Clone, Copy)]
pub struct UsageRef<'a> {
    /// The vendor account.
    pub account_id: &'a str,
    /// SKU id.
    pub sku_id: &'a str,
    /// SKU display name.
    pub sku_name: &'a str,
    /// Units.
    pub quantity: WitDecimal,
    /// Unit of measure.
    pub unit: &'a str,
    /// Cost per unit.
    pub unit_cost: Option<WitDecimal>,
    /// Billing term.
    pub billing_term: Option<&'a str>,
    /// Last day of the commitment (inclusive).
    pub commitment_end: Option<Date>,
    /// Attributes for rules.
    pub attributes: &'a [(&'a str, &'a str)],
}

/// Builds a [`UsagePage`], interning text.
#[derive(Debug, Default)]
pub struct UsagePageBuilder {
    strings: Vec<String>,
    /// Text hash → index of the first text with that hash.
    index: HashMap<u64, u32, BuildFx>,
    /// Texts whose hash collided with an earlier, different text.
    collided: HashMap<String, u32>,
    attributes: Vec<(u32, u32)>,
    rows: Vec<UsageRow>,
}

/// FxHash: a fast, non-cryptographic hash. The table lives for one page of
/// one connector call, so hash flooding is not a concern here; speed is,
/// as a 10,000-device page interns ~100,000 texts.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u64(&mut self, n: u64) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type BuildFx = std::hash::BuildHasherDefault<FxHasher>;

fn fx(text: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = FxHasher::default();
    h.write(text.as_bytes());
    h.write_u64(text.len() as u64);
    h.finish()
}

impl UsagePageBuilder {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty page with room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            rows: Vec::with_capacity(rows),
            ..Self::default()
        }
    }

    /// The index of `text` in the table, adding it the first time.
    pub fn intern(&mut self, text: &str) -> u32 {
        let hash = fx(text);
        match self.index.get(&hash) {
            Some(&i) if self.strings[i as usize] == text => return i,
            Some(_) => {
                if let Some(&i) = self.collided.get(text) {
                    return i;
                }
                let i = self.strings.len() as u32;
                self.strings.push(text.to_owned());
                self.collided.insert(text.to_owned(), i);
                return i;
            }
            None => {}
        }
        let i = self.strings.len() as u32;
        self.strings.push(text.to_owned());
        self.index.insert(hash, i);
        i
    }

    /// Adds a row of borrowed text.
    pub fn push_ref(&mut self, record: UsageRef<'_>) {
        let first_attribute = self.attributes.len() as u32;
        for (k, v) in record.attributes {
            let pair = (self.intern(k), self.intern(v));
            self.attributes.push(pair);
        }
        let row = UsageRow {
            account_id: self.intern(record.account_id),
            sku_id: self.intern(record.sku_id),
            sku_name: self.intern(record.sku_name),
            quantity: record.quantity,
            unit: self.intern(record.unit),
            unit_cost: record.unit_cost,
            billing_term: record.billing_term.map(|t| self.intern(t)),
            commitment_end: record.commitment_end,
            first_attribute,
            attribute_count: record.attributes.len() as u32,
        };
        self.rows.push(row);
    }

    /// Adds a record.
    pub fn push(&mut self, record: &UsageRecord) {
        let attributes: Vec<(&str, &str)> = record
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.push_ref(UsageRef {
            account_id: &record.account_id,
            sku_id: &record.sku_id,
            sku_name: &record.sku_name,
            quantity: record.quantity,
            unit: &record.unit,
            unit_cost: record.unit_cost,
            billing_term: record.billing_term.as_deref(),
            commitment_end: record.commitment_end,
            attributes: &attributes,
        });
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The page, continuing at `next_cursor`.
    pub fn finish(self, next_cursor: Option<String>) -> UsagePage {
        UsagePage {
            strings: self.strings,
            attributes: self.attributes,
            rows: self.rows,
            #[cfg(feature = "v0_2")]
            skipped: Vec::new(),
            next_cursor,
        }
    }
}

/// A page of `records` continuing at `next_cursor`.
pub fn page(records: &[UsageRecord], next_cursor: Option<String>) -> UsagePage {
    let mut builder = UsagePageBuilder::with_capacity(records.len());
    for record in records {
        builder.push(record);
    }
    builder.finish(next_cursor)
}

/// A page of `records`, for connectors whose records come fallibly.
///
/// # Errors
/// The first error among `records`.
pub fn try_page(
    records: impl IntoIterator<Item = Result<UsageRecord, ConnectorError>>,
    next_cursor: Option<String>,
) -> Result<UsagePage, ConnectorError> {
    let mut builder = UsagePageBuilder::new();
    for record in records {
        builder.push(&record?);
    }
    Ok(builder.finish(next_cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_hashes_still_intern_correctly() {
        let mut builder = UsagePageBuilder::new();
        let a = builder.intern("a");
        // Force a collision: put "b" under "a"'s hash by hand.
        builder.index.insert(fx("b"), a);
        let b = builder.intern("b");
        assert_ne!(a, b);
        assert_eq!(builder.intern("b"), b);
        assert_eq!(builder.intern("a"), a);
        assert_eq!(builder.strings, ["a", "b"]);
    }

    #[test]
    fn text_is_sent_once() {
        let record = |device: &str| UsageRecord {
            account_id: "org-1".into(),
            sku_id: "WINDOWS_WORKSTATION".into(),
            sku_name: "WINDOWS_WORKSTATION".into(),
            quantity: WitDecimal {
                digits: 1,
                scale: 0,
            },
            unit: "device".into(),
            unit_cost: None,
            billing_term: None,
            commitment_end: None,
            attributes: vec![
                ("display-name".into(), device.into()),
                ("device-role".into(), "workstation".into()),
            ],
        };
        let page = page(&[record("pc-1"), record("pc-2")], None);
        assert_eq!(page.rows.len(), 2);
        // org-1, WINDOWS_WORKSTATION, device, display-name, pc-1,
        // device-role, workstation, pc-2.
        assert_eq!(page.strings.len(), 8);
        let first = &page.rows[0];
        assert_eq!(page.strings[first.account_id as usize], "org-1");
        assert_eq!(first.sku_id, first.sku_name);
        let second = &page.rows[1];
        let (_, value) = page.attributes[second.first_attribute as usize];
        assert_eq!(page.strings[value as usize], "pc-2");
        assert_eq!(second.attribute_count, 2);
    }
}
