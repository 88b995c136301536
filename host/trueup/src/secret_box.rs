//! Encryption of secrets at rest.
//!
//! Plugin secrets (API keys, client secrets) are stored encrypted with
//! XChaCha20-Poly1305 under a 256-bit key that never touches the database:
//! it comes from `TRUEUP_SECRET_KEY` (base64) or from a key file
//! (`<data_dir>/secret.key`, created with mode 0600 on first use). Each
//! ciphertext is bound to its owner and name as associated data, so a
//! ciphertext copied onto another plugin's row fails to decrypt instead of
//! handing one plugin another's secret.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// The environment variable holding the base64 key.
pub const KEY_ENV: &str = "TRUEUP_SECRET_KEY";
/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secret.key";
/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// Nonce length in bytes (XChaCha20: random nonces are safe).
pub const NONCE_LEN: usize = 24;

/// Why secrets cannot be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    /// The key is malformed.
    #[error("{source_name}: the secret key must be {KEY_LEN} bytes, base64-encoded ({problem})")]
    BadKey {
        /// Where it came from.
        source_name: String,
        /// What is wrong.
        problem: String,
    },
    /// The key file could not be read or created.
    #[error("{path}: {problem}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        problem: String,
    },
    /// Decryption failed: wrong key, tampered data, or a value moved to
    /// another owner or name.
    #[error(
        "the stored secret {name:?} of {owner} cannot be decrypted with this key (was the key changed, or the row edited?); set the secret again"
    )]
    Open {
        /// Owner (plugin id).
        owner: String,
        /// Secret name.
        name: String,
    },
}

/// The key, held only in memory and wiped on drop.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([key redacted])")
    }
}

/// A sealed value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The random nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext with its tag.
    pub ciphertext: Vec<u8>,
}

fn associated_data(owner: &str, name: &str) -> Vec<u8> {
    format!("trueup-secret\u{0}{owner}\u{0}{name}").into_bytes()
}

impl SecretBox {
    /// A box for raw key bytes.
    ///
    /// # Errors
    /// [`SecretBoxError::BadKey`] for a key of the wrong length.
    pub fn from_key(key: &[u8], source_name: &str) -> Result<Self, SecretBoxError> {
        if key.len() != KEY_LEN {
            return Err(SecretBoxError::BadKey {
                source_name: source_name.to_owned(),
                problem: format!("got {} bytes", key.len()),
            });
        }
        Ok(Self {
            cipher: XChaCha20Poly1305::new_from_slice(key).map_err(|e| SecretBoxError::BadKey {
                source_name: source_name.to_owned(),
                problem: e.to_string(),
            })?,
        })
    }

    /// The key from `TRUEUP_SECRET_KEY`, else from `<data_dir>/secret.key`,
    /// creating that file (mode 0600) with a fresh random key when missing.
    ///
    /// # Errors
    /// A malformed key or an unusable key file.
    pub fn load(data_dir: &Path) -> Result<Self, SecretBoxError> {
        Self::load_from(data_dir, std::env::var(KEY_ENV).ok())
    }

    /// [`SecretBox::load`] with the environment variable's value given.
    ///
    /// # Errors
    /// A malformed key or an unusable key file.
    pub fn load_from(data_dir: &Path, env_key: Option<String>) -> Result<Self, SecretBoxError> {
        if let Some(encoded) = env_key {
            let key = Zeroizing::new(decode_key(&encoded, KEY_ENV)?);
            return Self::from_key(&key, KEY_ENV);
        }
        let path = data_dir.join(KEY_FILE);
        let file_error = |problem: String| SecretBoxError::KeyFile {
            path: path.clone(),
            problem,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = Zeroizing::new(decode_key(&text, &path.display().to_string())?);
                Self::from_key(&key, &path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(|e| file_error(e.to_string()))?;
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key));
                write_private(&path, encoded.as_bytes()).map_err(|e| file_error(e.to_string()))?;
                tracing::info!(path = %path.display(), "created a new secret key; back it up with the database");
                Self::from_key(&key, &path.display().to_string())
            }
            Err(e) => Err(file_error(e.to_string())),
        }
    }

    /// Encrypts `plaintext` for `owner`'s secret `name`.
    pub fn seal(&self, owner: &str, name: &str, plaintext: &[u8]) -> Sealed {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(owner, name);
        // Encryption with a valid key and in-memory buffers cannot fail.
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Decrypts `owner`'s secret `name`.
    ///
    /// # Errors
    /// [`SecretBoxError::Open`] when the key is wrong or the data was
    /// tampered with or moved.
    pub fn open(
        &self,
        owner: &str,
        name: &str,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, SecretBoxError> {
        let fail = || SecretBoxError::Open {
            owner: owner.to_owned(),
            name: name.to_owned(),
        };
        if sealed.nonce.len() != NONCE_LEN {
            return Err(fail());
        }
        let nonce = XNonce::from_slice(&sealed.nonce);
        let aad = associated_data(owner, name);
        self.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| fail())
    }
}

fn decode_key(encoded: &str, source_name: &str) -> Result<Vec<u8>, SecretBoxError> {
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| SecretBoxError::BadKey {
            source_name: source_name.to_owned(),
            problem: e.to_string(),
        })
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_box() -> SecretBox {
        SecretBox::from_key(&[7u8; KEY_LEN], "test").expect("key")
    }

    #[test]
    fn sealed_values_open_for_their_owner_and_name_only() {
        let sb = test_box();
        let sealed = sb.seal("trueup.connectwise", "private_key", b"hunter22");
        assert_ne!(sealed.ciphertext, b"hunter22".to_vec());
        let opened = sb
            .open("trueup.connectwise", "private_key", &sealed)
            .expect("opens");
        assert_eq!(opened.as_slice(), b"hunter22");
        assert!(sb.open("trueup.autotask", "private_key", &sealed).is_err());
        assert!(
            sb.open("trueup.connectwise", "public_key", &sealed)
                .is_err()
        );
    }

    #[test]
    fn a_tampered_or_foreign_key_fails() {
        let sb = test_box();
        let mut sealed = sb.seal("p", "n", b"value");
        let other = SecretBox::from_key(&[8u8; KEY_LEN], "other").expect("key");
        assert!(other.open("p", "n", &sealed).is_err());
        sealed.ciphertext[0] ^= 1;
        assert!(sb.open("p", "n", &sealed).is_err());
    }

    #[test]
    fn nonces_differ_between_seals() {
        let sb = test_box();
        assert_ne!(sb.seal("p", "n", b"v").nonce, sb.seal("p", "n", b"v").nonce);
    }

    #[test]
    fn a_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = SecretBox::load_from(dir.path(), None).expect("created");
        let sealed = first.seal("p", "n", b"v");
        let second = SecretBox::load_from(dir.path(), None).expect("reused");
        assert_eq!(
            second.open("p", "n", &sealed).expect("same key").as_slice(),
            b"v"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_environment_key_wins_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let encoded = base64::engine::general_purpose::STANDARD.encode([9u8; KEY_LEN]);
        let from_env = SecretBox::load_from(dir.path(), Some(encoded)).expect("env key");
        let sealed = from_env.seal("p", "n", b"v");
        let direct = SecretBox::from_key(&[9u8; KEY_LEN], "direct").expect("key");
        assert_eq!(
            direct.open("p", "n", &sealed).expect("same key").as_slice(),
            b"v"
        );
        assert!(
            !dir.path().join(KEY_FILE).exists(),
            "no key file when the env key is set"
        );
    }

    #[test]
    fn malformed_keys_are_refused_with_their_source() {
        let error = SecretBox::from_key(&[1u8; 16], "TRUEUP_SECRET_KEY").expect_err("short");
        assert_eq!(
            error.to_string(),
            "TRUEUP_SECRET_KEY: the secret key must be 32 bytes, base64-encoded (got 16 bytes)"
        );
    }
}
