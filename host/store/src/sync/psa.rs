//! The PSA's current state: replaced whole by each successful PSA sync
//! (and its lines appended to the ledger), read in one snapshot.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::model::{
    AccountRef, BillingCycle, CatalogItem, Company, CompanyId, Contract, ContractId, ServiceLine,
};

use super::runs::{RUN_COLUMNS, SyncKind, SyncRun, SyncStats, check_unique, run_from_row};
use crate::Store;
use crate::db::{Row, enum_text, json_text, sql};
use crate::error::Result;
use crate::ids::SyncRunId;

/// Everything a PSA sync read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaData {
    /// Companies.
    pub companies: Vec<Company>,
    /// Contracts.
    pub contracts: Vec<Contract>,
    /// Recurring service lines.
    pub lines: Vec<ServiceLine>,
    /// Catalogue prices (may be empty).
    pub catalog: Vec<CatalogItem>,
}

/// The PSA's current state and the sync that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaState {
    /// The successful sync the data comes from; `None` before the first.
    pub sync: Option<SyncRun>,
    /// The data, sorted by id.
    pub data: PsaData,
}

impl Store {
    /// Completes a running PSA sync: in ONE transaction, replaces the
    /// current companies, contracts, lines and catalogue with `data`
    /// (what vanished is deleted), appends every line's figures to the
    /// ledger, and marks the run succeeded.
    ///
    /// If anything fails (bad data, a database error), nothing of it is
    /// kept: the previous state and its sync time stay current, and the run
    /// is marked failed with the error (best effort) before the error is
    /// returned.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for duplicate ids or a run that is not a
    /// running PSA sync (or is older than a sync that already succeeded);
    /// database errors.
    pub async fn complete_psa_sync(
        &self,
        run: SyncRunId,
        data: &PsaData,
        stats: &SyncStats,
        finished_at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "record PSA sync";
        let result = self.write_psa_sync(OP, run, data, stats, finished_at).await;
        if let Err(error) = &result {
            self.fail_after_error(run, error, stats, finished_at).await;
        }
        result
    }

    async fn write_psa_sync(
        &self,
        operation: &'static str,
        run: SyncRunId,
        data: &PsaData,
        stats: &SyncStats,
        finished_at: DateTime<Utc>,
    ) -> Result<()> {
        check_unique(
            operation,
            "company",
            data.companies.iter().map(|c| c.id.as_str()),
        )?;
        check_unique(
            operation,
            "contract",
            data.contracts.iter().map(|c| c.id.as_str()),
        )?;
        check_unique(
            operation,
            "service line",
            data.lines.iter().map(|l| l.id.as_str()),
        )?;
        check_unique(
            operation,
            "catalogue product",
            data.catalog.iter().map(|c| c.product_identifier.as_str()),
        )?;
        let mut tx = self.db.begin(operation).await?;
        let (_, as_of) =
            Self::claim_run_for_completion(&mut tx, operation, run, SyncKind::Psa).await?;
        for table in ["psa_lines", "psa_contracts", "psa_companies", "psa_catalog"] {
            tx.execute(sql(operation, table, format!("DELETE FROM {table}")))
                .await?;
        }
        let items: Vec<_> = data.companies.iter().collect();
        tx.insert_all(
            operation,
            "psa_companies",
            &[
                "id",
                "name",
                "identifier",
                "domains",
                "status",
                "account_links",
                "sync_run_id",
            ],
            items.len(),
            |i, w| {
                let c = items[i];

                w.text(c.id.as_str());
                w.text(c.name.as_str());
                w.value(c.identifier.clone());
                w.value(json_text(operation, &c.domains)?);
                w.value(enum_text(&c.status));
                w.value(json_text(operation, &c.account_links)?);
                w.value(run);
                Ok(())
            },
        )
        .await?;
        let items: Vec<_> = data.contracts.iter().collect();
        tx.insert_all(
            operation,
            "psa_contracts",
            &[
                "id",
                "company_id",
                "name",
                "contract_type",
                "status",
                "billing_cycle",
                "start_date",
                "end_date",
                "timing",
                "prorate",
                "posted_through",
                "cycle_anchor",
                "sync_run_id",
            ],
            items.len(),
            |i, w| {
                let c = items[i];

                w.text(c.id.as_str());
                w.text(c.company_id.as_str());
                w.text(c.name.as_str());
                w.text(c.contract_type.as_str());
                w.value(enum_text(&c.status));
                w.value(json_text(operation, &c.billing_cycle)?);
                w.value(c.start_date);
                w.value(c.end_date);
                w.value(enum_text(&c.timing));
                w.value(c.prorate);
                w.value(c.posted_through);
                w.value(
                    c.cycle_anchor
                        .as_ref()
                        .map(|a| json_text(operation, a))
                        .transpose()?,
                );
                w.value(run);
                Ok(())
            },
        )
        .await?;
        let items: Vec<_> = data.lines.iter().collect();
        tx.insert_all(
            operation,
            "psa_lines",
            &[
                "id",
                "contract_id",
                "product_id",
                "product_identifier",
                "description",
                "quantity",
                "unit_price",
                "unit_cost",
                "effective_date",
                "cancelled_date",
                "billable",
                "sync_run_id",
            ],
            items.len(),
            |i, w| {
                let l = items[i];

                w.text(l.id.as_str());
                w.text(l.contract_id.as_str());
                w.text(l.product_id.as_str());
                w.text(l.product_identifier.as_str());
                w.text(l.description.as_str());
                w.decimal(l.quantity);
                w.decimal(l.unit_price);
                w.decimal(l.unit_cost);
                w.value(l.effective_date);
                w.value(l.cancelled_date);
                w.value(l.billable);
                w.value(run);
                Ok(())
            },
        )
        .await?;
        let items: Vec<_> = data.catalog.iter().collect();
        tx.insert_all(
            operation,
            "psa_catalog",
            &[
                "product_identifier",
                "description",
                "unit_price",
                "unit_cost",
                "sync_run_id",
            ],
            items.len(),
            |i, w| {
                let c = items[i];

                w.text(c.product_identifier.as_str());
                w.text(c.description.as_str());
                w.decimal(c.unit_price);
                w.decimal(c.unit_cost);
                w.value(run);
                Ok(())
            },
        )
        .await?;
        let company_of: HashMap<&str, &CompanyId> = data
            .contracts
            .iter()
            .map(|c| (c.id.as_str(), &c.company_id))
            .collect();
        let items: Vec<_> = data.lines.iter().collect();
        tx.insert_all(
            operation,
            "ledger_psa_lines",
            &[
                "sync_run_id",
                "as_of",
                "line_id",
                "contract_id",
                "company_id",
                "product_identifier",
                "quantity",
                "unit_price",
                "unit_cost",
            ],
            items.len(),
            |i, w| {
                let l = items[i];

                w.value(run);
                w.value(as_of);
                w.text(l.id.as_str());
                w.text(l.contract_id.as_str());
                w.value(company_of.get(l.contract_id.as_str()).map(|c| c.as_str()));
                w.text(l.product_identifier.as_str());
                w.decimal(l.quantity);
                w.decimal(l.unit_price);
                w.decimal(l.unit_cost);
                Ok(())
            },
        )
        .await?;
        Self::mark_succeeded(&mut tx, operation, run, stats, finished_at).await?;
        tx.commit(operation).await
    }

    /// The PSA's current state (sorted by id) and the successful sync that
    /// wrote it. Read in one transaction, so it is never half of one sync
    /// and half of another.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn psa_state(&self) -> Result<PsaState> {
        const OP: &str = "read PSA state";
        let mut tx = self.db.begin_read(OP).await?;
        let sync = tx
            .fetch_optional(sql(
                OP,
                "sync_runs",
                format!(
                    "SELECT {RUN_COLUMNS} FROM sync_runs WHERE kind = 'psa' AND status = 'succeeded' \
                     ORDER BY id DESC LIMIT 1"
                ),
            ))
            .await?
            .as_ref()
            .map(run_from_row)
            .transpose()?;
        let companies = tx
            .fetch_all(sql(
                OP,
                "psa_companies",
                "SELECT id, name, identifier, domains, status, account_links FROM psa_companies ORDER BY id",
            ))
            .await?
            .iter()
            .map(company_from_row)
            .collect::<Result<Vec<_>>>()?;
        let contracts = tx
            .fetch_all(sql(
                OP,
                "psa_contracts",
                "SELECT id, company_id, name, contract_type, status, billing_cycle, start_date, end_date, \
                 timing, prorate, posted_through, cycle_anchor FROM psa_contracts ORDER BY id",
            ))
            .await?
            .iter()
            .map(|r| {
                Ok(Contract {
                    id: ContractId::from(r.text("id")?),
                    company_id: r.text("company_id")?.into(),
                    name: r.text("name")?,
                    contract_type: r.text("contract_type")?,
                    status: r.enum_value("status", "a contract status")?,
                    billing_cycle: r.json::<BillingCycle>("billing_cycle")?,
                    start_date: r.opt_date("start_date")?,
                    end_date: r.opt_date("end_date")?,
                    timing: r.enum_value("timing", "advance or arrears")?,
                    prorate: r.bool("prorate")?,
                    posted_through: r.opt_date("posted_through")?,
                    cycle_anchor: r.opt_json("cycle_anchor")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lines = tx
            .fetch_all(sql(
                OP,
                "psa_lines",
                "SELECT id, contract_id, product_id, product_identifier, description, quantity, unit_price, \
                 unit_cost, effective_date, cancelled_date, billable FROM psa_lines ORDER BY id",
            ))
            .await?
            .iter()
            .map(line_from_row)
            .collect::<Result<Vec<_>>>()?;
        let catalog = tx
            .fetch_all(sql(
                OP,
                "psa_catalog",
                "SELECT product_identifier, description, unit_price, unit_cost FROM psa_catalog \
                 ORDER BY product_identifier",
            ))
            .await?
            .iter()
            .map(|r| {
                Ok(CatalogItem {
                    product_identifier: r.text("product_identifier")?.into(),
                    description: r.text("description")?,
                    unit_price: r.decimal("unit_price")?,
                    unit_cost: r.decimal("unit_cost")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit(OP).await?;
        Ok(PsaState {
            sync,
            data: PsaData {
                companies,
                contracts,
                lines,
                catalog,
            },
        })
    }

    /// The PSA's current companies, by id, without its contracts and lines
    /// (what the push API's listings need to name and map accounts; a
    /// fraction of [`Store::psa_state`]'s cost).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn psa_companies(&self) -> Result<Vec<Company>> {
        let rows = self
            .db
            .fetch_all(sql(
                "read PSA companies",
                "psa_companies",
                "SELECT id, name, identifier, domains, status, account_links FROM psa_companies ORDER BY id",
            ))
            .await?;
        rows.iter().map(company_from_row).collect()
    }
}

fn company_from_row(r: &Row) -> Result<Company> {
    Ok(Company {
        id: r.text("id")?.into(),
        name: r.text("name")?,
        identifier: r.opt_text("identifier")?,
        domains: r.json("domains")?,
        status: r.enum_value("status", "active or inactive")?,
        account_links: r.json::<Vec<AccountRef>>("account_links")?,
    })
}

fn line_from_row(r: &Row) -> Result<ServiceLine> {
    Ok(ServiceLine {
        id: r.text("id")?.into(),
        contract_id: r.text("contract_id")?.into(),
        product_id: r.text("product_id")?,
        product_identifier: r.text("product_identifier")?.into(),
        description: r.text("description")?,
        quantity: r.decimal("quantity")?,
        unit_price: r.decimal("unit_price")?,
        unit_cost: r.decimal("unit_cost")?,
        effective_date: r.opt_date("effective_date")?,
        cancelled_date: r.opt_date("cancelled_date")?,
        billable: r.bool("billable")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures::{at, both};

    async fn psa_companies_are_those_of_the_psa_state(store: &Store) {
        use crate::sync::{PsaData, SyncKind, SyncStats};
        use trueup_core::model::CompanyStatus;
        assert!(store.psa_companies().await.unwrap().is_empty());
        let company = Company {
            id: "c1".into(),
            name: "Contoso".into(),
            identifier: Some("CONTOSO".into()),
            domains: vec!["contoso.com".into()],
            status: CompanyStatus::Active,
            account_links: vec![AccountRef {
                vendor: "acme".into(),
                account: "a1".into(),
            }],
        };
        let run = store
            .begin_sync(SyncKind::Psa, "test.psa", at(2, 0).date_naive(), at(2, 0))
            .await
            .unwrap();
        let data = PsaData {
            companies: vec![company.clone()],
            ..PsaData::default()
        };
        store
            .complete_psa_sync(run, &data, &SyncStats::default(), at(2, 1))
            .await
            .unwrap();
        assert_eq!(
            store.psa_companies().await.unwrap(),
            std::slice::from_ref(&company)
        );
        assert_eq!(store.psa_state().await.unwrap().data.companies, [company]);
    }

    both!(psa_companies_are_those_of_the_psa_state,);
}
