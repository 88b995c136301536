//! Notes on cards, kept by card key across runs, oldest first.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trueup_core::card::CardKey;

use crate::Store;
use crate::db::sql;
use crate::error::{Result, StoreError};

/// A note on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardNote {
    /// Its id.
    pub id: i64,
    /// The card.
    pub card_key: CardKey,
    /// Who wrote it.
    pub written_by: String,
    /// When.
    pub written_at: DateTime<Utc>,
    /// What.
    pub text: String,
}

impl Store {
    /// Appends a note to a card (1 to `MAX_NOTE_CHARS` characters, as the
    /// core requires); its id.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty or too long note; database
    /// errors.
    pub async fn add_card_note(
        &self,
        key: &CardKey,
        by: &str,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        const OP: &str = "add card note";
        let chars = text.trim().chars().count();
        if chars == 0 || chars > trueup_core::actions::MAX_NOTE_CHARS {
            return Err(StoreError::invalid(
                OP,
                format!(
                    "a note must be 1 to {} characters",
                    trueup_core::actions::MAX_NOTE_CHARS
                ),
            ));
        }
        let row = self
            .db
            .fetch_one(
                sql(
                    OP,
                    "card_notes",
                    "INSERT INTO card_notes (key, written_by, written_at, text) VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(key.as_str())
                .bind(by)
                .bind(at)
                .bind(text),
            )
            .await?;
        row.int("id")
    }

    /// The notes of a card, oldest first.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn card_notes(&self, key: &CardKey) -> Result<Vec<CardNote>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "read card notes",
                    "card_notes",
                    "SELECT id, key, written_by, written_at, text FROM card_notes WHERE key = $1 ORDER BY id",
                )
                .bind(key.as_str()),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CardNote {
                    id: r.int("id")?,
                    card_key: *key,
                    written_by: r.text("written_by")?,
                    written_at: r.instant("written_at")?,
                    text: r.text("text")?,
                })
            })
            .collect()
    }
}
