//! The audit log: append-only (a database trigger refuses updates and
//! deletes) record of who did what to what.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::db::{Row, Tx, json_text, sql};
use crate::error::Result;

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who (a username, `token:NAME`, `worker:ID`, `system`).
    pub actor: String,
    /// What, dotted (`card.approve`, `rules.activate`).
    pub action: String,
    /// To what (`card:KEY`, `user:NAME`, `plugin:ID`).
    pub subject: String,
    /// Anything else, as JSON (never secrets).
    pub details: serde_json::Value,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its id (ascending in append order).
    pub id: i64,
    /// The entry.
    #[serde(flatten)]
    pub entry: NewAuditEntry,
}

/// Which entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this subject.
    pub subject: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only entries with an id below this (paging backwards).
    pub before_id: Option<i64>,
}

pub(crate) async fn append_audit(
    tx: &mut Tx,
    operation: &'static str,
    entry: &NewAuditEntry,
) -> Result<i64> {
    let row = tx
        .fetch_one(
            sql(
                operation,
                "audit_log",
                "INSERT INTO audit_log (at, actor, action, subject, details) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(entry.at)
            .bind(entry.actor.as_str())
            .bind(entry.action.as_str())
            .bind(entry.subject.as_str())
            .bind(json_text(operation, &entry.details)?),
        )
        .await?;
    row.int("id")
}

fn entry_from_row(r: &Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.int("id")?,
        entry: NewAuditEntry {
            at: r.instant("at")?,
            actor: r.text("actor")?,
            action: r.text("action")?,
            subject: r.text("subject")?,
            details: r.json("details")?,
        },
    })
}

impl Store {
    /// Appends an entry; its id.
    ///
    /// # Errors
    /// A database error.
    pub async fn audit(&self, entry: &NewAuditEntry) -> Result<i64> {
        const OP: &str = "append audit entry";
        let mut tx = self.db.begin(OP).await?;
        let id = append_audit(&mut tx, OP, entry).await?;
        tx.commit(OP).await?;
        Ok(id)
    }

    /// Entries matching `filter`, newest first, at most `limit`.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn audit_entries(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "list audit entries",
                    "audit_log",
                    "SELECT id, at, actor, action, subject, details FROM audit_log \
                     WHERE ($1 IS NULL OR subject = $1) AND ($2 IS NULL OR actor = $2) \
                     AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
                )
                .bind(filter.subject.as_deref())
                .bind(filter.actor.as_deref())
                .bind(filter.before_id)
                .bind(i64::from(limit)),
            )
            .await?;
        rows.iter().map(entry_from_row).collect()
    }
}
