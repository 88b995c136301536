//! Phase 1: routing every usage row to its buckets. Routes are cached per
//! (account, mapping `Arc`) by pointer, so a row costs two small hash
//! lookups, one mapper call and one decimal add.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::{
    Bucket, BucketKind, Engine, MAX_IGNORE_REASONS, MAX_ROUTED_QUANTITY, NO_ROUTE, Route, RowKind,
    Slot, SlotStatus, ptr_of, row_out_of_range,
};
use crate::mapping::{MappingFailure, RowDependence, UsageMapping};
use crate::model::{AccountMappingStatus, UsageObservation};

impl<'a> Engine<'a> {
    pub(super) fn route_rows(&mut self) {
        let usage = self.input.usage;
        let as_of = self.input.as_of;
        let mapper = self.input.mapper;
        self.row_route = vec![NO_ROUTE; usage.len()];
        // Consecutive rows usually share an account and a mapping; the last
        // decision is reused without hashing.
        let mut last_slot_key = (0usize, 0usize, 0u32);
        let sku_only = mapper.row_dependence() == RowDependence::SkuOnly;
        let mut last_sku_key = (u32::MAX, 0usize, 0u32, RowKind::Mapped);
        for (i, row) in usage.iter().enumerate() {
            let slot_key = (ptr_of(&row.vendor.0), ptr_of(&row.account.0));
            let slot = if i > 0 && (last_slot_key.0, last_slot_key.1) == slot_key {
                last_slot_key.2
            } else {
                let s = self.slot_of(row, slot_key);
                last_slot_key = (slot_key.0, slot_key.1, s);
                s
            };
            let day = row.observed_at.naive_utc().date();
            if day > as_of {
                self.slots[slot as usize].future_rows += 1;
                self.stats.rows_after_as_of += 1;
                continue;
            }
            if let Some(why) = row_out_of_range(row) {
                self.out_of_range(slot, why);
                continue;
            }
            let route = match self.slots[slot as usize].status {
                SlotStatus::Excluded => {
                    self.slots[slot as usize].excluded_rows += 1;
                    self.stats.rows_excluded += 1;
                    continue;
                }
                SlotStatus::Unmapped(_) => {
                    if self.ignored_without_company(slot, row, sku_only) {
                        self.stats.rows_ignored += 1;
                        self.slots[slot as usize].ignored_rows += 1;
                        continue;
                    }
                    self.stats.rows_unmapped += 1;
                    self.orphan_route(slot, row, i, None)
                }
                SlotStatus::Mapped(company) => {
                    let (route, kind) = if sku_only {
                        let key = (slot, ptr_of(&row.sku_id.0));
                        if (last_sku_key.0, last_sku_key.1) == key {
                            (last_sku_key.2, last_sku_key.3)
                        } else {
                            let decided = match self.sku_memo.get(&key) {
                                Some(&decided) => decided,
                                None => {
                                    let decided = self.map_row(slot, company, row, i);
                                    self.sku_memo.insert(key, decided);
                                    decided
                                }
                            };
                            last_sku_key = (key.0, key.1, decided.0, decided.1);
                            decided
                        }
                    } else {
                        self.map_row(slot, company, row, i)
                    };
                    match kind {
                        RowKind::Mapped => self.stats.rows_mapped += 1,
                        RowKind::Unmapped => self.stats.rows_unmapped += 1,
                        RowKind::Ignored => {
                            self.stats.rows_ignored += 1;
                            self.slots[slot as usize].ignored_rows += 1;
                            continue;
                        }
                        RowKind::Failed => self.stats.rows_rule_error += 1,
                    }
                    route
                }
            };
            let r = &self.routes[route as usize];
            // A rule's multiplier is not bounded: a product past
            // MAX_ROUTED_QUANTITY (or past Decimal) leaves the row out.
            let too_large = r.targets.iter().find_map(|&(_, multiplier, unit)| {
                let fits = unit
                    || row
                        .quantity
                        .checked_mul(multiplier)
                        .is_some_and(|q| q.abs() <= MAX_ROUTED_QUANTITY);
                (!fits).then_some(multiplier)
            });
            if let Some(multiplier) = too_large {
                self.out_of_range(
                    slot,
                    format!(
                        "quantity {} of {} on {day} times the SKU multiplier {multiplier} is beyond the limit of {MAX_ROUTED_QUANTITY}",
                        row.quantity, row.sku_id
                    ),
                );
                continue;
            }
            self.row_route[i] = route;
            for &(bucket, multiplier, unit) in r.targets.iter() {
                // Bounded by the check above: at most 10¹⁴ per row.
                let quantity = if unit {
                    row.quantity
                } else {
                    row.quantity * multiplier
                };
                let b = &mut self.buckets[bucket as usize];
                b.add(day, quantity);
                if let Some(cost) = row.unit_cost {
                    b.note_cost(day, cost);
                }
            }
        }
        self.stats.accounts = self.slots.len();
    }

    /// Counts a row of `slot` left out for a value beyond the limits.
    fn out_of_range(&mut self, slot: u32, why: String) {
        self.stats.rows_excluded += 1;
        let s = &mut self.slots[slot as usize];
        s.out_of_range_rows += 1;
        s.out_of_range_first.get_or_insert(why);
    }

    /// Keeps a rule's reason for ignoring rows of `slot`.
    pub(super) fn note_ignored(&mut self, slot: u32, mapping: &UsageMapping) {
        let Some(reason) = &mapping.ignored else {
            return;
        };
        let reasons = &mut self.slots[slot as usize].ignore_reasons;
        if reasons.len() < MAX_IGNORE_REASONS && !reasons.iter().any(|r| r == reason) {
            reasons.push(Arc::clone(reason));
        }
    }

    /// Whether the rules deliberately ignore a row of an unmapped account
    /// (asked without a company): a free SKU of an unknown tenant is not
    /// work for the MSP, so it must not inflate the unmapped list.
    pub(super) fn ignored_without_company(
        &mut self,
        slot: u32,
        row: &'a UsageObservation,
        sku_only: bool,
    ) -> bool {
        let key = (slot, ptr_of(&row.sku_id.0));
        if sku_only && let Some(&(_, kind)) = self.sku_memo.get(&key) {
            return kind == RowKind::Ignored;
        }
        let ignored = match self.input.mapper.map_usage(row, None) {
            Ok(mapping) if mapping.is_ignored() => {
                self.note_ignored(slot, &mapping);
                true
            }
            _ => false,
        };
        if sku_only {
            let kind = if ignored {
                RowKind::Ignored
            } else {
                RowKind::Unmapped
            };
            self.sku_memo.insert(key, (NO_ROUTE, kind));
        }
        ignored
    }

    /// Calls the mapper for one row and routes it.
    pub(super) fn map_row(
        &mut self,
        slot: u32,
        company: u32,
        row: &'a UsageObservation,
        index: usize,
    ) -> (u32, RowKind) {
        match self
            .input
            .mapper
            .map_usage(row, Some(&self.input.companies[company as usize]))
        {
            Ok(mapping) if mapping.is_ignored() => {
                self.note_ignored(slot, &mapping);
                (NO_ROUTE, RowKind::Ignored)
            }
            Ok(mapping) if mapping.is_unmapped() => (
                self.orphan_route(slot, row, index, Some(&mapping)),
                RowKind::Unmapped,
            ),
            Ok(mapping) => {
                let key = (slot, ptr_of(&mapping));
                if (self.last_route.0, self.last_route.1) == key {
                    return (self.last_route.2, RowKind::Mapped);
                }
                let route = self.product_route(slot, company, mapping);
                self.last_route = (key.0, key.1, route);
                (route, RowKind::Mapped)
            }
            Err(failure) => (
                self.failed_route(slot, row, index, failure),
                RowKind::Failed,
            ),
        }
    }

    pub(super) fn slot_of(&mut self, row: &'a UsageObservation, ptr_key: (usize, usize)) -> u32 {
        if let Some(&slot) = self.slot_by_ptr.get(&ptr_key) {
            return slot;
        }
        let text_key = (row.vendor.as_str(), row.account.as_str());
        let slot = match self.slot_by_text.get(&text_key) {
            Some(&slot) => slot,
            None => {
                let status = match self.mapping_index.get(&text_key).map(|m| &m.status) {
                    Some(AccountMappingStatus::Mapped(company)) => {
                        match self.company_index.get(company.as_str()) {
                            Some(&c) => SlotStatus::Mapped(c),
                            None => SlotStatus::Unmapped(Some(format!(
                                "the account is mapped to company {company}, which is not in the PSA data; map it again"
                            ))),
                        }
                    }
                    Some(AccountMappingStatus::Excluded) => SlotStatus::Excluded,
                    Some(AccountMappingStatus::Unmapped) | None => SlotStatus::Unmapped(None),
                };
                self.slots.push(Slot {
                    vendor: &row.vendor,
                    account: &row.account,
                    status,
                    excluded_rows: 0,
                    future_rows: 0,
                    ignored_rows: 0,
                    out_of_range_rows: 0,
                    out_of_range_first: None,
                    ignore_reasons: Vec::new(),
                });
                let slot = (self.slots.len() - 1) as u32;
                self.slot_by_text.insert(text_key, slot);
                slot
            }
        };
        self.slot_by_ptr.insert(ptr_key, slot);
        slot
    }

    pub(super) fn product_route(
        &mut self,
        slot: u32,
        company: u32,
        mapping: Arc<UsageMapping>,
    ) -> u32 {
        let key = (slot, ptr_of(&mapping));
        if let Some(&route) = self.route_by_mapping.get(&key) {
            return route;
        }
        let vendor = self.slots[slot as usize].vendor;
        let mut targets = Vec::with_capacity(mapping.targets.len());
        for target in &mapping.targets {
            let next = self.product_ids.len() as u32;
            let product = *self
                .product_ids
                .entry(target.product.0.clone())
                .or_insert(next);
            let bucket_key = (company, product);
            let bucket = match self.product_bucket.get(&bucket_key) {
                Some(&b) => b,
                None => {
                    self.buckets.push(Bucket::new(BucketKind::Product {
                        company,
                        product: target.product.clone(),
                    }));
                    let b = (self.buckets.len() - 1) as u32;
                    self.product_bucket.insert(bucket_key, b);
                    b
                }
            };
            let b = &mut self.buckets[bucket as usize];
            b.add_vendor(vendor);
            b.add_mapping(&mapping);
            targets.push((bucket, target.multiplier, target.multiplier == Decimal::ONE));
        }
        self.routes.push(Route {
            targets: targets.into_boxed_slice(),
            _mapping: Some(mapping),
        });
        let route = (self.routes.len() - 1) as u32;
        self.route_by_mapping.insert(key, route);
        route
    }

    /// The route of an unmapped account's or unmapped SKU's row: one bucket
    /// per (account, SKU), so its count is a count of one thing.
    pub(super) fn orphan_route(
        &mut self,
        slot: u32,
        row: &'a UsageObservation,
        index: usize,
        mapping: Option<&Arc<UsageMapping>>,
    ) -> u32 {
        let key = (slot, ptr_of(&row.sku_id.0));
        if let Some(&route) = self.route_by_sku.get(&key) {
            return route;
        }
        let bucket = self.orphan_bucket(slot, row, index, None);
        if let Some(mapping) = mapping {
            self.buckets[bucket as usize].add_mapping(mapping);
        }
        let vendor = self.slots[slot as usize].vendor;
        self.buckets[bucket as usize].add_vendor(vendor);
        self.routes.push(Route {
            targets: Box::new([(bucket, Decimal::ONE, true)]),
            _mapping: None,
        });
        let route = (self.routes.len() - 1) as u32;
        self.route_by_sku.insert(key, route);
        route
    }

    pub(super) fn failed_route(
        &mut self,
        slot: u32,
        row: &'a UsageObservation,
        index: usize,
        failure: MappingFailure,
    ) -> u32 {
        let key = (slot, ptr_of(&row.sku_id.0));
        if let Some(&route) = self.failed_route_by_sku.get(&key) {
            return route;
        }
        let bucket = self.orphan_bucket(slot, row, index, Some(failure));
        let vendor = self.slots[slot as usize].vendor;
        self.buckets[bucket as usize].add_vendor(vendor);
        self.routes.push(Route {
            targets: Box::new([(bucket, Decimal::ONE, true)]),
            _mapping: None,
        });
        let route = (self.routes.len() - 1) as u32;
        self.failed_route_by_sku.insert(key, route);
        route
    }

    pub(super) fn orphan_bucket(
        &mut self,
        slot: u32,
        row: &'a UsageObservation,
        index: usize,
        failure: Option<MappingFailure>,
    ) -> u32 {
        let key = (slot, row.sku_id.as_str(), failure.is_some());
        if let Some(&b) = self.orphan_bucket.get(&key) {
            return b;
        }
        let row = index as u32;
        let kind = match failure {
            Some(failure) => BucketKind::Failed {
                slot,
                row,
                failure: Box::new(failure),
            },
            None => BucketKind::Unmapped { slot, row },
        };
        self.buckets.push(Bucket::new(kind));
        let b = (self.buckets.len() - 1) as u32;
        self.orphan_bucket.insert(key, b);
        b
    }
}
