//! Push integrations: API keys (stored hashed) allowed to push one
//! vendor's usage, their rate limits, and a push of many rows at once.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::model::{UsageObservation, VendorId};

use crate::db::{Row, sql};
use crate::error::{Result, StoreError};
use crate::ids::PushIntegrationId;
use crate::usage::{PushOutcome, append_observations, new_batch, set_pushed};
use crate::{Store, sha256_hex};

/// A push integration: an API key allowed to push one vendor's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushIntegration {
    /// Its id.
    pub id: PushIntegrationId,
    /// The vendor integration it pushes for.
    pub vendor: VendorId,
    /// A name for people.
    pub name: String,
    /// Requests allowed per minute.
    pub requests_per_minute: u32,
    /// Requests allowed in a burst.
    pub burst: u32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Revoked keys do not authenticate.
    pub revoked_at: Option<DateTime<Utc>>,
}

fn push_from_row(r: &Row) -> Result<PushIntegration> {
    Ok(PushIntegration {
        id: PushIntegrationId(r.int("id")?),
        vendor: r.text("vendor_id")?.into(),
        name: r.text("name")?,
        requests_per_minute: u32::try_from(r.int("requests_per_minute")?).unwrap_or(u32::MAX),
        burst: u32::try_from(r.int("burst")?).unwrap_or(u32::MAX),
        created_at: r.instant("created_at")?,
        revoked_at: r.opt_instant("revoked_at")?,
    })
}

const PUSH_COLUMNS: &str =
    "id, vendor_id, name, requests_per_minute, burst, created_at, revoked_at";

impl Store {
    /// Creates a push integration for a registered vendor; `api_key` is
    /// stored hashed.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the key is in use;
    /// [`StoreError::MissingReference`] for an unregistered vendor;
    /// [`StoreError::Invalid`] for zero rate limits.
    pub async fn create_push_integration(
        &self,
        vendor: &VendorId,
        name: &str,
        api_key: &str,
        requests_per_minute: u32,
        burst: u32,
        at: DateTime<Utc>,
    ) -> Result<PushIntegrationId> {
        const OP: &str = "create push integration";
        if requests_per_minute == 0 || burst == 0 {
            return Err(StoreError::invalid(
                OP,
                "rate limits must allow at least one request",
            ));
        }
        let row = self
            .db
            .fetch_one(
                sql(
                    OP,
                    "push_integrations",
                    "INSERT INTO push_integrations (vendor_id, name, key_hash, requests_per_minute, burst, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(vendor.as_str())
                .bind(name)
                .bind(sha256_hex(api_key))
                .bind(i64::from(requests_per_minute))
                .bind(i64::from(burst))
                .bind(at),
            )
            .await
            .map_err(|e| e.duplicate_as("push API key", "(redacted)"))?;
        Ok(PushIntegrationId(row.int("id")?))
    }

    /// The unrevoked push integration whose key is `api_key`.
    ///
    /// # Errors
    /// A database error.
    pub async fn push_integration_by_key(&self, api_key: &str) -> Result<Option<PushIntegration>> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "authenticate push key",
                    "push_integrations",
                    format!(
                        "SELECT {PUSH_COLUMNS} FROM push_integrations WHERE key_hash = $1 AND revoked_at IS NULL"
                    ),
                )
                .bind(sha256_hex(api_key)),
            )
            .await?;
        row.as_ref().map(push_from_row).transpose()
    }

    /// Every push integration, oldest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn push_integrations(&self) -> Result<Vec<PushIntegration>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list push integrations",
                "push_integrations",
                format!("SELECT {PUSH_COLUMNS} FROM push_integrations ORDER BY id"),
            ))
            .await?;
        rows.iter().map(push_from_row).collect()
    }

    /// Changes a push integration's rate limits.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Invalid`] for zero limits.
    pub async fn set_push_rate_limits(
        &self,
        id: PushIntegrationId,
        requests_per_minute: u32,
        burst: u32,
    ) -> Result<()> {
        const OP: &str = "set push rate limits";
        if requests_per_minute == 0 || burst == 0 {
            return Err(StoreError::invalid(
                OP,
                "rate limits must allow at least one request",
            ));
        }
        let n = self
            .db
            .execute(
                sql(
                    OP,
                    "push_integrations",
                    "UPDATE push_integrations SET requests_per_minute = $2, burst = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(i64::from(requests_per_minute))
                .bind(i64::from(burst)),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::not_found(OP, "push integration", id));
        }
        Ok(())
    }

    /// Revokes a push integration's key. Idempotent.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub async fn revoke_push_integration(
        &self,
        id: PushIntegrationId,
        at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "revoke push integration";
        let n = self
            .db
            .execute(
                sql(
                    OP,
                    "push_integrations",
                    "UPDATE push_integrations SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                )
                .bind(id)
                .bind(at),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::not_found(OP, "push integration", id));
        }
        Ok(())
    }

    /// Sets the pushed unit counts of several (account, SKU, UTC day)s of
    /// one push integration's vendor, ALL OR NOTHING: one transaction, and
    /// the rows that changed are appended to the usage ledger as one batch
    /// of the integration. Each row is an idempotent set with the
    /// semantics of [`Store::push_usage`]; the outcome of each row is
    /// returned in order.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown push integration;
    /// [`StoreError::Invalid`] when it is revoked, when a row belongs to
    /// another vendor than the integration's, or when two rows set the
    /// same account, SKU and day; database errors. Nothing is written then.
    pub async fn push_usage_all(
        &self,
        push_integration: PushIntegrationId,
        usage: &[UsageObservation],
        at: DateTime<Utc>,
    ) -> Result<Vec<PushOutcome>> {
        const OP: &str = "record pushed usage";
        let mut seen = HashSet::with_capacity(usage.len());
        for u in usage {
            let day = u.observed_at.date_naive();
            if !seen.insert((u.account.as_str(), u.sku_id.as_str(), day)) {
                return Err(StoreError::invalid(
                    OP,
                    format!(
                        "account {} and SKU {} on {day} are set twice in one push; send each once",
                        u.account, u.sku_id
                    ),
                ));
            }
        }
        let mut tx = self.db.begin(OP).await?;
        let integration = tx
            .fetch_optional(
                sql(
                    OP,
                    "push_integrations",
                    "SELECT vendor_id, revoked_at FROM push_integrations WHERE id = $1",
                )
                .bind(push_integration),
            )
            .await?
            .ok_or_else(|| StoreError::not_found(OP, "push integration", push_integration))?;
        if integration.opt_instant("revoked_at")?.is_some() {
            return Err(StoreError::invalid(
                OP,
                format!("push integration {push_integration} is revoked; its key cannot push"),
            ));
        }
        let vendor = VendorId::from(integration.text("vendor_id")?);
        if let Some(u) = usage.iter().find(|u| u.vendor != vendor) {
            return Err(StoreError::invalid(
                OP,
                format!(
                    "push integration {push_integration} pushes for vendor {vendor}, not for vendor {}",
                    u.vendor
                ),
            ));
        }
        let mut outcomes = Vec::with_capacity(usage.len());
        let mut changed = Vec::new();
        for u in usage {
            let outcome = set_pushed(&mut tx, OP, Some(push_integration), u, at).await?;
            if outcome == PushOutcome::Set {
                changed.push(u.clone());
            }
            outcomes.push(outcome);
        }
        if !changed.is_empty() {
            let batch = new_batch(
                &mut tx,
                OP,
                &vendor,
                "push",
                None,
                None,
                Some(push_integration),
                at,
            )
            .await?;
            append_observations(&mut tx, OP, batch, &changed).await?;
        }
        tx.commit(OP).await?;
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;
    use trueup_core::model::UsageSource;

    use super::*;
    use crate::testing::fixtures::{at, both, row, stored_usage, vendor};

    async fn pushes_are_all_or_nothing_sets(store: &Store) {
        vendor(store, "acme", UsageSource::Push).await;
        vendor(store, "other", UsageSource::Push).await;
        let key = store
            .create_push_integration(&"acme".into(), "acme key", "k-acme", 60, 10, at(1, 0))
            .await
            .unwrap();
        let rows = [
            row("acme", "a1", "backup", dec!(12), 20),
            row("acme", "a2", "backup", dec!(3.5), 20),
        ];
        let outcomes = store.push_usage_all(key, &rows, at(20, 9)).await.unwrap();
        assert_eq!(outcomes, [PushOutcome::Set, PushOutcome::Set]);
        // The same set again changes nothing; one changed row of two is set.
        let again = store.push_usage_all(key, &rows, at(20, 10)).await.unwrap();
        assert_eq!(again, [PushOutcome::Unchanged, PushOutcome::Unchanged]);
        let changed = [
            row("acme", "a1", "backup", dec!(12.0), 20),
            row("acme", "a2", "backup", dec!(4), 20),
        ];
        let outcomes = store
            .push_usage_all(key, &changed, at(20, 11))
            .await
            .unwrap();
        assert_eq!(outcomes, [PushOutcome::Unchanged, PushOutcome::Set]);
        let usage = stored_usage(store).await;
        let mut counts: Vec<_> = usage
            .iter()
            .map(|u| (u.account.to_string(), u.quantity))
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            [("a1".to_owned(), dec!(12)), ("a2".to_owned(), dec!(4))]
        );

        // A bad row refuses the whole request: nothing of it is written.
        let mixed = [
            row("acme", "a1", "backup", dec!(99), 20),
            row("other", "a9", "backup", dec!(1), 20),
        ];
        let error = store
            .push_usage_all(key, &mixed, at(20, 12))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("not for vendor other"),
            "{error}"
        );
        let twice = [
            row("acme", "a1", "backup", dec!(99), 20),
            row("acme", "a1", "backup", dec!(98), 20),
        ];
        let error = store
            .push_usage_all(key, &twice, at(20, 12))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("set twice"), "{error}");
        assert_eq!(stored_usage(store).await, usage);

        // A revoked key pushes nothing, even if it authenticated earlier.
        store.revoke_push_integration(key, at(21, 0)).await.unwrap();
        let error = store
            .push_usage_all(key, &[row("acme", "a1", "backup", dec!(1), 21)], at(21, 1))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("revoked"), "{error}");
        assert_eq!(stored_usage(store).await, usage);
    }

    both!(pushes_are_all_or_nothing_sets,);
}
