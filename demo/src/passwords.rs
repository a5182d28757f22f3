//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane).
//!
//! Hashing runs on the blocking pool so it never stalls the async workers.
//! Sign-in always runs one verification — against a fixed dummy hash when
//! the email is unknown — so "wrong password" and "no such user" take the
//! same time and produce the same answer (no user enumeration).
//!
//! At most [`CONCURRENT_HASHES`] hashes run at once, each in a 19 MiB work
//! area that is allocated once and reused. Why: `argon2`'s
//! `hash_password` allocates its work area per call, and under a burst of
//! sign-ins on tokio's blocking pool those allocations land in many glibc
//! malloc arenas that keep the memory. The soak (`scripts/soak`) measured
//! the demo at ~400 MiB RSS after 30 s of mixed load with sign-ins; without
//! sign-ins it stays near 25 MiB. Bounding the concurrency also bounds what
//! a flood of sign-in attempts can cost (each is 19 MiB and ~2 passes of
//! CPU), on top of the rate limits. No crate pools argon2 work areas;
//! `hash_password_into_with_memory` is the `argon2` crate's own hook for
//! caller-provided memory, and the PHC strings are still built and parsed
//! by `password-hash`, so stored hashes stay standard.

use std::sync::{Mutex, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use portcullis::ActionError;
use tokio::sync::Semaphore;

/// How many hashes may run at once (and how many work areas exist).
pub const CONCURRENT_HASHES: usize = 2;

fn params() -> Params {
    Params::new(19 * 1024, 2, 1, Some(32)).expect("valid argon2 parameters")
}

/// The work areas and the permits that hand them out.
struct Pool {
    permits: Semaphore,
    areas: Mutex<Vec<Vec<Block>>>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        permits: Semaphore::new(CONCURRENT_HASHES),
        areas: Mutex::new(Vec::new()),
    })
}

/// Runs `f` on the blocking pool with a work area, at most
/// [`CONCURRENT_HASHES`] at a time.
async fn with_work_area<T: Send + 'static>(
    f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
) -> Result<T, ActionError> {
    let pool = pool();
    let _permit = pool
        .permits
        .acquire()
        .await
        .map_err(|e| ActionError::internal(format!("hash permits: {e}")))?;
    let mut area = pool
        .areas
        .lock()
        .map_err(|_| ActionError::internal("hash pool poisoned"))?
        .pop()
        .unwrap_or_default();
    let (result, area) = tokio::task::spawn_blocking(move || {
        let result = f(&mut area);
        (result, area)
    })
    .await
    .map_err(|e| ActionError::internal(format!("hash task: {e}")))?;
    if let Ok(mut areas) = pool.areas.lock() {
        areas.push(area);
    }
    Ok(result)
}

/// argon2 into `out`, in `area` (grown to the default size once; a stored
/// hash with larger parameters gets a one-off area instead).
fn compute(
    (algorithm, version, costs): (Algorithm, Version, Params),
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    area: &mut Vec<Block>,
) -> argon2::Result<()> {
    let needed = costs.block_count();
    let argon2 = Argon2::new(algorithm, version, costs);
    if needed > params().block_count() {
        return argon2.hash_password_into(password, salt, out);
    }
    if area.len() < needed {
        area.resize(needed, Block::default());
    }
    argon2.hash_password_into_with_memory(password, salt, out, &mut area[..needed])
}

/// Hashes a new password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub async fn hash(password: String) -> Result<String, ActionError> {
    with_work_area(move |area| hash_in(password.as_bytes(), area)).await?
}

fn hash_in(password: &[u8], area: &mut Vec<Block>) -> Result<String, ActionError> {
    let fail = |e: &dyn std::fmt::Display| ActionError::internal(format!("argon2: {e}"));
    let params = params();
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| fail(&e))?;
    let mut out = [0u8; 32];
    let kind = (Algorithm::Argon2id, Version::V0x13, params.clone());
    compute(kind, password, salt_bytes, &mut out, area).map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| fail(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Verifies `password` against `stored` (or the dummy hash when `None`).
/// Always does the same work.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ActionError> {
    let known = stored.is_some();
    let dummy = match stored {
        Some(_) => None,
        None => Some(dummy().await?),
    };
    let stored = stored.or(dummy).unwrap_or_default();
    let ok = with_work_area(move |area| verify_in(password.as_bytes(), &stored, area)).await?;
    Ok(ok && known)
}

/// Whether `password` hashes to `stored` (a PHC string). Anything that does
/// not parse is a mismatch.
fn verify_in(password: &[u8], stored: &str, area: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if compute(
        (algorithm, version, params),
        password,
        salt_bytes,
        &mut out,
        area,
    )
    .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|o| o == expected)
}

/// The hash unknown emails are checked against, made once.
async fn dummy() -> Result<String, ActionError> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| hash("portcullis-dummy-password".to_owned()))
        .await
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[test]
    fn pooled_hashes_are_standard_phc_and_verify_both_ways() {
        let mut area = Vec::new();
        let stored = hash_in(b"correct horse", &mut area).unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        // The crate's own verifier accepts what the pooled path made…
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        // …and the pooled verifier, reusing the same (dirty) area, agrees.
        assert!(verify_in(b"correct horse", &stored, &mut area));
        assert!(!verify_in(b"correct horsf", &stored, &mut area));
        assert!(verify_in(b"correct horse", &stored, &mut area));
        // A hash made by the crate's allocating path verifies too.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = argon2::password_hash::PasswordHasher::hash_password(
            &Argon2::new(Algorithm::Argon2id, Version::V0x13, params()),
            b"pw",
            &salt,
        )
        .unwrap()
        .to_string();
        assert!(verify_in(b"pw", &theirs, &mut area));
        assert!(!verify_in(b"pw", "not a hash", &mut area));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sign_ins_share_a_bounded_set_of_work_areas() {
        let stored = hash("pw".to_owned()).await.unwrap();
        let checks: Vec<_> = (0..8)
            .map(|i| {
                let stored = stored.clone();
                tokio::spawn(async move {
                    verify(if i % 2 == 0 { "pw" } else { "no" }.into(), Some(stored)).await
                })
            })
            .collect();
        for (i, c) in checks.into_iter().enumerate() {
            assert_eq!(c.await.unwrap().unwrap(), i % 2 == 0);
        }
        assert!(!verify("pw".into(), None).await.unwrap());
        let areas = pool().areas.lock().unwrap().len();
        assert!(
            (1..=CONCURRENT_HASHES).contains(&areas),
            "{areas} work areas"
        );
    }
}
