//! Phase 2, for usage no PSA line bills: new-revenue cards (placed on the
//! contract most likely to carry them) and cards for unmapped or failing
//! usage, with account suggestions.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::{BucketKind, Engine, SlotStatus, sorted};
use crate::card::{
    CardCategory, CardKey, CardMoney, ContractProposal, MappingRefs, ServiceCard, UsageSource,
    VendorQuantity,
};
use crate::cycles::{Period, calendar_month};
use crate::effective::ChangeConstraints;
use crate::mapping::{MappingFailure, PolicyContext, ServicePolicy, UsageMapping, UsageMeasure};
use crate::matching::Suggestion;
use crate::model::{CompanyStatus, ProductId, VendorId};

impl<'a> Engine<'a> {
    pub(super) fn new_revenue_card(
        &mut self,
        bucket: u32,
        company: u32,
        product: &ProductId,
        candidates: &[usize],
        lines_by_contract: &[Vec<usize>],
        index: u32,
    ) -> ServiceCard {
        let input = self.input;
        let company_rec = &input.companies[company as usize];
        let mut card = self.empty_card(
            CardKey::for_new_revenue(&company_rec.id, product),
            CardCategory::NewRevenue,
        );
        card.company = Some(company_rec.id.clone());
        card.product = Some(product.clone());
        card.psa_quantity = Some(Decimal::ZERO);
        {
            let b = &self.buckets[bucket as usize];
            card.vendors = self.shared[bucket as usize].0.clone();
            card.mappings = self.shared[bucket as usize].1.clone();
            card.vendor_unit_cost = b.latest_cost.map(|(_, c)| c);
        }
        if company_rec.status == CompanyStatus::Inactive {
            card.notes.push(format!(
                "company {} is inactive in the PSA",
                company_rec.name
            ));
        }
        let chosen = self.choose_contract(bucket, candidates, lines_by_contract);
        let mut proposal = None;
        let (policy, period) = match &chosen {
            Some((ec_index, reason)) => {
                let ec = &self.eligible_contracts[*ec_index];
                let contract = &input.contracts[ec.contract];
                card.contract = Some(contract.id.clone());
                proposal = Some(ContractProposal {
                    contract: contract.id.clone(),
                    reason: reason.clone(),
                });
                card.constraints = Some(ChangeConstraints::new(input.psa, contract));
                let ctx = PolicyContext {
                    company: company_rec,
                    contract,
                    product,
                    line: None,
                    psa: input.psa,
                    as_of: input.as_of,
                };
                match input.mapper.service_policy(&ctx) {
                    Ok(policy) => (policy, ec.period),
                    Err(failure) => {
                        card.category = CardCategory::RuleError;
                        card.period = Some(ec.period);
                        card.error = Some(Box::new(failure));
                        return card;
                    }
                }
            }
            None => {
                card.notes.push(format!(
                    "company {} has no active recurring contract to add {product} to; create one, then approve",
                    company_rec.name
                ));
                let period = calendar_month(input.as_of).unwrap_or(Period {
                    start: input.as_of,
                    end: input.as_of,
                });
                (ServicePolicy::default_for(input.psa), period)
            }
        };
        card.period = Some(period);
        let measured = policy
            .measure
            .measure(self.buckets[bucket as usize].window(period.start, input.as_of));
        let Some(measured) = measured else {
            card.category = CardCategory::NoChange;
            card.notes.push(format!(
                "vendors reported {product} only before the current period {period}"
            ));
            card.policy = Some(self.intern_policy(policy));
            return card;
        };
        self.buckets[bucket as usize].card = Some((index, measured.from, measured.to));
        let billable = self.billable(&policy, measured.quantity, &mut card.notes);
        card.vendor_quantity = Some(VendorQuantity { measured, billable });
        card.variance = Some(billable.normalize());
        if billable <= Decimal::ZERO {
            card.category = CardCategory::NoChange;
            card.notes
                .push(format!("vendors report zero {product}: nothing to bill"));
            card.policy = Some(self.intern_policy(policy));
            return card;
        }
        let catalog = self.catalog_index.get(product.as_str());
        let (unit_price, unit_cost) = match catalog {
            Some(item) => (item.unit_price, item.unit_cost),
            None => {
                card.notes.push(format!(
                    "{product} has no catalogue price; the money shown uses a price of 0 until one is set"
                ));
                (
                    Decimal::ZERO,
                    card.vendor_unit_cost.unwrap_or(Decimal::ZERO),
                )
            }
        };
        if let Some((ec_index, _)) = chosen {
            let ec = &self.eligible_contracts[ec_index];
            let contract = &input.contracts[ec.contract];
            self.propose(
                &mut card,
                ec,
                contract,
                &policy,
                Decimal::ZERO,
                billable,
                unit_price,
                unit_cost,
                proposal,
            );
        } else {
            card.target_quantity = Some(billable);
            card.money = Some(CardMoney::new(
                unit_price,
                unit_cost,
                Decimal::ZERO,
                billable,
            ));
        }
        card.policy = Some(self.intern_policy(policy));
        card
    }

    /// The contract a new product goes on: the one carrying most lines fed
    /// by the same vendors, then the one with most lines, then the lowest
    /// contract id.
    pub(super) fn choose_contract(
        &self,
        bucket: u32,
        candidates: &[usize],
        lines_by_contract: &[Vec<usize>],
    ) -> Option<(usize, String)> {
        let input = self.input;
        let vendors = &self.buckets[bucket as usize].vendors;
        let company = match &self.buckets[bucket as usize].kind {
            BucketKind::Product { company, .. } => *company,
            _ => return None,
        };
        let mut best: Option<(usize, usize, usize)> = None; // (same-vendor lines, lines, ec)
        for &ec in candidates {
            let mut same_vendor = 0;
            let mut lines = 0;
            for &line in &lines_by_contract[ec] {
                lines += 1;
                let product = &input.lines[line].product_identifier;
                if let Some(b) = self.bucket_of(company, product.as_str())
                    && self.buckets[b as usize]
                        .vendors
                        .iter()
                        .any(|v| vendors.contains(v))
                {
                    same_vendor += 1;
                }
            }
            let better = match best {
                None => true,
                Some((s, l, other)) => {
                    (same_vendor, lines) > (s, l)
                        || ((same_vendor, lines) == (s, l)
                            && input.contracts[self.eligible_contracts[ec].contract].id
                                < input.contracts[self.eligible_contracts[other].contract].id)
                }
            };
            if better {
                best = Some((same_vendor, lines, ec));
            }
        }
        let (same_vendor, lines, ec) = best?;
        let contract = &input.contracts[self.eligible_contracts[ec].contract];
        let vendor_names: Vec<String> = sorted(vendors).iter().map(|v| v.to_string()).collect();
        let reason = if candidates.len() == 1 {
            format!(
                "{} is the company's only active recurring contract",
                contract.id
            )
        } else if same_vendor > 0 {
            format!(
                "{} already carries {same_vendor} service(s) reported by {} (most of the company's {} contracts)",
                contract.id,
                vendor_names.join(", "),
                candidates.len()
            )
        } else {
            format!(
                "no contract carries services from {}; {} has the most services ({lines}) of the company's {} contracts (ties go to the lowest id)",
                vendor_names.join(", "),
                contract.id,
                candidates.len()
            )
        };
        Some((ec, reason))
    }

    pub(super) fn orphan_card(
        &mut self,
        bucket: u32,
        index: u32,
        slot: u32,
        row: u32,
        failure: Option<MappingFailure>,
    ) -> ServiceCard {
        let input = self.input;
        let usage = &input.usage[row as usize];
        let slot_rec = &self.slots[slot as usize];
        let account_name = self
            .account_index
            .get(&(slot_rec.vendor.as_str(), slot_rec.account.as_str()))
            .map(|a| a.name.clone());
        let source = UsageSource {
            vendor: slot_rec.vendor.clone(),
            account: slot_rec.account.clone(),
            account_name,
            sku: usage.sku_id.clone(),
            sku_name: usage.sku_name.clone(),
        };
        let (key, category) = match failure {
            Some(_) => (
                CardKey::for_rule_error(&source.vendor, &source.account, &source.sku),
                CardCategory::RuleError,
            ),
            None => (
                CardKey::for_unmapped(&source.vendor, &source.account, &source.sku),
                CardCategory::Unmapped,
            ),
        };
        let mut card = self.empty_card(key, category);
        let company = match slot_rec.status {
            SlotStatus::Mapped(c) => Some(c),
            _ => None,
        };
        card.company = company.map(|c| input.companies[c as usize].id.clone());
        let mut extra_mapping = None;
        match (&slot_rec.status, &failure) {
            (_, Some(_)) => card.notes.push(format!(
                "the mapping rules failed for {} SKU {}; fix the rule and run again",
                source.vendor, source.sku
            )),
            (SlotStatus::Mapped(_), None) => card.notes.push(format!(
                "{} SKU {} ({}) is not mapped to a PSA product",
                source.vendor, source.sku, source.sku_name
            )),
            (SlotStatus::Unmapped(note), None) => {
                card.notes.push(format!(
                    "{} account {} is not mapped to a PSA company",
                    source.vendor, source.account
                ));
                card.notes.extend(note.clone());
                card.suggestions = self.suggestions_for(&source.vendor, &source.account);
                // What the usage would map to once the account is mapped.
                if let Ok(mapping) = input.mapper.map_usage(usage, None) {
                    extra_mapping = Some(mapping);
                }
            }
            (SlotStatus::Excluded, None) => {}
        }
        card.error = failure.map(Box::new);
        let b = &self.buckets[bucket as usize];
        card.vendors = self.shared[bucket as usize].0.clone();
        card.mappings = match extra_mapping {
            Some(extra) => {
                let mut all: Vec<Arc<UsageMapping>> = vec![extra];
                for m in &b.mappings {
                    if !all.iter().any(|c| Arc::ptr_eq(c, m)) {
                        all.push(Arc::clone(m));
                    }
                }
                MappingRefs::from(all)
            }
            None => self.shared[bucket as usize].1.clone(),
        };
        card.vendor_unit_cost = b.latest_cost.map(|(_, c)| c);
        card.source = Some(Box::new(source));
        let period = calendar_month(input.as_of).unwrap_or(Period {
            start: input.as_of,
            end: input.as_of,
        });
        card.period = Some(period);
        if let Some(measured) =
            UsageMeasure::MonthEndSnapshot.measure(b.window(period.start, input.as_of))
        {
            card.vendor_quantity = Some(VendorQuantity {
                measured,
                billable: measured.quantity.normalize(),
            });
            self.buckets[bucket as usize].card = Some((index, measured.from, measured.to));
        } else if let Some(last) = b.days.last() {
            card.notes
                .push(format!("last reported on {}, before {period}", last.0));
        }
        card
    }

    pub(super) fn suggestions_for(
        &self,
        vendor: &VendorId,
        account: &crate::model::AccountId,
    ) -> Vec<Suggestion> {
        self.suggestion_index
            .get(&(vendor.as_str(), account.as_str()))
            .map(|o| o.suggestions.clone())
            .unwrap_or_default()
    }
}
