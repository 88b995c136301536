//! Account mappings (manual overrides and exclusions, and the decisions of
//! the last automatic match) and the built-in mapper's SKU table.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::mapping::SkuMapEntry;
use trueup_core::matching::MatchOutcome;
use trueup_core::model::{
    AccountId, AccountMapping, AccountMappingStatus, CompanyId, MappingMethod, VendorId,
};

use crate::Store;
use crate::db::{Row, json_text, sql};
use crate::error::{Result, StoreError};

/// A person's decision about a vendor account; it wins over matching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingOverride {
    /// The vendor.
    pub vendor: VendorId,
    /// The account.
    pub account: AccountId,
    /// `Some(company)`: bill the account's usage to it; `None`: exclude
    /// the account.
    pub company: Option<CompanyId>,
    /// Why, for the audit trail.
    pub reason: String,
    /// Who.
    pub set_by: String,
    /// When.
    pub set_at: DateTime<Utc>,
}

impl MappingOverride {
    /// The override as the core's mapping (method `Manual`).
    pub fn to_mapping(&self) -> AccountMapping {
        AccountMapping {
            vendor: self.vendor.clone(),
            account: self.account.clone(),
            status: match &self.company {
                Some(c) => AccountMappingStatus::Mapped(c.clone()),
                None => AccountMappingStatus::Excluded,
            },
            method: MappingMethod::Manual {
                by: self.set_by.clone(),
            },
            reason: self.reason.clone(),
        }
    }
}

/// A SKU table entry with who changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSkuEntry {
    /// The entry.
    pub entry: SkuMapEntry,
    /// Last changed by.
    pub updated_by: String,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

fn override_from_row(r: &Row) -> Result<MappingOverride> {
    Ok(MappingOverride {
        vendor: r.text("vendor_id")?.into(),
        account: r.text("account_id")?.into(),
        company: r.opt_text("company_id")?.map(Into::into),
        reason: r.text("reason")?,
        set_by: r.text("set_by")?,
        set_at: r.instant("set_at")?,
    })
}

fn status_columns(status: &AccountMappingStatus) -> (&'static str, Option<&str>) {
    match status {
        AccountMappingStatus::Mapped(c) => ("mapped", Some(c.as_str())),
        AccountMappingStatus::Unmapped => ("unmapped", None),
        AccountMappingStatus::Excluded => ("excluded", None),
    }
}

impl Store {
    /// Sets (creates or replaces) a manual mapping or exclusion.
    /// Idempotent.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty reason; database errors.
    pub async fn set_mapping_override(&self, o: &MappingOverride) -> Result<()> {
        const OP: &str = "set mapping override";
        if o.reason.trim().is_empty() {
            return Err(StoreError::invalid(
                OP,
                "a manual mapping needs a reason for the audit trail",
            ));
        }
        let (status, company) = match &o.company {
            Some(c) => ("mapped", Some(c.as_str())),
            None => ("excluded", None),
        };
        self.db
            .execute(
                sql(
                    OP,
                    "account_mapping_overrides",
                    "INSERT INTO account_mapping_overrides (vendor_id, account_id, status, company_id, reason, set_by, set_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (vendor_id, account_id) DO UPDATE SET \
                     status = excluded.status, company_id = excluded.company_id, reason = excluded.reason, \
                     set_by = excluded.set_by, set_at = excluded.set_at",
                )
                .bind(o.vendor.as_str())
                .bind(o.account.as_str())
                .bind(status)
                .bind(company)
                .bind(o.reason.as_str())
                .bind(o.set_by.as_str())
                .bind(o.set_at),
            )
            .await?;
        Ok(())
    }

    /// Removes a manual mapping (matching decides again); whether it
    /// existed. Idempotent.
    ///
    /// # Errors
    /// A database error.
    pub async fn clear_mapping_override(
        &self,
        vendor: &VendorId,
        account: &AccountId,
    ) -> Result<bool> {
        let n = self
            .db
            .execute(
                sql(
                    "clear mapping override",
                    "account_mapping_overrides",
                    "DELETE FROM account_mapping_overrides WHERE vendor_id = $1 AND account_id = $2",
                )
                .bind(vendor.as_str())
                .bind(account.as_str()),
            )
            .await?;
        Ok(n > 0)
    }

    /// Every manual mapping and exclusion, by vendor and account.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn mapping_overrides(&self) -> Result<Vec<MappingOverride>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list mapping overrides",
                "account_mapping_overrides",
                "SELECT vendor_id, account_id, company_id, reason, set_by, set_at FROM account_mapping_overrides \
                 ORDER BY vendor_id, account_id",
            ))
            .await?;
        rows.iter().map(override_from_row).collect()
    }

    /// Replaces the decisions of the last automatic match with `outcomes`
    /// (mappings and their suggestions) in ONE transaction.
    ///
    /// # Errors
    /// A database error (the previous decisions stay then).
    pub async fn replace_match_results(
        &self,
        outcomes: &[MatchOutcome],
        at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "replace match results";
        let mut tx = self.db.begin(OP).await?;
        tx.execute(sql(OP, "account_mappings", "DELETE FROM account_mappings"))
            .await?;
        let items: Vec<_> = outcomes.iter().collect();
        tx.insert_all(
            OP,
            "account_mappings",
            &[
                "vendor_id",
                "account_id",
                "status",
                "company_id",
                "method",
                "reason",
                "suggestions",
                "decided_at",
            ],
            items.len(),
            |i, w| {
                let o = items[i];
                let m = &o.mapping;
                let (status, company) = status_columns(&m.status);
                w.text(m.vendor.as_str());
                w.text(m.account.as_str());
                w.value(status);
                w.value(company);
                w.value(json_text(OP, &m.method)?);
                w.text(m.reason.as_str());
                w.value(json_text(OP, &o.suggestions)?);
                w.value(at);
                Ok(())
            },
        )
        .await?;
        tx.commit(OP).await
    }

    /// The decisions of the last automatic match, by vendor and account.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn match_results(&self) -> Result<Vec<MatchOutcome>> {
        let rows = self
            .db
            .fetch_all(sql(
                "read match results",
                "account_mappings",
                "SELECT vendor_id, account_id, status, company_id, method, reason, suggestions FROM account_mappings \
                 ORDER BY vendor_id, account_id",
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let status = match (r.text("status")?.as_str(), r.opt_text("company_id")?) {
                    ("mapped", Some(c)) => AccountMappingStatus::Mapped(c.into()),
                    ("excluded", _) => AccountMappingStatus::Excluded,
                    _ => AccountMappingStatus::Unmapped,
                };
                Ok(MatchOutcome {
                    mapping: AccountMapping {
                        vendor: r.text("vendor_id")?.into(),
                        account: r.text("account_id")?.into(),
                        status,
                        method: r.json("method")?,
                        reason: r.text("reason")?,
                    },
                    suggestions: r.json("suggestions")?,
                })
            })
            .collect()
    }

    /// The mappings a reconcile uses: every manual override, then every
    /// match decision for accounts without one, by vendor and account.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn effective_mappings(&self) -> Result<Vec<AccountMapping>> {
        let overrides = self.mapping_overrides().await?;
        let manual: std::collections::HashSet<(String, String)> = overrides
            .iter()
            .map(|o| (o.vendor.to_string(), o.account.to_string()))
            .collect();
        let mut out: Vec<AccountMapping> =
            overrides.iter().map(MappingOverride::to_mapping).collect();
        out.extend(
            self.match_results()
                .await?
                .into_iter()
                .map(|o| o.mapping)
                .filter(|m| !manual.contains(&(m.vendor.to_string(), m.account.to_string()))),
        );
        out.sort_by(|a, b| (&a.vendor, &a.account).cmp(&(&b.vendor, &b.account)));
        Ok(out)
    }

    /// How `account` of `vendor` is mapped now: the manual mapping or
    /// exclusion if a person set one, else the last automatic match's
    /// decision, else `None` (never decided).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn account_mapping(
        &self,
        vendor: &VendorId,
        account: &AccountId,
    ) -> Result<Option<AccountMapping>> {
        const OP: &str = "read account mapping";
        let manual = self
            .db
            .fetch_optional(
                sql(
                    OP,
                    "account_mapping_overrides",
                    "SELECT company_id, reason, set_by FROM account_mapping_overrides \
                     WHERE vendor_id = $1 AND account_id = $2",
                )
                .bind(vendor.as_str())
                .bind(account.as_str()),
            )
            .await?;
        if let Some(r) = manual {
            return Ok(Some(AccountMapping {
                vendor: vendor.clone(),
                account: account.clone(),
                status: match r.opt_text("company_id")? {
                    Some(c) => AccountMappingStatus::Mapped(c.into()),
                    None => AccountMappingStatus::Excluded,
                },
                method: MappingMethod::Manual {
                    by: r.text("set_by")?,
                },
                reason: r.text("reason")?,
            }));
        }
        let matched = self
            .db
            .fetch_optional(
                sql(
                    OP,
                    "account_mappings",
                    "SELECT status, company_id, method, reason FROM account_mappings \
                     WHERE vendor_id = $1 AND account_id = $2",
                )
                .bind(vendor.as_str())
                .bind(account.as_str()),
            )
            .await?;
        matched
            .map(|r| {
                let status = match (r.text("status")?.as_str(), r.opt_text("company_id")?) {
                    ("mapped", Some(c)) => AccountMappingStatus::Mapped(c.into()),
                    ("excluded", _) => AccountMappingStatus::Excluded,
                    _ => AccountMappingStatus::Unmapped,
                };
                Ok(AccountMapping {
                    vendor: vendor.clone(),
                    account: account.clone(),
                    status,
                    method: r.json("method")?,
                    reason: r.text("reason")?,
                })
            })
            .transpose()
    }

    /// Sets (creates or replaces) a SKU table entry. Idempotent.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an entry [`SkuMapEntry::check`] refuses.
    pub async fn put_sku_entry(
        &self,
        entry: &SkuMapEntry,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "save SKU entry";
        entry
            .check()
            .map_err(|problem| StoreError::invalid(OP, problem))?;
        self.db
            .execute(
                sql(
                    OP,
                    "sku_map",
                    "INSERT INTO sku_map (vendor_id, sku_id, product_id, multiplier, updated_by, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (vendor_id, sku_id, product_id) DO UPDATE SET \
                     multiplier = excluded.multiplier, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                )
                .bind(entry.vendor.as_str())
                .bind(entry.sku.as_str())
                .bind(entry.product.as_str())
                .bind(entry.multiplier)
                .bind(by)
                .bind(at),
            )
            .await?;
        Ok(())
    }

    /// Whether the PSA, as last synced, knows `product` (in its catalogue
    /// or on a line); `None` when no PSA data has been synced at all, so
    /// nothing can be checked yet.
    ///
    /// # Errors
    /// A database error.
    pub async fn psa_product_known(&self, product: &str) -> Result<Option<bool>> {
        let row = self
            .db
            .fetch_one(
                sql(
                    "check a PSA product",
                    "psa_catalog",
                    "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM psa_catalog WHERE product_identifier = $1) \
                     OR EXISTS (SELECT 1 FROM psa_lines WHERE product_identifier = $1) THEN 1 ELSE 0 END AS BIGINT) AS known, \
                     CAST(CASE WHEN EXISTS (SELECT 1 FROM psa_catalog) OR EXISTS (SELECT 1 FROM psa_lines) \
                     THEN 1 ELSE 0 END AS BIGINT) AS synced",
                )
                .bind(product),
            )
            .await?;
        Ok((row.int("synced")? == 1).then_some(row.int("known")? == 1))
    }

    /// Removes a SKU table entry; whether it existed.
    ///
    /// # Errors
    /// A database error.
    pub async fn delete_sku_entry(
        &self,
        vendor: &VendorId,
        sku: &str,
        product: &str,
    ) -> Result<bool> {
        let n = self
            .db
            .execute(
                sql(
                    "delete SKU entry",
                    "sku_map",
                    "DELETE FROM sku_map WHERE vendor_id = $1 AND sku_id = $2 AND product_id = $3",
                )
                .bind(vendor.as_str())
                .bind(sku)
                .bind(product),
            )
            .await?;
        Ok(n > 0)
    }

    /// The SKU table, by vendor, SKU and product.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn sku_entries(&self) -> Result<Vec<StoredSkuEntry>> {
        let rows = self
            .db
            .fetch_all(sql(
                "read SKU table",
                "sku_map",
                "SELECT vendor_id, sku_id, product_id, multiplier, updated_by, updated_at FROM sku_map \
                 ORDER BY vendor_id, sku_id, product_id",
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredSkuEntry {
                    entry: SkuMapEntry {
                        vendor: r.text("vendor_id")?.into(),
                        sku: r.text("sku_id")?.into(),
                        product: r.text("product_id")?.into(),
                        multiplier: r.decimal("multiplier")?,
                    },
                    updated_by: r.text("updated_by")?,
                    updated_at: r.instant("updated_at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures::{at, both};

    async fn a_manual_mapping_wins_over_the_last_match(store: &Store) {
        let (vendor_id, account): (VendorId, AccountId) = ("acme".into(), "a1".into());
        assert_eq!(
            store.account_mapping(&vendor_id, &account).await.unwrap(),
            None
        );
        let matched = AccountMapping {
            vendor: vendor_id.clone(),
            account: account.clone(),
            status: AccountMappingStatus::Mapped("c1".into()),
            method: MappingMethod::ExactName,
            reason: "same name".into(),
        };
        store
            .replace_match_results(
                &[trueup_core::matching::MatchOutcome {
                    mapping: matched.clone(),
                    suggestions: Vec::new(),
                }],
                at(2, 0),
            )
            .await
            .unwrap();
        assert_eq!(
            store.account_mapping(&vendor_id, &account).await.unwrap(),
            Some(matched)
        );
        store
            .set_mapping_override(&MappingOverride {
                vendor: vendor_id.clone(),
                account: account.clone(),
                company: None,
                reason: "internal tenant".into(),
                set_by: "admin".into(),
                set_at: at(3, 0),
            })
            .await
            .unwrap();
        let manual = store
            .account_mapping(&vendor_id, &account)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(manual.status, AccountMappingStatus::Excluded);
        assert_eq!(manual.method, MappingMethod::Manual { by: "admin".into() });
    }

    both!(a_manual_mapping_wins_over_the_last_match,);
}
