//! Plugin secrets, sealed by the application (`trueup::secret_box`) before
//! they reach the store: the store holds only nonces and ciphertexts.

use chrono::{DateTime, Utc};

use crate::Store;
use crate::db::sql;
use crate::error::{Result, StoreError};

/// A sealed secret as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// The plugin the secret belongs to.
    pub owner: String,
    /// The secret's name in the plugin's manifest.
    pub name: String,
    /// The random nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
    /// Last set at.
    pub updated_at: DateTime<Utc>,
    /// Last set by.
    pub updated_by: String,
}

/// A secret's name and metadata, without its value (for listings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// The plugin.
    pub owner: String,
    /// The name.
    pub name: String,
    /// Last set at.
    pub updated_at: DateTime<Utc>,
    /// Last set by.
    pub updated_by: String,
}

impl Store {
    /// Sets (creates or replaces) a sealed secret. Idempotent.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty nonce or ciphertext (the value
    /// was not sealed); database errors.
    pub async fn put_secret(
        &self,
        owner: &str,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "store plugin secret";
        if nonce.is_empty() || ciphertext.is_empty() {
            return Err(StoreError::invalid(
                OP,
                "a secret must be sealed (nonce and ciphertext) before it is stored",
            ));
        }
        self.db
            .execute(
                sql(
                    OP,
                    "plugin_secrets",
                    "INSERT INTO plugin_secrets (owner, name, nonce, ciphertext, updated_at, updated_by) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (owner, name) DO UPDATE SET \
                     nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(owner)
                .bind(name)
                .bind(nonce.to_vec())
                .bind(ciphertext.to_vec())
                .bind(at)
                .bind(by),
            )
            .await?;
        Ok(())
    }

    /// A sealed secret.
    ///
    /// # Errors
    /// A database error.
    pub async fn secret(&self, owner: &str, name: &str) -> Result<Option<StoredSecret>> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read plugin secret",
                    "plugin_secrets",
                    "SELECT owner, name, nonce, ciphertext, updated_at, updated_by FROM plugin_secrets \
                     WHERE owner = $1 AND name = $2",
                )
                .bind(owner)
                .bind(name),
            )
            .await?;
        row.map(|r| {
            Ok(StoredSecret {
                owner: r.text("owner")?,
                name: r.text("name")?,
                nonce: r.bytes("nonce")?,
                ciphertext: r.bytes("ciphertext")?,
                updated_at: r.instant("updated_at")?,
                updated_by: r.text("updated_by")?,
            })
        })
        .transpose()
    }

    /// The secrets of `owner` (or all), without values, sorted.
    ///
    /// # Errors
    /// A database error.
    pub async fn secret_names(&self, owner: Option<&str>) -> Result<Vec<SecretInfo>> {
        let rows = self
            .db
            .fetch_all(
                sql(
                    "list plugin secrets",
                    "plugin_secrets",
                    "SELECT owner, name, updated_at, updated_by FROM plugin_secrets \
                     WHERE ($1 IS NULL OR owner = $1) ORDER BY owner, name",
                )
                .bind(owner),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretInfo {
                    owner: r.text("owner")?,
                    name: r.text("name")?,
                    updated_at: r.instant("updated_at")?,
                    updated_by: r.text("updated_by")?,
                })
            })
            .collect()
    }

    /// Deletes a secret; whether it existed. Idempotent.
    ///
    /// # Errors
    /// A database error.
    pub async fn delete_secret(&self, owner: &str, name: &str) -> Result<bool> {
        let n = self
            .db
            .execute(
                sql(
                    "delete plugin secret",
                    "plugin_secrets",
                    "DELETE FROM plugin_secrets WHERE owner = $1 AND name = $2",
                )
                .bind(owner)
                .bind(name),
            )
            .await?;
        Ok(n > 0)
    }
}
