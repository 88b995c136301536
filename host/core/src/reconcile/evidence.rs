//! Phase 3: what stands behind the cards: the usage rows behind each
//! card's quantity, and notes on the accounts whose usage was left out.

use std::sync::Arc;

use super::{Engine, NO_ROUTE};
use crate::card::{RowRefs, ServiceCard};
use crate::eligibility::{Exclusion, ExclusionCode, Severity, Subject};
use crate::model::AccountRef;

impl<'a> Engine<'a> {
    /// Records, on each card, the rows of the days its quantity was
    /// measured on: counted first, then written into one shared buffer that
    /// every card holds a window of.
    pub(super) fn attach_rows(&self, cards: &mut [ServiceCard]) {
        let visit = |f: &mut dyn FnMut(usize, u32)| {
            for (i, row) in self.input.usage.iter().enumerate() {
                let route = self.row_route[i];
                if route == NO_ROUTE {
                    continue;
                }
                let day = row.observed_at.naive_utc().date();
                for &(bucket, _, _) in self.routes[route as usize].targets.iter() {
                    if let Some((card, from, to)) = self.buckets[bucket as usize].card
                        && from <= day
                        && day <= to
                    {
                        f(card as usize, i as u32);
                    }
                }
            }
        };
        let mut starts = vec![0usize; cards.len() + 1];
        visit(&mut |card, _| starts[card + 1] += 1);
        for c in 0..cards.len() {
            starts[c + 1] += starts[c];
        }
        let mut buffer = vec![0u32; starts[cards.len()]];
        let mut cursor = starts.clone();
        visit(&mut |card, row| {
            buffer[cursor[card]] = row;
            cursor[card] += 1;
        });
        let shared: Arc<[u32]> = Arc::from(buffer);
        for (c, card) in cards.iter_mut().enumerate() {
            if let Some(rows) = RowRefs::new(Arc::clone(&shared), starts[c]..starts[c + 1]) {
                card.usage_rows = rows;
            }
        }
    }

    pub(super) fn account_exclusions(&self) -> Vec<Exclusion> {
        let mut out = Vec::new();
        for slot in &self.slots {
            let subject = || {
                Subject::Account(AccountRef {
                    vendor: slot.vendor.clone(),
                    account: slot.account.clone(),
                })
            };
            if slot.excluded_rows > 0 {
                out.push(Exclusion::new(
                    subject(),
                    ExclusionCode::AccountExcluded,
                    Severity::Excluded,
                    format!(
                        "{} account {} is excluded from billing; its {} usage row(s) were not reconciled",
                        slot.vendor, slot.account, slot.excluded_rows
                    ),
                ));
            }
            if slot.out_of_range_rows > 0 {
                out.push(Exclusion::new(
                    subject(),
                    ExclusionCode::ValueOutOfRange,
                    Severity::Excluded,
                    format!(
                        "{} usage row(s) of {} account {} were left out: a value is beyond the accepted limits (first: {})",
                        slot.out_of_range_rows,
                        slot.vendor,
                        slot.account,
                        slot.out_of_range_first.as_deref().unwrap_or("?")
                    ),
                ));
            }
            if slot.ignored_rows > 0 {
                out.push(Exclusion::new(
                    subject(),
                    ExclusionCode::UsageIgnoredByRule,
                    Severity::Noted,
                    format!(
                        "{} usage row(s) of {} account {} are not billed by rule ({})",
                        slot.ignored_rows,
                        slot.vendor,
                        slot.account,
                        slot.ignore_reasons
                            .iter()
                            .map(|r| r.as_ref())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ));
            }
            if slot.future_rows > 0 {
                out.push(Exclusion::new(
                    subject(),
                    ExclusionCode::UsageAfterAsOf,
                    Severity::Noted,
                    format!(
                        "{} usage row(s) of {} account {} were observed after {} and ignored",
                        slot.future_rows, slot.vendor, slot.account, self.input.as_of
                    ),
                ));
            }
        }
        out
    }
}
