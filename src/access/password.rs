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

/// Password checks on a few long-lived threads of their own. Each check takes argon2's
/// 19 MiB; on the runtime's blocking pool every new thread would keep its own copy in its
/// malloc arena after the check, so the gateway's memory would grow with the number of
/// threads that ever checked one. Here it is bounded by `threads` copies.
pub struct Verifier {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = (
    String,
    String,
    tokio::sync::oneshot::Sender<Result<bool, PasswordError>>,
);

impl Verifier {
    pub fn new(threads: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || {
                    // Reused by every check on this thread: allocated once, not per guess.
                    let mut blocks = Vec::new();
                    loop {
                        // Take one job and let the next thread wait for the following one.
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((password, hash, answer)) = job else {
                            return;
                        };
                        let _ = answer.send(verify_in(&password, &hash, &mut blocks));
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start a password-check thread: {e}");
            }
        }
        Verifier { jobs: tx }
    }

    /// Whether `password` matches `hash`, checked on one of the verifier's threads.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, PasswordError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send((password, hash, tx))
            .map_err(|_| PasswordError::Hash("no password-check thread is running".into()))?;
        rx.await
            .map_err(|_| PasswordError::Hash("the password check stopped".into()))?
    }
}

/// The most memory a stored hash may ask a check for: ours ask 19 MiB; a hand-edited or
/// planted hash asking gigabytes is refused rather than obeyed.
const MAX_CHECK_KIB: u32 = 64 * 1024;

/// [`verify_password`] in `blocks`, grown to what the hash asks and kept for the next check.
fn verify_in(
    password: &str,
    hash: &str,
    blocks: &mut Vec<argon2::Block>,
) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(hash).map_err(|_| PasswordError::BadHash)?;
    let bad = |_| PasswordError::BadHash;
    let algorithm = argon2::Algorithm::try_from(parsed.algorithm).map_err(bad)?;
    let version = match parsed.version {
        Some(v) => argon2::Version::try_from(v).map_err(|_| PasswordError::BadHash)?,
        None => argon2::Version::default(),
    };
    let params = argon2::Params::try_from(&parsed).map_err(bad)?;
    if params.m_cost() > MAX_CHECK_KIB {
        return Err(PasswordError::BadHash);
    }
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(PasswordError::BadHash);
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(bad)?;
    let need = params.block_count();
    if blocks.len() != need {
        *blocks = vec![argon2::Block::default(); need];
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..])
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    // Constant time, like the crate's own check.
    Ok(out.len() == expected.len()
        && out
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0)
}

/// Whether `hash` is a PHC string we can verify against (for a hand-edited INI).
pub fn is_valid_hash(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_verifier_checks_on_its_own_threads() {
        let h = hash_password("correct horse").unwrap();
        let v = Verifier::new(2);
        assert!(v.verify("correct horse".into(), h.clone()).await.unwrap());
        assert!(!v.verify("wrong".into(), h).await.unwrap());
        assert!(v.verify("x".into(), "not a hash".into()).await.is_err());
        // The same answers as the crate's own check, for a hash of other parameters too.
        let mut blocks = Vec::new();
        let small = "$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHRzYWx0$7bJ5RmDAzQOM7AyhV4HnYVxK1R2zZ3VJ1z1Hh9B7j7g";
        assert_eq!(
            verify_in("pw", small, &mut blocks).is_ok(),
            verify_password("pw", small).is_ok()
        );
        let ours = hash_password("correct horse").unwrap();
        assert!(verify_in("correct horse", &ours, &mut blocks).unwrap());
        assert!(!verify_in("nope", &ours, &mut blocks).unwrap());
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$7bJ5RmDAzQOM7AyhV4HnYVxK1R2zZ3VJ1z1Hh9B7j7g";
        assert!(matches!(
            verify_in("pw", huge, &mut blocks),
            Err(PasswordError::BadHash)
        ));
    }

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
