//! Phase 2: joining buckets to the eligible PSA lines and turning each
//! line into a card: measured over the contract's current period, limited
//! and rounded by its policy, with a proposed change and effective date.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::{BucketKind, Engine, sorted};
use crate::card::{
    CardCategory, CardKey, CardMoney, ChangeDetail, ContractProposal, MappingRefs, RowRefs,
    ServiceCard, VendorQuantity,
};
use crate::effective::{ChangeConstraints, propose_effective_date};
use crate::eligibility::EligibleContract;
use crate::fasthash::FxHashMap;
use crate::mapping::{PolicyContext, Rounding, ServicePolicy};
use crate::model::{CompanyStatus, Contract};
use crate::proration::preview_change;

impl<'a> Engine<'a> {
    /// The bucket of `company`'s usage of `product`, if any.
    pub(super) fn bucket_of(&self, company: u32, product: &str) -> Option<u32> {
        let product = self.product_ids.get(product)?;
        self.product_bucket.get(&(company, *product)).copied()
    }

    pub(super) fn build_cards(&mut self) -> Vec<ServiceCard> {
        let input = self.input;
        self.shared = self
            .buckets
            .iter()
            .map(|b| {
                (
                    Arc::from(sorted(&b.vendors)),
                    MappingRefs(Arc::from(b.mappings.as_slice())),
                )
            })
            .collect();
        let mut joined = vec![false; self.buckets.len()];

        // Lines grouped by (company, product) in first-seen order, as
        // linked lists through `next` (most groups have one line, so no
        // vector per group).
        const END: u32 = u32::MAX;
        let mut group_of: FxHashMap<(u32, &str), usize> = FxHashMap::default();
        group_of.reserve(self.eligible_lines.len());
        let mut groups: Vec<(u32, u32, u32)> = Vec::new(); // (company, first, last)
        let mut next = vec![END; self.eligible_lines.len()];
        for (i, el) in self.eligible_lines.iter().enumerate() {
            let company = self.eligible_contracts[el.contract].company as u32;
            let product = input.lines[el.line].product_identifier.as_str();
            match group_of.get(&(company, product)) {
                Some(&g) => {
                    next[groups[g].2 as usize] = i as u32;
                    groups[g].2 = i as u32;
                }
                None => {
                    group_of.insert((company, product), groups.len());
                    groups.push((company, i as u32, i as u32));
                }
            }
        }
        drop(group_of);
        // Which buckets the lines take, first, so the card vector (cards are
        // large) is allocated once at its exact size.
        let group_bucket: Vec<Option<u32>> = groups
            .iter()
            .map(|&(company, first, _)| {
                let line = &input.lines[self.eligible_lines[first as usize].line];
                self.bucket_of(company, line.product_identifier.as_str())
            })
            .collect();
        for b in group_bucket.iter().flatten() {
            joined[*b as usize] = true;
        }
        let unjoined = joined.iter().filter(|j| !**j).count();
        let mut cards = Vec::with_capacity(self.eligible_lines.len() + unjoined);
        let mut members: Vec<usize> = Vec::new();
        for ((_, first, _), bucket) in groups.into_iter().zip(group_bucket) {
            members.clear();
            let mut at = first;
            while at != END {
                members.push(at as usize);
                at = next[at as usize];
            }
            if members.len() > 1 {
                members.sort_by(|&a, &b| {
                    let (la, lb) = (
                        &input.lines[self.eligible_lines[a].line],
                        &input.lines[self.eligible_lines[b].line],
                    );
                    (&la.contract_id, &la.id).cmp(&(&lb.contract_id, &lb.id))
                });
            }
            let primary = members[0];
            let product = &input.lines[self.eligible_lines[primary].line].product_identifier;
            let others: Decimal = members[1..]
                .iter()
                .map(|&m| input.lines[self.eligible_lines[m].line].quantity)
                .fold(Decimal::ZERO, Decimal::saturating_add);
            let primary_line = &input.lines[self.eligible_lines[primary].line];
            cards.push(self.line_card(
                primary,
                bucket,
                others,
                members.len() - 1,
                cards.len() as u32,
            ));
            for &m in &members[1..] {
                let mut card = self.bare_line_card(m);
                card.category = CardCategory::NoChange;
                card.notes.push(format!(
                    "{product} is also billed on line {} of contract {}; usage is compared against all the company's {product} lines together and any change is proposed on that line",
                    primary_line.id, primary_line.contract_id
                ));
                cards.push(card);
            }
        }

        let contracts_by_company = self.contracts_by_company();
        let mut lines_by_contract = vec![Vec::new(); self.eligible_contracts.len()];
        for el in &self.eligible_lines {
            lines_by_contract[el.contract].push(el.line);
        }
        for (b, joined) in joined.into_iter().enumerate() {
            if joined {
                continue;
            }
            let card = match &self.buckets[b].kind {
                BucketKind::Product { company, product } => {
                    let (company, product) = (*company, product.clone());
                    let candidates = &contracts_by_company[company as usize];
                    self.new_revenue_card(
                        b as u32,
                        company,
                        &product,
                        candidates,
                        &lines_by_contract,
                        cards.len() as u32,
                    )
                }
                BucketKind::Unmapped { slot, row } => {
                    let (slot, row) = (*slot, *row);
                    self.orphan_card(b as u32, cards.len() as u32, slot, row, None)
                }
                BucketKind::Failed { slot, row, failure } => {
                    let (slot, row, failure) = (*slot, *row, (**failure).clone());
                    self.orphan_card(b as u32, cards.len() as u32, slot, row, Some(failure))
                }
            };
            cards.push(card);
        }
        cards
    }

    pub(super) fn contracts_by_company(&self) -> Vec<Vec<usize>> {
        let mut by_company = vec![Vec::new(); self.input.companies.len()];
        for (i, ec) in self.eligible_contracts.iter().enumerate() {
            by_company[ec.company].push(i);
        }
        by_company
    }

    /// A line card with the PSA side filled in and no vendor side.
    pub(super) fn bare_line_card(&self, eligible_line: usize) -> ServiceCard {
        let input = self.input;
        let el = self.eligible_lines[eligible_line];
        let ec = &self.eligible_contracts[el.contract];
        let line = &input.lines[el.line];
        let contract = &input.contracts[ec.contract];
        let company = &input.companies[ec.company];
        let mut card = self.empty_card(
            CardKey::for_line(&company.id, &contract.id, &line.id),
            CardCategory::NoVendorData,
        );
        card.company = Some(company.id.clone());
        card.contract = Some(contract.id.clone());
        card.line = Some(line.id.clone());
        card.product = Some(line.product_identifier.clone());
        card.period = Some(ec.period);
        card.psa_quantity = Some(line.quantity);
        card.constraints = Some(ChangeConstraints::new(input.psa, contract));
        card.money = Some(CardMoney::new(
            line.unit_price,
            line.unit_cost,
            line.quantity,
            line.quantity,
        ));
        if let Some(note) = ec.schedule.note() {
            card.notes.push(note.to_owned());
        }
        if company.status == CompanyStatus::Inactive {
            card.notes
                .push(format!("company {} is inactive in the PSA", company.name));
        }
        card
    }

    pub(super) fn empty_card(&self, key: CardKey, category: CardCategory) -> ServiceCard {
        ServiceCard {
            key,
            category,
            company: None,
            contract: None,
            line: None,
            product: None,
            source: None,
            vendors: self.no_vendors.clone(),
            period: None,
            psa_quantity: None,
            psa_quantity_elsewhere: None,
            vendor_quantity: None,
            target_quantity: None,
            variance: None,
            money: None,
            vendor_unit_cost: None,
            change: None,
            constraints: None,
            policy: None,
            auto_approvable: false,
            usage_rows: RowRefs::default(),
            mappings: self.no_mappings.clone(),
            mapper_version: self.version.clone(),
            suggestions: Vec::new(),
            error: None,
            notes: Vec::new(),
        }
    }

    pub(super) fn line_card(
        &mut self,
        eligible_line: usize,
        bucket: Option<u32>,
        others: Decimal,
        other_lines: usize,
        index: u32,
    ) -> ServiceCard {
        let input = self.input;
        let mut card = self.bare_line_card(eligible_line);
        let el = self.eligible_lines[eligible_line];
        let ec = &self.eligible_contracts[el.contract];
        let line = &input.lines[el.line];
        let contract = &input.contracts[ec.contract];
        let company = &input.companies[ec.company];
        let ctx = PolicyContext {
            company,
            contract,
            product: &line.product_identifier,
            line: Some(line),
            psa: input.psa,
            as_of: input.as_of,
        };
        if let Some(b) = bucket {
            let bucket = &self.buckets[b as usize];
            card.vendors = self.shared[b as usize].0.clone();
            card.mappings = self.shared[b as usize].1.clone();
            card.vendor_unit_cost = bucket.latest_cost.map(|(_, c)| c);
        }
        let policy = match input.mapper.service_policy(&ctx) {
            Ok(policy) => policy,
            Err(failure) => {
                card.category = CardCategory::RuleError;
                card.money = None;
                card.error = Some(Box::new(failure));
                return card;
            }
        };
        let period = ec.period;
        let measured = bucket.and_then(|b| {
            let bucket = &self.buckets[b as usize];
            policy
                .measure
                .measure(bucket.window(period.start, input.as_of))
                .map(|m| (b, m))
        });
        let Some((b, measured)) = measured else {
            if let Some(last) = bucket.and_then(|b| self.buckets[b as usize].days.last()) {
                card.notes.push(format!(
                    "vendors last reported this product on {}, before the current period {period}",
                    last.0
                ));
            }
            card.policy = Some(self.intern_policy(policy));
            return card;
        };
        self.buckets[b as usize].card = Some((index, measured.from, measured.to));
        let billable = self.billable(&policy, measured.quantity, &mut card.notes);
        card.vendor_quantity = Some(VendorQuantity { measured, billable });
        // Saturating: see `Amounts::at` (a rule's minimum is not bounded).
        let psa_total = line.quantity.saturating_add(others);
        if other_lines > 0 {
            card.psa_quantity_elsewhere = Some(others);
        }
        let mut target = billable.saturating_sub(others);
        if target < Decimal::ZERO {
            card.notes.push(format!(
                "vendors report {billable}, less than the {others} billed on the other {other_lines} line(s) of this product; this line can go no lower than 0"
            ));
            target = Decimal::ZERO;
        }
        card.variance = Some(billable.saturating_sub(psa_total).normalize());
        if policy.tolerance.accepts(psa_total, billable) {
            card.category = CardCategory::NoChange;
            if billable != psa_total {
                card.notes.push(format!(
                    "vendor quantity {billable} differs from the billed {psa_total} within the tolerance"
                ));
            }
            card.policy = Some(self.intern_policy(policy));
            return card;
        }
        card.category = CardCategory::Reconcile;
        self.propose(
            &mut card,
            ec,
            contract,
            &policy,
            line.quantity,
            target,
            line.unit_price,
            line.unit_cost,
            None,
        );
        card.policy = Some(self.intern_policy(policy));
        card
    }

    /// Applies the policy's limits and rounding, and the PSA's integer rule.
    pub(super) fn billable(
        &self,
        policy: &ServicePolicy,
        measured: Decimal,
        notes: &mut Vec<String>,
    ) -> Decimal {
        let mut billable = policy.billable_quantity(measured);
        if self.input.psa.integer_units && !billable.is_integer() {
            let rounded = Rounding::Nearest.apply(billable).normalize();
            notes.push(format!(
                "{} needs whole units: {billable} rounded to {rounded} (set a rounding in the service policy to choose)",
                self.input.psa.name
            ));
            billable = rounded;
        }
        billable
    }

    /// Fills target, money, effective date and proration of a change.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn propose(
        &self,
        card: &mut ServiceCard,
        ec: &EligibleContract,
        contract: &Contract,
        policy: &ServicePolicy,
        from: Decimal,
        to: Decimal,
        unit_price: Decimal,
        unit_cost: Decimal,
        contract_proposal: Option<ContractProposal>,
    ) {
        let input = self.input;
        let constraints = ChangeConstraints::new(input.psa, contract);
        let mut change = ChangeDetail {
            effective: None,
            proration: None,
            contract_proposal,
        };
        card.target_quantity = Some(to);
        card.money = Some(CardMoney::new(unit_price, unit_cost, from, to));
        card.auto_approvable = policy.auto_approve.allows(from, to);
        match propose_effective_date(
            &policy.effective_date,
            input.as_of,
            &ec.schedule,
            &constraints,
        ) {
            Ok(effective) => {
                let prorate = constraints.prorate && policy.prorate != Some(false);
                if policy.prorate == Some(true) && !constraints.prorate {
                    card.notes.push(format!(
                        "the service policy asks for proration but contract {} does not prorate",
                        contract.id
                    ));
                }
                match preview_change(&ec.schedule, effective.date, from, to, unit_price, prorate) {
                    Ok(preview) => change.proration = Some(preview),
                    Err(e) => card.notes.push(format!("no proration preview: {e}")),
                }
                change.effective = Some(effective);
            }
            Err(e) => card
                .notes
                .push(format!("no effective date can be proposed: {e}")),
        }
        card.change = Some(Box::new(change));
    }
}
