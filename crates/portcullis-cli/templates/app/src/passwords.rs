//! Password hashing with argon2id (the crate's defaults: 19 MiB, 2 passes),
//! on the blocking pool so it never stalls the async workers. Sign-in always
//! verifies one hash — a dummy one for an unknown address — so "no such
//! user" and "wrong password" cost the same and answer the same.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use portcullis::ActionError;

fn hash_now(password: &str) -> Result<String, ActionError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ActionError::internal(format!("argon2: {e}")))
}

/// A PHC string for a new password.
pub async fn hash(password: String) -> Result<String, ActionError> {
    tokio::task::spawn_blocking(move || hash_now(&password)).await?
}

/// Whether `password` matches `stored`; with `None`, the same work against a
/// dummy hash, and `false`.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ActionError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = match stored {
            Some(s) => s,
            None => DUMMY
                .get_or_init(|| hash_now("no such user").unwrap_or_default())
                .clone(),
        };
        let ok = PasswordHash::new(&stored).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        Ok(ok && known)
    })
    .await?
}
