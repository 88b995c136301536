//! Cards under one rule version against another (`trueup rules dry-run`):
//! which cards appear, disappear, or change, field by field. Cards are
//! matched by their stable key.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::Serialize;
use trueup_core::card::{CardKey, ServiceCard};
use trueup_core::reconcile::ReconcileOutput;

use crate::text::policy_text;

/// Most cards listed per section of a printed diff; counts are exact.
pub const MAX_LISTED_CARDS: usize = 50;

/// What a card says, in the fields a rule change can move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardSummary {
    /// The card key.
    pub key: String,
    /// What the card is about: company, product, line or usage source.
    pub subject: String,
    /// Field name → value, in display order.
    pub fields: Vec<(&'static str, String)>,
}

impl CardSummary {
    /// The summary of `card`.
    pub fn of(card: &ServiceCard) -> Self {
        let product = card.product.as_ref().map(|p| p.to_string());
        let subject = match (&card.company, &product, &card.source) {
            (_, _, Some(source)) => format!(
                "{} {}/{} SKU {}{}",
                card.category,
                source.vendor,
                source.account,
                source.sku,
                card.company
                    .as_ref()
                    .map(|c| format!(" (company {c})"))
                    .unwrap_or_default()
            ),
            (Some(company), Some(product), None) => format!(
                "company {company} {product}{}",
                card.line
                    .as_ref()
                    .map(|l| format!(" line {l}"))
                    .unwrap_or_default()
            ),
            (company, product, None) => format!(
                "{} {}",
                company.as_ref().map_or("-".to_owned(), |c| c.to_string()),
                product.clone().unwrap_or_else(|| "-".to_owned())
            ),
        };
        let decimal = |d: Option<rust_decimal::Decimal>| {
            d.map_or_else(|| "-".to_owned(), |d| d.normalize().to_string())
        };
        let mut rules: BTreeSet<String> = BTreeSet::new();
        let mut products: BTreeSet<String> = BTreeSet::new();
        for mapping in card.mappings.iter() {
            for step in mapping.trace.steps.iter().filter(|s| s.matched) {
                rules.insert(step.rule.to_string());
            }
            for target in &mapping.targets {
                products.insert(format!(
                    "{} ×{}",
                    target.product,
                    target.multiplier.normalize()
                ));
            }
        }
        let join = |set: BTreeSet<String>| {
            if set.is_empty() {
                "-".to_owned()
            } else {
                set.into_iter().collect::<Vec<_>>().join(", ")
            }
        };
        let fields = vec![
            ("category", card.category.to_string()),
            (
                "vendor quantity",
                decimal(card.vendor_quantity.map(|v| v.billable)),
            ),
            ("target quantity", decimal(card.target_quantity)),
            (
                "effective",
                card.effective()
                    .map_or_else(|| "-".to_owned(), |e| e.date.to_string()),
            ),
            ("auto-approve", card.auto_approvable.to_string()),
            (
                "policy",
                card.policy
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |p| policy_text(p)),
            ),
            ("maps to", join(products)),
            ("decided by", join(rules)),
            (
                "error",
                card.error
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |e| e.to_string()),
            ),
        ];
        Self {
            key: card.key.to_string(),
            subject,
            fields,
        }
    }

    fn field(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("-", |(_, v)| v.as_str())
    }
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The field.
    pub field: &'static str,
    /// Under the active rules.
    pub before: String,
    /// Under the draft.
    pub after: String,
}

/// A card present under both versions that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardChange {
    /// The card under the draft.
    pub card: CardSummary,
    /// What differs.
    pub changes: Vec<FieldChange>,
}

/// Cards under the draft rules against the active ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CardDiff {
    /// The active version.
    pub before_version: String,
    /// The draft version.
    pub after_version: String,
    /// Cards only the draft produces.
    pub added: Vec<CardSummary>,
    /// Cards only the active rules produce.
    pub removed: Vec<CardSummary>,
    /// Cards both produce, that differ.
    pub changed: Vec<CardChange>,
    /// Cards both produce, equal in every compared field.
    pub unchanged: usize,
}

impl CardDiff {
    /// Whether the draft changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares the cards of two reconciles of the same data.
pub fn diff_outputs(before: &ReconcileOutput, after: &ReconcileOutput) -> CardDiff {
    let old: HashMap<&CardKey, &ServiceCard> = before.cards.iter().map(|c| (&c.key, c)).collect();
    let new_keys: HashSet<&CardKey> = after.cards.iter().map(|c| &c.key).collect();
    let mut diff = CardDiff {
        before_version: before.mapper_version.to_string(),
        after_version: after.mapper_version.to_string(),
        ..CardDiff::default()
    };
    for card in &after.cards {
        let summary = CardSummary::of(card);
        match old.get(&card.key) {
            None => diff.added.push(summary),
            Some(previous) => {
                let previous = CardSummary::of(previous);
                let changes: Vec<FieldChange> = summary
                    .fields
                    .iter()
                    .filter(|(name, value)| previous.field(name) != value)
                    .map(|(name, value)| FieldChange {
                        field: name,
                        before: previous.field(name).to_owned(),
                        after: value.clone(),
                    })
                    .collect();
                if changes.is_empty() {
                    diff.unchanged += 1;
                } else {
                    diff.changed.push(CardChange {
                        card: summary,
                        changes,
                    });
                }
            }
        }
    }
    diff.removed = before
        .cards
        .iter()
        .filter(|c| !new_keys.contains(&c.key))
        .map(CardSummary::of)
        .collect();
    diff
}

impl fmt::Display for CardDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- active {}", self.before_version)?;
        writeln!(f, "+++ draft  {}", self.after_version)?;
        let listed = |n: usize| n.min(MAX_LISTED_CARDS);
        for card in &self.removed[..listed(self.removed.len())] {
            writeln!(
                f,
                "- {}  [{}, vendor {}]",
                card.subject,
                card.field("category"),
                card.field("vendor quantity")
            )?;
        }
        if self.removed.len() > MAX_LISTED_CARDS {
            writeln!(
                f,
                "- ... {} more removed",
                self.removed.len() - MAX_LISTED_CARDS
            )?;
        }
        for card in &self.added[..listed(self.added.len())] {
            writeln!(
                f,
                "+ {}  [{}, vendor {}]",
                card.subject,
                card.field("category"),
                card.field("vendor quantity")
            )?;
        }
        if self.added.len() > MAX_LISTED_CARDS {
            writeln!(
                f,
                "+ ... {} more added",
                self.added.len() - MAX_LISTED_CARDS
            )?;
        }
        for change in &self.changed[..listed(self.changed.len())] {
            writeln!(f, "~ {}", change.card.subject)?;
            for c in &change.changes {
                writeln!(f, "    {}: {} → {}", c.field, c.before, c.after)?;
            }
        }
        if self.changed.len() > MAX_LISTED_CARDS {
            writeln!(
                f,
                "~ ... {} more changed",
                self.changed.len() - MAX_LISTED_CARDS
            )?;
        }
        write!(
            f,
            "{} added, {} removed, {} changed, {} unchanged",
            self.added.len(),
            self.removed.len(),
            self.changed.len(),
            self.unchanged
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    use crate::explain::tests::{RULES, compiled, snapshot};

    #[test]
    fn the_draft_is_compared_card_by_card() {
        let s = snapshot();
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 31).unwrap();
        let run = |source: &str| {
            let mapper = compiled(source).mapper(as_of);
            reconcile_of(&s, as_of, &mapper)
        };
        let active = run(RULES);
        // The draft bills pending devices too and maps servers.
        let draft = run(
            "map_sku(\"ninjaone\", \"WINDOWS_WORKSTATION\").to(\"RMM-WS\").named(\"all workstations\");\nmap_sku(\"ninjaone\", \"WINDOWS_SERVER\").to(\"RMM-SRV\");\n",
        );
        let same = diff_outputs(&active, &run(RULES));
        assert!(same.is_empty());
        assert_eq!(same.unchanged, active.cards.len());
        let diff = diff_outputs(&active, &draft);
        type Fields<'a> = Vec<(&'a str, &'a str, &'a str)>;
        let changed: Vec<(&str, Fields<'_>)> = diff
            .changed
            .iter()
            .map(|c| {
                (
                    c.card.subject.as_str(),
                    c.changes
                        .iter()
                        .map(|f| (f.field, f.before.as_str(), f.after.as_str()))
                        .collect(),
                )
            })
            .collect();
        // 4 approved + 1 pending = 5 against the 3 billed; the tolerance of
        // 2 is gone with the draft. The unmapped account's card shows what
        // its usage would map to, so its deciding rule changes too.
        let policy_before = "effective first day of next month, measure month_end, round none, tolerance 2 unit(s), no auto-approval";
        let policy_after =
            "effective first day of next month, measure month_end, round none, no auto-approval";
        assert_eq!(
            changed,
            [
                (
                    "company C1 RMM-WS line L1",
                    vec![
                        ("category", "no_change", "reconcile"),
                        ("vendor quantity", "4", "5"),
                        ("target quantity", "-", "5"),
                        ("effective", "-", "2025-04-01"),
                        ("policy", policy_before, policy_after),
                        ("decided by", "workstations", "all workstations"),
                    ]
                ),
                (
                    "unmapped ninjaone/org-2 SKU WINDOWS_WORKSTATION",
                    vec![("decided by", "workstations", "all workstations")]
                ),
            ]
        );
        let added: Vec<&str> = diff.added.iter().map(|c| c.subject.as_str()).collect();
        let removed: Vec<&str> = diff.removed.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(added, ["company C1 RMM-SRV"]);
        // The active rules IGNORE org-1's pending workstation (no card);
        // the draft bills it, so it shows up inside RMM-WS, not as removed.
        assert_eq!(
            removed,
            ["unmapped ninjaone/org-1 SKU WINDOWS_SERVER (company C1)"]
        );
        let text = diff.to_string();
        assert!(
            text.contains("~ company C1 RMM-WS line L1\n    category: no_change → reconcile"),
            "{text}"
        );
        assert!(
            text.ends_with("1 added, 1 removed, 2 changed, 0 unchanged"),
            "{text}"
        );
    }

    fn reconcile_of(
        s: &trueup_core::snapshot::Snapshot,
        as_of: NaiveDate,
        mapper: &crate::RulesMapper,
    ) -> ReconcileOutput {
        trueup_core::reconcile::reconcile(&s.reconcile_input(
            as_of,
            &s.account_mappings,
            &[],
            mapper,
        ))
    }
}
