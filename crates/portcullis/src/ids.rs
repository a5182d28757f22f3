//! Stage 3: opaque, rotating action ids.
//!
//! An id is `base64url(HMAC-SHA256(k_ids, epoch ‖ name)[..16])`, where `k_ids`
//! is the HKDF subkey for ids and `epoch = floor(unix_time / rotation)`
//! (default 14 days). So:
//! * the wire never carries an action name, a file path or an index;
//! * two instances with the same secret compute the same ids, with no
//!   coordination;
//! * the ids of the current and the previous epoch (and, during a secret
//!   rotation, of the previous secret) resolve; older ones do not.
//!
//! A well-formed id that resolves to nothing is *stale* (409 `stale_action`:
//! the page was rendered by an older deploy or epoch, and the client reloads
//! once). Anything that is not 22 base64url characters is *malformed* (400).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{ErrorCode, Rejection};
use crate::keys::{KeyRing, Purpose, SubKey};

/// Bytes of HMAC output kept: 128 bits is far beyond guessing range.
const ID_BYTES: usize = 16;
/// Length of the base64url (unpadded) text form.
pub const ID_TEXT_LEN: usize = 22;

/// An action id as bytes. Its `Display` is the wire form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActionId([u8; ID_BYTES]);

impl ActionId {
    /// Computes the id of `name` in `epoch` under `key`.
    pub fn compute(key: &SubKey, epoch: u64, name: &str) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.bytes())
            .expect("HMAC accepts any key length");
        mac.update(&epoch.to_be_bytes());
        mac.update(name.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; ID_BYTES];
        out.copy_from_slice(&full[..ID_BYTES]);
        ActionId(out)
    }

    /// Parses the wire form; anything else is `malformed_action_id`.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let malformed = || Rejection::new(ErrorCode::MalformedActionId);
        if text.len() != ID_TEXT_LEN {
            return Err(malformed());
        }
        let mut out = [0u8; ID_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
            Ok(ID_BYTES) => Ok(ActionId(out)),
            _ => Err(malformed()),
        }
    }
}

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_TEXT_LEN];
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActionId({self})")
    }
}

/// The epoch for a moment, given the rotation period.
pub fn epoch_at(t: SystemTime, rotation: Duration) -> u64 {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    secs / rotation.as_secs().max(1)
}

/// All ids that resolve during one epoch.
struct Table {
    epoch: u64,
    by_id: HashMap<ActionId, usize>,
    /// Index → the id to render into pages now (current secret, current epoch).
    current: Vec<ActionId>,
}

/// Resolves ids to action indices; rebuilds its table when the epoch turns.
pub struct Ids {
    names: Vec<&'static str>,
    keys: KeyRing,
    rotation: Duration,
    table: ArcSwap<Table>,
}

impl Ids {
    /// Ids for the actions `names` (an action's index is its position),
    /// derived from the ring's id subkey, turning every `rotation`.
    pub fn new(names: Vec<&'static str>, keys: KeyRing, rotation: Duration) -> Self {
        let epoch = epoch_at(SystemTime::now(), rotation);
        let table = build(&names, &keys, epoch);
        Ids {
            names,
            keys,
            rotation,
            table: ArcSwap::from_pointee(table),
        }
    }

    fn table(&self) -> arc_swap::Guard<Arc<Table>> {
        let table = self.table.load();
        let now = epoch_at(SystemTime::now(), self.rotation);
        if table.epoch == now {
            return table;
        }
        // Once per rotation period: two instances may race here and both
        // build the same table; either result is correct.
        self.table
            .store(Arc::new(build(&self.names, &self.keys, now)));
        self.table.load()
    }

    /// Resolves wire text to the action's index.
    pub fn resolve(&self, text: &str) -> Result<usize, Rejection> {
        let id = ActionId::parse(text)?;
        self.table()
            .by_id
            .get(&id)
            .copied()
            .ok_or_else(|| Rejection::new(ErrorCode::StaleAction))
    }

    /// The id to render for action `index` right now.
    pub fn current(&self, index: usize) -> ActionId {
        self.table().current[index]
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.table().epoch
    }

    /// The id `name` had (or will have) in `epoch` under the current secret.
    /// For tests and tooling; the pipeline never needs it.
    pub fn id_in_epoch(&self, name: &str, epoch: u64) -> ActionId {
        ActionId::compute(self.keys.current.get(Purpose::ActionIds), epoch, name)
    }
}

fn build(names: &[&'static str], keys: &KeyRing, epoch: u64) -> Table {
    let mut by_id = HashMap::with_capacity(names.len() * 4);
    let mut current = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        current.push(ActionId::compute(
            keys.current.get(Purpose::ActionIds),
            epoch,
            name,
        ));
        for set in keys.verifying() {
            for e in [epoch, epoch.saturating_sub(1)] {
                by_id.insert(
                    ActionId::compute(set.get(Purpose::ActionIds), e, name),
                    index,
                );
            }
        }
    }
    Table {
        epoch,
        by_id,
        current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterSecret;

    const DAY: Duration = Duration::from_secs(86_400);

    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(&MasterSecret::from_bytes(vec![byte; 32]).unwrap(), None)
    }

    #[test]
    fn same_secret_same_ids_on_two_instances() {
        let a = Ids::new(vec!["a", "b"], ring(1), 14 * DAY);
        let b = Ids::new(vec!["b", "a"], ring(1), 14 * DAY);
        assert_eq!(a.current(0), b.current(1));
        assert_ne!(a.current(0), a.current(1));
        assert_eq!(a.current(0).to_string().len(), ID_TEXT_LEN);
    }

    #[test]
    fn current_and_previous_epoch_resolve_older_is_stale() {
        let ids = Ids::new(vec!["projects.rename"], ring(1), 14 * DAY);
        let e = ids.epoch();
        for (epoch, ok) in [(e, true), (e - 1, true), (e - 2, false), (e + 1, false)] {
            let text = ids.id_in_epoch("projects.rename", epoch).to_string();
            let got = ids.resolve(&text);
            assert_eq!(got.is_ok(), ok, "epoch offset {}", epoch as i64 - e as i64);
            if !ok {
                assert_eq!(got.unwrap_err().code, ErrorCode::StaleAction);
            }
        }
    }

    #[test]
    fn id_from_another_secret_is_stale_not_malformed() {
        let ours = Ids::new(vec!["x"], ring(1), 14 * DAY);
        let theirs = Ids::new(vec!["x"], ring(2), 14 * DAY);
        let err = ours.resolve(&theirs.current(0).to_string()).unwrap_err();
        assert_eq!(err.code, ErrorCode::StaleAction);
    }

    #[test]
    fn previous_secret_resolves_during_rotation() {
        let old = MasterSecret::from_bytes(vec![1; 32]).unwrap();
        let new = MasterSecret::from_bytes(vec![2; 32]).unwrap();
        let before = Ids::new(vec!["x"], KeyRing::new(&old, None), 14 * DAY);
        let during = Ids::new(vec!["x"], KeyRing::new(&new, Some(&old)), 14 * DAY);
        assert_eq!(during.resolve(&before.current(0).to_string()).unwrap(), 0);
        assert_ne!(
            during.current(0),
            before.current(0),
            "new pages use the new secret"
        );
    }

    #[test]
    fn malformed_ids() {
        let ids = Ids::new(vec!["x"], ring(1), 14 * DAY);
        for bad in [
            "",
            "short",
            "projects.rename",
            &"A".repeat(23),
            "!!!!!!!!!!!!!!!!!!!!!!",
            "AAAAAAAAAAAAAAAAAAAAA/",
        ] {
            assert_eq!(
                ids.resolve(bad).unwrap_err().code,
                ErrorCode::MalformedActionId,
                "{bad}"
            );
        }
    }
}
