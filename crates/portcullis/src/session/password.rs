//! Password hashing for sign-up, sign-in and re-authentication: argon2id
//! with OWASP's parameters (19 MiB, 2 passes, 1 lane), stored as standard
//! PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), so any
//! argon2 implementation can read them and a later change of parameters
//! still verifies old hashes ([`needs_rehash`] says when to upgrade one).
//!
//! ```rust
//! use portcullis::prelude::*;
//! use portcullis::session::password;
//! # struct User { id: portcullis::UserId, password_hash: String }
//! # async fn find_by_email(_: &str) -> Result<Option<User>, ActionError> { Ok(None) }
//!
//! // Sign-up: store `hash` (a `String`) with the new account.
//! async fn sign_up(new_password: &Secret<String>) -> Result<String, ActionError> {
//!     password::hash(new_password.expose()).await
//! }
//!
//! // Sign-in: one verification whether or not the address is known, and
//! // one answer for both failures.
//! async fn sign_in(email: &str, typed: &Secret<String>) -> Result<User, ActionError> {
//!     let user = find_by_email(email).await?;
//!     let stored = user.as_ref().map(|u| u.password_hash.as_str());
//!     if !password::verify_or_dummy(typed.expose(), stored).await? {
//!         return Err(ActionError::form("Invalid email or password."));
//!     }
//!     user.ok_or_else(|| ActionError::form("Invalid email or password."))
//! }
//! ```
//!
//! What it takes care of:
//!
//! * **No user enumeration by timing.** [`verify_or_dummy`] verifies against
//!   a fixed dummy hash (made once, with the same parameters) when there is
//!   no account, and [`verify`] treats a stored value that is not a usable
//!   hash (a placeholder for an account that signs in another way) the same
//!   way: "no such user", "no password" and "wrong password" do the same
//!   work and answer `false`.
//! * **Never on the async workers.** Every hash runs on tokio's blocking
//!   pool.
//! * **Bounded cost.** At most [`CONCURRENT_HASHES`] hashes run at once in
//!   the whole process, each in a 19 MiB work area that is allocated once
//!   and reused. Why: argon2's `hash_password` allocates its
//!   work area per call, and a burst of sign-ins on the blocking pool left
//!   those allocations in many glibc malloc arenas, which keep the memory
//!   (the demo measured ~400 MiB after 30 s of mixed load with sign-ins,
//!   ~25 MiB without, BENCHMARKS.md); the bound also caps what a flood of
//!   sign-in attempts can cost in memory and CPU, on top of the action's
//!   rate limits. No crate pools argon2 work areas;
//!   `hash_password_into_with_memory` is the `argon2` crate's own hook for
//!   caller-provided memory, and the PHC strings are built and parsed by
//!   `password-hash`, so stored hashes stay standard.
//!
//! What it leaves to the app: bounding the password's length in the input
//! type (garde's `length` rule works on `Secret<String>`:
//! `#[garde(length(chars, min = 12, max = 200))]`), rate limits on every
//! action that verifies a password (per address and per account, see
//! `per_input(..).per_client_address()`), and storing the hash.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use zeroize::Zeroizing;

use crate::error::ActionError;

/// How many hashes may run at once in the process (and how many work areas
/// of 19 MiB exist): 2, about 40 MiB in all.
pub const CONCURRENT_HASHES: usize = 2;

/// The parameters new hashes get: OWASP's first argon2id recommendation
/// (m = 19 MiB, t = 2, p = 1), 32-byte output.
fn params() -> Params {
    // Constant arguments inside argon2's documented ranges (and its
    // default is the same OWASP set), so the fallback never runs.
    Params::new(19 * 1024, 2, 1, Some(32)).unwrap_or_default()
}

/// The process-wide hashing pool: the permits that bound how many hashes
/// run at once, and the work areas they hand out.
///
/// State. *Who writes it*: every [`hash`], [`verify`] and
/// [`verify_or_dummy`] call, from any request of any app in the process —
/// it takes a permit, takes (or, the first times, allocates) a work area,
/// and puts both back when the hash is done. *What bounds it*: the
/// semaphore's [`CONCURRENT_HASHES`] permits; a work area is only taken
/// under a permit and is put back before the permit is released, so there
/// are never more than [`CONCURRENT_HASHES`] areas (19 MiB each) nor more
/// hashes running. The permit travels with the blocking task, so a caller
/// that gives up (a handler deadline, a dropped connection) frees its place
/// only when its hash has actually finished: cancellation cannot push the
/// number running over the bound. *What removes it*: nothing; the areas
/// live as long as the process (the waiting queue empties as callers are
/// served or give up). *What one user's abuse does to others*: a flood of
/// sign-in attempts queues (first come, first served; tokio's semaphore is
/// fair) behind the same permits as everyone's sign-ins, so honest sign-ins
/// wait longer, but memory and CPU stay bounded and the rest of the app
/// (pages, other actions, the async workers) is not slowed. The sign-in
/// action's rate limits keep such a queue short; a caller waiting past the
/// handler deadline (`PORTCULLIS_HANDLER_TIMEOUT_MS`) is answered 503
/// `deadline_exceeded` and leaves the queue.
struct Pool {
    permits: Arc<tokio::sync::Semaphore>,
    areas: Mutex<Vec<Vec<Block>>>,
    /// Hashes running now and the most seen at once (what the flood test
    /// checks; two atomic operations against a 19 MiB hash).
    running: AtomicUsize,
    peak: AtomicUsize,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool {
    permits: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_HASHES)),
    areas: Mutex::new(Vec::with_capacity(CONCURRENT_HASHES)),
    running: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
});

impl Pool {
    fn take_area(&self) -> Vec<Block> {
        // A poisoned lock only means a panic elsewhere while pushing or
        // popping: the vector itself is fine.
        self.areas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn put_area(&self, area: Vec<Block>) {
        self.areas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(area);
    }
}

/// Runs `f` on the blocking pool with a work area, at most
/// [`CONCURRENT_HASHES`] at a time (see [`Pool`]).
async fn with_work_area<T: Send + 'static>(
    f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
) -> Result<T, ActionError> {
    let pool: &'static Pool = &POOL;
    let permit = pool
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ActionError::internal(format!("password hashing permits: {e}")))?;
    tokio::task::spawn_blocking(move || {
        // Held until the hash is done, whether or not the caller still waits.
        let _permit = permit;
        let now = pool.running.fetch_add(1, Ordering::SeqCst) + 1;
        pool.peak.fetch_max(now, Ordering::SeqCst);
        let mut area = pool.take_area();
        let result = f(&mut area);
        pool.put_area(area);
        pool.running.fetch_sub(1, Ordering::SeqCst);
        result
    })
    .await
    .map_err(|e| ActionError::internal(format!("password hashing task: {e}")))
}

/// argon2 into `out`, in `area` (grown to the default size once; a stored
/// hash with larger parameters gets a one-off area instead, so the pooled
/// areas never grow past 19 MiB).
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

/// Hashes a new password into a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a fresh random salt: what to
/// store with the account. Takes about as long as a verification; waits for
/// a free place if [`CONCURRENT_HASHES`] hashes are running.
///
/// Errors (500 `internal`) only if the hashing task panicked.
pub async fn hash(password: &str) -> Result<String, ActionError> {
    let password = Zeroizing::new(password.as_bytes().to_vec());
    with_work_area(move |area| hash_in(&password, area)).await?
}

fn hash_in(password: &[u8], area: &mut Vec<Block>) -> Result<String, ActionError> {
    let fail = |e: &dyn std::fmt::Display| ActionError::internal(format!("argon2: {e}"));
    let params = params();
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| fail(&e))?;
    let mut out = Zeroizing::new([0u8; 32]);
    let kind = (Algorithm::Argon2id, Version::V0x13, params.clone());
    compute(kind, password, salt_bytes, out.as_mut(), area).map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| fail(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(out.as_ref()).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches `stored` (a PHC string made by [`hash`], or
/// by any argon2 implementation). For a signed-in user confirming their
/// password (re-authentication, password change, account deletion).
///
/// A `stored` value that is not a usable argon2 hash is a mismatch, after
/// the same work as a real verification (against the dummy hash): an
/// account whose hash is a placeholder answers like a wrong password, in
/// the same time. Errors (500 `internal`) only if the hashing task
/// panicked.
pub async fn verify(password: &str, stored: &str) -> Result<bool, ActionError> {
    verify_or_dummy(password, Some(stored)).await
}

/// [`verify`] for sign-in, where the account may not exist: with `stored`
/// `None` (no account for that address) it verifies `password` against a
/// fixed dummy hash — the same parameters, so the same work — and answers
/// `false`. Then "no such user" and "wrong password" cannot be told apart
/// by the answer or by its timing; give both the same message.
pub async fn verify_or_dummy(password: &str, stored: Option<&str>) -> Result<bool, ActionError> {
    let usable = stored.and_then(usable_hash);
    let target = match usable {
        Some(s) => s.to_owned(),
        None => dummy().await?.to_owned(),
    };
    let password = Zeroizing::new(password.as_bytes().to_vec());
    let matched = with_work_area(move |area| verify_in(&password, &target, area)).await?;
    Ok(matched && usable.is_some())
}

/// Whether a stored hash was made with other parameters (or another
/// algorithm) than [`hash`] uses now. After a successful sign-in, store
/// `hash(password)` again for such an account to upgrade it. A value that
/// does not parse needs one too.
pub fn needs_rehash(stored: &str) -> bool {
    let Some(parsed) = usable_hash(stored).and_then(|s| PasswordHash::new(s).ok()) else {
        return true;
    };
    let current = params();
    let same = matches!(
        Algorithm::try_from(parsed.algorithm),
        Ok(Algorithm::Argon2id)
    ) && parsed.version == Some(Version::V0x13.into())
        && Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == current.m_cost()
                && p.t_cost() == current.t_cost()
                && p.p_cost() == current.p_cost()
        })
        && parsed.hash.is_some_and(|h| h.len() == 32);
    !same
}

/// `stored` if it parses as an argon2 PHC string with a salt and a hash.
fn usable_hash(stored: &str) -> Option<&str> {
    let parsed = PasswordHash::new(stored).ok()?;
    let ok = Algorithm::try_from(parsed.algorithm).is_ok()
        && Params::try_from(&parsed).is_ok()
        && parsed.salt.is_some()
        && parsed.hash.is_some()
        && parsed.version.map(Version::try_from).transpose().is_ok();
    ok.then_some(stored)
}

/// Whether `password` hashes to `stored` (a PHC string). Anything that does
/// not parse is a mismatch (callers pass only [`usable_hash`]es).
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
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
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

/// The hash unknown accounts are checked against: made once per process,
/// with the current parameters.
async fn dummy() -> Result<&'static str, ActionError> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| hash("portcullis: no such account"))
        .await
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};
    use std::time::{Duration, Instant};

    /// The tests that use the process-wide pool run one at a time, so one's
    /// hashes do not queue behind (or count towards) another's.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(verify_in(b"pw", &theirs, &mut area));
        assert!(!verify_in(b"pw", "not a hash", &mut area));
        assert!(!needs_rehash(&stored) && !needs_rehash(&theirs));
    }

    #[tokio::test]
    async fn unknown_accounts_and_placeholders_answer_false_like_a_wrong_password() {
        let _serial = SERIAL.lock().await;
        let stored = hash("the right one").await.unwrap();
        assert!(verify("the right one", &stored).await.unwrap());
        assert!(!verify("the wrong one", &stored).await.unwrap());
        assert!(
            verify_or_dummy("the right one", Some(&stored))
                .await
                .unwrap()
        );
        // No account: false, even for the dummy's own password.
        assert!(!verify_or_dummy("anything", None).await.unwrap());
        assert!(
            !verify_or_dummy("portcullis: no such account", None)
                .await
                .unwrap()
        );
        // A placeholder that is not a hash never matches, not even itself.
        for placeholder in ["", "!", "disabled", "$argon2id$v=19$m=19456,t=2,p=1$"] {
            assert!(!verify(placeholder, placeholder).await.unwrap());
            assert!(needs_rehash(placeholder));
        }
        // The dummy costs what a real hash costs: the same parameters.
        let dummy = PasswordHash::new(dummy().await.unwrap()).unwrap();
        let real = PasswordHash::new(&stored).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        // Older, cheaper parameters are flagged for an upgrade.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 1, 1, Some(32)).unwrap(),
        )
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
        assert!(needs_rehash(&weak));
        assert!(verify("pw", &weak).await.unwrap());
    }

    /// The attack: an attacker times sign-in for addresses they guess, to
    /// learn which are registered. Unknown address, wrong password and
    /// placeholder hash must take about as long; without the dummy hash an
    /// unknown address answers in microseconds, not milliseconds. (Bounds
    /// are loose: the machine is shared; the difference they catch is a
    /// factor of a thousand.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_address_and_wrong_password_take_the_same_time() {
        let _serial = SERIAL.lock().await;
        let stored = hash("the right one").await.unwrap();
        dummy().await.unwrap();
        let time = |stored: Option<&'static str>| async move {
            let start = Instant::now();
            assert!(!verify_or_dummy("a wrong one", stored).await.unwrap());
            start.elapsed()
        };
        let stored: &'static str = Box::leak(stored.into_boxed_str());
        let (mut wrong, mut unknown, mut placeholder) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            wrong.push(time(Some(stored)).await);
            unknown.push(time(None).await);
            placeholder.push(time(Some("!")).await);
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let (wrong, unknown, placeholder) = (
            median(&mut wrong),
            median(&mut unknown),
            median(&mut placeholder),
        );
        for (what, t) in [("unknown address", unknown), ("placeholder", placeholder)] {
            assert!(
                t * 3 > wrong && t < wrong * 3,
                "{what}: {t:?} vs wrong password {wrong:?}"
            );
        }
    }

    /// The attack: a flood of sign-in attempts (here 24 at once, a third of
    /// them abandoned by their callers mid-way, as a handler deadline
    /// would) must never run more than `CONCURRENT_HASHES` hashes or hold
    /// more work areas at once, and every caller still gets the right
    /// answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_flood_of_verifications_never_runs_more_than_the_bound() {
        let _serial = SERIAL.lock().await;
        let stored: &'static str = Box::leak(hash("pw").await.unwrap().into_boxed_str());
        let mut checks = Vec::new();
        for i in 0..24 {
            checks.push(tokio::spawn(async move {
                let right = i % 2 == 0;
                let answer = verify_or_dummy(if right { "pw" } else { "no" }, Some(stored));
                if i % 3 == 0 {
                    // Gives up almost at once: its hash may still run.
                    let _ = tokio::time::timeout(Duration::from_millis(1), answer).await;
                    return;
                }
                assert_eq!(answer.await.unwrap(), right);
            }));
            // Sample while the flood is running.
            let running = POOL.running.load(Ordering::SeqCst);
            assert!(running <= CONCURRENT_HASHES, "{running} running");
        }
        for c in checks {
            c.await.unwrap();
        }
        // Abandoned hashes finish on the blocking pool; wait for them.
        let deadline = Instant::now() + Duration::from_secs(60);
        while POOL.running.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let peak = POOL.peak.load(Ordering::SeqCst);
        assert!(
            (1..=CONCURRENT_HASHES).contains(&peak),
            "{peak} hashes ran at once"
        );
        let areas = POOL.areas.lock().unwrap().len();
        assert!(
            (1..=CONCURRENT_HASHES).contains(&areas),
            "{areas} work areas"
        );
        assert_eq!(
            POOL.permits.available_permits(),
            CONCURRENT_HASHES,
            "every permit came back"
        );
    }
}
