//! Pass 1 of an import: read the file as it arrives (the `csv` crate over
//! a reader fed chunk by chunk from the async side), check every row, and
//! keep the usage compactly — strings interned once, rows either summed
//! per (account, SKU, date) in memory or, unsummed, spooled to an
//! anonymous temporary file in a fixed-size binary form. Nothing here
//! holds the file or its rows in memory; the memory used grows with the
//! number of distinct keys, not with the file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::profile::{Options, ProfileDefinition, Resolved, resolve};
use crate::ingest::{MAX_VALUE_LEN, parse_decimal};

/// Bytes read from the input at a time.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Chunks read ahead of the parser (so memory for the input is at most
/// `READ_AHEAD_CHUNKS + 2` chunks).
pub const READ_AHEAD_CHUNKS: usize = 4;

/// Longest record (a line, or several when a quoted field holds line
/// breaks). A longer one rejects the file: it is not a usage export, and
/// reading it whole would let one line take any amount of memory.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Most row errors kept in a report; the counts cover every one.
pub const MAX_REPORTED_ERRORS: usize = 1_000;

/// Why a row (or the file) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowErrorReason {
    /// The line has fewer fields than the column needs.
    MissingColumn,
    /// A required value is empty.
    MissingValue,
    /// A value is longer than [`MAX_VALUE_LEN`].
    TooLong,
    /// A value is not UTF-8 text.
    NotUtf8,
    /// A value holds a control character (or a bidi override).
    ControlCharacter,
    /// A quantity or unit cost is not a decimal number.
    BadDecimal,
    /// A quantity is below zero.
    NegativeQuantity,
    /// A unit cost is below zero.
    NegativeUnitCost,
    /// A date does not match the profile's format.
    BadDate,
    /// The same account, SKU and date again, and the profile does not sum.
    Duplicate,
    /// Lines summed together disagree on their unit or unit cost.
    Conflict,
    /// A sum is too large for a decimal.
    Overflow,
    /// The header row lacks a column the profile names.
    BadHeader,
    /// A record is longer than [`MAX_RECORD_BYTES`].
    RecordTooLong,
    /// The file is not readable CSV.
    Malformed,
    /// The file has no data rows.
    Empty,
}

/// One problem of one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// The 1-based line of the file where the record starts.
    pub line: u64,
    /// The profile field (`quantity`, `observed_on`, ...), when one is at
    /// fault.
    pub field: Option<String>,
    /// The kind of problem.
    pub reason: RowErrorReason,
    /// What is wrong, for people.
    pub message: String,
}

/// (account, SKU, day) by interned string ids and days from the common era.
pub(crate) type Key = (u32, u32, i32);

/// A summed row.
#[derive(Debug, Clone)]
pub(crate) struct Sum {
    /// The first line.
    pub line: u64,
    pub quantity: Decimal,
    pub sku_name: u32,
    pub unit: u32,
    pub unit_cost: Option<Decimal>,
    /// Lines added up.
    pub lines: u64,
}

/// Where the checked rows are.
pub(crate) enum Rows {
    /// Summed, in the order of their first line.
    Summed(Vec<(Key, Sum)>),
    /// Spooled ([`SPOOL_RECORD_BYTES`] each), rewound to the start.
    Spooled { file: File, count: u64 },
}

/// What pass 1 found.
pub(crate) struct Pass1 {
    pub rows_read: u64,
    pub bad_rows: u64,
    pub errors: Vec<RowError>,
    pub error_counts: BTreeMap<RowErrorReason, u64>,
    /// Interned strings, by id.
    pub strings: Vec<Arc<str>>,
    /// (account, name) of accounts the file names.
    pub account_names: Vec<(u32, u32)>,
    pub rows: Rows,
    pub accounts: usize,
    pub skus: usize,
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
}

impl Pass1 {
    pub fn errors_total(&self) -> u64 {
        self.error_counts.values().sum()
    }
}

/// Pass 1 could not finish for a reason that is not the file's content.
#[derive(Debug)]
pub(crate) enum Pass1Error {
    /// The input failed (a client disconnected, a file could not be read).
    Read(io::Error),
    /// The spool file failed.
    Spool(io::Error),
}

// ------------------------------------------------------------ the input

/// A blocking reader over chunks sent by the async side. It stops the
/// file at a record longer than [`MAX_RECORD_BYTES`] (tracking quotes, so
/// line breaks inside quoted fields count as part of the record).
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    quote: u8,
    in_quotes: bool,
    record_bytes: usize,
    line: u64,
    record_line: u64,
    /// Set when a record was too long: the line it starts on.
    too_long: Option<u64>,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        Self {
            rx,
            chunk: Vec::new(),
            at: 0,
            quote: b'"',
            in_quotes: false,
            record_bytes: 0,
            line: 1,
            record_line: 1,
            too_long: None,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Err(error)) => return Err(error),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        let bytes = &self.chunk[self.at..self.at + n];
        for &b in bytes {
            if b == self.quote {
                self.in_quotes = !self.in_quotes;
            }
            if b == b'\n' {
                self.line += 1;
                if !self.in_quotes {
                    self.record_bytes = 0;
                    self.record_line = self.line;
                    continue;
                }
            }
            self.record_bytes += 1;
            if self.record_bytes > MAX_RECORD_BYTES {
                self.too_long = Some(self.record_line);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a record is too long",
                ));
            }
        }
        out[..n].copy_from_slice(bytes);
        self.at += n;
        Ok(n)
    }
}

// ------------------------------------------------------------ the spool

/// Bytes per spooled row: account, SKU, SKU name, unit (u32 ids), day
/// (i32), quantity (16), unit cost flag (1) and value (16).
pub(crate) const SPOOL_RECORD_BYTES: usize = 4 * 4 + 4 + 16 + 1 + 16;

/// One spooled row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spooled {
    pub key: Key,
    pub sku_name: u32,
    pub unit: u32,
    pub quantity: Decimal,
    pub unit_cost: Option<Decimal>,
}

impl Spooled {
    fn encode(&self) -> [u8; SPOOL_RECORD_BYTES] {
        let mut out = [0u8; SPOOL_RECORD_BYTES];
        let (account, sku, day) = self.key;
        out[0..4].copy_from_slice(&account.to_le_bytes());
        out[4..8].copy_from_slice(&sku.to_le_bytes());
        out[8..12].copy_from_slice(&self.sku_name.to_le_bytes());
        out[12..16].copy_from_slice(&self.unit.to_le_bytes());
        out[16..20].copy_from_slice(&day.to_le_bytes());
        // `Decimal::serialize` is its exact 16-byte form.
        out[20..36].copy_from_slice(&self.quantity.serialize());
        if let Some(cost) = self.unit_cost {
            out[36] = 1;
            out[37..53].copy_from_slice(&cost.serialize());
        }
        out
    }

    fn decode(bytes: &[u8; SPOOL_RECORD_BYTES]) -> Self {
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let dec_at = |i: usize| {
            let mut raw = [0u8; 16];
            raw.copy_from_slice(&bytes[i..i + 16]);
            Decimal::deserialize(raw)
        };
        Self {
            key: (
                u32_at(0),
                u32_at(4),
                i32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]),
            ),
            sku_name: u32_at(8),
            unit: u32_at(12),
            quantity: dec_at(20),
            unit_cost: (bytes[36] == 1).then(|| dec_at(37)),
        }
    }
}

/// Reads spooled rows back, in file order.
pub(crate) struct SpoolReader {
    inner: BufReader<File>,
    left: u64,
}

impl SpoolReader {
    pub(crate) fn new(file: File, count: u64) -> Self {
        Self {
            inner: BufReader::with_capacity(256 * 1024, file),
            left: count,
        }
    }
}

impl Iterator for SpoolReader {
    type Item = io::Result<Spooled>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut bytes = [0u8; SPOOL_RECORD_BYTES];
        Some(
            self.inner
                .read_exact(&mut bytes)
                .map(|()| Spooled::decode(&bytes)),
        )
    }
}

// ------------------------------------------------------------ interning

#[derive(Default)]
struct Strings {
    ids: HashMap<Arc<str>, u32>,
    all: Vec<Arc<str>>,
}

impl Strings {
    fn id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let shared: Arc<str> = Arc::from(text);
        let id = u32::try_from(self.all.len()).unwrap_or(u32::MAX);
        self.all.push(Arc::clone(&shared));
        self.ids.insert(shared, id);
        id
    }
}

// ------------------------------------------------------------ pass 1

struct Checker<'a> {
    options: &'a Options,
    resolved: Resolved,
    /// Per field, how messages name its column.
    labels: HashMap<&'static str, String>,
    default_day: NaiveDate,
    default_unit: u32,
    strings: Strings,
    sums: HashMap<Key, Sum>,
    seen: HashMap<Key, u64>,
    spool: Option<(BufWriter<File>, u64)>,
    names: HashMap<u32, u32>,
    accounts: HashSet<u32>,
    skus: HashSet<u32>,
    first_day: Option<NaiveDate>,
    last_day: Option<NaiveDate>,
    rows_read: u64,
    bad_rows: u64,
    errors: Vec<RowError>,
    error_counts: BTreeMap<RowErrorReason, u64>,
    first_record: bool,
    /// The spool failed: the import cannot finish (not the file's fault).
    spool_error: Option<io::Error>,
}

impl Checker<'_> {
    fn error(&mut self, line: u64, field: Option<&str>, reason: RowErrorReason, message: String) {
        *self.error_counts.entry(reason).or_default() += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(RowError {
                line,
                field: field.map(str::to_owned),
                reason,
                message,
            });
        }
    }

    /// The trimmed text of `field` in `record`, or the problem.
    fn text<'r>(
        &self,
        record: &'r csv::ByteRecord,
        field: &'static str,
        index: usize,
    ) -> Result<&'r str, (RowErrorReason, String)> {
        let label = self.labels.get(field).map_or("", String::as_str);
        let Some(bytes) = record.get(index) else {
            return Err((
                RowErrorReason::MissingColumn,
                format!(
                    "{field} is in {label}, but the line has only {} field(s)",
                    record.len()
                ),
            ));
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            (
                RowErrorReason::NotUtf8,
                format!("{field} ({label}) is not UTF-8 text (byte {} of the value); save the file as UTF-8", e.valid_up_to() + 1),
            )
        })?;
        let text = if self.first_record && index == 0 {
            text.trim_start_matches('\u{feff}')
        } else {
            text
        };
        let text = text.trim();
        let what = format!("{field} ({label})");
        if let Err(message) = trueup_core::model::text::check(&what, text, false) {
            return Err((RowErrorReason::ControlCharacter, message));
        }
        if text.len() > MAX_VALUE_LEN {
            return Err((
                RowErrorReason::TooLong,
                format!(
                    "{field} ({label}) is {} bytes long; at most {MAX_VALUE_LEN} are accepted",
                    text.len()
                ),
            ));
        }
        Ok(text)
    }

    fn number(&self, text: &str) -> Result<Decimal, String> {
        let plain = self.options.decimal == '.' && self.options.thousands.is_none();
        let parsed = if plain {
            parse_decimal(text)
        } else {
            let mut normal = String::with_capacity(text.len());
            let mut ok = true;
            for c in text.chars() {
                if Some(c) == self.options.thousands {
                    continue;
                }
                if c == self.options.decimal {
                    normal.push('.');
                } else if c == '.' || c == ',' {
                    ok = false;
                    break;
                } else {
                    normal.push(c);
                }
            }
            if ok {
                parse_decimal(&normal)
            } else {
                Err(String::new())
            }
        };
        parsed.map_err(|e| {
            if e.contains("beyond the limit") || e.contains("decimal places") {
                return e; // the core limits' own words
            }
            let grouping = self
                .options
                .thousands
                .map(|t| format!(", digit grouping {t:?}"))
                .unwrap_or_default();
            format!(
                "{text:?} is not a decimal number (decimal separator {:?}{grouping})",
                self.options.decimal
            )
        })
    }

    fn row(&mut self, record: &csv::ByteRecord, line: u64) {
        self.rows_read += 1;
        let mut problems: Vec<(&'static str, RowErrorReason, String)> = Vec::new();
        let r = self.resolved;
        let mut get = |this: &Self, field: &'static str, index: Option<usize>, required: bool| {
            let index = index?;
            match this.text(record, field, index) {
                Ok("") if required => {
                    problems.push((
                        field,
                        RowErrorReason::MissingValue,
                        format!("{field} is empty"),
                    ));
                    None
                }
                Ok("") => None,
                Ok(text) => Some(text),
                Err((reason, message)) => {
                    problems.push((field, reason, message));
                    None
                }
            }
        };
        let account = get(self, "account_id", Some(r.account_id), true);
        let account_name = get(self, "account_name", r.account_name, false);
        let sku = get(self, "sku_id", Some(r.sku_id), true);
        let sku_name = get(self, "sku_name", r.sku_name, false);
        let quantity_text = get(self, "quantity", Some(r.quantity), true);
        let unit = get(self, "unit", r.unit, false);
        let cost_text = get(self, "unit_cost", r.unit_cost, false);
        let day_text = get(self, "observed_on", r.observed_on, true);
        let quantity = quantity_text.and_then(|text| match self.number(text) {
            Ok(q) if q.is_sign_negative() && !q.is_zero() => {
                problems.push((
                    "quantity",
                    RowErrorReason::NegativeQuantity,
                    format!("quantity {q} is negative"),
                ));
                None
            }
            Ok(q) => Some(q),
            Err(message) => {
                problems.push(("quantity", RowErrorReason::BadDecimal, message));
                None
            }
        });
        let unit_cost = cost_text.and_then(|text| match self.number(text) {
            Ok(c) if c.is_sign_negative() && !c.is_zero() => {
                problems.push((
                    "unit_cost",
                    RowErrorReason::NegativeUnitCost,
                    format!("unit_cost {c} is negative"),
                ));
                None
            }
            Ok(c) => Some(c),
            Err(message) => {
                problems.push(("unit_cost", RowErrorReason::BadDecimal, message));
                None
            }
        });
        let day = match day_text {
            None if r.observed_on.is_none() => Some(self.default_day),
            None => None,
            Some(text) => match NaiveDate::parse_from_str(text, &self.options.date_format) {
                Ok(day) => Some(day),
                Err(_) => {
                    problems.push((
                        "observed_on",
                        RowErrorReason::BadDate,
                        format!(
                            "{text:?} is not a date in the format {:?}",
                            self.options.date_format
                        ),
                    ));
                    None
                }
            },
        };
        self.first_record = false;
        let (Some(account), Some(sku), Some(quantity), Some(day)) = (account, sku, quantity, day)
        else {
            self.bad(line, problems);
            return;
        };
        if !problems.is_empty() {
            self.bad(line, problems);
            return;
        }
        let account = self.strings.id(account);
        let sku_id = self.strings.id(sku);
        let sku_name = sku_name.map_or(sku_id, |n| self.strings.id(n));
        let unit = unit.map_or(self.default_unit, |u| self.strings.id(u));
        let key = (account, sku_id, day.num_days_from_ce());
        if let Err((field, reason, message)) =
            self.keep(key, line, quantity, sku_name, unit, unit_cost)
        {
            self.bad(line, vec![(field, reason, message)]);
            return;
        }
        if let Some(name) = account_name {
            let name = self.strings.id(name);
            self.names.entry(account).or_insert(name);
        }
        self.accounts.insert(account);
        self.skus.insert(sku_id);
        self.first_day = Some(self.first_day.map_or(day, |d| d.min(day)));
        self.last_day = Some(self.last_day.map_or(day, |d| d.max(day)));
    }

    fn bad(&mut self, line: u64, problems: Vec<(&'static str, RowErrorReason, String)>) {
        self.bad_rows += 1;
        // Once the file is refused, the spool is not needed.
        self.spool = None;
        for (field, reason, message) in problems {
            self.error(line, Some(field), reason, format!("line {line}: {message}"));
        }
    }

    fn keep(
        &mut self,
        key: Key,
        line: u64,
        quantity: Decimal,
        sku_name: u32,
        unit: u32,
        unit_cost: Option<Decimal>,
    ) -> Result<(), (&'static str, RowErrorReason, String)> {
        let day = NaiveDate::from_num_days_from_ce_opt(key.2).unwrap_or_default();
        let describe = |strings: &Strings| {
            format!(
                "account {:?}, SKU {:?} on {day}",
                strings.all[key.0 as usize], strings.all[key.1 as usize]
            )
        };
        if self.options.sum {
            let Some(sum) = self.sums.get_mut(&key) else {
                self.sums.insert(
                    key,
                    Sum {
                        line,
                        quantity,
                        sku_name,
                        unit,
                        unit_cost,
                        lines: 1,
                    },
                );
                return Ok(());
            };
            if sum.unit != unit {
                let (first, now) = (
                    &self.strings.all[sum.unit as usize],
                    &self.strings.all[unit as usize],
                );
                return Err((
                    "unit",
                    RowErrorReason::Conflict,
                    format!(
                        "unit {now:?} differs from {first:?} on line {} for {}; lines that are added up must have one unit",
                        sum.line,
                        describe(&self.strings)
                    ),
                ));
            }
            if sum.unit_cost != unit_cost {
                let show = |c: Option<Decimal>| c.map_or("none".to_owned(), |c| c.to_string());
                return Err((
                    "unit_cost",
                    RowErrorReason::Conflict,
                    format!(
                        "unit cost {} differs from {} on line {} for {}; lines that are added up must have one unit cost",
                        show(unit_cost),
                        show(sum.unit_cost),
                        sum.line,
                        describe(&self.strings)
                    ),
                ));
            }
            let Some(total) = sum.quantity.checked_add(quantity) else {
                return Err((
                    "quantity",
                    RowErrorReason::Overflow,
                    format!(
                        "the sum of quantities for {} is too large",
                        describe(&self.strings)
                    ),
                ));
            };
            sum.quantity = total;
            sum.lines += 1;
            return Ok(());
        }
        if let Some(first) = self.seen.get(&key) {
            return Err((
                "sku_id",
                RowErrorReason::Duplicate,
                format!(
                    "{} is also on line {first}; set sum_duplicates = true in the profile to add such lines up",
                    describe(&self.strings)
                ),
            ));
        }
        self.seen.insert(key, line);
        if self.bad_rows == 0
            && let Some((spool, count)) = &mut self.spool
        {
            let row = Spooled {
                key,
                sku_name,
                unit,
                quantity,
                unit_cost,
            };
            match spool.write_all(&row.encode()) {
                Ok(()) => *count += 1,
                Err(error) => {
                    self.spool_error.get_or_insert(error);
                }
            }
        }
        Ok(())
    }
}

fn file_error(reason: RowErrorReason, line: u64, message: String) -> RowError {
    RowError {
        line,
        field: None,
        reason,
        message,
    }
}

/// Reads and checks the whole file from `rx`. `default_day` is the date
/// of rows when the profile has no date column.
pub(crate) fn pass1(
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    definition: &ProfileDefinition,
    options: &Options,
    default_day: NaiveDate,
) -> Result<Pass1, Pass1Error> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(options.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(ChannelReader::new(rx));
    let mut record = csv::ByteRecord::new();
    let refuse = |error: RowError, rows_read: u64| -> Result<Pass1, Pass1Error> {
        let mut error_counts = BTreeMap::new();
        error_counts.insert(error.reason, 1);
        Ok(Pass1 {
            rows_read,
            bad_rows: 0,
            errors: vec![error],
            error_counts,
            strings: Vec::new(),
            account_names: Vec::new(),
            rows: Rows::Summed(Vec::new()),
            accounts: 0,
            skus: 0,
            first_day: None,
            last_day: None,
        })
    };
    // What stops reading: the input failing is not the file's fault; a
    // record too long or unreadable CSV is.
    let stop = |reader: &csv::Reader<ChannelReader>,
                error: csv::Error|
     -> Result<RowError, Pass1Error> {
        if let Some(line) = reader.get_ref().too_long {
            return Ok(file_error(
                RowErrorReason::RecordTooLong,
                line,
                format!(
                    "line {line}: the record is longer than {MAX_RECORD_BYTES} bytes (an unclosed quote?); this is not a usage export the profile can read"
                ),
            ));
        }
        let line = error.position().map_or(0, csv::Position::line);
        match error.into_kind() {
            csv::ErrorKind::Io(io) => Err(Pass1Error::Read(io)),
            other => Ok(file_error(
                RowErrorReason::Malformed,
                line,
                format!("line {line}: not readable as CSV: {other:?}"),
            )),
        }
    };
    let header = if options.header {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {
                let mut names = Vec::with_capacity(record.len());
                for (i, bytes) in record.iter().enumerate() {
                    let Ok(text) = std::str::from_utf8(bytes) else {
                        return refuse(
                            file_error(
                                RowErrorReason::NotUtf8,
                                1,
                                format!(
                                    "line 1: header field {} is not UTF-8 text; save the file as UTF-8",
                                    i + 1
                                ),
                            ),
                            0,
                        );
                    };
                    let text = if i == 0 {
                        text.trim_start_matches('\u{feff}')
                    } else {
                        text
                    };
                    names.push(text.to_owned());
                }
                Some(names)
            }
            Ok(false) => {
                return refuse(
                    file_error(RowErrorReason::Empty, 1, "the file is empty".into()),
                    0,
                );
            }
            Err(error) => return refuse(stop(&reader, error)?, 0),
        }
    } else {
        None
    };
    let resolved = match resolve(definition, header.as_deref()) {
        Ok(resolved) => resolved,
        Err(message) => {
            return refuse(
                file_error(RowErrorReason::BadHeader, 1, format!("line 1: {message}")),
                0,
            );
        }
    };
    let labels = resolved
        .mapped()
        .map(|(field, index)| {
            let label = match header.as_ref().and_then(|h| h.get(index)) {
                Some(name) => format!("column {} ({:?})", index + 1, name.trim()),
                None => format!("column {}", index + 1),
            };
            (field, label)
        })
        .collect();
    let spool = if options.sum {
        None
    } else {
        Some((
            BufWriter::with_capacity(256 * 1024, tempfile::tempfile().map_err(Pass1Error::Spool)?),
            0,
        ))
    };
    let mut strings = Strings::default();
    let default_unit = strings.id(&options.default_unit);
    let mut checker = Checker {
        options,
        resolved,
        labels,
        default_day,
        default_unit,
        strings,
        sums: HashMap::new(),
        seen: HashMap::new(),
        spool,
        names: HashMap::new(),
        accounts: HashSet::new(),
        skus: HashSet::new(),
        first_day: None,
        last_day: None,
        rows_read: 0,
        bad_rows: 0,
        errors: Vec::new(),
        error_counts: BTreeMap::new(),
        first_record: !options.header,
        spool_error: None,
    };
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, csv::Position::line);
                checker.row(&record, line);
            }
            Err(error) => {
                let error = stop(&reader, error)?;
                let rows_read = checker.rows_read;
                checker.error(error.line, None, error.reason, error.message);
                checker.spool = None;
                let mut pass = finish(checker, rows_read)?;
                pass.bad_rows = pass.bad_rows.max(1);
                return Ok(pass);
            }
        }
    }
    if checker.rows_read == 0 {
        let line = if options.header { 2 } else { 1 };
        checker.error(
            line,
            None,
            RowErrorReason::Empty,
            "the file has no data rows; nothing to import".into(),
        );
    }
    let rows_read = checker.rows_read;
    finish(checker, rows_read)
}

fn finish(checker: Checker<'_>, rows_read: u64) -> Result<Pass1, Pass1Error> {
    if let Some(error) = checker.spool_error {
        return Err(Pass1Error::Spool(error));
    }
    let Checker {
        strings,
        sums,
        spool,
        names,
        accounts,
        skus,
        first_day,
        last_day,
        bad_rows,
        errors,
        error_counts,
        ..
    } = checker;
    let rows = match spool {
        Some((writer, count)) if error_counts.is_empty() => {
            let mut file = writer
                .into_inner()
                .map_err(|e| Pass1Error::Spool(e.into_error()))?;
            file.rewind().map_err(Pass1Error::Spool)?;
            Rows::Spooled { file, count }
        }
        _ => {
            let mut summed: Vec<(Key, Sum)> = if error_counts.is_empty() {
                sums.into_iter().collect()
            } else {
                Vec::new()
            };
            summed.sort_by_key(|(_, sum)| sum.line);
            Rows::Summed(summed)
        }
    };
    let mut account_names: Vec<(u32, u32)> = names.into_iter().collect();
    account_names.sort_unstable();
    Ok(Pass1 {
        rows_read,
        bad_rows,
        errors,
        error_counts,
        strings: strings.all,
        account_names,
        rows,
        accounts: accounts.len(),
        skus: skus.len(),
        first_day,
        last_day,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spooled_rows_round_trip_exactly() {
        let rows = [
            Spooled {
                key: (1, 2, 739_580),
                sku_name: 3,
                unit: 0,
                quantity: Decimal::new(1250, 2),
                unit_cost: None,
            },
            Spooled {
                key: (u32::MAX, 0, -5),
                sku_name: 7,
                unit: 9,
                quantity: Decimal::new(1, 28),
                unit_cost: Some(Decimal::new(-31_415, 4)),
            },
        ];
        for row in rows {
            let back = Spooled::decode(&row.encode());
            assert_eq!(back, row);
            assert_eq!(back.quantity.scale(), row.quantity.scale());
        }
    }

    fn reader_over(chunks: Vec<&[u8]>) -> ChannelReader {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            tx.try_send(Ok(chunk.to_vec()))
                .expect("room in the channel");
        }
        drop(tx);
        ChannelReader::new(rx)
    }

    #[test]
    fn the_channel_reader_passes_bytes_through_and_stops_huge_records() {
        let mut text = String::new();
        reader_over(vec![b"a,b\n".as_slice(), b"\"x\ny\",z\n"])
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "a,b\n\"x\ny\",z\n");

        let line = vec![b'x'; MAX_RECORD_BYTES + 1];
        let mut reader = reader_over(vec![b"ok\n".as_slice(), &line]);
        let mut sink = Vec::new();
        assert!(reader.read_to_end(&mut sink).is_err());
        assert_eq!(reader.too_long, Some(2));

        // Line breaks inside quotes do not end the record.
        let mut quoted = b"\"".to_vec();
        for _ in 0..=MAX_RECORD_BYTES / 10 {
            quoted.extend_from_slice(b"123456789\n");
        }
        let mut reader = reader_over(vec![&quoted]);
        assert!(reader.read_to_end(&mut Vec::new()).is_err());
        assert_eq!(reader.too_long, Some(1));
    }
}
