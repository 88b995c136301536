//! Proration: what a quantity change costs on the invoice that first
//! includes it, by daily proration over the billing period.
//!
//! Money is split in whole minor units (cents) with largest-remainder
//! rounding, so the pieces of a period always add up to exactly the
//! period's price: [`split_period_price`] is the one place that divides a
//! price across days, and [`preview_change`] uses it.

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cycles::{BillingSchedule, CycleError, Period};

/// Decimal places of the currency's minor unit (cents). Trueup bills in
/// currencies with two decimals.
pub const MINOR_UNIT_DP: u32 = 2;

/// `amount` rounded to the minor unit, half away from zero (commercial
/// rounding: 0.005 → 0.01).
pub fn round_money(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(MINOR_UNIT_DP, RoundingStrategy::MidpointAwayFromZero)
}

/// Why an amount could not be prorated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProrationError {
    /// A cut date is not strictly inside the period (after its first day,
    /// not after its last).
    #[error(
        "cut date {cut} is not inside the period {period} (it must be after the first day and not after the last)"
    )]
    CutOutsidePeriod {
        /// The offending date.
        cut: NaiveDate,
        /// The period being split.
        period: Period,
    },
    /// Cut dates must be strictly increasing.
    #[error("cut dates must be strictly increasing: {0} does not come after the previous cut")]
    CutsNotIncreasing(NaiveDate),
    /// The amount is too large to split in minor units.
    #[error("the amount {0} is too large to prorate")]
    Overflow(Decimal),
    /// The billing period could not be computed.
    #[error(transparent)]
    Cycle(#[from] CycleError),
}

/// One piece of a split period price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricePiece {
    /// The days this piece covers (inclusive).
    pub range: Period,
    /// Number of days in `range`.
    pub days: u32,
    /// Its share of the price, in whole minor units.
    pub amount: Decimal,
}

/// Splits `total` (first rounded to the minor unit) for `period` into
/// contiguous day ranges, the second and later starting on each of `cuts`.
///
/// Each piece gets `total × days / period days`, floored to the minor unit;
/// the cents left over go one each to the pieces with the largest
/// remainders (earlier pieces first on ties). The amounts therefore always
/// sum to exactly the rounded total, and negative totals split as the
/// mirror image of positive ones.
pub fn split_period_price(
    total: Decimal,
    period: Period,
    cuts: &[NaiveDate],
) -> Result<Vec<PricePiece>, ProrationError> {
    let mut ranges = Vec::with_capacity(cuts.len() + 1);
    let mut start = period.start;
    for &cut in cuts {
        if cut <= period.start || cut > period.end {
            return Err(ProrationError::CutOutsidePeriod { cut, period });
        }
        if cut <= start {
            return Err(ProrationError::CutsNotIncreasing(cut));
        }
        let end = cut
            .pred_opt()
            .ok_or(ProrationError::CutOutsidePeriod { cut, period })?;
        ranges.extend(Period::new(start, end));
        start = cut;
    }
    ranges.extend(Period::new(start, period.end));

    let rounded = round_money(total);
    let cents = to_minor_units(rounded).ok_or(ProrationError::Overflow(total))?;
    let negative = cents < 0;
    let cents = cents.unsigned_abs();
    let period_days = u128::from(period.days());
    let mut shares: Vec<(u128, u128)> = ranges
        .iter()
        .map(|r| {
            let weighted = cents * u128::from(r.days());
            (weighted / period_days, weighted % period_days)
        })
        .collect();
    let floored: u128 = shares.iter().map(|(floor, _)| floor).sum();
    let leftover = cents - floored;
    // Stable sort by remainder, largest first, so ties favour earlier pieces.
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| shares[b].1.cmp(&shares[a].1));
    for &i in order
        .iter()
        .take(usize::try_from(leftover).unwrap_or(usize::MAX))
    {
        shares[i].0 += 1;
    }
    ranges
        .iter()
        .zip(shares)
        .map(|(range, (units, _))| {
            let signed = i128::try_from(units).map_err(|_| ProrationError::Overflow(total))?;
            let amount = Decimal::try_from_i128_with_scale(
                if negative { -signed } else { signed },
                MINOR_UNIT_DP,
            )
            .map_err(|_| ProrationError::Overflow(total))?;
            Ok(PricePiece {
                range: *range,
                days: range.days(),
                amount,
            })
        })
        .collect()
}

/// `amount` (at most [`MINOR_UNIT_DP`] decimals) in minor units.
fn to_minor_units(amount: Decimal) -> Option<i128> {
    let scale = amount.scale();
    let factor = 10i128.checked_pow(MINOR_UNIT_DP.checked_sub(scale)?)?;
    amount.mantissa().checked_mul(factor)
}

/// What a quantity change costs on the invoice that first includes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProrationPreview {
    /// The billing period the change first bills in.
    pub period: Period,
    /// The day the change takes effect.
    pub effective_date: NaiveDate,
    /// Days in `period`.
    pub days_in_period: u32,
    /// Days of `period` charged at the new quantity (from the effective day
    /// to the period's end, inclusive; all of it without proration).
    pub days_charged: u32,
    /// `(to − from) × unit price`, per full period, in minor units.
    pub full_period_delta: Decimal,
    /// The change on the invoice covering `period`: the prorated share of
    /// `full_period_delta`, or all of it when not prorated.
    pub next_invoice_delta: Decimal,
    /// Whether `next_invoice_delta` is prorated.
    pub prorated: bool,
    /// The arithmetic, for a reviewer.
    pub explanation: String,
}

/// The money change of moving from `from_quantity` to `to_quantity` at
/// `unit_price` (per period) from `effective_date`.
///
/// With proration the change bills from the effective day to the end of its
/// period: `days remaining (inclusive) / days in period` of the full-period
/// delta, split with [`split_period_price`] so the two halves of the period
/// add up to the full delta. Without proration a change on a period's first
/// day bills that period in full; a change on any other day bills in full
/// from the next period.
pub fn preview_change(
    schedule: &BillingSchedule,
    effective_date: NaiveDate,
    from_quantity: Decimal,
    to_quantity: Decimal,
    unit_price: Decimal,
    prorate: bool,
) -> Result<ProrationPreview, ProrationError> {
    let delta_units = to_quantity
        .checked_sub(from_quantity)
        .ok_or(ProrationError::Overflow(to_quantity))?;
    let full = round_money(
        delta_units
            .checked_mul(unit_price)
            .ok_or(ProrationError::Overflow(delta_units))?,
    );
    let containing = schedule.period_containing(effective_date)?;
    let mid_period = effective_date != containing.start;
    if !prorate || !mid_period {
        let period = if mid_period {
            schedule.period_containing(schedule.next_period_start(effective_date)?)?
        } else {
            containing
        };
        let explanation = if mid_period {
            format!(
                "no proration: {delta_units} × {unit_price} = {full} bills in full from the next period {period}"
            )
        } else {
            format!("{delta_units} × {unit_price} = {full} for the whole period {period}")
        };
        return Ok(ProrationPreview {
            period,
            effective_date,
            days_in_period: period.days(),
            days_charged: period.days(),
            full_period_delta: full,
            next_invoice_delta: full,
            prorated: false,
            explanation,
        });
    }
    let pieces = split_period_price(full, containing, &[effective_date])?;
    let charged = pieces
        .last()
        .copied()
        .ok_or(ProrationError::CutOutsidePeriod {
            cut: effective_date,
            period: containing,
        })?;
    Ok(ProrationPreview {
        period: containing,
        effective_date,
        days_in_period: containing.days(),
        days_charged: charged.days,
        full_period_delta: full,
        next_invoice_delta: charged.amount,
        prorated: true,
        explanation: format!(
            "{delta_units} × {unit_price} = {full} per period; {} of {} days ({}..={}) = {}",
            charged.days,
            containing.days(),
            charged.range.start,
            charged.range.end,
            charged.amount
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::d;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    #[test]
    fn prorated_changes_by_month_length_and_mid_period() {
        let monthly = BillingSchedule::calendar(1).unwrap();
        let quarterly = BillingSchedule::calendar(3).unwrap();
        // (schedule, effective, from, to, price, days charged, days in period,
        //  full delta, next invoice delta)
        let table = [
            // 31-day Jan, +2 × 15 = 30.00; 16..31 Jan = 16 days.
            // 3000¢ × 16 / 31 = 1548.38 → 1548; other piece 3000 × 15 / 31 =
            // 1451.61 → 1451; 1 cent left goes to the larger remainder
            // (.61 > .38), so the charged piece stays 15.48.
            (
                &monthly,
                d(2025, 1, 16),
                dec!(10),
                dec!(12),
                dec!(15),
                16,
                31,
                dec!(30.00),
                dec!(15.48),
            ),
            // 30-day Apr, +1 × 30 from 16 Apr: 15 days → 30 × 15/30 = 15.00.
            (
                &monthly,
                d(2025, 4, 16),
                dec!(4),
                dec!(5),
                dec!(30),
                15,
                30,
                dec!(30.00),
                dec!(15.00),
            ),
            // 28-day Feb 2025, +3 × 10 from 15 Feb: 14 days → 30 × 14/28 = 15.00.
            (
                &monthly,
                d(2025, 2, 15),
                dec!(1),
                dec!(4),
                dec!(10),
                14,
                28,
                dec!(30.00),
                dec!(15.00),
            ),
            // 29-day Feb 2024, +1 × 100 from 15 Feb: 15 days →
            // 10000¢ × 15/29 = 5172.41; other 10000 × 14/29 = 4827.58;
            // floors 5172 + 4827 = 9999, the cent goes to .58 > .41, so 51.72.
            (
                &monthly,
                d(2024, 2, 15),
                dec!(0),
                dec!(1),
                dec!(100),
                15,
                29,
                dec!(100.00),
                dec!(51.72),
            ),
            // Decrease −2 × 12.50 = −25.00 from 21 Jan: 11 of 31 days →
            // 2500 × 11/31 = 887.09; other 2500 × 20/31 = 1612.90; floors
            // 887 + 1612 = 2499, cent to .90 → charged −8.87.
            (
                &monthly,
                d(2025, 1, 21),
                dec!(7),
                dec!(5),
                dec!(12.50),
                11,
                31,
                dec!(-25.00),
                dec!(-8.87),
            ),
            // Quarterly Q1 2025 = 90 days; +1 × 90 from 1 Mar: 31 days →
            // 9000 × 31/90 = 3100 exactly.
            (
                &quarterly,
                d(2025, 3, 1),
                dec!(2),
                dec!(3),
                dec!(90),
                31,
                90,
                dec!(90.00),
                dec!(31.00),
            ),
            // A change on the period's first day bills the whole period.
            (
                &monthly,
                d(2025, 2, 1),
                dec!(2),
                dec!(3),
                dec!(20),
                28,
                28,
                dec!(20.00),
                dec!(20.00),
            ),
        ];
        for (schedule, effective, from, to, price, charged, days, full, next) in table {
            let p = preview_change(schedule, effective, from, to, price, true).unwrap();
            assert_eq!(
                (
                    p.days_charged,
                    p.days_in_period,
                    p.full_period_delta,
                    p.next_invoice_delta
                ),
                (charged, days, full, next),
                "{effective}: {}",
                p.explanation
            );
            assert_eq!(p.prorated, effective != p.period.start);
        }
    }

    #[test]
    fn without_proration_a_mid_period_change_bills_in_full_next_period() {
        let monthly = BillingSchedule::calendar(1).unwrap();
        // +2 × 15 = 30 from 16 Jan: no proration → 30.00 on the February period.
        let p = preview_change(
            &monthly,
            d(2025, 1, 16),
            dec!(10),
            dec!(12),
            dec!(15),
            false,
        )
        .unwrap();
        assert_eq!(p.next_invoice_delta, dec!(30.00));
        assert!(!p.prorated);
        assert_eq!(
            p.period,
            Period::new(d(2025, 2, 1), d(2025, 2, 28)).unwrap()
        );
        assert_eq!(p.days_charged, 28);
        // On the first day of a period: that period, in full.
        let p =
            preview_change(&monthly, d(2025, 1, 1), dec!(10), dec!(12), dec!(15), false).unwrap();
        assert_eq!(p.period.start, d(2025, 1, 1));
    }

    #[test]
    fn split_hands_leftover_cents_to_the_largest_remainders() {
        let april = Period::new(d(2025, 4, 1), d(2025, 4, 30)).unwrap();
        // 100.00 over 30 days cut at 11 and 21 Apr: 10/10/10 days →
        // 3333.33¢ each, floors 3333 × 3 = 9999; remainders tie (10000×10
        // mod 30 = 10 each), so the earliest piece gets the cent.
        let pieces =
            split_period_price(dec!(100), april, &[d(2025, 4, 11), d(2025, 4, 21)]).unwrap();
        let amounts: Vec<_> = pieces.iter().map(|p| p.amount).collect();
        assert_eq!(amounts, [dec!(33.34), dec!(33.33), dec!(33.33)]);
        // Rounded to cents first: 10.005 → 10.01, one piece.
        let whole = split_period_price(dec!(10.005), april, &[]).unwrap();
        assert_eq!(whole[0].amount, dec!(10.01));
    }

    #[test]
    fn bad_cuts_are_rejected() {
        let april = Period::new(d(2025, 4, 1), d(2025, 4, 30)).unwrap();
        for cuts in [
            vec![d(2025, 4, 1)],
            vec![d(2025, 5, 1)],
            vec![d(2025, 4, 10), d(2025, 4, 10)],
        ] {
            assert!(
                split_period_price(dec!(10), april, &cuts).is_err(),
                "{cuts:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn pieces_of_a_period_sum_to_its_price(
            cents in -10_000_000_000i64..10_000_000_000i64,
            extra_dp in 0u32..3,
            start_offset in 0i64..20_000,
            len in 1i64..400,
            cut_seeds in proptest::collection::vec(0i64..400, 0..12),
        ) {
            let start = d(1990, 1, 1) + chrono::Duration::days(start_offset);
            let end = start + chrono::Duration::days(len - 1);
            let period = Period::new(start, end).unwrap();
            let mut cuts: Vec<NaiveDate> = cut_seeds
                .iter()
                .filter(|&&s| s % len != 0)
                .map(|&s| start + chrono::Duration::days(s % len))
                .collect();
            cuts.sort();
            cuts.dedup();
            // Up to two extra decimals beyond cents exercise the rounding.
            let total = Decimal::new(cents, 2 + extra_dp);
            let pieces = split_period_price(total, period, &cuts).unwrap();
            let sum: Decimal = pieces.iter().map(|p| p.amount).sum();
            prop_assert_eq!(sum, round_money(total));
            prop_assert_eq!(pieces.iter().map(|p| p.days).sum::<u32>(), period.days());
            for p in &pieces {
                prop_assert!(p.amount.scale() <= MINOR_UNIT_DP);
                // Each piece is within one cent of its exact share.
                let exact = round_money(total) * Decimal::from(p.days) / Decimal::from(period.days());
                prop_assert!((p.amount - exact).abs() < dec!(0.01));
            }
        }

        #[test]
        fn prorated_part_plus_the_rest_is_the_full_delta(
            day in 0i64..365,
            from in 0i64..500,
            to in 0i64..500,
            price_cents in 0i64..100_000,
        ) {
            let monthly = BillingSchedule::calendar(1).unwrap();
            let effective = d(2024, 1, 1) + chrono::Duration::days(day);
            let price = Decimal::new(price_cents, 2);
            let p = preview_change(&monthly, effective, Decimal::from(from), Decimal::from(to), price, true).unwrap();
            let before = if effective == p.period.start {
                Decimal::ZERO
            } else {
                split_period_price(p.full_period_delta, p.period, &[effective]).unwrap()[0].amount
            };
            prop_assert_eq!(before + p.next_invoice_delta, p.full_period_delta);
        }
    }
}
