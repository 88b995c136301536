//! Rule versions: immutable (keyed by the SHA-256 of their source) and
//! activated by appending to an activation log; the active version is the
//! latest activation, so at most one is active at any time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::db::{Row, json_text, sql};
use crate::error::{Result, StoreError};
use crate::{Store, sha256_hex};

/// A stored rule version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleVersion {
    /// SHA-256 of `source`, hex: its identity.
    pub checksum: String,
    /// The Rhai source.
    pub source: String,
    /// Who saved it.
    pub author: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// The rule engine's validation report.
    pub validation: serde_json::Value,
}

/// A rule version with its activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveRuleVersion {
    /// The version.
    pub version: RuleVersion,
    /// When it was activated.
    pub activated_at: DateTime<Utc>,
    /// By whom.
    pub activated_by: String,
}

/// How saving a version went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedRule {
    /// A new version was stored.
    Created,
    /// The same source was stored before; nothing changed.
    Existing,
}

fn version_from_row(r: &Row) -> Result<RuleVersion> {
    Ok(RuleVersion {
        checksum: r.text("checksum")?,
        source: r.text("source")?,
        author: r.text("author")?,
        created_at: r.instant("created_at")?,
        validation: r.json("validation")?,
    })
}

impl Store {
    /// Stores a rule version: its checksum is the SHA-256 of `source`.
    /// Idempotent: saving the same source again keeps the first version
    /// (author, time, report) and returns [`SavedRule::Existing`].
    ///
    /// # Errors
    /// A database error.
    pub async fn save_rule_version(
        &self,
        source: &str,
        author: &str,
        validation: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<(String, SavedRule)> {
        const OP: &str = "save rule version";
        let checksum = sha256_hex(source);
        let n = self
            .db
            .execute(
                sql(
                    OP,
                    "rule_versions",
                    "INSERT INTO rule_versions (checksum, source, author, created_at, validation) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (checksum) DO NOTHING",
                )
                .bind(checksum.as_str())
                .bind(source)
                .bind(author)
                .bind(at)
                .bind(json_text(OP, validation)?),
            )
            .await?;
        let saved = if n == 1 {
            SavedRule::Created
        } else {
            SavedRule::Existing
        };
        Ok((checksum, saved))
    }

    /// One rule version.
    ///
    /// # Errors
    /// A database error.
    pub async fn rule_version(&self, checksum: &str) -> Result<Option<RuleVersion>> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read rule version",
                    "rule_versions",
                    "SELECT checksum, source, author, created_at, validation FROM rule_versions WHERE checksum = $1",
                )
                .bind(checksum),
            )
            .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// Every rule version, newest first (without activation state).
    ///
    /// # Errors
    /// A database error.
    pub async fn rule_versions(&self) -> Result<Vec<RuleVersion>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list rule versions",
                "rule_versions",
                "SELECT checksum, source, author, created_at, validation FROM rule_versions \
                 ORDER BY created_at DESC, checksum",
            ))
            .await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Makes `checksum` the active version (one atomic append to the
    /// activation log; the previous active version is no longer active).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown checksum.
    pub async fn activate_rule_version(
        &self,
        checksum: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "activate rule version";
        self.db
            .execute(
                sql(
                    OP,
                    "rule_activations",
                    "INSERT INTO rule_activations (checksum, activated_at, activated_by) VALUES ($1, $2, $3)",
                )
                .bind(checksum)
                .bind(at)
                .bind(by),
            )
            .await
            .map_err(|e| match e {
                StoreError::MissingReference { .. } => StoreError::not_found(OP, "rule version", checksum),
                other => other,
            })?;
        Ok(())
    }

    /// The active rule version, if any was ever activated.
    ///
    /// # Errors
    /// A database error.
    pub async fn active_rule_version(&self) -> Result<Option<ActiveRuleVersion>> {
        let row = self
            .db
            .fetch_optional(sql(
                "read active rule version",
                "rule_activations",
                "SELECT v.checksum, v.source, v.author, v.created_at, v.validation, a.activated_at, a.activated_by \
                 FROM rule_activations a JOIN rule_versions v ON v.checksum = a.checksum \
                 ORDER BY a.id DESC LIMIT 1",
            ))
            .await?;
        row.map(|r| {
            Ok(ActiveRuleVersion {
                version: version_from_row(&r)?,
                activated_at: r.instant("activated_at")?,
                activated_by: r.text("activated_by")?,
            })
        })
        .transpose()
    }
}
