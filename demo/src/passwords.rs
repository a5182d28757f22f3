//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane).
//!
//! Hashing runs on the blocking pool so it never stalls the async workers.
//! Sign-in always runs one verification — against a fixed dummy hash when
//! the email is unknown — so "wrong password" and "no such user" take the
//! same time and produce the same answer (no user enumeration).

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use portcullis::ActionError;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a new password.
pub async fn hash(password: String) -> Result<String, ActionError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ActionError::internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| ActionError::internal(format!("hash task: {e}")))?
}

/// Verifies `password` against `stored` (or the dummy hash when `None`).
/// Always does the same work.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ActionError> {
    let known = stored.is_some();
    let stored = stored.unwrap_or_else(|| dummy().to_owned());
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|parsed| {
                argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| ActionError::internal(format!("verify task: {e}")))?;
    Ok(ok && known)
}

fn dummy() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2()
            .hash_password(b"portcullis-dummy-password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}
