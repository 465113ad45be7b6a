//! The admin password as an argon2id hash: made once, checked in constant time.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be 8 to 256 characters")]
    Length,
    #[error("the stored password hash is not a valid argon2 hash")]
    BadHash,
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// An argon2id hash (PHC string) of `password`, with the crate's recommended cost
/// (19 MiB, 2 passes): a fraction of a second on a Pi, a slow crawl for a guesser.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let n = password.chars().count();
    if !(8..=256).contains(&n) {
        return Err(PasswordError::Length);
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches `hash`.
pub fn verify_password(password: &str, hash: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(hash).map_err(|_| PasswordError::BadHash)?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// Whether `hash` is a PHC string we can verify against (for a hand-edited INI).
pub fn is_valid_hash(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(is_valid_hash(&h));
        assert!(verify_password("correct horse", &h).unwrap());
        assert!(!verify_password("correct horsE", &h).unwrap());
        assert!(matches!(hash_password("short"), Err(PasswordError::Length)));
        assert!(verify_password("x", "not a hash").is_err());
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
    }
}
