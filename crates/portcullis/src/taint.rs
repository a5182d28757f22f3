//! Taint: secret values never reach a response (stage 8, and every page).
//!
//! Two nets, because each catches what the other cannot:
//!
//! * **Type level — [`Secret<T>`].** A field typed `Secret<String>` (an API
//!   key, a token, a password hash) refuses to serialize and prints as
//!   `Secret(<redacted>)`. A DTO that embeds one fails the whole response
//!   closed with 500 `internal`; the log line names the field path (via
//!   `serde_path_to_error` in [`crate::respond`]). This catches the mistake
//!   at its source, with a precise location, but only where the author
//!   remembered the wrapper.
//! * **Value level — [`unique_value`].** Code that loads a secret registers
//!   its bytes with a reason. Every serialized response body — the action
//!   JSON envelope, error envelopes, the HTML error pages, and app pages (the
//!   layer [`crate::routes::scan_response`] that [`crate::Portcullis::build`]
//!   installs) — is scanned with Aho-Corasick; a hit ([`TaintHit`]) fails
//!   closed the same way: 500, nothing of the value sent, a log line with the
//!   reason and never the value (what is sent instead is decided where
//!   responses are made, [`crate::respond`]: this module knows values, not
//!   responses). This
//!   catches the secret after it was copied into a plain `String`, formatted
//!   into a message or an HTML attribute.
//!
//! Each value is also registered in its JSON-escaped and HTML-escaped forms
//! when they differ, since that is how it would appear in those bodies.
//! Other transformations (base64, percent-encoding, substrings) are not
//! caught; the type-level net is the primary one.
//!
//! # Registry
//! One per app: the process-wide default, or the app's own
//! ([`crate::Portcullis::taint_registry`]: two apps in one process then scan
//! against different sets). Either way every principal of the app shares
//! it — and therefore nobody but the server may fill it with values of
//! their choosing. Before, the demo registered users' own "API keys": one user
//! saving a string every page contains made every page 500 for everyone,
//! registrations evicted other users' entries, and each rebuilt the whole
//! automaton under a lock. Now:
//!
//! * **Only unguessable values.** A value must pass [`entropy_check`]: at
//!   least [`MIN_LEN`] bytes, at least [`MIN_BITS_PER_BYTE`] bits of
//!   (Shannon, per-byte) entropy per byte and [`MIN_BITS`] in total, and not
//!   a repetition of a shorter pattern. That refuses short, repetitive and
//!   small-alphabet values that would match innocent text; it cannot tell a
//!   random token from a varied phrase, so the rule for callers is: register
//!   values the *server* generated ([`mint`]) or the operator configured
//!   ([`unique_value`]), never a string a user typed. A user-chosen value
//!   could be something every page contains (an action id, the script's
//!   hash) and would fail every response closed.
//! * **Owners and quotas, no eviction.** Every entry has an [`Owner`] (the
//!   app, or one principal) and a slot name; the app may hold
//!   [`MAX_APP_ENTRIES`], each principal [`MAX_PER_OWNER`], all together
//!   [`MAX_ENTRIES`]. A registration past a quota is *refused* with
//!   [`TaintError`] (the caller logs it), never evicting anyone else's value.
//!   Re-registering a slot replaces its value and forgets the old one.
//! * **Rebuilds off the request path.** Values live in two automata: a
//!   large *base* and a small *delta* of recent changes. A change rebuilds
//!   only the delta (about [`DELTA_MAX`] values at most); forgotten values
//!   still in the base are masked by id. Once the delta or the masked set
//!   passes [`DELTA_MAX`], the base is rebuilt on a thread of its own and
//!   swapped in; until then the delta keeps every change scanned for. A
//!   scan is one lock-free `arc-swap` load and a linear pass per automaton,
//!   and costs nothing while the registry is empty.
//!
//! Stored copies are zeroed when forgotten.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use aho_corasick::AhoCorasick;
use arc_swap::ArcSwapOption;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// The most values the registry holds at once, all owners together.
pub const MAX_ENTRIES: usize = 65_536;
/// The most values [`Owner::App`] may hold.
pub const MAX_APP_ENTRIES: usize = 4096;
/// The most values one principal may hold.
pub const MAX_PER_OWNER: usize = 16;
/// Shortest value accepted: shorter ones would match innocent text.
pub const MIN_LEN: usize = 16;
/// Longest value accepted.
pub const MAX_LEN: usize = 4096;
/// Least Shannon entropy per byte of an accepted value (hex has ~3.9,
/// base64 ~5, decimal digits ~3.3, English text ~4).
pub const MIN_BITS_PER_BYTE: f64 = 3.0;
/// Least total estimated entropy (bits per byte × length) of a value.
pub const MIN_BITS: f64 = 80.0;
/// Changes collected in the delta automaton before the base is rebuilt.
pub const DELTA_MAX: usize = 256;

/// A value that must never be sent: `Serialize` fails, `Debug` redacts.
///
/// It deserializes transparently, so input fields such as passwords can be
/// `Secret<String>` too — then they cannot be echoed back or logged by
/// accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value` (same as `Secret::from`).
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value, for the code that legitimately uses it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The value, unwrapped: from here on nothing stops it being sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// garde's `length` rule on a `Secret<String>` input field, in every mode
/// portcullis's garde has (`length(min, max)`, `length(chars, ..)`,
/// `length(bytes, ..)`, `length(utf16, ..)`): the value is measured, never
/// shown (garde's messages name the bound, not the value).
///
/// ```rust
/// #[derive(serde::Deserialize, garde::Validate)]
/// struct SignUp {
///     #[garde(length(chars, min = 12, max = 200))]
///     password: portcullis::Secret<String>,
/// }
/// ```
impl<T: garde::rules::length::HasSimpleLength> garde::rules::length::HasSimpleLength for Secret<T> {
    fn length(&self) -> usize {
        self.0.length()
    }
}

impl<T: garde::rules::length::HasChars> garde::rules::length::HasChars for Secret<T> {
    fn num_chars(&self) -> usize {
        self.0.num_chars()
    }
}

impl<T: garde::rules::length::HasBytes> garde::rules::length::HasBytes for Secret<T> {
    fn num_bytes(&self) -> usize {
        self.0.num_bytes()
    }
}

impl<T: garde::rules::length::HasUtf16CodeUnits> garde::rules::length::HasUtf16CodeUnits
    for Secret<T>
{
    fn num_code_units(&self) -> usize {
        self.0.num_code_units()
    }
}

/// The message a [`Secret`] fails serialization with.
pub const SECRET_REFUSED: &str = "a portcullis::Secret refused to serialize";

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(SECRET_REFUSED))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

/// Why a value was not registered.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum TaintError {
    /// Under [`MIN_LEN`] bytes (the length given).
    #[error("a unique value must be at least {MIN_LEN} bytes (got {0})")]
    TooShort(usize),
    /// Over [`MAX_LEN`] bytes (the length given).
    #[error("a unique value must be at most {MAX_LEN} bytes (got {0})")]
    TooLong(usize),
    /// Too predictable to scan for without matching innocent text.
    #[error(
        "a unique value must look random: {bits:.0} bits estimated ({per_byte:.2} per byte), at least {MIN_BITS} and {MIN_BITS_PER_BYTE} per byte needed, no repeated pattern"
    )]
    LowEntropy {
        /// Estimated total entropy, in bits.
        bits: f64,
        /// Estimated entropy per byte, in bits.
        per_byte: f64,
    },
    /// The owner already holds its quota (given); nothing was evicted.
    #[error("this owner already holds its quota of {0} unique values; forget one first")]
    OwnerFull(usize),
    /// All owners together hold the registry's cap; nothing was evicted.
    #[error("the unique-value registry is full ({MAX_ENTRIES} values)")]
    RegistryFull,
}

/// Who registered a value: the app (operator-configured secrets) or one
/// principal (e.g. a user id), each with its own quota.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The app itself: operator-configured secrets, up to
    /// [`MAX_APP_ENTRIES`].
    App,
    /// One principal (e.g. `user:42`), up to [`MAX_PER_OWNER`] values.
    Principal(Arc<str>),
}

impl Owner {
    /// A principal, e.g. `Owner::principal(format_args!("user:{id}"))`.
    pub fn principal(id: impl fmt::Display) -> Self {
        Owner::Principal(Arc::from(id.to_string()))
    }

    fn quota(&self) -> usize {
        match self {
            Owner::App => MAX_APP_ENTRIES,
            Owner::Principal(_) => MAX_PER_OWNER,
        }
    }
}

/// The entropy test every registered value passes (see the module docs):
/// length, Shannon entropy per byte and in total, and no period shorter
/// than half the value.
pub fn entropy_check(value: &[u8]) -> Result<(), TaintError> {
    let n = value.len();
    if n < MIN_LEN {
        return Err(TaintError::TooShort(n));
    }
    if n > MAX_LEN {
        return Err(TaintError::TooLong(n));
    }
    let mut counts = [0u32; 256];
    for &b in value {
        counts[b as usize] += 1;
    }
    let per_byte: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum();
    let bits = per_byte * n as f64;
    let periodic = (1..=n / 2).any(|p| value[p..] == value[..n - p]);
    if per_byte < MIN_BITS_PER_BYTE || bits < MIN_BITS || periodic {
        return Err(TaintError::LowEntropy { bits, per_byte });
    }
    Ok(())
}

struct Entry {
    owner: Owner,
    slot: Arc<str>,
    value: Zeroizing<Vec<u8>>,
    reason: Arc<str>,
}

/// One compiled automaton: pattern index → entry id and reason.
struct Automaton {
    automaton: AhoCorasick,
    ids: Vec<u64>,
    reasons: Vec<Arc<str>>,
}

struct Snapshot {
    base: Option<Arc<Automaton>>,
    /// Ids compiled into `base` that have been forgotten since.
    dead: Arc<HashSet<u64>>,
    delta: Option<Automaton>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    by_slot: HashMap<(Owner, Arc<str>), u64>,
    per_owner: HashMap<Owner, usize>,
    base: Option<Arc<Automaton>>,
    base_ids: HashSet<u64>,
    dead: HashSet<u64>,
    delta: Vec<u64>,
    /// A base rebuild is running on its own thread.
    compacting: bool,
    /// Base rebuilds finished so far.
    compactions: u64,
}

/// What the compaction thread shares with the registry.
struct Inner {
    state: Mutex<State>,
    snapshot: ArcSwapOption<Snapshot>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic mid-update leaves plain data; the snapshot is rebuilt below.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compiles the delta and publishes base + dead + delta.
    fn store(&self, state: &State) {
        if state.entries.is_empty() {
            self.snapshot.store(None);
            return;
        }
        let delta = compile(state, &state.delta);
        self.snapshot.store(Some(Arc::new(Snapshot {
            base: state.base.clone(),
            dead: Arc::new(state.dead.clone()),
            delta,
        })));
    }

    /// Installs a base built from `ids` (the live entries when the rebuild
    /// started): what was forgotten since is masked, what was added since
    /// stays in the delta.
    fn install(&self, state: &mut State, base: Option<Automaton>, ids: HashSet<u64>) {
        state.dead = ids
            .iter()
            .filter(|id| !state.entries.contains_key(id))
            .copied()
            .collect();
        state.delta = state
            .entries
            .keys()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        state.base = base.map(Arc::new);
        state.base_ids = ids;
        state.compacting = false;
        state.compactions += 1;
        self.store(state);
    }
}

/// A scanned body contains a registered value: the response must not be
/// sent. Carries the registration's reason (for the log line), never the
/// value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaintHit {
    reason: Arc<str>,
}

impl TaintHit {
    /// Why the value was registered (e.g. `"stripe api key"`).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for TaintHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the body contains a registered secret value ({})",
            self.reason
        )
    }
}

impl std::error::Error for TaintHit {}

/// A bounded set of unique values and the automata that find them. The
/// free functions ([`unique_value`], [`mint`], …) use one process-wide
/// default instance, which every app scans against unless it installed its
/// own with [`crate::Portcullis::taint_registry`].
pub struct Registry {
    max_entries: usize,
    inner: Arc<Inner>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry::new(MAX_ENTRIES));

tokio::task_local! {
    /// The registry of the app serving this request, when it installed its
    /// own ([`scoped`]); [`scan`] falls back to the default otherwise. Set by
    /// the app's outermost layer for the request's lifetime, read-only
    /// inside it, gone with the request.
    static APP_REGISTRY: Arc<Registry>;
}

/// Around the app's whole stack when it has a registry of its own: every
/// response made while `run` serves the request (actions, pages, refusals)
/// is scanned against `registry`.
pub(crate) async fn scoped<F: std::future::Future>(registry: Arc<Registry>, run: F) -> F::Output {
    APP_REGISTRY.scope(registry, run).await
}

/// Whether the registry that [`scan`] would use holds nothing (then a
/// page body need not even be buffered).
pub fn nothing_to_scan() -> bool {
    APP_REGISTRY
        .try_with(|r| r.is_empty())
        .unwrap_or_else(|_| REGISTRY.is_empty())
}

fn value_slot(value: &[u8]) -> Arc<str> {
    use sha2::Digest;
    Arc::from(crate::hex(&sha2::Sha256::digest(value)))
}

/// Registers an operator-configured secret (an upstream API key from the
/// environment, say) in the process-wide default registry: any response
/// containing it fails closed. `reason` (e.g. `"stripe api key"`) is what the log line
/// says on a hit. Never pass a value a user chose (see the module docs).
pub fn unique_value(
    value: impl AsRef<[u8]>,
    reason: impl Into<Cow<'static, str>>,
) -> Result<(), TaintError> {
    REGISTRY.add([value], reason).map(|_| ())
}

/// Registers several app values under one reason with a single rebuild.
/// All are checked first; nothing is registered if one is refused.
pub fn unique_values<V: AsRef<[u8]>>(
    values: impl IntoIterator<Item = V>,
    reason: impl Into<Cow<'static, str>>,
) -> Result<usize, TaintError> {
    REGISTRY.add(values, reason)
}

/// Generates a 256-bit random token (base64url, 43 characters), registers
/// it for `owner` under `slot` (replacing and forgetting that slot's
/// previous value) and returns it. The way to register a value on behalf of
/// a user: it is unguessable by construction.
pub fn mint(
    owner: Owner,
    slot: &str,
    reason: impl Into<Cow<'static, str>>,
) -> Result<Secret<String>, TaintError> {
    REGISTRY.mint(owner, slot, reason)
}

/// Unregisters a value (e.g. a token that was revoked), whoever owns it.
/// Returns whether it was registered.
pub fn forget(value: impl AsRef<[u8]>) -> bool {
    REGISTRY.forget(value)
}

/// Unregisters `owner`'s value in `slot`. Returns whether there was one.
pub fn forget_slot(owner: &Owner, slot: &str) -> bool {
    REGISTRY.forget_slot(owner, slot)
}

/// The number of registered values.
pub fn registered() -> usize {
    REGISTRY.len()
}

/// Scans a response body against the registry of the app serving the
/// current request ([`crate::Portcullis::taint_registry`]), else the
/// process-wide default. A hit names the registration's reason, never the
/// value; the caller refuses the response (with a 500, nothing of the
/// value sent).
pub fn scan(body: &[u8]) -> Result<(), TaintHit> {
    APP_REGISTRY
        .try_with(|r| r.scan(body))
        .unwrap_or_else(|_| REGISTRY.scan(body))
}

fn compile(state: &State, ids: &[u64]) -> Option<Automaton> {
    let work: Vec<(u64, &[u8], Arc<str>)> = ids
        .iter()
        .filter_map(|id| {
            let e = state.entries.get(id)?;
            Some((*id, e.value.as_slice(), e.reason.clone()))
        })
        .collect();
    compile_from(work)
}

/// A copy of one entry for the rebuild thread: id, value, reason.
type Owned = (u64, Zeroizing<Vec<u8>>, Arc<str>);

fn compile_values(work: &[Owned]) -> Option<Automaton> {
    compile_from(
        work.iter()
            .map(|(id, v, r)| (*id, v.as_slice(), r.clone()))
            .collect(),
    )
}

fn compile_from(work: Vec<(u64, &[u8], Arc<str>)>) -> Option<Automaton> {
    if work.is_empty() {
        return None;
    }
    let mut patterns = Vec::with_capacity(work.len() * 2);
    let mut pattern_ids = Vec::with_capacity(work.len() * 2);
    let mut reasons = Vec::with_capacity(work.len() * 2);
    for (id, value, reason) in work {
        for v in variants(value) {
            patterns.push(Zeroizing::new(v));
            pattern_ids.push(id);
            reasons.push(reason.clone());
        }
    }
    if patterns.is_empty() {
        return None;
    }
    match AhoCorasick::new(patterns.iter().map(|p| p.as_slice())) {
        Ok(automaton) => Some(Automaton {
            automaton,
            ids: pattern_ids,
            reasons,
        }),
        // Only on absurd sizes, which the caps rule out.
        Err(e) => {
            tracing::error!(error = %e, "taint automaton could not be built");
            None
        }
    }
}

impl Registry {
    /// An empty registry holding at most `max_entries` values, all owners
    /// together (the process-wide one: [`MAX_ENTRIES`]).
    pub fn new(max_entries: usize) -> Self {
        Registry {
            max_entries,
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                snapshot: ArcSwapOption::empty(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock()
    }

    /// Registers app-owned values (see [`unique_values`]).
    pub fn add<V: AsRef<[u8]>>(
        &self,
        values: impl IntoIterator<Item = V>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Result<usize, TaintError> {
        let values: Vec<Zeroizing<Vec<u8>>> = values
            .into_iter()
            .map(|v| Zeroizing::new(v.as_ref().to_vec()))
            .collect();
        for v in &values {
            entropy_check(v)?;
        }
        let reason: Arc<str> = Arc::from(reason.into().into_owned());
        let slots: Vec<Arc<str>> = values.iter().map(|v| value_slot(v)).collect();
        let mut state = self.lock();
        let fresh: HashSet<&Arc<str>> = slots
            .iter()
            .filter(|s| !state.by_slot.contains_key(&(Owner::App, (*s).clone())))
            .collect();
        let held = state.per_owner.get(&Owner::App).copied().unwrap_or(0);
        if held + fresh.len() > Owner::App.quota() {
            return Err(TaintError::OwnerFull(Owner::App.quota()));
        }
        if state.entries.len() + fresh.len() > self.max_entries {
            return Err(TaintError::RegistryFull);
        }
        for (value, slot) in values.iter().zip(&slots) {
            Self::put(
                &mut state,
                Owner::App,
                slot.clone(),
                value.clone(),
                reason.clone(),
            );
        }
        self.publish(&mut state);
        Ok(values.len())
    }

    /// Registers `value` for `owner` in `slot`, replacing (and forgetting)
    /// the slot's previous value. See [`mint`] for principals.
    pub fn set(
        &self,
        owner: Owner,
        slot: &str,
        value: impl AsRef<[u8]>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Result<(), TaintError> {
        let value = Zeroizing::new(value.as_ref().to_vec());
        entropy_check(&value)?;
        let slot: Arc<str> = Arc::from(slot);
        let mut state = self.lock();
        if !state.by_slot.contains_key(&(owner.clone(), slot.clone())) {
            if state.per_owner.get(&owner).copied().unwrap_or(0) >= owner.quota() {
                return Err(TaintError::OwnerFull(owner.quota()));
            }
            if state.entries.len() >= self.max_entries {
                return Err(TaintError::RegistryFull);
            }
        }
        let reason: Arc<str> = Arc::from(reason.into().into_owned());
        Self::put(&mut state, owner, slot, value, reason);
        self.publish(&mut state);
        Ok(())
    }

    /// See [`mint`].
    pub fn mint(
        &self,
        owner: Owner,
        slot: &str,
        reason: impl Into<Cow<'static, str>>,
    ) -> Result<Secret<String>, TaintError> {
        let raw: [u8; 32] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        self.set(owner, slot, &token, reason)?;
        Ok(Secret::new(token))
    }

    /// Inserts or replaces one entry (quotas already checked).
    fn put(
        state: &mut State,
        owner: Owner,
        slot: Arc<str>,
        value: Zeroizing<Vec<u8>>,
        reason: Arc<str>,
    ) {
        if let Some(old) = state.by_slot.get(&(owner.clone(), slot.clone())).copied() {
            if state.entries.get(&old).is_some_and(|e| e.value == value) {
                return;
            }
            Self::remove(state, old);
        }
        let id = state.next_id;
        state.next_id += 1;
        state.by_slot.insert((owner.clone(), slot.clone()), id);
        *state.per_owner.entry(owner.clone()).or_default() += 1;
        state.entries.insert(
            id,
            Entry {
                owner,
                slot,
                value,
                reason,
            },
        );
        state.delta.push(id);
    }

    fn remove(state: &mut State, id: u64) {
        let Some(e) = state.entries.remove(&id) else {
            return;
        };
        state.by_slot.remove(&(e.owner.clone(), e.slot.clone()));
        if let Some(n) = state.per_owner.get_mut(&e.owner) {
            *n -= 1;
            if *n == 0 {
                state.per_owner.remove(&e.owner);
            }
        }
        if state.base_ids.contains(&id) {
            state.dead.insert(id);
        } else {
            state.delta.retain(|d| *d != id);
        }
    }

    /// Publishes the change: rebuilds the delta now and, once the delta or
    /// the masked set passes [`DELTA_MAX`], the base on a thread of its own
    /// (off the request path; until it is installed the delta keeps
    /// growing, and every value is scanned for all along).
    fn publish(&self, state: &mut State) {
        if (state.delta.len() > DELTA_MAX || state.dead.len() > DELTA_MAX) && !state.compacting {
            state.compacting = true;
            let ids: HashSet<u64> = state.entries.keys().copied().collect();
            let work: Vec<Owned> = state
                .entries
                .iter()
                .map(|(id, e)| (*id, e.value.clone(), e.reason.clone()))
                .collect();
            let inner = self.inner.clone();
            let job = move || {
                let base = compile_values(&work);
                let mut state = inner.lock();
                inner.install(&mut state, base, ids);
            };
            if let Err(e) = std::thread::Builder::new()
                .name("portcullis-taint".into())
                .spawn(job)
            {
                // No thread to be had: keep the delta growing and try again
                // on the next change.
                tracing::warn!(error = %e, "taint base rebuild could not start");
                state.compacting = false;
            }
        }
        self.inner.store(state);
    }

    /// Base rebuilds finished so far (for tests and the report).
    pub fn compactions(&self) -> u64 {
        self.lock().compactions
    }

    /// See [`forget`].
    pub fn forget(&self, value: impl AsRef<[u8]>) -> bool {
        let value = value.as_ref();
        let mut state = self.lock();
        let ids: Vec<u64> = state
            .entries
            .iter()
            .filter(|(_, e)| e.value.as_slice() == value)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            Self::remove(&mut state, *id);
        }
        if !ids.is_empty() {
            self.publish(&mut state);
        }
        !ids.is_empty()
    }

    /// See [`forget_slot`].
    pub fn forget_slot(&self, owner: &Owner, slot: &str) -> bool {
        let mut state = self.lock();
        let Some(id) = state
            .by_slot
            .get(&(owner.clone(), Arc::from(slot)))
            .copied()
        else {
            return false;
        };
        Self::remove(&mut state, id);
        self.publish(&mut state);
        true
    }

    /// Values registered, all owners together.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Values held by `owner`.
    pub fn owned_by(&self, owner: &Owner) -> usize {
        self.lock().per_owner.get(owner).copied().unwrap_or(0)
    }

    /// Nothing to scan for: [`Registry::scan`] then costs one load.
    pub fn is_empty(&self) -> bool {
        self.inner.snapshot.load().is_none()
    }

    /// See [`scan`]. One lock-free load, then a linear pass per automaton.
    pub fn scan(&self, body: &[u8]) -> Result<(), TaintHit> {
        let snapshot = self.inner.snapshot.load();
        let Some(snapshot) = snapshot.as_ref() else {
            return Ok(());
        };
        let hit = |a: &Automaton, dead: &HashSet<u64>| -> Option<Arc<str>> {
            a.automaton
                .find_overlapping_iter(body)
                .find(|m| !dead.contains(&a.ids[m.pattern().as_usize()]))
                .map(|m| a.reasons[m.pattern().as_usize()].clone())
        };
        let none = HashSet::new();
        let found = snapshot
            .delta
            .as_ref()
            .and_then(|d| hit(d, &none))
            .or_else(|| snapshot.base.as_ref().and_then(|b| hit(b, &snapshot.dead)));
        match found {
            None => Ok(()),
            Some(reason) => Err(TaintHit { reason }),
        }
    }
}

/// The forms a value takes in the bodies we send: raw, JSON-escaped,
/// HTML-escaped (as maud escapes).
fn variants(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![value.to_vec()];
    if let Ok(text) = std::str::from_utf8(value) {
        if let Ok(json) = serde_json::to_string(text) {
            let inner = json.as_bytes()[1..json.len() - 1].to_vec();
            if !out.contains(&inner) {
                out.push(inner);
            }
        }
        let html = maud::html! { (text) }.into_string().into_bytes();
        if !out.contains(&html) {
            out.push(html);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry is process-wide: each test uses values no other test uses.

    #[test]
    fn secret_refuses_to_serialize_and_redacts() {
        #[derive(Serialize)]
        struct Out {
            name: &'static str,
            inner: Inner,
        }
        #[derive(Serialize)]
        struct Inner {
            token: Secret<String>,
        }
        let out = Out {
            name: "x",
            inner: Inner {
                token: Secret::new("tok_live_abcdef".into()),
            },
        };
        let mut buf = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut buf);
        let err = serde_path_to_error::serialize(&out, &mut ser).unwrap_err();
        assert_eq!(err.path().to_string(), "inner.token");
        assert!(err.to_string().contains(SECRET_REFUSED));
        assert_eq!(format!("{:?}", out.inner.token), "Secret(<redacted>)");
        let s: Secret<String> = serde_json::from_str("\"pw\"").unwrap();
        assert_eq!(s.expose(), "pw");
    }

    /// A value that passes the entropy test, unique to `tag`.
    fn token(tag: &str) -> String {
        format!("tk{tag}-Zq8Lw3Vx9Rb2Nc7Fh4Jd")
    }

    #[test]
    fn registered_values_are_found_in_every_form() {
        let r = Registry::new(16);
        assert!(r.is_empty() && r.scan(b"anything").is_ok());
        let v = "unit<&>\"tok-7Hq2Zx9Lw3Vb8Nc";
        r.add([v], "unit test token").unwrap();
        assert!(r.scan(format!("prefix {v} suffix").as_bytes()).is_err());
        assert!(
            r.scan(br#"{"a":"x unit<&>\"tok-7Hq2Zx9Lw3Vb8Nc"}"#)
                .is_err()
        );
        assert!(
            r.scan(b"<p>unit&lt;&amp;&gt;&quot;tok-7Hq2Zx9Lw3Vb8Nc</p>")
                .is_err()
        );
        assert!(r.scan(b"unit<&>tok-7Hq2Zx9Lw3Vb8Nc").is_ok());
        assert!(r.forget(v));
        assert!(r.scan(v.as_bytes()).is_ok());
        assert!(r.is_empty());
    }

    #[test]
    fn taint_registration_refuses_low_entropy_values() {
        for (value, why) in [
            ("1234567", "short"),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "one symbol"),
            ("abababababababababababababababab", "two symbols"),
            ("Zq8Lw3Zq8Lw3Zq8Lw3Zq8Lw3Zq8Lw3", "a repeated pattern"),
            ("0000000000000000000000000001", "mostly zeros"),
            ("<div class=\"row\">", "markup every page has"),
        ] {
            let err = unique_value(value, "low").unwrap_err();
            assert!(
                matches!(err, TaintError::TooShort(_) | TaintError::LowEntropy { .. }),
                "{why}: {err:?}"
            );
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(
            unique_value(vec![b'x'; MAX_LEN + 1], "huge"),
            Err(TaintError::TooLong(MAX_LEN + 1))
        );
        // Random tokens in the usual alphabets pass.
        for ok in [
            crate::hex(&[
                0x3c, 0x9a, 0x11, 0xe4, 0x7b, 0x28, 0xd5, 0x60, 0xaf, 0x93, 0x0e, 0x4d, 0xb7, 0x12,
                0xc8, 0x5f,
            ]),
            "sk_live_fixture_9f8e7d6c5b4a".to_owned(),
            token("ok"),
        ] {
            assert_eq!(entropy_check(ok.as_bytes()), Ok(()), "{ok}");
        }
        let r = Registry::new(4);
        assert!(r.add([token("a").as_str(), "short"], "mixed").is_err());
        assert_eq!(r.len(), 0, "all or nothing");
    }

    #[test]
    fn one_principal_cannot_evict_another_or_exceed_its_quota() {
        let r = Registry::new(MAX_PER_OWNER + 4);
        let alice = Owner::principal("user:1");
        let bob = Owner::principal("user:2");
        let bobs = r.mint(bob.clone(), "api", "bob's token").unwrap();
        for i in 0..MAX_PER_OWNER {
            r.mint(alice.clone(), &format!("s{i}"), "alice").unwrap();
        }
        assert_eq!(
            r.mint(alice.clone(), "one-more", "alice").map(|_| ()),
            Err(TaintError::OwnerFull(MAX_PER_OWNER))
        );
        assert_eq!(r.owned_by(&alice), MAX_PER_OWNER);
        // Bob's value is still scanned for.
        assert!(r.scan(bobs.expose().as_bytes()).is_err());
        // The global cap refuses, it does not evict.
        let carol = Owner::principal("user:3");
        for i in 0..3 {
            r.mint(carol.clone(), &format!("c{i}"), "carol").unwrap();
        }
        assert_eq!(
            r.mint(Owner::principal("user:4"), "x", "dave").map(|_| ()),
            Err(TaintError::RegistryFull)
        );
        assert!(r.scan(bobs.expose().as_bytes()).is_err());
    }

    #[test]
    fn replacing_a_slot_forgets_the_old_value() {
        let r = Registry::new(64);
        let owner = Owner::principal("user:9");
        let first = r.mint(owner.clone(), "api", "t").unwrap();
        let second = r.mint(owner.clone(), "api", "t").unwrap();
        assert_eq!(r.owned_by(&owner), 1);
        assert!(
            r.scan(first.expose().as_bytes()).is_ok(),
            "old value forgotten"
        );
        assert!(r.scan(second.expose().as_bytes()).is_err());
        assert!(r.forget_slot(&owner, "api"));
        assert!(r.scan(second.expose().as_bytes()).is_ok());
        assert!(r.is_empty());
    }

    #[test]
    fn base_and_delta_agree_across_compactions() {
        let r = Registry::new(MAX_ENTRIES);
        let values: Vec<String> = (0..DELTA_MAX * 3)
            .map(|i| token(&format!("{i:05}")))
            .collect();
        for (i, v) in values.iter().enumerate() {
            r.set(Owner::App, &format!("v{i}"), v, "t").unwrap();
        }
        // Forget every other one: some sit in the base, some in the delta.
        for (i, v) in values.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            assert!(r.forget_slot(&Owner::App, &format!("v{i}")), "{v}");
        }
        for (i, v) in values.iter().enumerate() {
            assert_eq!(r.scan(v.as_bytes()).is_err(), i % 2 == 1, "{i}");
        }
        // A forgotten value next to a live one is still caught.
        let body = format!("{} {}", values[0], values[1]);
        assert!(r.scan(body.as_bytes()).is_err());
    }

    #[test]
    fn registration_cost_before_and_after() {
        // The old design rebuilt one automaton over every value per
        // registration, under the lock; now a registration rebuilds the
        // delta, and the base is rebuilt on its own thread. Figures for the
        // report (no timing asserts).
        let n = 8_192;
        let r = Registry::new(MAX_ENTRIES);
        let values: Vec<String> = (0..n).map(|i| token(&format!("{i:06}"))).collect();
        r.add(&values[..MAX_APP_ENTRIES], "bulk").unwrap();
        for (i, v) in values[MAX_APP_ENTRIES..].iter().enumerate() {
            r.set(
                Owner::principal(i / MAX_PER_OWNER),
                &format!("s{i}"),
                v,
                "p",
            )
            .unwrap();
        }
        let rounds = 2 * DELTA_MAX;
        let mut worst = std::time::Duration::ZERO;
        let t = std::time::Instant::now();
        for i in 0..rounds {
            let one = std::time::Instant::now();
            r.mint(Owner::principal("bench"), &format!("b{}", i % 8), "m")
                .unwrap();
            worst = worst.max(one.elapsed());
        }
        let per_registration = t.elapsed() / rounds as u32;
        let t = std::time::Instant::now();
        let state = r.lock();
        let ids: Vec<u64> = state.entries.keys().copied().collect();
        let _full = compile(&state, &ids);
        let full_rebuild = t.elapsed();
        drop(state);
        let body: Vec<u8> = b"{\"name\":\"tk-x\",\"n\":12345678} "
            .iter()
            .copied()
            .cycle()
            .take(1 << 20)
            .collect();
        let t = std::time::Instant::now();
        assert!(r.scan(&body).is_ok());
        let scan = t.elapsed();
        eprintln!(
            "{n} values: registration {per_registration:?} mean, {worst:?} worst (a full rebuild, what every registration cost before: {full_rebuild:?}); {} base rebuilds off-thread; scan of 1 MiB {scan:?}",
            r.compactions()
        );
        assert!(r.scan(values[17].as_bytes()).is_err());
        assert!(r.scan(values[n - 1].as_bytes()).is_err());
    }
}
