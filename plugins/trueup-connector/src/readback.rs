//! The check after a write: what the PSA stored against what was sent.
//!
//! A PSA may acknowledge a write and store something else — a date
//! normalised to another day, a price recalculated from its catalogue, a
//! quantity rounded (issue 13). Writing again cannot fix that and, where
//! writes add records (a ConnectWise addition, an Autotask adjustment that
//! can never be deleted), bills twice. So a connector compares the
//! read-back field by field and, on any disagreement, fails the call with
//! every field and both values named, without writing again: the host
//! marks the change for review and a person decides.
//!
//! ```ignore
//! let mut check = ReadBack::new("ConnectWise", format!("addition {id}"));
//! check.quantity(stored.quantity, sent_quantity);
//! check.unit_price(stored.unit_price, Some(sent_price));
//! check.date("effective date", stored_date, Some(sent_date));
//! check.finish()?;
//! ```

use rust_decimal::Decimal;

use crate::values::{date_to_iso, days_from_civil};
use crate::{ConnectorError, Date};

/// Disagreements between one record as read back and what was sent.
#[derive(Debug, Clone)]
pub struct ReadBack {
    psa: &'static str,
    record: String,
    found: Vec<String>,
}

/// A price as a PSA shows one: two decimal places at least.
fn price(value: Decimal) -> String {
    let mut shown = value.normalize();
    if shown.scale() < 2 {
        shown.rescale(2);
    }
    shown.to_string()
}

impl ReadBack {
    /// A check of `record` (e.g. "addition 812") in `psa` (e.g.
    /// "ConnectWise").
    pub fn new(psa: &'static str, record: impl Into<String>) -> Self {
        Self {
            psa,
            record: record.into(),
            found: Vec::new(),
        }
    }

    fn differs(&mut self, field: &str, stored: &str, sent: &str) {
        self.found.push(format!(
            "{} stored {field} {stored} for {}, Trueup sent {sent}",
            self.psa, self.record
        ));
    }

    /// The quantity stored against the quantity sent.
    pub fn quantity(&mut self, stored: Decimal, sent: Decimal) {
        if stored != sent {
            self.differs(
                "quantity",
                &stored.normalize().to_string(),
                &sent.normalize().to_string(),
            );
        }
    }

    /// The unit price stored against the one sent (or held before the
    /// write, when the write left it as it was); `None` sent checks
    /// nothing.
    pub fn unit_price(&mut self, stored: Option<Decimal>, sent: Option<Decimal>) {
        let Some(sent) = sent else {
            return;
        };
        match stored {
            Some(stored) if stored == sent => {}
            Some(stored) => self.differs("unit price", &price(stored), &price(sent)),
            None => self.differs("unit price", "none", &price(sent)),
        }
    }

    fn changed(&mut self, field: &str, stored: &str, held: &str) {
        self.found.push(format!(
            "{} stored {field} {stored} for {}, which held {held} before; Trueup sent no {field}",
            self.psa, self.record
        ));
    }

    /// The unit price stored against the one held before a write that
    /// did not send a price (it must be left as it was).
    pub fn unit_price_kept(&mut self, stored: Option<Decimal>, held: Option<Decimal>) {
        let (Some(stored), Some(held)) = (stored, held) else {
            return;
        };
        if stored != held {
            self.changed("unit price", &price(stored), &price(held));
        }
    }

    /// A date (`field`) stored against the one held before a write that
    /// did not send it (it must be left as it was, set or not).
    pub fn date_kept(&mut self, field: &str, stored: Option<Date>, held: Option<Date>) {
        let show = |d: Option<Date>| d.map_or_else(|| "none".to_owned(), |d| date_to_iso(&d));
        if stored.map(|d| days_from_civil(&d)) != held.map(|d| days_from_civil(&d)) {
            self.changed(field, &show(stored), &show(held));
        }
    }

    /// A date (`field`, e.g. "effective date") stored against the one
    /// sent, by day; `None` sent checks nothing.
    pub fn date(&mut self, field: &str, stored: Option<Date>, sent: Option<Date>) {
        let Some(sent) = sent else {
            return;
        };
        match stored {
            Some(stored) if days_from_civil(&stored) == days_from_civil(&sent) => {}
            Some(stored) => self.differs(field, &date_to_iso(&stored), &date_to_iso(&sent)),
            None => self.differs(field, "none", &date_to_iso(&sent)),
        }
    }

    /// Whether everything agreed so far.
    pub fn agrees(&self) -> bool {
        self.found.is_empty()
    }

    /// `Ok` when the PSA stored what was sent.
    ///
    /// # Errors
    /// `internal`, naming every field that differs with both values, and
    /// saying the write is not repeated.
    pub fn finish(self) -> Result<(), ConnectorError> {
        if self.found.is_empty() {
            return Ok(());
        }
        Err(ConnectorError::Internal(format!(
            "{}. The write was acknowledged and is not sent again: check {} in {} and accept what it holds or correct it there",
            self.found.join("; "),
            self.record,
            self.psa
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    #[test]
    fn agreement_passes_and_each_disagreement_names_both_values() {
        let mut same = ReadBack::new("ConnectWise", "addition 812");
        same.quantity(Decimal::from(12), Decimal::new(120, 1));
        same.unit_price(Some(Decimal::new(7200, 2)), Some(Decimal::from(72)));
        same.date(
            "effective date",
            Some(date(2026, 12, 1)),
            Some(date(2026, 12, 1)),
        );
        same.unit_price(None, None);
        assert!(same.agrees());
        assert!(same.finish().is_ok());

        let mut check = ReadBack::new("ConnectWise", "addition 812");
        check.unit_price(Some(Decimal::from(6)), Some(Decimal::from(72)));
        check.quantity(Decimal::from(10), Decimal::from(13));
        check.date(
            "effective date",
            Some(date(2027, 1, 1)),
            Some(date(2026, 12, 7)),
        );
        match check.finish() {
            Err(ConnectorError::Internal(message)) => {
                assert!(
                    message.contains(
                        "ConnectWise stored unit price 6.00 for addition 812, Trueup sent 72.00"
                    ),
                    "{message}"
                );
                assert!(message.contains("stored quantity 10 for addition 812, Trueup sent 13"));
                assert!(message.contains(
                    "stored effective date 2027-01-01 for addition 812, Trueup sent 2026-12-07"
                ));
                assert!(message.contains("not sent again"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let mut kept = ReadBack::new("Autotask", "contract service 5");
        kept.unit_price_kept(Some(Decimal::new(3950, 2)), Some(Decimal::new(395, 1)));
        assert!(kept.agrees());
        kept.date_kept("start date", None, None);
        kept.date_kept("start date", Some(date(2026, 1, 1)), Some(date(2026, 1, 1)));
        assert!(kept.agrees());
        kept.date_kept("start date", Some(date(2027, 1, 1)), None);
        kept.unit_price_kept(Some(Decimal::new(329, 2)), Some(Decimal::new(3950, 2)));
        match kept.finish() {
            Err(ConnectorError::Internal(message)) => {
                assert!(
                    message.contains(
                        "Autotask stored unit price 3.29 for contract service 5, which held 39.50 before"
                    ),
                    "{message}"
                );
                assert!(
                    message.contains("stored start date 2027-01-01 for contract service 5, which held none before; Trueup sent no start date"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
