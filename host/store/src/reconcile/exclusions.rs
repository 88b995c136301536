//! What each reconcile run left out or noted: one row per exclusion
//! (written in bulk with the run's cards, in the same transaction), read
//! back by reason, counted per reason and paged.

use serde::{Deserialize, Serialize};
use trueup_core::eligibility::{CompanyRef, Exclusion, ExclusionCode, Severity, Subject};
use trueup_core::model::AccountRef;

use crate::Store;
use crate::db::{Row, Tx, enum_text, sql};
use crate::error::{Result, StoreError};
use crate::ids::ReconcileRunId;

/// The most exclusions one page holds.
pub const MAX_EXCLUSION_PAGE: u32 = 1000;

const COLUMNS: &[&str] = &[
    "run_id",
    "position",
    "code",
    "severity",
    "subject_kind",
    "subject_vendor",
    "subject_id",
    "subject_name",
    "company_id",
    "company_name",
    "source",
    "reason",
];

const SELECT: &str = "SELECT position, code, severity, subject_kind, subject_vendor, subject_id, \
     subject_name, company_id, company_name, source, reason FROM run_exclusions";

/// Which of a run's exclusions to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExclusionFilter {
    /// Only this reason.
    pub code: Option<ExclusionCode>,
    /// Only those after this position (the previous page's `next`).
    pub after: Option<i64>,
    /// At most this many (capped at [`MAX_EXCLUSION_PAGE`]).
    pub limit: u32,
}

/// How many exclusions a run has for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusionCount {
    /// The reason.
    pub code: ExclusionCode,
    /// How many.
    pub count: u64,
}

/// One stored exclusion and its place in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredExclusion {
    /// Its position in the run (the paging cursor).
    pub position: i64,
    /// The exclusion.
    #[serde(flatten)]
    pub exclusion: Exclusion,
}

/// A page of a run's exclusions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusionPage {
    /// The run.
    pub run: ReconcileRunId,
    /// The run's exclusions per reason (every reason present, whatever the
    /// filter), by reason.
    pub counts: Vec<ExclusionCount>,
    /// How many match the filter's reason (all pages).
    pub total: u64,
    /// This page, in run order.
    pub exclusions: Vec<StoredExclusion>,
    /// The `after` of the next page, when there is one.
    pub next: Option<i64>,
}

fn subject_parts(subject: &Subject) -> (&'static str, Option<&str>, &str) {
    match subject {
        Subject::Company(id) => ("company", None, id.as_str()),
        Subject::Contract(id) => ("contract", None, id.as_str()),
        Subject::Line(id) => ("line", None, id.as_str()),
        Subject::Account(a) => ("account", Some(a.vendor.as_str()), a.account.as_str()),
    }
}

/// A stored value this version does not know (written by a newer one).
fn corrupt(column: &str, expected: &'static str, found: String) -> StoreError {
    StoreError::Corrupt {
        table: "run_exclusions",
        column: column.to_owned(),
        expected,
        problem: format!("found {found:?}"),
    }
}

fn exclusion_from_row(row: &Row) -> Result<StoredExclusion> {
    let code = row.text("code")?;
    let code =
        ExclusionCode::parse(&code).ok_or_else(|| corrupt("code", "an exclusion code", code))?;
    let severity: Severity = row.enum_value("severity", "excluded or noted")?;
    let id = row.text("subject_id")?;
    let subject = match row.text("subject_kind")?.as_str() {
        "company" => Subject::Company(id.into()),
        "contract" => Subject::Contract(id.into()),
        "line" => Subject::Line(id.into()),
        "account" => Subject::Account(AccountRef {
            vendor: row.opt_text("subject_vendor")?.unwrap_or_default().into(),
            account: id.into(),
        }),
        other => {
            return Err(corrupt(
                "subject_kind",
                "company, contract, line or account",
                other.to_owned(),
            ));
        }
    };
    let company = match (row.opt_text("company_id")?, row.opt_text("company_name")?) {
        (Some(id), Some(name)) => Some(CompanyRef {
            id: id.into(),
            name,
        }),
        _ => None,
    };
    Ok(StoredExclusion {
        position: row.int("position")?,
        exclusion: Exclusion {
            subject,
            code,
            severity,
            reason: row.text("reason")?,
            name: row.opt_text("subject_name")?,
            company,
            source: row.text("source")?,
        },
    })
}

/// Writes `exclusions` as run `run`'s, in bulk, inside `tx`.
pub(crate) async fn write(
    tx: &mut Tx,
    operation: &'static str,
    run: ReconcileRunId,
    exclusions: &[Exclusion],
) -> Result<u64> {
    tx.insert_all(
        operation,
        "run_exclusions",
        COLUMNS,
        exclusions.len(),
        |i, w| {
            let e = &exclusions[i];
            let (kind, vendor, id) = subject_parts(&e.subject);
            w.value(run);
            w.value(i as i64);
            w.text(e.code.as_str());
            w.text(&enum_text(&e.severity));
            w.text(kind);
            w.opt_text(vendor);
            w.text(id);
            w.opt_text(e.name.as_deref());
            w.opt_text(e.company.as_ref().map(|c| c.id.as_str()));
            w.opt_text(e.company.as_ref().map(|c| c.name.as_str()));
            w.text(&e.source);
            w.text(&e.reason);
            Ok(())
        },
    )
    .await
}

/// A page of `all` (a run's exclusions in run order, positioned by index)
/// as [`Store::run_exclusion_page`] answers from the table.
fn page_in_memory(
    run: ReconcileRunId,
    all: Vec<Exclusion>,
    filter: ExclusionFilter,
) -> ExclusionPage {
    let mut per_code: std::collections::BTreeMap<&'static str, (ExclusionCode, u64)> =
        std::collections::BTreeMap::new();
    for e in &all {
        per_code.entry(e.code.as_str()).or_insert((e.code, 0)).1 += 1;
    }
    let counts: Vec<ExclusionCount> = per_code
        .into_values()
        .map(|(code, count)| ExclusionCount { code, count })
        .collect();
    let total = counts
        .iter()
        .filter(|c| filter.code.is_none_or(|code| code == c.code))
        .map(|c| c.count)
        .sum();
    let limit = filter.limit.clamp(1, MAX_EXCLUSION_PAGE) as usize;
    let after = filter.after.unwrap_or(-1);
    let mut exclusions: Vec<StoredExclusion> = all
        .into_iter()
        .enumerate()
        .map(|(i, exclusion)| StoredExclusion {
            position: i as i64,
            exclusion,
        })
        .filter(|e| e.position > after && filter.code.is_none_or(|c| c == e.exclusion.code))
        .take(limit + 1)
        .collect();
    let next = if exclusions.len() > limit {
        exclusions.truncate(limit);
        exclusions.last().map(|e| e.position)
    } else {
        None
    };
    ExclusionPage {
        run,
        counts,
        total,
        exclusions,
        next,
    }
}

impl Store {
    /// A page of what run `run` left out or noted, with its counts per
    /// reason.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown run; database errors.
    pub async fn run_exclusion_page(
        &self,
        run: ReconcileRunId,
        filter: ExclusionFilter,
    ) -> Result<ExclusionPage> {
        const OP: &str = "read run exclusions";
        // Answers NotFound for an unknown run.
        self.reconcile_run(run).await?;
        let counts = self
            .db
            .fetch_all(
                sql(
                    OP,
                    "run_exclusions",
                    "SELECT code, COUNT(*) AS n FROM run_exclusions WHERE run_id = $1 \
                     GROUP BY code ORDER BY code",
                )
                .bind(run),
            )
            .await?
            .iter()
            .map(|row| {
                let code = row.text("code")?;
                Ok(ExclusionCount {
                    code: ExclusionCode::parse(&code)
                        .ok_or_else(|| corrupt("code", "an exclusion code", code))?,
                    count: u64::try_from(row.int("n")?).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if counts.is_empty() {
            // A run recorded before the run_exclusions table keeps its
            // exclusions in its JSON column: page those in memory (the
            // same order, positions and counts the table would give).
            let legacy = self.legacy_exclusions(run).await?;
            if !legacy.is_empty() {
                return Ok(page_in_memory(run, legacy, filter));
            }
        }
        let total = counts
            .iter()
            .filter(|c| filter.code.is_none_or(|code| code == c.code))
            .map(|c| c.count)
            .sum();
        let limit = filter.limit.clamp(1, MAX_EXCLUSION_PAGE);
        let code = filter.code.map(ExclusionCode::as_str);
        let rows = self
            .db
            .fetch_all(
                sql(
                    OP,
                    "run_exclusions",
                    format!(
                        "{SELECT} WHERE run_id = $1 AND ($2 IS NULL OR code = $2) \
                         AND position > $3 ORDER BY position LIMIT $4"
                    ),
                )
                .bind(run)
                .bind(code)
                .bind(filter.after.unwrap_or(-1))
                .bind(i64::from(limit) + 1),
            )
            .await?;
        let mut exclusions = rows
            .iter()
            .map(exclusion_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next = if exclusions.len() > limit as usize {
            exclusions.truncate(limit as usize);
            exclusions.last().map(|e| e.position)
        } else {
            None
        };
        Ok(ExclusionPage {
            run,
            counts,
            total,
            exclusions,
            next,
        })
    }

    /// What a run left out or noted, all of it, in run order. Runs recorded
    /// before exclusions had their own table keep them in the run's JSON.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn run_exclusions(&self, run: ReconcileRunId) -> Result<Vec<Exclusion>> {
        const OP: &str = "read run exclusions";
        let rows = self
            .db
            .fetch_all(
                sql(
                    OP,
                    "run_exclusions",
                    format!("{SELECT} WHERE run_id = $1 ORDER BY position"),
                )
                .bind(run),
            )
            .await?;
        if !rows.is_empty() {
            return rows
                .iter()
                .map(|r| exclusion_from_row(r).map(|s| s.exclusion))
                .collect();
        }
        self.legacy_exclusions(run).await
    }

    /// The exclusions kept in the run's JSON column (runs recorded before
    /// the run_exclusions table; `[]` for later runs).
    async fn legacy_exclusions(&self, run: ReconcileRunId) -> Result<Vec<Exclusion>> {
        const OP: &str = "read run exclusions";
        let row = self
            .db
            .fetch_optional(
                sql(
                    OP,
                    "reconcile_runs",
                    "SELECT exclusions FROM reconcile_runs WHERE id = $1",
                )
                .bind(run),
            )
            .await?
            .ok_or_else(|| StoreError::not_found(OP, "reconcile run", run))?;
        row.json("exclusions")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::NaiveDate;
    use trueup_core::card::CardTotals;
    use trueup_core::reconcile::{ReconcileOutput, ReconcileStats};

    use super::*;
    use crate::reconcile::NewReconcileRun;
    use crate::testing::fixtures::{at, both};

    fn exclusion(
        subject: Subject,
        code: ExclusionCode,
        company: Option<(&str, &str)>,
    ) -> Exclusion {
        Exclusion {
            reason: format!("{code:?} of {subject:?}"),
            severity: if code == ExclusionCode::CompanyInactive {
                Severity::Noted
            } else {
                Severity::Excluded
            },
            subject,
            code,
            name: company.map(|(_, name)| format!("{name}'s thing")),
            company: company.map(|(id, name)| CompanyRef {
                id: id.into(),
                name: name.into(),
            }),
            source: "ConnectWise".into(),
        }
    }

    /// 2 000 exclusions (written through the bulk path): 1 500 ended
    /// contracts, 499 excluded accounts, one inactive company.
    fn many() -> Vec<Exclusion> {
        let mut out = Vec::new();
        for i in 0..1500 {
            out.push(exclusion(
                Subject::Contract(format!("K{i:04}").into()),
                ExclusionCode::ContractEnded,
                Some(("C1", "Coho Winery")),
            ));
        }
        for i in 0..499 {
            let mut e = exclusion(
                Subject::Account(AccountRef {
                    vendor: "pax8".into(),
                    account: format!("T{i:03}").into(),
                }),
                ExclusionCode::AccountExcluded,
                None,
            );
            e.source = "pax8".into();
            out.push(e);
        }
        out.push(exclusion(
            Subject::Company("C2".into()),
            ExclusionCode::CompanyInactive,
            Some(("C2", "Contoso")),
        ));
        out
    }

    async fn exclusions_are_stored_per_run_counted_filtered_and_paged(store: &Store) {
        let exclusions = many();
        let output = ReconcileOutput {
            as_of: NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
            mapper_version: Arc::from("test"),
            cards: Vec::new(),
            exclusions: exclusions.clone(),
            totals: CardTotals::default(),
            stats: ReconcileStats::default(),
        };
        let record = || NewReconcileRun {
            output: &output,
            rule_checksum: None,
            psa_sync: None,
            started_at: at(2, 0),
            finished_at: at(2, 1),
        };
        let run = store.record_reconcile_run(record()).await.unwrap();
        // A second run's exclusions do not leak into the first's.
        let other = store.record_reconcile_run(record()).await.unwrap();
        assert_ne!(run, other);

        // Everything reads back exactly, in run order.
        assert_eq!(store.run_exclusions(run).await.unwrap(), exclusions);

        let all = ExclusionFilter {
            limit: 700,
            ..ExclusionFilter::default()
        };
        let first = store.run_exclusion_page(run, all).await.unwrap();
        let counts: Vec<(ExclusionCode, u64)> =
            first.counts.iter().map(|c| (c.code, c.count)).collect();
        assert_eq!(
            counts,
            [
                (ExclusionCode::AccountExcluded, 499),
                (ExclusionCode::CompanyInactive, 1),
                (ExclusionCode::ContractEnded, 1500),
            ]
        );
        assert_eq!(first.total, 2000);
        assert_eq!(first.exclusions.len(), 700);
        assert_eq!(first.next, Some(699));
        // Pages walk every exclusion once.
        let mut seen: Vec<Exclusion> = first.exclusions.into_iter().map(|e| e.exclusion).collect();
        let mut after = first.next;
        while let Some(a) = after {
            let page = store
                .run_exclusion_page(
                    run,
                    ExclusionFilter {
                        after: Some(a),
                        ..all
                    },
                )
                .await
                .unwrap();
            seen.extend(page.exclusions.into_iter().map(|e| e.exclusion));
            after = page.next;
        }
        assert_eq!(seen, exclusions);

        // By reason: only that reason, with the company named.
        let inactive = store
            .run_exclusion_page(
                run,
                ExclusionFilter {
                    code: Some(ExclusionCode::CompanyInactive),
                    ..all
                },
            )
            .await
            .unwrap();
        assert_eq!(inactive.total, 1);
        assert_eq!(inactive.counts.len(), 3, "counts ignore the filter");
        assert_eq!(inactive.next, None);
        let e = &inactive.exclusions[0];
        assert_eq!(e.position, 1999);
        assert_eq!(e.exclusion.severity, Severity::Noted);
        assert_eq!(
            e.exclusion.company.as_ref().map(|c| c.name.as_str()),
            Some("Contoso")
        );
        let accounts = store
            .run_exclusion_page(
                run,
                ExclusionFilter {
                    code: Some(ExclusionCode::AccountExcluded),
                    limit: 2,
                    after: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(accounts.total, 499);
        assert_eq!(accounts.exclusions.len(), 2);
        assert_eq!(
            accounts.exclusions[0].exclusion.subject,
            Subject::Account(AccountRef {
                vendor: "pax8".into(),
                account: "T000".into()
            })
        );
        assert_eq!(accounts.exclusions[0].exclusion.source, "pax8");

        // An unknown run is named as such.
        let missing = store
            .run_exclusion_page(ReconcileRunId(other.0 + 100), all)
            .await
            .unwrap_err();
        assert!(matches!(missing, StoreError::NotFound { .. }), "{missing}");
    }

    /// A run recorded before the run_exclusions table (its exclusions only
    /// in the run's JSON column) is served through the same paged answer:
    /// counts per reason, filter by reason, pages.
    async fn a_run_recorded_before_the_table_is_paged_from_its_json(store: &Store) {
        let exclusions = many();
        let output = ReconcileOutput {
            as_of: NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
            mapper_version: Arc::from("test"),
            cards: Vec::new(),
            exclusions: exclusions.clone(),
            totals: CardTotals::default(),
            stats: ReconcileStats::default(),
        };
        let run = store
            .record_reconcile_run(NewReconcileRun {
                output: &output,
                rule_checksum: None,
                psa_sync: None,
                started_at: at(2, 0),
                finished_at: at(2, 1),
            })
            .await
            .unwrap();
        let table_page =
            |filter| async move { store.run_exclusion_page(run, filter).await.unwrap() };
        let filters = [
            ExclusionFilter {
                limit: 700,
                ..ExclusionFilter::default()
            },
            ExclusionFilter {
                limit: 700,
                after: Some(1400),
                ..ExclusionFilter::default()
            },
            ExclusionFilter {
                code: Some(ExclusionCode::AccountExcluded),
                limit: 2,
                after: Some(1500),
            },
            ExclusionFilter {
                code: Some(ExclusionCode::CompanyInactive),
                limit: 10,
                after: None,
            },
        ];
        let mut from_table = Vec::new();
        for f in filters {
            from_table.push(table_page(f).await);
        }
        // A run of the old shape: no rows, its exclusions in the JSON
        // column (runs are append-only: a copy of the run's row, inserted).
        const OP: &str = "record an old-shaped run";
        let mut tx = store.db.begin(OP).await.unwrap();
        let old = tx
            .fetch_one(
                crate::db::sql(
                    OP,
                    "reconcile_runs",
                    "INSERT INTO reconcile_runs (as_of, mapper_version, rule_checksum, psa_sync_run_id, \
                     started_at, finished_at, card_count, totals, stats, exclusions, shared) \
                     SELECT as_of, mapper_version, rule_checksum, psa_sync_run_id, started_at, \
                     finished_at, card_count, totals, stats, $2, shared FROM reconcile_runs \
                     WHERE id = $1 RETURNING id",
                )
                .bind(run)
                .bind(serde_json::to_string(&exclusions).unwrap()),
            )
            .await
            .unwrap()
            .int("id")
            .unwrap();
        tx.commit(OP).await.unwrap();
        let old = ReconcileRunId(old);
        for (f, mut expected) in filters.into_iter().zip(from_table) {
            let page = store.run_exclusion_page(old, f).await.unwrap();
            expected.run = old;
            assert_eq!(page, expected, "{f:?}");
        }
        let run = old;
        assert_eq!(
            store.run_exclusions(run).await.unwrap(),
            exclusions,
            "the whole list reads the column too"
        );
        assert_eq!(
            from_table_first_total(store, run).await,
            2000,
            "the old run counts every exclusion"
        );
    }

    async fn from_table_first_total(store: &Store, run: ReconcileRunId) -> u64 {
        store
            .run_exclusion_page(run, ExclusionFilter::default())
            .await
            .unwrap()
            .total
    }

    both!(
        exclusions_are_stored_per_run_counted_filtered_and_paged,
        a_run_recorded_before_the_table_is_paged_from_its_json,
    );
}
