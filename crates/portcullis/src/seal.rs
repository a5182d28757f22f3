//! Sealed bound arguments (opened in stage 6).
//!
//! A page often has to hand a value to a later action call: the id of the
//! record a form edits, a quoted price, the step a wizard is on. If it goes
//! out as a plain hidden field, the client can change it, move it to another
//! action, replay it in another session or keep it for next week. A *sealed*
//! value cannot be any of that: it is encrypted and authenticated with
//! AES-256-GCM-SIV, and the associated data binds it to
//!
//! * the **action** it was made for (a seal for `projects.rename` does not
//!   open in `projects.delete`),
//! * the **field** it was made for (the top-level wire name, e.g.
//!   `projectId`: two sealed fields of one action cannot be swapped),
//! * the **session** it was made in (the session id; for a visitor without
//!   a session, the browser's anonymous scope cookie, [`crate::anon`]; the
//!   literal `anonymous` binding only for a client that keeps no cookies),
//!   and
//! * an **expiry** (default [`DEFAULT_TTL`]).
//!
//! Input types declare such a field as [`crate::input::Sealed<T>`]. Its `Deserialize`
//! opens the seal during stage 6, with the action, session and key ring of
//! the request in a scoped thread-local set by [`crate::input`] around the
//! synchronous deserialization call only. Any failure — tampered, truncated,
//! not base64, wrong action, wrong session, expired, made with a key that has
//! been rotated out, or a plaintext of the wrong type — becomes 400
//! `invalid_bound_argument` before the handler runs. The reason is logged at
//! debug level; the client learns nothing about which check failed.
//!
//! Pages mint seals with [`crate::render::Form::bind_sealed`] (a hidden
//! input for the form's own action) or [`seal`] with a [`SealFor`] from
//! [`crate::Page::seal_for`] / [`crate::Cx::seal_for`] (JS payloads).
//!
//! This module is the format only — [`Sealer`], [`SealFor`], [`Binding`]
//! and the bytes — and imports nothing above the key ring. Opening a seal
//! *as an input field* ([`crate::input::Sealed`], the request's
//! [`crate::input::Opening`] and the thread-local that carries it) belongs
//! to the decoder and lives with it in `input/sealed.rs`: before, the two
//! halves imported each other through two thread-locals in two files.
//!
//! # Why AES-GCM-SIV
//! It is nonce-misuse resistant: a repeated random nonce (96 bits, drawn per
//! seal) only reveals that two plaintexts were equal, rather than breaking
//! the key as with GCM. Sealed values are small and many, and this removes a
//! whole class of operational failure.
//!
//! # Wire format (v2)
//! `base64url_nopad( 0x02 ‖ key_id[4] ‖ expiry_unix_secs[8, BE] ‖ nonce[12] ‖ ciphertext ‖ tag[16] )`,
//! plaintext = `serde_json` of the value, associated data =
//! `"portcullis/seal/v2" ‖ len16(action) ‖ action ‖ len16(field) ‖ field ‖ len16(binding) ‖ binding ‖ expiry[8] ‖ key_id[4]`.
//! Length prefixes (rather than separators) make the encoding injective
//! whatever bytes an action name contains. v1 (no field in the AAD) is
//! refused since the upgrade that added the field: a page rendered before
//! it answers `invalid_bound_argument` once and is reloaded (seals live an
//! hour by default, so nothing longer-lived is lost).
//!
//! The field is the top-level input field the sealed text arrives in, found
//! by the decoder before typed deserialization ([`crate::input::Opening::with_fields`]).
//! A `Sealed<T>` nested below the top level, or minted without a field
//! ([`SealFor`] without [`SealFor::field`]), is bound to the empty field
//! name and opens only where no top-level field carries it. The key id selects the sealing
//! subkey among [`KeyRing::verifying`], so seals made before a rotation keep
//! opening while `PORTCULLIS_SECRET_PREVIOUS` holds the old secret
//! (see `docs/rotation.md`); new seals always use the current key.
//!
//! # What a seal does not do
//! * It is not single-use: within its lifetime it can be submitted again in
//!   the same session. Handlers still re-check ownership and state.
//! * The same sealed text in two fields (or a seal for field A sent in
//!   field B) is refused: field binding is by the name it arrives under.
//! * Seals minted before sign-in do not survive it: signing in cycles the
//!   session id (anti-fixation), and the binding follows the id. The page is
//!   re-rendered after sign-in anyway, so this costs nothing and is safer.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::keys::{KeyRing, KeySet, Purpose};

/// How long a seal stays valid unless the minting call says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The longest sealed text (base64 characters) that is even looked at.
pub const MAX_SEALED_LEN: usize = 8 * 1024;

const VERSION: u8 = 2;
const AAD_LABEL: &[u8] = b"portcullis/seal/v2";
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + 8 + NONCE_LEN;

/// Seconds since the Unix epoch, as seals count them.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Whose seal it is: the session it was made in.
#[derive(Clone, PartialEq, Eq)]
pub enum Binding {
    /// A client without a session record and without the anonymous-scope
    /// cookie (it keeps no cookies): shared by every such client.
    Anonymous,
    /// A browser without a session, by its anonymous scope cookie
    /// ([`crate::wire::cookie::ANON`]).
    Browser(Arc<str>),
    /// The id of a live session.
    Session(Arc<str>),
}

impl Binding {
    /// The binding of a session with this id (its cookie value).
    pub fn session(id: impl fmt::Display) -> Self {
        Binding::Session(Arc::from(id.to_string()))
    }

    fn as_bytes_parts(&self) -> (&'static [u8], &[u8]) {
        match self {
            Binding::Anonymous => (b"anonymous", b""),
            Binding::Browser(id) => (b"browser:", id.as_bytes()),
            Binding::Session(id) => (b"session:", id.as_bytes()),
        }
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A session id is a bearer credential: never print it.
        match self {
            Binding::Anonymous => f.write_str("Anonymous"),
            Binding::Browser(_) => f.write_str("Browser(<redacted>)"),
            Binding::Session(_) => f.write_str("Session(<redacted>)"),
        }
    }
}

/// Why a value could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The value refused to serialize (e.g. it contains a [`crate::Secret`]).
    #[error("the value to seal refused to serialize: {0}")]
    Serialize(serde_json::Error),
    /// The encryption backend failed (only on absurd sizes).
    #[error("sealing failed")]
    Encrypt,
    /// The sealed text would exceed [`MAX_SEALED_LEN`], which
    /// [`Sealer::open_at`] refuses: such a seal could never open, so it is
    /// refused here, when the page is rendered, not on every submit.
    #[error(
        "the sealed value would be {0} bytes, over the {MAX_SEALED_LEN}-byte cap; seal an id, not a record"
    )]
    TooLong(usize),
}

/// Why a sealed value did not open. Logged at debug level, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Over [`MAX_SEALED_LEN`]; refused before decoding.
    #[error("sealed value is longer than the cap")]
    TooLong,
    /// Not unpadded base64url.
    #[error("sealed value is not base64url")]
    NotBase64,
    /// Shorter than the header, nonce and tag.
    #[error("sealed value is truncated")]
    Truncated,
    /// A format version other than the current one (v1 included).
    #[error("sealed value has an unknown format version")]
    Version,
    /// Made with a key that is neither the current nor the previous one.
    #[error("sealed value names a key that is not in the ring (rotated out or foreign)")]
    UnknownKey,
    /// Past the expiry sealed into it.
    #[error("sealed value has expired")]
    Expired,
    /// The tag does not verify: edited, or made for another action, field,
    /// session or expiry.
    #[error("sealed value failed authentication (tampered, or another action, session or expiry)")]
    Unauthentic,
    /// Authentic, but its JSON does not deserialize as the field's type.
    #[error("sealed value does not hold the expected type")]
    WrongType,
    /// A `Sealed<T>` deserialized without an [`crate::input::Opening`] in
    /// scope (outside an action's decode).
    #[error("a Sealed field was deserialized outside an action decode")]
    NoContext,
}

struct SealKey {
    id: [u8; KEY_ID_LEN],
    cipher: Aes256GcmSiv,
}

impl SealKey {
    fn new(set: &KeySet, purpose: Purpose) -> Self {
        let key = aes_gcm_siv::Key::<Aes256GcmSiv>::from(*set.get(purpose).bytes());
        SealKey {
            id: set.id,
            cipher: Aes256GcmSiv::new(&key),
        }
    }
}

/// The sealing half of the key ring, with the cipher key schedules prepared
/// once. Keys are zeroed on drop (the `aes` crate's `zeroize` feature) and
/// `Debug` shows only key ids.
pub struct Sealer {
    current: SealKey,
    previous: Option<SealKey>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = |id: &[u8; 4]| crate::hex(id);
        f.debug_struct("Sealer")
            .field("current", &hex(&self.current.id))
            .field("previous", &self.previous.as_ref().map(|k| hex(&k.id)))
            .finish_non_exhaustive()
    }
}

fn aad(
    action: &str,
    field: &str,
    binding: &Binding,
    expires: u64,
    key_id: &[u8; KEY_ID_LEN],
) -> Vec<u8> {
    let (kind, id) = binding.as_bytes_parts();
    let mut out = Vec::with_capacity(
        AAD_LABEL.len() + 6 + action.len() + field.len() + kind.len() + id.len() + 12,
    );
    out.extend_from_slice(AAD_LABEL);
    let len16 = |n: usize| u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes();
    out.extend_from_slice(&len16(action.len()));
    out.extend_from_slice(action.as_bytes());
    out.extend_from_slice(&len16(field.len()));
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(&len16(kind.len() + id.len()));
    out.extend_from_slice(kind);
    out.extend_from_slice(id);
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(key_id);
    out
}

impl Sealer {
    /// Seals under the ring's current sealing subkey; opens under the
    /// current or the previous one (a rotation).
    pub fn new(keys: &KeyRing) -> Self {
        Self::for_purpose(keys, Purpose::Sealing)
    }

    /// The same format under another purpose's subkey (the no-JS flash uses
    /// [`Purpose::Flash`], so a flash never opens as a bound argument).
    pub(crate) fn for_purpose(keys: &KeyRing, purpose: Purpose) -> Self {
        Sealer {
            current: SealKey::new(&keys.current, purpose),
            previous: keys.previous.as_ref().map(|k| SealKey::new(k, purpose)),
        }
    }

    /// The id of the key new seals are made with.
    pub fn current_key_id(&self) -> [u8; 4] {
        self.current.id
    }

    fn key(&self, id: &[u8]) -> Option<&SealKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.id == id)
    }

    /// Seals `value` for `action` in `binding`, valid until `expires`
    /// (Unix seconds), bound to no field (see [`Sealer::seal_field_at`]).
    /// Always uses the current key.
    pub fn seal_at<T: Serialize + ?Sized>(
        &self,
        value: &T,
        action: &str,
        binding: &Binding,
        expires: u64,
    ) -> Result<String, SealError> {
        self.seal_field_at(value, action, "", binding, expires)
    }

    /// Seals `value` for top-level input field `field` of `action` in
    /// `binding`, valid until `expires` (Unix seconds).
    pub fn seal_field_at<T: Serialize + ?Sized>(
        &self,
        value: &T,
        action: &str,
        field: &str,
        binding: &Binding,
        expires: u64,
    ) -> Result<String, SealError> {
        let plaintext = serde_json::to_vec(value).map_err(SealError::Serialize)?;
        // Unpadded base64 of header ‖ ciphertext ‖ tag (found by fuzzing:
        // without this check, a large value sealed fine and never opened).
        let text_len = ((HEADER_LEN + plaintext.len() + TAG_LEN) * 4).div_ceil(3);
        if text_len > MAX_SEALED_LEN {
            return Err(SealError::TooLong(text_len));
        }
        let key = &self.current;
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let aad = aad(action, field, binding, expires, &key.id);
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        let mut raw = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        raw.push(VERSION);
        raw.extend_from_slice(&key.id);
        raw.extend_from_slice(&expires.to_be_bytes());
        raw.extend_from_slice(&nonce_bytes);
        raw.extend_from_slice(&ciphertext);
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Opens a seal made by [`Sealer::seal_at`] for the same action and
    /// binding, if it has not expired at `now` (Unix seconds).
    pub fn open_at<T: DeserializeOwned>(
        &self,
        text: &str,
        action: &str,
        binding: &Binding,
        now: u64,
    ) -> Result<T, OpenError> {
        self.open_field_at(text, action, "", binding, now)
    }

    /// Opens a seal made by [`Sealer::seal_field_at`] for the same action,
    /// field and binding, if it has not expired at `now` (Unix seconds).
    pub fn open_field_at<T: DeserializeOwned>(
        &self,
        text: &str,
        action: &str,
        field: &str,
        binding: &Binding,
        now: u64,
    ) -> Result<T, OpenError> {
        if text.len() > MAX_SEALED_LEN {
            return Err(OpenError::TooLong);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .map_err(|_| OpenError::NotBase64)?;
        if raw.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Truncated);
        }
        let (header, ciphertext) = raw.split_at(HEADER_LEN);
        if header[0] != VERSION {
            return Err(OpenError::Version);
        }
        let key_id = &header[1..1 + KEY_ID_LEN];
        let key = self.key(key_id).ok_or(OpenError::UnknownKey)?;
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&header[1 + KEY_ID_LEN..1 + KEY_ID_LEN + 8]);
        let expires = u64::from_be_bytes(expiry);
        // Checked before the tag only to save work: a forged expiry fails
        // authentication below anyway, because it is part of the AAD.
        if now > expires {
            return Err(OpenError::Expired);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[HEADER_LEN - NONCE_LEN..]);
        let aad = aad(action, field, binding, expires, &key.id);
        let plaintext = key
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Unauthentic)?;
        serde_json::from_slice(&plaintext).map_err(|_| OpenError::WrongType)
    }
}

/// A sealing target: one action, in the session of the current request.
/// Get one from [`crate::Page::seal_for`] or [`crate::Cx::seal_for`].
#[derive(Clone, Debug)]
pub struct SealFor {
    sealer: Arc<Sealer>,
    action: &'static str,
    binding: Binding,
    field: Option<String>,
}

impl SealFor {
    /// Seals for `action` in the session `binding` names, bound to no field
    /// until [`SealFor::field`].
    pub fn new(sealer: Arc<Sealer>, action: &'static str, binding: Binding) -> Self {
        SealFor {
            sealer,
            action,
            binding,
            field: None,
        }
    }

    /// Binds the seal to the top-level input field it will be sent in (its
    /// wire name, e.g. `projectId`). A seal sent in a top-level field opens
    /// only if it was made for that field.
    pub fn field(mut self, name: &str) -> Self {
        self.field = Some(name.to_owned());
        self
    }

    /// The action the seal will open in.
    pub fn action(&self) -> &'static str {
        self.action
    }
}

/// Seals `value` so that only `for_action` (in the same session) can open
/// it, for `ttl` from now. Use [`DEFAULT_TTL`] unless the page is meant to
/// live longer or shorter.
pub fn seal<T: Serialize + ?Sized>(
    value: &T,
    for_action: &SealFor,
    ttl: Duration,
) -> Result<String, SealError> {
    let expires = unix_now().saturating_add(ttl.as_secs());
    for_action.sealer.seal_field_at(
        value,
        for_action.action,
        for_action.field.as_deref().unwrap_or(""),
        &for_action.binding,
        expires,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterSecret;

    fn ring(byte: u8, previous: Option<u8>) -> KeyRing {
        let s = |b: u8| MasterSecret::from_bytes(vec![b; 32]).unwrap();
        KeyRing::new(&s(byte), previous.map(s).as_ref())
    }

    fn session(id: &str) -> Binding {
        Binding::session(id)
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn round_trip_and_format() {
        let sealer = Sealer::new(&ring(1, None));
        let b = session("s1");
        let text = sealer
            .seal_at(&42i64, "projects.rename", &b, NOW + 60)
            .unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
        assert_eq!(raw[0], VERSION);
        assert_eq!(raw[1..5], sealer.current_key_id());
        assert_eq!(u64::from_be_bytes(raw[5..13].try_into().unwrap()), NOW + 60);
        // "42" + tag
        assert_eq!(raw.len(), HEADER_LEN + 2 + TAG_LEN);
        let v: i64 = sealer.open_at(&text, "projects.rename", &b, NOW).unwrap();
        assert_eq!(v, 42);
        // Valid through the expiry second itself, not after.
        assert_eq!(
            sealer.open_at::<i64>(&text, "projects.rename", &b, NOW + 60),
            Ok(42)
        );
        // Random nonces: the same value seals differently each time.
        assert_ne!(
            text,
            sealer
                .seal_at(&42i64, "projects.rename", &b, NOW + 60)
                .unwrap()
        );
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let sealer = Sealer::new(&ring(1, None));
        let b = session("s1");
        let text = sealer
            .seal_at(&"a longer plaintext value", "a", &b, NOW + 60)
            .unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
        for i in 0..raw.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = raw.clone();
                bad[i] ^= bit;
                let r = sealer.open_at::<String>(&URL_SAFE_NO_PAD.encode(&bad), "a", &b, NOW);
                assert!(r.is_err(), "flip of bit {bit:#x} in byte {i} was accepted");
            }
        }
    }

    #[test]
    fn truncation_garbage_and_wrong_types_are_refused() {
        let sealer = Sealer::new(&ring(1, None));
        let b = Binding::Anonymous;
        let text = sealer.seal_at(&7u32, "a", &b, NOW + 60).unwrap();
        for n in 0..text.len() {
            assert!(
                sealer.open_at::<u32>(&text[..n], "a", &b, NOW).is_err(),
                "prefix {n}"
            );
        }
        let open = |t: &str| sealer.open_at::<u32>(t, "a", &b, NOW);
        assert_eq!(open("not base64!"), Err(OpenError::NotBase64));
        assert_eq!(open(&format!("{text}=")), Err(OpenError::NotBase64));
        assert_eq!(
            open(&"A".repeat(MAX_SEALED_LEN + 1)),
            Err(OpenError::TooLong)
        );
        assert_eq!(open(""), Err(OpenError::Truncated));
        assert_eq!(
            sealer.open_at::<String>(&text, "a", &b, NOW),
            Err(OpenError::WrongType)
        );
    }

    #[test]
    fn bound_to_action_session_and_time() {
        let sealer = Sealer::new(&ring(1, None));
        let s1 = session("s1");
        let text = sealer.seal_at(&5i64, "a", &s1, NOW + 60).unwrap();
        assert_eq!(
            sealer.open_at::<i64>(&text, "b", &s1, NOW),
            Err(OpenError::Unauthentic)
        );
        assert_eq!(
            sealer.open_at::<i64>(&text, "a", &session("s2"), NOW),
            Err(OpenError::Unauthentic)
        );
        assert_eq!(
            sealer.open_at::<i64>(&text, "a", &Binding::Anonymous, NOW),
            Err(OpenError::Unauthentic)
        );
        assert_eq!(
            sealer.open_at::<i64>(&text, "a", &s1, NOW + 61),
            Err(OpenError::Expired)
        );
        // Length prefixes: ("ab", "c…") and ("a", "bc…") are different AADs.
        assert_ne!(
            aad("ab", "", &session("c"), 0, &[0; 4]),
            aad("a", "", &session("bc"), 0, &[0; 4])
        );
        assert_ne!(
            aad("a", "xy", &session("c"), 0, &[0; 4]),
            aad("a", "x", &session("yc"), 0, &[0; 4])
        );
    }

    #[test]
    fn rotation_previous_opens_new_seals_use_current() {
        let old = Sealer::new(&ring(1, None));
        let rotating = Sealer::new(&ring(2, Some(1)));
        let rotated = Sealer::new(&ring(3, Some(2)));
        let b = session("s");
        let from_old = old.seal_at(&1u8, "a", &b, NOW + 60).unwrap();
        assert_eq!(rotating.open_at::<u8>(&from_old, "a", &b, NOW), Ok(1));
        assert_eq!(
            rotated.open_at::<u8>(&from_old, "a", &b, NOW),
            Err(OpenError::UnknownKey)
        );
        let from_rotating = rotating.seal_at(&2u8, "a", &b, NOW + 60).unwrap();
        assert_eq!(
            old.open_at::<u8>(&from_rotating, "a", &b, NOW),
            Err(OpenError::UnknownKey)
        );
        assert_eq!(rotated.open_at::<u8>(&from_rotating, "a", &b, NOW), Ok(2));
    }

    #[test]
    fn debug_shows_no_key_or_session() {
        let keys = ring(1, Some(2));
        let sealer = Sealer::new(&keys);
        let key = keys.current.get(Purpose::Sealing).bytes();
        let printed = format!("{sealer:?} {:?}", session("very-secret-session-id"));
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!printed.contains(&hex[..8]), "{printed}");
        assert!(!printed.contains("very-secret"), "{printed}");
    }

    #[test]
    fn cost_per_operation() {
        // A rough figure for the report; asserts only a generous bound so it
        // never flakes on a loaded machine.
        let sealer = Sealer::new(&ring(1, None));
        let b = session("abcdefghijklmnopqrstuv");
        let n = 2_000;
        let t = std::time::Instant::now();
        let mut last = String::new();
        for i in 0..n {
            last = sealer
                .seal_at(&(i as i64), "projects.rename", &b, NOW + 60)
                .unwrap();
        }
        let seal_ns = t.elapsed().as_nanos() / n as u128;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let _: i64 = sealer.open_at(&last, "projects.rename", &b, NOW).unwrap();
        }
        let open_ns = t.elapsed().as_nanos() / n as u128;
        eprintln!("seal: {seal_ns} ns/op, open: {open_ns} ns/op");
        assert!(seal_ns < 5_000_000 && open_ns < 5_000_000);
    }
}
