//! Password hashing (AF §5.7, D1): Argon2id for every write; legacy unsalted SHA-256 hex accepted
//! once, compared in constant time, and replaced by an Argon2id hash on that successful login.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub enum Verified {
    Ok { rehash: Option<String> },
    Bad,
}

fn argon(memory_kib: u32) -> Argon2<'static> {
    let params = Params::new(memory_kib, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_sync(password: &str, memory_kib: u32) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon(memory_kib)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// At most one hash or verify per core at a time: each costs ~19 MiB and a core for a few
/// tens of milliseconds, so an unbounded number (300 parallel logins) would exhaust memory and
/// starve every other request. Callers wait in arrival order (tokio's semaphore is fair).
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// Run one hashing job on the blocking pool, within the bound of [`hashing_slots`].
async fn bounded<T: Send + 'static>(
    job: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let _slot = hashing_slots().acquire().await?;
    tokio::task::spawn_blocking(job).await?
}

/// Argon2id PHC string (CPU-heavy: runs on the blocking pool, one per core at a time).
pub async fn hash(password: &str, memory_kib: u32) -> anyhow::Result<String> {
    let pw = password.to_string();
    bounded(move || hash_sync(&pw, memory_kib)).await
}

/// Password checks run since start (a counter for tests and metrics).
pub fn verifications() -> u64 {
    VERIFIED.load(std::sync::atomic::Ordering::Relaxed)
}

static VERIFIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub async fn verify(password: &str, stored: &str, memory_kib: u32) -> anyhow::Result<Verified> {
    VERIFIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pw = password.to_string();
    let stored = stored.to_string();
    bounded(move || {
        if stored.len() == 64 && stored.bytes().all(|b| b.is_ascii_hexdigit()) {
            let digest = hex::encode(Sha256::digest(pw.as_bytes()));
            if bool::from(
                digest
                    .as_bytes()
                    .ct_eq(stored.to_ascii_lowercase().as_bytes()),
            ) {
                return Ok(Verified::Ok {
                    rehash: Some(hash_sync(&pw, memory_kib)?),
                });
            }
            return Ok(Verified::Bad);
        }
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return Ok(Verified::Bad);
        };
        Ok(
            if argon(memory_kib)
                .verify_password(pw.as_bytes(), &parsed)
                .is_ok()
            {
                Verified::Ok { rehash: None }
            } else {
                Verified::Bad
            },
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn legacy_sha256_verifies_once_and_is_rehashed() {
        let legacy = "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92";
        let Verified::Ok { rehash: Some(new) } = verify("123456", legacy, 64).await.expect("ok")
        else {
            panic!("legacy hash must verify and ask for a rehash");
        };
        assert!(new.starts_with("$argon2id$"));
        assert!(matches!(
            verify("123456", &new, 64).await.expect("ok"),
            Verified::Ok { rehash: None }
        ));
        assert!(matches!(
            verify("1234567", legacy, 64).await.expect("ok"),
            Verified::Bad
        ));
        assert!(matches!(
            verify("x", "garbage", 64).await.expect("ok"),
            Verified::Bad
        ));
    }
}
