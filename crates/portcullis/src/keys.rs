//! The key ring: one master secret, a subkey per purpose.
//!
//! `PORTCULLIS_SECRET` (≥ 32 bytes, base64) is never used directly. HKDF-SHA256
//! derives an independent subkey for each [`Purpose`], so a key that leaks from
//! one use (say a flash cookie) says nothing about another (say action ids).
//! An optional previous secret is kept for *verifying* during rotation; new ids,
//! seals and cookies always use the current one. Key bytes are zeroed on drop
//! and never printed: `Debug` shows only the key id.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Why a subkey exists. Each purpose gets its own HKDF `info` string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Rotating action ids.
    ActionIds,
    /// Sealed bound arguments ([`crate::security::seal`]).
    Sealing,
    /// The tag of the anonymous scope cookie
    /// ([`crate::wire::cookie::ANON`]).
    Cookies,
    /// The sealed no-JS flash cookie ([`crate::wire::cookie::FLASH`]).
    Flash,
    /// Proof-of-work challenges for bot checks
    /// ([`crate::security::BotCheck::ProofOfWork`]).
    Challenges,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::ActionIds => b"portcullis/v1/action-ids",
            Purpose::Sealing => b"portcullis/v1/sealing",
            Purpose::Cookies => b"portcullis/v1/cookies",
            Purpose::Flash => b"portcullis/v1/flash",
            Purpose::Challenges => b"portcullis/v1/challenges",
        }
    }
}

/// Errors reading a master secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Not base64 in any of the accepted alphabets.
    #[error("the secret is not valid base64 (standard or url-safe alphabet)")]
    NotBase64,
    /// Fewer than 32 bytes (the count it has).
    #[error("the secret decodes to {0} bytes; at least 32 are required")]
    TooShort(usize),
}

/// A master secret. Zeroed on drop; `Debug` never shows its bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterSecret(Vec<u8>);

impl MasterSecret {
    /// Raw secret bytes; fewer than 32 is [`SecretError::TooShort`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, SecretError> {
        if bytes.len() < 32 {
            return Err(SecretError::TooShort(bytes.len()));
        }
        Ok(MasterSecret(bytes))
    }

    /// Parses base64 (standard or url-safe, padded or not).
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        use base64::Engine;
        let text = text.trim();
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(bytes) = engine.decode(text) {
                return Self::from_bytes(bytes);
            }
        }
        Err(SecretError::NotBase64)
    }

    /// A fresh random secret (dev mode, tests).
    pub fn generate() -> Self {
        MasterSecret(rand::random::<[u8; 32]>().to_vec())
    }

    /// Base64 text for storing a generated secret.
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(<redacted>)")
    }
}

/// A 256-bit subkey for one purpose.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SubKey([u8; 32]);

impl SubKey {
    /// The key material, for the MAC or cipher of its purpose only.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubKey(<redacted>)")
    }
}

/// All subkeys derived from one master secret, plus its public key id.
#[derive(Clone)]
pub struct KeySet {
    /// A non-secret 4-byte id of the master secret, so a sealed value can say
    /// which key made it.
    pub id: [u8; 4],
    action_ids: SubKey,
    sealing: SubKey,
    cookies: SubKey,
    flash: SubKey,
    challenges: SubKey,
}

impl KeySet {
    /// HKDF-SHA256 of `secret`, one `info` string per [`Purpose`].
    pub fn derive(secret: &MasterSecret) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"portcullis"), &secret.0);
        let sub = |p: Purpose| {
            let mut out = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
            hk.expand(p.info(), &mut out)
                .expect("32-byte HKDF output is always valid");
            SubKey(out)
        };
        let mut id = [0u8; 4];
        hk.expand(b"portcullis/v1/key-id", &mut id)
            .expect("4-byte HKDF output is always valid");
        KeySet {
            id,
            action_ids: sub(Purpose::ActionIds),
            sealing: sub(Purpose::Sealing),
            cookies: sub(Purpose::Cookies),
            flash: sub(Purpose::Flash),
            challenges: sub(Purpose::Challenges),
        }
    }

    /// The subkey for `purpose`.
    pub fn get(&self, purpose: Purpose) -> &SubKey {
        match purpose {
            Purpose::ActionIds => &self.action_ids,
            Purpose::Sealing => &self.sealing,
            Purpose::Cookies => &self.cookies,
            Purpose::Flash => &self.flash,
            Purpose::Challenges => &self.challenges,
        }
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeySet {{ id: {:02x}{:02x}{:02x}{:02x}, keys: <redacted> }}",
            self.id[0], self.id[1], self.id[2], self.id[3]
        )
    }
}

/// The current key set and, during a rotation, the previous one.
#[derive(Clone, Debug)]
pub struct KeyRing {
    /// Makes every new id, seal, cookie and challenge; also verifies.
    pub current: KeySet,
    /// `PORTCULLIS_SECRET_PREVIOUS`: only verifies, so pages and cookies
    /// made before a rotation keep working.
    pub previous: Option<KeySet>,
}

impl KeyRing {
    /// The ring for a master secret and, during a rotation, the previous
    /// one.
    pub fn new(current: &MasterSecret, previous: Option<&MasterSecret>) -> Self {
        KeyRing {
            current: KeySet::derive(current),
            previous: previous.map(KeySet::derive),
        }
    }

    /// Current first, then previous: the order to try when verifying.
    pub fn verifying(&self) -> impl Iterator<Item = &KeySet> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_get_independent_keys() {
        let ks = KeySet::derive(&MasterSecret::from_bytes(vec![7; 32]).unwrap());
        let all = [
            Purpose::ActionIds,
            Purpose::Sealing,
            Purpose::Cookies,
            Purpose::Flash,
            Purpose::Challenges,
        ];
        for a in all {
            for b in all {
                if a != b {
                    assert_ne!(ks.get(a).bytes(), ks.get(b).bytes(), "{a:?} vs {b:?}");
                }
            }
        }
    }

    #[test]
    fn short_or_garbled_secrets_are_refused() {
        assert!(matches!(
            MasterSecret::from_base64("c2hvcnQ="),
            Err(SecretError::TooShort(5))
        ));
        assert!(matches!(
            MasterSecret::from_base64("not base64 at all!!"),
            Err(SecretError::NotBase64)
        ));
    }

    #[test]
    fn debug_output_contains_no_key_bytes() {
        let secret =
            MasterSecret::from_bytes((0u8..32).map(|i| i.wrapping_mul(37)).collect()).unwrap();
        let ring = KeyRing::new(&secret, Some(&secret));
        let printed = format!("{ring:?} {secret:?}");
        for key in [
            ring.current.get(Purpose::ActionIds).bytes().to_vec(),
            ring.current.get(Purpose::Sealing).bytes().to_vec(),
            secret.0.clone(),
        ] {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!printed.contains(&hex[..16]), "{printed}");
            assert!(!printed.contains(&format!("{:?}", &key[..4])), "{printed}");
        }
        assert!(printed.contains("redacted"));
    }
}
