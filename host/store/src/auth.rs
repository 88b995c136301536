//! Users, sessions and API tokens.
//!
//! Passwords arrive already hashed (argon2 is the application's job).
//! Session ids and API tokens arrive in clear and are stored only as their
//! SHA-256 ([`crate::sha256_hex`]): they are long random strings, so the
//! hash cannot be reversed, and a leaked database holds no usable session
//! or token.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::db::{Row, enum_text, id_type, sql};
use crate::error::{Result, StoreError};
use crate::{Store, sha256_hex};

id_type!(
    /// A user's id.
    UserId
);
id_type!(
    /// An API token's id.
    ApiTokenId
);

/// What a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including settings, users and secrets.
    Admin,
    /// Decide on cards.
    Approver,
    /// Read only.
    Viewer,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Unique login name.
    pub username: String,
    /// The argon2 hash (PHC string).
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Disabled users cannot log in; their sessions stop working.
    pub disabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A live session and its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The user.
    pub user: User,
    /// The session's CSRF token.
    pub csrf_token: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Ends.
    pub expires_at: DateTime<Utc>,
    /// Last request (before this lookup).
    pub last_seen_at: DateTime<Utc>,
}

/// An API token (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Its id.
    pub id: ApiTokenId,
    /// A name for people.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Created by.
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked tokens do not authenticate.
    pub revoked_at: Option<DateTime<Utc>>,
}

const USER_COLUMNS: &str =
    "u.id, u.username, u.password_hash, u.role, u.disabled, u.created_at, u.updated_at";

fn user_from_row(r: &Row) -> Result<User> {
    Ok(User {
        id: UserId(r.int("id")?),
        username: r.text("username")?,
        password_hash: r.text("password_hash")?,
        role: r.enum_value("role", "admin, approver or viewer")?,
        disabled: r.bool("disabled")?,
        created_at: r.instant("created_at")?,
        updated_at: r.instant("updated_at")?,
    })
}

fn token_from_row(r: &Row) -> Result<ApiToken> {
    Ok(ApiToken {
        id: ApiTokenId(r.int("id")?),
        name: r.text("name")?,
        role: r.enum_value("role", "admin, approver or viewer")?,
        created_by: r.text("created_by")?,
        created_at: r.instant("created_at")?,
        last_used_at: r.opt_instant("last_used_at")?,
        revoked_at: r.opt_instant("revoked_at")?,
    })
}

/// Counts the enabled admins ($1 = the admin role, $2 = false).
const ENABLED_ADMINS: &str = "SELECT COUNT(*) AS n FROM users WHERE role = $1 AND disabled = $2";

/// Why a change to a user was refused: it would leave no enabled admin.
pub const LAST_ADMIN: &str =
    "this is the last enabled admin: make another user an admin first, then change this one";

/// Whether `error` is [`Store::update_user`] refusing to remove the last
/// enabled admin.
pub fn is_last_admin(error: &StoreError) -> bool {
    matches!(error, StoreError::Invalid { problem, .. } if problem == LAST_ADMIN)
}

impl Store {
    /// Creates a user.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] when the username is taken;
    /// [`StoreError::Invalid`] for an empty username or password hash.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        at: DateTime<Utc>,
    ) -> Result<UserId> {
        const OP: &str = "create user";
        if username.trim().is_empty() || password_hash.is_empty() {
            return Err(StoreError::invalid(
                OP,
                "a user needs a username and a password hash",
            ));
        }
        let row = self
            .db
            .fetch_one(
                sql(
                    OP,
                    "users",
                    "INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
                )
                .bind(username)
                .bind(password_hash)
                .bind(enum_text(&role))
                .bind(false)
                .bind(at),
            )
            .await
            .map_err(|e| e.duplicate_as("username", username))?;
        Ok(UserId(row.int("id")?))
    }

    /// A user by name.
    ///
    /// # Errors
    /// A database error.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "read user",
                    "users",
                    format!("SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1"),
                )
                .bind(username),
            )
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every user, by name.
    ///
    /// # Errors
    /// A database error.
    pub async fn users(&self) -> Result<Vec<User>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list users",
                "users",
                format!("SELECT {USER_COLUMNS} FROM users u ORDER BY u.username"),
            ))
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Changes a user's password hash, role or disabled flag (`None` keeps
    /// it). Disabling a user also ends their sessions (one transaction).
    /// A change that would leave no enabled admin is refused: nobody could
    /// manage users, settings or secrets any more.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown user; [`StoreError::Invalid`]
    /// when it would remove the last enabled admin ([`is_last_admin`]).
    pub async fn update_user(
        &self,
        id: UserId,
        password_hash: Option<&str>,
        role: Option<Role>,
        disabled: Option<bool>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "update user";
        let admin = enum_text(&Role::Admin);
        let may_remove_admin = role.is_some_and(|r| r != Role::Admin) || disabled == Some(true);
        let mut tx = self.db.begin(OP).await?;
        if may_remove_admin {
            // Touching every admin row first takes their row locks
            // (PostgreSQL) or the write lock (SQLite), so two admins
            // demoting each other at once are serialized and the second
            // sees the first's change in its count below.
            tx.execute(
                sql(
                    OP,
                    "users",
                    "UPDATE users SET updated_at = updated_at WHERE role = $1",
                )
                .bind(admin.clone()),
            )
            .await?;
        }
        // Only a change that takes the last enabled admin away is refused:
        // a store with no enabled admin (users made by tokens only) may
        // still change its users.
        let enabled_admins_before = if may_remove_admin {
            tx.fetch_one(
                sql(OP, "users", ENABLED_ADMINS)
                    .bind(admin.clone())
                    .bind(false),
            )
            .await?
            .int("n")?
        } else {
            0
        };
        let n = tx
            .execute(
                sql(
                    OP,
                    "users",
                    "UPDATE users SET password_hash = COALESCE($2, password_hash), \
                     role = COALESCE($3, role), disabled = COALESCE($4, disabled), updated_at = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(password_hash)
                .bind(role.map(|r| enum_text(&r)))
                .bind(crate::db::Value::Bool(disabled))
                .bind(at),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::not_found(OP, "user", id));
        }
        if may_remove_admin {
            let left = tx
                .fetch_one(sql(OP, "users", ENABLED_ADMINS).bind(admin).bind(false))
                .await?
                .int("n")?;
            if left == 0 && enabled_admins_before > 0 {
                // Dropping the transaction rolls the change back.
                return Err(StoreError::invalid(OP, LAST_ADMIN));
            }
        }
        if disabled == Some(true) || password_hash.is_some() {
            tx.execute(sql(OP, "sessions", "DELETE FROM sessions WHERE user_id = $1").bind(id))
                .await?;
        }
        tx.commit(OP).await
    }

    /// Starts a session for `user`; the session id is stored hashed.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the session id is already in use;
    /// [`StoreError::MissingReference`] for an unknown user.
    pub async fn create_session(
        &self,
        session_id: &str,
        user: UserId,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.db
            .execute(
                sql(
                    "create session",
                    "sessions",
                    "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at) \
                     VALUES ($1, $2, $3, $4, $5, $4)",
                )
                .bind(sha256_hex(session_id))
                .bind(user)
                .bind(csrf_token)
                .bind(at)
                .bind(expires_at),
            )
            .await
            .map_err(|e| e.duplicate_as("session id", "(redacted)"))?;
        Ok(())
    }

    /// The live session with this id at `now` (not expired, user not
    /// disabled), recording `now` as last seen.
    ///
    /// # Errors
    /// A database error.
    pub async fn session(&self, session_id: &str, now: DateTime<Utc>) -> Result<Option<Session>> {
        const OP: &str = "read session";
        let hash = sha256_hex(session_id);
        let row = self
            .db
            .fetch_optional(
                sql(
                    OP,
                    "sessions",
                    format!(
                        "SELECT {USER_COLUMNS}, s.csrf_token, s.created_at AS session_created_at, s.expires_at, \
                         s.last_seen_at FROM sessions s JOIN users u ON u.id = s.user_id \
                         WHERE s.id_hash = $1 AND s.expires_at > $2 AND NOT u.disabled"
                    ),
                )
                .bind(hash.as_str())
                .bind(now),
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        self.db
            .execute(
                sql(
                    OP,
                    "sessions",
                    "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1",
                )
                .bind(hash)
                .bind(now),
            )
            .await?;
        Ok(Some(Session {
            user: user_from_row(&row)?,
            csrf_token: row.text("csrf_token")?,
            created_at: row.instant("session_created_at")?,
            expires_at: row.instant("expires_at")?,
            last_seen_at: row.instant("last_seen_at")?,
        }))
    }

    /// Ends a session (log out); whether it existed. Idempotent.
    ///
    /// # Errors
    /// A database error.
    pub async fn delete_session(&self, session_id: &str) -> Result<bool> {
        let n = self
            .db
            .execute(
                sql(
                    "delete session",
                    "sessions",
                    "DELETE FROM sessions WHERE id_hash = $1",
                )
                .bind(sha256_hex(session_id)),
            )
            .await?;
        Ok(n > 0)
    }

    /// Deletes sessions expired at `now`; how many.
    ///
    /// # Errors
    /// A database error.
    pub async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        self.db
            .execute(
                sql(
                    "delete expired sessions",
                    "sessions",
                    "DELETE FROM sessions WHERE expires_at <= $1",
                )
                .bind(now),
            )
            .await
    }

    /// Creates an API token; `token` is stored hashed.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the token value is already in use.
    pub async fn create_api_token(
        &self,
        name: &str,
        token: &str,
        role: Role,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiTokenId> {
        let row = self
            .db
            .fetch_one(
                sql(
                    "create API token",
                    "api_tokens",
                    "INSERT INTO api_tokens (name, token_hash, role, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(name)
                .bind(sha256_hex(token))
                .bind(enum_text(&role))
                .bind(by)
                .bind(at),
            )
            .await
            .map_err(|e| e.duplicate_as("API token", "(redacted)"))?;
        Ok(ApiTokenId(row.int("id")?))
    }

    /// The unrevoked token with this value, recording `now` as last used.
    ///
    /// # Errors
    /// A database error.
    pub async fn authenticate_api_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiToken>> {
        let row = self
            .db
            .fetch_optional(
                sql(
                    "authenticate API token",
                    "api_tokens",
                    "UPDATE api_tokens SET last_used_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL \
                     RETURNING id, name, role, created_by, created_at, last_used_at, revoked_at",
                )
                .bind(sha256_hex(token))
                .bind(now),
            )
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Every API token (never values), oldest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = self
            .db
            .fetch_all(sql(
                "list API tokens",
                "api_tokens",
                "SELECT id, name, role, created_by, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id",
            ))
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token. Idempotent (the first revocation time is kept).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown token.
    pub async fn revoke_api_token(&self, id: ApiTokenId, at: DateTime<Utc>) -> Result<()> {
        const OP: &str = "revoke API token";
        let n = self
            .db
            .execute(
                sql(
                    OP,
                    "api_tokens",
                    "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                )
                .bind(id)
                .bind(at),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::not_found(OP, "API token", id));
        }
        Ok(())
    }
}
