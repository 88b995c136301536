//! The fast path of [`super::parse_page`]: a scanner for device pages that
//! builds each row straight from the page bytes, with no serde call per key
//! or value.
//!
//! Why: inside WebAssembly, serde_json's per-token calls (whitespace, key,
//! colon, value, comma, each returning a `Result` through memory) and
//! byte-at-a-time loops cost about twice what they cost natively. Building
//! the same rows, this scanner reads a page about 2.5 times faster than
//! serde_json inside WebAssembly (2.2 times natively). It keeps its position
//! in a local and reads one device per loop iteration; it matches each key
//! against the key in the same place of the device before (devices of a
//! page list the same keys in the same order), else finds it with one table
//! lookup; it reads strings and digit runs eight bytes at a time; it keeps
//! the strings a row needs as positions until the device is complete; and
//! it checks UTF-8 only where a string has a non-ASCII byte or becomes a
//! row's text.
//!
//! It accepts a page only when the serde path would accept it and build
//! the same rows (the tests in `devices.rs` compare the two on damaged
//! pages): it reads strict JSON (RFC 8259, as serde_json does) and gives up
//! on anything else (a malformed page, invalid UTF-8, a missing or repeated
//! field, a value of the wrong type, a device written as an array, deep
//! nesting, an integer of more than 19 digits), leaving the page to the
//! serde path, which then reports the error with its line and column, or
//! reads the rare construct. Rare but valid values it does not decode
//! itself (a string with a backslash escape, a number that is not a short
//! decimal) are handed to serde_json one value at a time.

use std::borrow::Cow;

use super::{
    Accounts, DeviceRow, IsoDate, KnownClass, NODE_CLASSES, Parts, epoch_day, iso_date_of_day,
    known_class,
};

/// The scan gave up: the serde path reads the page instead.
#[derive(Debug)]
pub(super) struct GaveUp;

type Scan<T> = Result<T, GaveUp>;

/// How deep the scan follows arrays and objects nested in a field it does
/// not read before it gives up (serde_json's own limit is 128 levels).
const MAX_DEPTH: u32 = 64;

/// The most digits of an integer the scan reads itself: every 19-digit
/// number fits `u64`.
const MAX_INTEGER_DIGITS: u32 = 19;

/// The most significant digits of a number the scan converts to `f64`
/// itself: such a significand is below 2^53, so it and the power of ten it
/// is divided by are exact doubles and the one division is correctly
/// rounded, which is also what serde_json computes for such a number.
const MAX_FLOAT_DIGITS: u32 = 15;

/// Exact powers of ten, for numbers of up to [`MAX_FLOAT_DIGITS`] digits.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The same powers of ten as integers.
const POW10_INT: [u64; 16] = {
    let mut powers = [1u64; 16];
    let mut i = 1;
    while i < powers.len() {
        powers[i] = powers[i - 1] * 10;
        i += 1;
    }
    powers
};

/// Each byte of an eight-byte word 0x01; 0x80.
const ONES: u64 = u64::MAX / 255;
const HIGHS: u64 = ONES << 7;

/// JSON whitespace (tab, line feed, carriage return, space) as bits.
const WHITESPACE: u64 = 1 << b'\t' | 1 << b'\n' | 1 << b'\r' | 1 << b' ';

/// Appends a row for every device of the page `bytes` to `rows`, in page
/// order.
///
/// # Errors
/// [`GaveUp`] when the page is not one this scan reads (see the module
/// docs); rows already appended are then to be discarded.
pub(super) fn rows(bytes: &[u8], rows: &mut Vec<DeviceRow>) -> Scan<()> {
    let mut scanner = Scanner { bytes, at: 0 };
    let mut dates = Dates([None; 32]);
    let mut accounts = Accounts::default();
    let mut shape = Shape([Known::NONE; MAX_SHAPE_KEYS]);
    scanner.expect(b'[')?;
    if scanner.peek_token()? == b']' {
        scanner.at += 1;
    } else {
        loop {
            rows.push(scanner.device(&mut shape, &mut dates, &mut accounts)?);
            let token = scanner.token()?;
            if token == b']' {
                break;
            }
            if token != b',' {
                return Err(GaveUp);
            }
        }
    }
    scanner.skip_whitespace();
    if scanner.at == bytes.len() {
        Ok(())
    } else {
        Err(GaveUp)
    }
}

#[inline(always)]
fn is_whitespace(byte: u8) -> bool {
    byte <= b' ' && (WHITESPACE >> byte) & 1 == 1
}

/// The eight bytes from `i` on, little-endian.
#[inline(always)]
fn word(bytes: &[u8], i: usize) -> Option<u64> {
    let chunk = bytes.get(i..i.wrapping_add(8))?;
    <[u8; 8]>::try_from(chunk).ok().map(u64::from_le_bytes)
}

/// How many of the eight bytes of `word` (from its lowest) are ASCII
/// digits before the first that is not.
#[inline(always)]
fn leading_digits(word: u64) -> u32 {
    // A byte is a digit when its high nibble is 3 and stays 3 once 6 is
    // added (0x30..=0x39, not 0x3A..=0x3F). A carry out of a byte only
    // reaches bytes above it, which no longer matter.
    let high = word & (ONES * 0xF0);
    let high_plus_6 = word.wrapping_add(ONES * 6) & (ONES * 0xF0);
    let other = ((high ^ (ONES * 0x30)) | (high_plus_6 ^ (ONES * 0x30))) >> 4;
    // Each byte of `other` is now 0 for a digit and 1..=15 otherwise.
    let not_digits = other.wrapping_add(ONES * 0x7F) & HIGHS;
    not_digits.trailing_zeros() / 8
}

/// The value of the first `n` (1..=8) bytes of `word`, all ASCII digits,
/// the first the most significant.
#[inline(always)]
fn digits_value(word: u64, n: u32) -> u64 {
    // Move the digits to the top bytes (zeros before them are leading
    // zeros), then combine neighbours: pairs, fours, then eights.
    let word = (word & (ONES * 0x0F)) << (8 * (8 - n));
    let word = (word.wrapping_mul(10 << 8 | 1) >> 8) & 0x00FF_00FF_00FF_00FF;
    let word = (word.wrapping_mul(100 << 16 | 1) >> 16) & 0x0000_FFFF_0000_FFFF;
    word.wrapping_mul(10_000 << 32 | 1) >> 32
}

/// A key (with its closing quote, at most 16 bytes) as the two
/// little-endian words the page holds it in, unused bytes zero.
const fn packed(key: &str) -> (u64, u64) {
    let bytes = key.as_bytes();
    let mut words = [0u64; 2];
    let mut i = 0;
    while i <= bytes.len() {
        let byte = if i < bytes.len() { bytes[i] } else { b'"' };
        words[i / 8] |= (byte as u64) << (8 * (i % 8));
        i += 1;
    }
    (words[0], words[1])
}

/// The low `n` bytes of a word set.
const fn mask(n: usize) -> u64 {
    if n >= 8 { u64::MAX } else { (1 << (8 * n)) - 1 }
}

/// The fields of a device the scan reads, each a bit of a device's
/// `seen` set; [`Field::Other`] is skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    OrganizationId,
    NodeClass,
    ApprovalStatus,
    Offline,
    DisplayName,
    SystemName,
    LastContact,
    Os,
    OsName,
    Other,
}

impl Field {
    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// A key the scan knows, with the form it is matched in in the page: two
/// words holding the key and its closing quote.
#[derive(Clone, Copy)]
struct Known {
    name: &'static str,
    field: Field,
    low: u64,
    high: u64,
    low_mask: u64,
    high_mask: u64,
    /// The key's length with its closing quote.
    len: usize,
}

impl Known {
    const fn new(name: &'static str, field: Field) -> Self {
        let (low, high) = packed(name);
        let len = name.len() + 1;
        Self {
            name,
            field,
            low,
            high,
            low_mask: mask(len),
            high_mask: mask(len.saturating_sub(8)),
            len,
        }
    }

    /// A slot no key matches: a key never starts with a NUL byte.
    const NONE: Self = Self {
        name: "",
        field: Field::Other,
        low: 0,
        high: 0,
        low_mask: 0xFF,
        high_mask: 0,
        len: 0,
    };
}

/// The keys of a device.
const DEVICE_KEYS: [Known; 9] = [
    Known::new("id", Field::Id),
    Known::new("organizationId", Field::OrganizationId),
    Known::new("nodeClass", Field::NodeClass),
    Known::new("approvalStatus", Field::ApprovalStatus),
    Known::new("offline", Field::Offline),
    Known::new("displayName", Field::DisplayName),
    Known::new("systemName", Field::SystemName),
    Known::new("lastContact", Field::LastContact),
    Known::new("os", Field::Os),
];

/// The keys of `os`.
const OS_KEYS: [Known; 1] = [Known::new("name", Field::OsName)];

/// The slot of a key in [`DEVICE_SLOTS`], from its first two bytes (in the
/// low 16 bits of `low`); the multiplier gives each device key its own slot
/// (checked when the table is built).
#[inline(always)]
const fn slot(low: u64) -> usize {
    ((low as u32 & 0xFFFF).wrapping_mul(0xA708_A7AE) >> 28) as usize
}

/// [`DEVICE_KEYS`] by [`slot`]: a key is looked up with one comparison.
const DEVICE_SLOTS: [Known; 16] = {
    let mut slots = [Known::NONE; 16];
    let mut i = 0;
    while i < DEVICE_KEYS.len() {
        let key = DEVICE_KEYS[i];
        let at = slot(key.low);
        assert!(slots[at].len == 0, "two device keys share a slot");
        slots[at] = key;
        i += 1;
    }
    slots
};

/// A short text with its closing quote (at most 32 bytes) as the
/// little-endian words the page holds it in: compared a word at a time.
#[derive(Clone, Copy)]
struct Packed {
    words: [u64; 4],
    masks: [u64; 4],
    /// The text's length, without the quote.
    len: usize,
}

impl Packed {
    const fn new(text: &str) -> Self {
        let bytes = text.as_bytes();
        assert!(bytes.len() < 32, "packed texts are shorter than 32 bytes");
        let mut words = [0u64; 4];
        let mut masks = [0u64; 4];
        let mut i = 0;
        while i <= bytes.len() {
            let byte = if i < bytes.len() { bytes[i] } else { b'"' };
            words[i / 8] |= (byte as u64) << (8 * (i % 8));
            masks[i / 8] |= 0xFF << (8 * (i % 8));
            i += 1;
        }
        Self {
            words,
            masks,
            len: bytes.len(),
        }
    }

    /// Whether the string `s` of `bytes` is this text. Unknown (`None`)
    /// when the page ends too soon after it to read whole words.
    #[inline(always)]
    fn is(&self, bytes: &[u8], s: Str) -> Option<bool> {
        if s.close - s.open - 1 != self.len || s.escaped {
            return Some(false);
        }
        let start = s.open + 1;
        let mut i = 0;
        while i < 4 && self.masks[i] != 0 {
            if word(bytes, start + 8 * i)? & self.masks[i] != self.words[i] {
                return Some(false);
            }
            i += 1;
        }
        Some(true)
    }
}

/// [`NODE_CLASSES`] codes, packed.
const CLASS_CODES: [Packed; NODE_CLASSES.len()] = {
    let mut codes = [Packed::new(""); NODE_CLASSES.len()];
    let mut i = 0;
    while i < codes.len() {
        codes[i] = Packed::new(NODE_CLASSES[i].0);
        i += 1;
    }
    codes
};

/// The slot of a `nodeClass` in [`CLASS_SLOTS`], from the first word of
/// its [`Packed`] form and its length; the multiplier gives every
/// documented class its own slot (checked when the table is built).
#[inline(always)]
const fn class_slot(first_word: u64, len: usize) -> usize {
    (first_word
        .wrapping_add(len as u64)
        .wrapping_mul(0x8441_0E0E_7D27_360B)
        >> 58) as usize
}

/// 1 + the index in [`NODE_CLASSES`] of the class in each slot; 0 when
/// none is.
const CLASS_SLOTS: [u8; 64] = {
    let mut slots = [0u8; 64];
    let mut i = 0;
    while i < CLASS_CODES.len() {
        let code = CLASS_CODES[i];
        let at = class_slot(code.words[0], code.len);
        assert!(slots[at] == 0, "two node classes share a slot");
        slots[at] = i as u8 + 1;
        i += 1;
    }
    slots
};

/// The most keys of a device [`Shape`] remembers.
const MAX_SHAPE_KEYS: usize = 24;

/// The keys of the last device read, in its order (an empty slot matches
/// nothing).
struct Shape([Known; MAX_SHAPE_KEYS]);

/// The calendar days of the epoch days met on a page, by day modulo 32:
/// devices are mostly seen within the last few weeks, and working out a
/// date costs a few dozen multiplications.
struct Dates([Option<(i64, IsoDate)>; 32]);

impl Dates {
    #[inline(always)]
    fn of(&mut self, seconds: f64) -> IsoDate {
        let day = epoch_day(seconds);
        let slot = &mut self.0[(day & 31) as usize];
        match slot {
            Some((cached, date)) if *cached == day => *date,
            _ => {
                let date = iso_date_of_day(day);
                *slot = Some((day, date));
                date
            }
        }
    }
}

/// A string of the page: the indices of its quotes and what it holds.
#[derive(Clone, Copy)]
struct Str {
    open: usize,
    close: usize,
    /// It has a backslash escape.
    escaped: bool,
    /// It has a byte of 0x80 or above (so its UTF-8 is to be checked).
    non_ascii: bool,
}

impl Str {
    /// The raw bytes between the quotes.
    fn raw<'b>(&self, bytes: &'b [u8]) -> Scan<&'b [u8]> {
        bytes.get(self.open + 1..self.close).ok_or(GaveUp)
    }

    /// The text, checked as serde_json checks it: decoded by serde_json
    /// when it has an escape.
    fn text<'b>(&self, bytes: &'b [u8]) -> Scan<Cow<'b, str>> {
        if self.escaped {
            decode(bytes, self.open, self.close).map(Cow::Owned)
        } else {
            std::str::from_utf8(self.raw(bytes)?)
                .map(Cow::Borrowed)
                .map_err(|_| GaveUp)
        }
    }

    /// Checks a string the row does not use as serde_json would.
    #[inline(always)]
    fn check(&self, bytes: &[u8]) -> Scan<()> {
        if self.escaped || self.non_ascii {
            check_text(bytes, *self)
        } else {
            Ok(())
        }
    }

    /// Whether it holds no character.
    fn is_empty(&self) -> bool {
        self.close == self.open + 1
    }
}

/// A JSON number as read: where it is and its parts.
struct Number {
    start: usize,
    end: usize,
    negative: bool,
    /// The integer part's value (meaningless beyond 19 digits).
    integer: u64,
    integer_digits: u32,
    fraction: u64,
    /// 0 when there is no fraction.
    fraction_digits: u32,
    exponent: bool,
}

/// A position in a page.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    #[inline(always)]
    fn current(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Skips whitespace; compact JSON has none, so the loop is out of line.
    #[inline(always)]
    fn skip_whitespace(&mut self) {
        if self.current().is_some_and(is_whitespace) {
            self.at = skip_whitespace_from(self.bytes, self.at);
        }
    }

    /// The next byte that is not whitespace, left in place.
    #[inline(always)]
    fn peek_token(&mut self) -> Scan<u8> {
        self.skip_whitespace();
        self.current().ok_or(GaveUp)
    }

    /// The next byte that is not whitespace, consumed.
    #[inline(always)]
    fn token(&mut self) -> Scan<u8> {
        let byte = self.peek_token()?;
        self.at += 1;
        Ok(byte)
    }

    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Scan<()> {
        if self.token()? == byte {
            Ok(())
        } else {
            Err(GaveUp)
        }
    }

    /// After a member's value: whether another member follows (`,`) or
    /// the object ends (`}`).
    #[inline(always)]
    fn next_member(&mut self) -> Scan<bool> {
        let token = self.token()?;
        if token == b',' {
            Ok(true)
        } else if token == b'}' {
            Ok(false)
        } else {
            Err(GaveUp)
        }
    }

    /// Consumes `true`, `false` or `null` (whichever the cursor is on),
    /// with its value for the first two.
    #[inline(always)]
    fn literal(&mut self) -> Scan<Option<bool>> {
        let four = self
            .bytes
            .get(self.at..self.at.wrapping_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .ok_or(GaveUp)?;
        let (value, len) = match &four {
            b"true" => (Some(true), 4),
            b"null" => (None, 4),
            b"fals" if self.bytes.get(self.at + 4) == Some(&b'e') => (Some(false), 5),
            _ => return Err(GaveUp),
        };
        self.at += len;
        Ok(value)
    }

    /// The string whose opening quote is at `open`, consumed.
    #[inline(always)]
    fn string_at(&mut self, open: usize) -> Scan<Str> {
        let mut i = open + 1;
        let mut escaped = false;
        let mut high = 0;
        loop {
            // Eight bytes at a time up to the first quote, backslash or
            // control character: each test sets the high bit of every byte
            // that matches (and maybe of bytes above it, which do not
            // matter). A byte with its high bit set matches none, hence
            // `!word` for all three.
            while let Some(word) = word(self.bytes, i) {
                let quote = word ^ (ONES * u64::from(b'"'));
                let backslash = word ^ (ONES * u64::from(b'\\'));
                let found = (word.wrapping_sub(ONES * 0x20)
                    | quote.wrapping_sub(ONES)
                    | backslash.wrapping_sub(ONES))
                    & !word
                    & HIGHS;
                if found != 0 {
                    // The bytes before the first match.
                    high |= word & ((found & found.wrapping_neg()) - 1);
                    i += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                high |= word;
                i += 8;
            }
            match self.bytes.get(i) {
                None => return Err(GaveUp),
                Some(b'"') => break,
                Some(b'\\') => {
                    // Skip the escaped byte (a quote would otherwise end
                    // the string); serde_json checks the escape.
                    escaped = true;
                    i += 2;
                }
                Some(0..0x20) => return Err(GaveUp),
                Some(&byte) => {
                    high |= u64::from(byte);
                    i += 1;
                }
            }
        }
        self.at = i + 1;
        Ok(Str {
            open,
            close: i,
            escaped,
            non_ascii: high & HIGHS != 0,
        })
    }

    /// The string at the cursor (on its opening quote), consumed.
    #[inline(always)]
    fn string(&mut self) -> Scan<Str> {
        if self.current() != Some(b'"') {
            return Err(GaveUp);
        }
        self.string_at(self.at)
    }

    /// `null` or a string.
    #[inline(always)]
    fn optional_string(&mut self) -> Scan<Option<Str>> {
        if self.current() == Some(b'n') {
            match self.literal()? {
                None => Ok(None),
                Some(_) => Err(GaveUp),
            }
        } else {
            self.string().map(Some)
        }
    }

    /// The run of digits from `i` on: its end, its value (wrapped beyond
    /// 19 digits) and its length.
    #[inline(always)]
    fn digits(&self, mut i: usize) -> (usize, u64, u32) {
        let mut value: u64 = 0;
        let mut count = 0;
        while let Some(word) = word(self.bytes, i) {
            let n = leading_digits(word);
            if n > 0 {
                value = value
                    .wrapping_mul(POW10_INT[n as usize])
                    .wrapping_add(digits_value(word, n));
                count += n;
                i += n as usize;
            }
            if n < 8 {
                return (i, value, count);
            }
        }
        // The last bytes of the page.
        while let Some(digit @ b'0'..=b'9') = self.bytes.get(i) {
            value = value.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'));
            count += 1;
            i += 1;
        }
        (i, value, count)
    }

    /// The JSON number at the cursor,
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, consumed.
    #[inline(always)]
    fn number(&mut self) -> Scan<Number> {
        let start = self.at;
        let negative = self.current() == Some(b'-');
        let digits_start = start + usize::from(negative);
        let (mut end, integer, integer_digits) = self.digits(digits_start);
        if integer_digits == 0
            || (integer_digits > 1 && self.bytes.get(digits_start) == Some(&b'0'))
        {
            return Err(GaveUp);
        }
        let (mut fraction, mut fraction_digits) = (0, 0);
        if self.bytes.get(end) == Some(&b'.') {
            (end, fraction, fraction_digits) = self.digits(end + 1);
            if fraction_digits == 0 {
                return Err(GaveUp);
            }
        }
        let exponent = matches!(self.bytes.get(end), Some(b'e' | b'E'));
        if exponent {
            end += 1;
            if let Some(b'+' | b'-') = self.bytes.get(end) {
                end += 1;
            }
            let exponent_digits;
            (end, _, exponent_digits) = self.digits(end);
            if exponent_digits == 0 {
                return Err(GaveUp);
            }
        }
        self.at = end;
        Ok(Number {
            start,
            end,
            negative,
            integer,
            integer_digits,
            fraction,
            fraction_digits,
            exponent,
        })
    }

    /// A non-negative integer that fits `u64` (serde refuses a float or a
    /// negative number for a `u64` field).
    #[inline(always)]
    fn unsigned(&mut self) -> Scan<u64> {
        let number = self.number()?;
        if number.negative
            || number.fraction_digits > 0
            || number.exponent
            || number.integer_digits > MAX_INTEGER_DIGITS
        {
            return Err(GaveUp);
        }
        Ok(number.integer)
    }

    /// `null` or a number, as the `f64` serde_json gives.
    #[inline(always)]
    fn optional_float(&mut self) -> Scan<Option<f64>> {
        if self.current() == Some(b'n') {
            return match self.literal()? {
                None => Ok(None),
                Some(_) => Err(GaveUp),
            };
        }
        let number = self.number()?;
        if number.exponent || number.integer_digits + number.fraction_digits > MAX_FLOAT_DIGITS {
            return float_by_serde(self.bytes, number.start, number.end).map(Some);
        }
        // Exact: below 10^15.
        let significand =
            number.integer * POW10_INT[number.fraction_digits as usize] + number.fraction;
        let magnitude = if number.fraction_digits == 0 {
            // serde_json reads an integer as one and converts it.
            significand as f64
        } else {
            significand as f64 / POW10[number.fraction_digits as usize]
        };
        // `-0` is -0.0 in serde_json too.
        Ok(Some(if number.negative {
            -magnitude
        } else {
            magnitude
        }))
    }

    /// Any JSON value, checked and skipped.
    #[inline(always)]
    fn skip_value(&mut self) -> Scan<()> {
        match self.peek_token()? {
            b'"' => self.string_at(self.at)?.check(self.bytes),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            b't' | b'f' | b'n' => self.literal().map(drop),
            b'[' | b'{' => {
                self.at = skip_nested(self.bytes, self.at, 1)?;
                Ok(())
            }
            _ => Err(GaveUp),
        }
    }

    /// The key at the cursor (on its opening quote) and the colon after
    /// it: which of `keys` it is, if any. `slots` finds a known key at once
    /// when the page holds at least 16 bytes after the quote.
    ///
    /// Also the key as a [`Known`] (with its field) when it is plain ASCII
    /// of at most 15 bytes that can be matched in the page that way, for
    /// [`Shape`].
    #[inline(always)]
    fn key(
        &mut self,
        keys: &[Known],
        slots: impl Fn(u64) -> Known,
    ) -> Scan<(Field, Option<Known>)> {
        if self.peek_token()? != b'"' {
            return Err(GaveUp);
        }
        let open = self.at;
        let start = open + 1;
        let window = word(self.bytes, start).zip(word(self.bytes, start + 8));
        if let Some((low, high)) = window {
            let key = slots(low);
            if low & key.low_mask == key.low && high & key.high_mask == key.high {
                self.at = start + key.len;
                self.expect(b':')?;
                self.skip_whitespace();
                return Ok((key.field, Some(key)));
            }
        }
        // Any other key; or a known one written with an escape, or too near
        // the end of the page to be matched above.
        let key = self.string_at(open)?;
        let plain = !key.escaped && !key.non_ascii;
        let field = if !plain || window.is_none() {
            let text = key.text(self.bytes)?;
            keys.iter()
                .find(|k| k.name == text)
                .map_or(Field::Other, |k| k.field)
        } else {
            Field::Other
        };
        let len = key.close - open;
        let known = match window {
            Some((low, high)) if plain && len <= 16 => {
                let (low_mask, high_mask) = (mask(len), mask(len.saturating_sub(8)));
                Some(Known {
                    name: "",
                    field,
                    low: low & low_mask,
                    high: high & high_mask,
                    low_mask,
                    high_mask,
                    len,
                })
            }
            _ => None,
        };
        self.expect(b':')?;
        self.skip_whitespace();
        Ok((field, known))
    }

    /// The `k`th key of a device: first tried as the `k`th key of the
    /// device before (devices of a page mostly list the same keys in the
    /// same order), then looked up, and remembered for the next device.
    #[inline(always)]
    fn device_key(&mut self, shape: &mut Shape, k: usize) -> Scan<Field> {
        if let Some(expected) = shape.0.get(k) {
            let start = self.at + 1;
            if self.current() == Some(b'"')
                && let Some((low, high)) = word(self.bytes, start).zip(word(self.bytes, start + 8))
                && low & expected.low_mask == expected.low
                && high & expected.high_mask == expected.high
            {
                self.at = start + expected.len;
                self.expect(b':')?;
                self.skip_whitespace();
                return Ok(expected.field);
            }
        }
        let (field, known) = self.key(&DEVICE_KEYS, |low| DEVICE_SLOTS[slot(low)])?;
        if let Some(slot) = shape.0.get_mut(k) {
            *slot = known.unwrap_or(Known::NONE);
        }
        Ok(field)
    }

    /// `null` or the `os` object: its name, if any.
    #[inline(always)]
    fn optional_os(&mut self) -> Scan<Option<Str>> {
        match self.current() {
            Some(b'n') => {
                return match self.literal()? {
                    None => Ok(None),
                    Some(_) => Err(GaveUp),
                };
            }
            Some(b'{') => self.at += 1,
            _ => return Err(GaveUp),
        }
        let mut name = None;
        let mut seen = false;
        if self.peek_token()? == b'}' {
            self.at += 1;
            return Ok(None);
        }
        loop {
            match self.key(&OS_KEYS, |_| OS_KEYS[0])?.0 {
                Field::OsName if !seen => {
                    seen = true;
                    name = self.optional_string()?;
                }
                Field::OsName => return Err(GaveUp),
                _ => self.skip_value()?,
            }
            if !self.next_member()? {
                return Ok(name);
            }
        }
    }

    /// The device object at the cursor, as a row.
    #[inline(always)]
    fn device(
        &mut self,
        shape: &mut Shape,
        dates: &mut Dates,
        accounts: &mut Accounts,
    ) -> Scan<DeviceRow> {
        self.expect(b'{')?;
        let mut seen = 0u32;
        let (mut id, mut organization_id, mut offline) = (0, 0, false);
        let mut node_class = None;
        let mut approval_status = None;
        let mut display_name = None;
        let mut system_name = None;
        let mut last_contact = None;
        let mut os_name = None;
        if self.peek_token()? == b'}' {
            // No id: serde reports the missing field.
            return Err(GaveUp);
        }
        for k in 0.. {
            let field = self.device_key(shape, k)?;
            if field != Field::Other {
                // serde refuses a repeated field.
                if seen & field.bit() != 0 {
                    return Err(GaveUp);
                }
                seen |= field.bit();
            }
            match field {
                Field::Id => id = self.unsigned()?,
                Field::OrganizationId => organization_id = self.unsigned()?,
                Field::NodeClass => node_class = Some(self.string()?),
                Field::ApprovalStatus => approval_status = self.optional_string()?,
                Field::Offline => offline = self.literal()?.ok_or(GaveUp)?,
                Field::DisplayName => display_name = self.optional_string()?,
                Field::SystemName => system_name = self.optional_string()?,
                Field::LastContact => last_contact = self.optional_float()?,
                Field::Os => os_name = self.optional_os()?,
                Field::OsName | Field::Other => self.skip_value()?,
            }
            if !self.next_member()? {
                break;
            }
        }
        if seen & (Field::Id.bit() | Field::OrganizationId.bit())
            != Field::Id.bit() | Field::OrganizationId.bit()
        {
            return Err(GaveUp);
        }
        let node_class = node_class.ok_or(GaveUp)?;
        // As the serde path: `systemName` when the display name is empty.
        let (name, unused_name) = match display_name {
            Some(display) if !display.is_empty() => (Some(display), system_name),
            _ => (system_name, display_name),
        };
        if let Some(unused) = unused_name {
            unused.check(self.bytes)?;
        }
        let (node_class, known) = self.class(node_class)?;
        let text = |s: Str| s.text(self.bytes);
        Ok(DeviceRow::from(Parts {
            device_id: id,
            account_id: accounts.of(organization_id),
            node_class,
            known,
            approval_status: approval_status.map(text).transpose()?,
            offline,
            last_contact: last_contact
                .filter(|s| s.is_finite())
                .map(|s| dates.of(s).as_str().to_owned()),
            os_name: os_name.map(text).transpose()?,
            display_name: name.map(text).transpose()?,
        }))
    }

    /// A `nodeClass` and its entry when it is documented: found by its
    /// bytes, with one table lookup.
    #[inline(always)]
    fn class(&self, code: Str) -> Scan<(Cow<'a, str>, Option<KnownClass>)> {
        let len = code.close - code.open - 1;
        if let Some(first) = word(self.bytes, code.open + 1) {
            let index = CLASS_SLOTS[class_slot(first & mask(len + 1), len)];
            if let Some(i) = usize::from(index).checked_sub(1)
                && CLASS_CODES[i].is(self.bytes, code) == Some(true)
            {
                let classes: &'static [_; NODE_CLASSES.len()] = &NODE_CLASSES;
                let known = &classes[i];
                return Ok((Cow::Borrowed(known.0), Some(known)));
            }
        }
        let code = code.text(self.bytes)?;
        let known = known_class(code.as_bytes());
        Ok((code, known))
    }
}

/// [`Str::check`] for a string with an escape or a non-ASCII byte.
#[cold]
#[inline(never)]
fn check_text(bytes: &[u8], s: Str) -> Scan<()> {
    s.text(bytes).map(drop)
}

#[cold]
#[inline(never)]
fn skip_whitespace_from(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).copied().is_some_and(is_whitespace) {
        at += 1;
    }
    at
}

/// The string `bytes[open..=close]` (quotes included) decoded by
/// serde_json.
#[cold]
#[inline(never)]
fn decode(bytes: &[u8], open: usize, close: usize) -> Scan<String> {
    let quoted = bytes.get(open..=close).ok_or(GaveUp)?;
    let quoted = std::str::from_utf8(quoted).map_err(|_| GaveUp)?;
    serde_json::from_str::<String>(quoted).map_err(|_| GaveUp)
}

/// The number `bytes[start..end]` read by serde_json.
#[cold]
#[inline(never)]
fn float_by_serde(bytes: &[u8], start: usize, end: usize) -> Scan<f64> {
    let number = bytes.get(start..end).ok_or(GaveUp)?;
    let number = std::str::from_utf8(number).map_err(|_| GaveUp)?;
    serde_json::from_str::<f64>(number).map_err(|_| GaveUp)
}

/// Skips the array or object at `at`, `depth` levels inside a device's
/// unread field; the position after it.
#[inline(never)]
fn skip_nested(bytes: &[u8], at: usize, depth: u32) -> Scan<usize> {
    if depth > MAX_DEPTH {
        return Err(GaveUp);
    }
    let mut scanner = Scanner { bytes, at };
    let close = match scanner.token()? {
        b'[' => b']',
        b'{' => b'}',
        _ => return Err(GaveUp),
    };
    if scanner.peek_token()? == close {
        return Ok(scanner.at + 1);
    }
    loop {
        if close == b'}' {
            scanner.string()?.check(bytes)?;
            scanner.expect(b':')?;
        }
        match scanner.peek_token()? {
            b'[' | b'{' => scanner.at = skip_nested(bytes, scanner.at, depth + 1)?,
            _ => scanner.skip_value()?,
        }
        match scanner.token()? {
            b',' => {}
            byte if byte == close => return Ok(scanner.at),
            _ => return Err(GaveUp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner(page: &str) -> Scanner<'_> {
        Scanner {
            bytes: page.as_bytes(),
            at: 0,
        }
    }

    #[test]
    fn digit_words_are_read_eight_at_a_time() {
        let word = |text: &[u8]| {
            let mut bytes = [b' '; 8];
            bytes[..text.len()].copy_from_slice(text);
            u64::from_le_bytes(bytes)
        };
        assert_eq!(leading_digits(word(b"12345678")), 8);
        assert_eq!(leading_digits(word(b"123.5678")), 3);
        assert_eq!(leading_digits(word(b"x")), 0);
        assert_eq!(leading_digits(word(b"9:/0")), 1);
        assert_eq!(
            leading_digits(u64::from_le_bytes(*b"0\xff99\xfa\xf9\x809")),
            1
        );
        assert_eq!(digits_value(word(b"12345678"), 8), 12_345_678);
        assert_eq!(digits_value(word(b"90210"), 5), 90_210);
        assert_eq!(digits_value(word(b"7"), 1), 7);
        assert_eq!(digits_value(word(b"00000001"), 8), 1);
    }

    #[test]
    fn numbers_are_read_as_serde_json_reads_them() {
        for text in [
            "0",
            "-0",
            "7",
            "1795569462.573",
            "-86400.5",
            "0.000001",
            "123456789012345",
            "1234567890.12345",
            "1e3",
            "-2.5E-3",
            "12345678901234567890",
            "0.1234567890123456789",
        ] {
            let page = format!("{text},");
            let mut scanner = scanner(&page);
            let scanned = scanner.optional_float().expect(text).expect(text);
            let serde: f64 = serde_json::from_str(text).expect(text);
            assert_eq!(scanned.to_bits(), serde.to_bits(), "{text}");
            assert_eq!(scanner.at, text.len(), "{text}");
        }
        for text in ["01", "-", "1.", ".5", "1e", "1e+", "--1", "+1", "-01"] {
            let page = format!("{text},");
            assert!(scanner(&page).optional_float().is_err(), "{text}");
        }
        for (text, value) in [("0", 0), ("18446744073709551", 18_446_744_073_709_551)] {
            let page = format!("{text},");
            assert_eq!(scanner(&page).unsigned().expect(text), value);
        }
        for text in ["-1", "1.0", "1e2", "18446744073709551615"] {
            let page = format!("{text},");
            assert!(scanner(&page).unsigned().is_err(), "{text}");
        }
    }

    #[test]
    fn every_device_key_has_its_own_slot() {
        for key in DEVICE_KEYS {
            let (low, _) = packed(key.name);
            assert_eq!(DEVICE_SLOTS[slot(low)].name, key.name);
        }
    }

    #[test]
    fn every_node_class_is_found_by_its_slot() {
        for (i, (code, _, _)) in NODE_CLASSES.iter().enumerate() {
            let page = format!("\"{code}\",                                ");
            let string = scanner(&page).string().expect(code);
            let (text, known) = scanner(&page).class(string).expect(code);
            assert_eq!(text, *code);
            assert_eq!(known, Some(&NODE_CLASSES[i]), "{code}");
        }
        for code in [
            "MAC_",
            "MA",
            "WINDOWS_SERVEr",
            "NMS_NETWORK_MANAGEMENT_AGENX",
        ] {
            let page = format!("\"{code}\",                                ");
            let string = scanner(&page).string().expect(code);
            let (text, known) = scanner(&page).class(string).expect(code);
            assert_eq!((text.as_ref(), known), (code, None));
        }
    }

    #[test]
    fn strings_end_at_the_first_unescaped_quote() {
        for (page, escaped, non_ascii) in [
            (r#""""#, false, false),
            (r#""abc","#, false, false),
            (r#""a long string of text","#, false, false),
            (r#""with \"quotes\" inside","#, true, false),
            ("\"caf\u{e9} au lait, quite long\",", false, true),
            ("\"\u{e9}\",", false, true),
            (r#""ends with \\","#, true, false),
        ] {
            let string = scanner(page).string().expect(page);
            let close = page.rfind('"').expect("closing quote");
            assert_eq!(
                (string.close, string.escaped, string.non_ascii),
                (close, escaped, non_ascii),
                "{page}"
            );
        }
        for page in ["\"no end", "\"tab\tinside\"", "\"\\"] {
            assert!(scanner(page).string().is_err(), "{page}");
        }
    }
}
