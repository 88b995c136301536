//! Authentication primitives: argon2 password hashes, random tokens, and
//! the hashes tokens are stored as.
//!
//! Session ids and API tokens are 256-bit random values shown to the client
//! once; the store keeps only their SHA-256, so a database leak does not
//! leak live sessions or tokens. Passwords are argon2id (the crate's
//! defaults: m=19 MiB, t=2, p=1, OWASP's recommended minimum).

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Random bytes in a session id, CSRF token or API token.
pub const TOKEN_BYTES: usize = 32;
/// Prefix of API tokens, so they are recognisable in logs and secret scanners.
pub const API_TOKEN_PREFIX: &str = "tu_";

/// What a user may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also approve, adjust, dismiss, snooze, tag and note cards.
    Approver,
    /// Also manage integrations, secrets, rules, mappings, users and syncs.
    Admin,
}

impl Role {
    /// Whether this role includes everything `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Role::Viewer),
            "approver" => Some(Role::Approver),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A password or hash problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Too short.
    #[error("passwords must be at least {MIN_PASSWORD_LEN} characters")]
    WeakPassword,
    /// The stored hash is not a PHC string.
    #[error("the stored password hash is malformed; reset the password")]
    BadHash,
}

/// An argon2id hash of `password` in PHC format.
///
/// # Errors
/// [`AuthError::WeakPassword`] for a short password.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::WeakPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| AuthError::BadHash)
}

/// Whether `password` matches the stored `hash` (constant-time compare).
///
/// # Errors
/// [`AuthError::BadHash`] when `hash` is not a PHC string.
pub fn verify_password(password: &str, hash: &str) -> Result<bool, AuthError> {
    let parsed = PasswordHash::new(hash).map_err(|_| AuthError::BadHash)?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// A fresh random token, base64url without padding.
pub fn random_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh API token (shown once), with its recognisable prefix.
pub fn new_api_token() -> String {
    format!("{API_TOKEN_PREFIX}{}", random_token())
}

/// What a session id or token is stored as.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality for CSRF tokens.
pub fn tokens_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash).expect("verify"));
        assert!(!verify_password("correct horse batterY", &hash).expect("verify"));
        assert_eq!(verify_password("x", "not a hash"), Err(AuthError::BadHash));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert_eq!(hash_password("hunter2"), Err(AuthError::WeakPassword));
    }

    #[test]
    fn tokens_are_random_and_hashed_for_storage() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(new_api_token().starts_with(API_TOKEN_PREFIX));
        assert_eq!(token_hash("abc").len(), 64);
        assert_ne!(token_hash(&a), a);
        assert!(tokens_equal(&a, &a.clone()));
        assert!(!tokens_equal(&a, &b));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.allows(Role::Approver));
        assert!(Role::Approver.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Approver));
        assert_eq!(Role::parse("approver"), Some(Role::Approver));
        assert_eq!(Role::parse("root"), None);
    }
}
