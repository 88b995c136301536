//! Tags on cards, kept by card key across runs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use trueup_core::actions::normalize_tag;
use trueup_core::card::CardKey;

use crate::Store;
use crate::db::{Value, placeholders, sql};
use crate::error::{Result, StoreError};

impl Store {
    /// Adds `tag` (trimmed, lower-cased, validated as the core does) to
    /// every card in `keys`, in one transaction. Idempotent: a card that has
    /// the tag keeps it (and its original author).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad tag; database errors.
    pub async fn tag_cards(
        &self,
        keys: &[CardKey],
        tag: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "tag cards";
        let tag = normalize_tag(tag).map_err(|e| StoreError::invalid(OP, e.to_string()))?;
        let mut tx = self.db.begin(OP).await?;
        for key in keys {
            tx.execute(
                sql(
                    OP,
                    "card_tags",
                    "INSERT INTO card_tags (key, tag, added_by, added_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (key, tag) DO NOTHING",
                )
                .bind(key.as_str())
                .bind(tag.as_str())
                .bind(by)
                .bind(at),
            )
            .await?;
        }
        tx.commit(OP).await
    }

    /// Removes `tag` from every card in `keys`, in one transaction.
    /// Idempotent.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad tag; database errors.
    pub async fn untag_cards(&self, keys: &[CardKey], tag: &str) -> Result<()> {
        const OP: &str = "untag cards";
        let tag = normalize_tag(tag).map_err(|e| StoreError::invalid(OP, e.to_string()))?;
        let mut tx = self.db.begin(OP).await?;
        for chunk in keys.chunks(500) {
            tx.execute(
                sql(
                    OP,
                    "card_tags",
                    format!(
                        "DELETE FROM card_tags WHERE tag = $1 AND key IN ({})",
                        placeholders(2, chunk.len())
                    ),
                )
                .bind(tag.as_str())
                .bind_all(chunk.iter().map(|k| Value::from(k.as_str()))),
            )
            .await?;
        }
        tx.commit(OP).await
    }

    /// The tags of a card, sorted.
    ///
    /// # Errors
    /// A database error.
    pub async fn card_tags(&self, key: &CardKey) -> Result<Vec<String>> {
        Ok(self
            .tags_of(&[key.as_str()])
            .await?
            .remove(key.as_str())
            .unwrap_or_default())
    }

    /// Every tag in use, sorted, with how many cards carry it.
    ///
    /// # Errors
    /// A database error.
    pub async fn all_tags(&self) -> Result<Vec<(String, u64)>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list tags",
                "card_tags",
                "SELECT tag, COUNT(*) AS n FROM card_tags GROUP BY tag ORDER BY tag",
            ))
            .await?;
        rows.iter()
            .map(|r| Ok((r.text("tag")?, u64::try_from(r.int("n")?).unwrap_or(0))))
            .collect()
    }

    /// Tags of `keys`, sorted per key.
    pub(crate) async fn tags_of(&self, keys: &[&str]) -> Result<HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in keys.chunks(500) {
            let rows = self
                .db
                .fetch_all(
                    sql(
                        "read card tags",
                        "card_tags",
                        format!(
                            "SELECT key, tag FROM card_tags WHERE key IN ({}) ORDER BY key, tag",
                            placeholders(1, chunk.len())
                        ),
                    )
                    .bind_all(chunk.iter().map(|k| Value::from(*k))),
                )
                .await?;
            for row in rows {
                out.entry(row.text("key")?)
                    .or_default()
                    .push(row.text("tag")?);
            }
        }
        Ok(out)
    }
}
