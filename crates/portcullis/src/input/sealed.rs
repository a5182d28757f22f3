//! Sealed bound arguments as input fields: [`Sealed<T>`] and the request's
//! [`Opening`] that its `Deserialize` opens them with (stage 6a).
//!
//! The seal format is [`crate::seal`]'s; what lives here is the decoder's
//! side: serde gives a field's `Deserialize` no context, so the request's
//! action, session binding, key ring and clock reach `Sealed<T>` through a
//! thread-local set by [`Opening::enter`] around the one synchronous serde
//! call (the guard is `!Send`, so it cannot span an `.await`). The second
//! thread-local is registration's: [`probe`] asks an input type which of
//! its fields are `Sealed` without opening anything. Both are here, next to
//! each other and to the decoder that sets them.
//!
//! State: both thread-locals are written only by the decoder and the shape
//! probe on the current thread, for the duration of one synchronous call;
//! the guard (or `probe`) restores them, also on error or unwind. Nothing
//! is shared between requests.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};

use crate::error::{ErrorCode, Rejection};
use crate::seal::{Binding, OpenError, Sealer};

/// Prefix of the serde error message a sealed field raises when it fails to open.
pub(super) const FAILURE_MARKER: &str = "portcullis:invalid_bound_argument";

/// If a deserialization message came from a sealed field, the rejection to send.
pub(super) fn failure_marker(message: &str) -> Option<Rejection> {
    message
        .contains(FAILURE_MARKER)
        .then(|| Rejection::new(ErrorCode::InvalidBoundArgument))
}

/// What a `Sealed<T>` field needs to open itself: set by the decoder for the
/// duration of one synchronous deserialization call.
#[derive(Clone, Debug)]
pub struct Opening {
    sealer: Arc<Sealer>,
    action: &'static str,
    binding: Binding,
    now: u64,
    /// (top-level field, sealed text) pairs of this request's sealed fields.
    fields: Arc<Vec<(String, String)>>,
    /// The files an upload request brought ([`crate::action::upload`]),
    /// taken by its `Upload<R>` fields through the same guard.
    uploads: Option<Arc<crate::upload::Staged>>,
}

thread_local! {
    static OPENING: RefCell<Option<Opening>> = const { RefCell::new(None) };
}

impl Opening {
    /// The context for one request's decode: seals open only if made for
    /// `action` under `binding` and unexpired at `now` (unix seconds).
    pub fn new(sealer: Arc<Sealer>, action: &'static str, binding: Binding, now: u64) -> Self {
        Opening {
            sealer,
            action,
            binding,
            now,
            fields: Arc::default(),
            uploads: None,
        }
    }

    /// The files received for this request, for its `Upload<R>` fields.
    pub fn with_uploads(mut self, uploads: Arc<crate::upload::Staged>) -> Self {
        self.uploads = Some(uploads);
        self
    }

    /// The request's top-level sealed fields as (wire name, sealed text),
    /// collected by the decoder before typed deserialization: a sealed text
    /// opens only under the field name it arrived in.
    pub fn with_fields(mut self, fields: Vec<(String, String)>) -> Self {
        self.fields = Arc::new(fields);
        self
    }

    /// Makes this context visible to `Sealed<T>` fields on this thread until
    /// the guard drops (also on error or unwind). The guard is `!Send`, so it
    /// cannot be held across an `.await` in a task that may move threads.
    pub(crate) fn enter(&self) -> OpeningGuard {
        let previous = OPENING.with(|c| c.replace(Some(self.clone())));
        OpeningGuard {
            previous,
            _uploads: crate::upload::enter(self.uploads.clone()),
            _not_send: PhantomData,
        }
    }

    fn open<T: DeserializeOwned>(&self, text: &str) -> Result<T, OpenError> {
        let mut names = self
            .fields
            .iter()
            .filter(|(_, t)| t == text)
            .map(|(f, _)| f.as_str());
        let field = names.next().unwrap_or("");
        // The same sealed text under two field names: it was made for at
        // most one of them, and we cannot tell which one is being read.
        if names.any(|other| other != field) {
            return Err(OpenError::Unauthentic);
        }
        self.sealer
            .open_field_at(text, self.action, field, &self.binding, self.now)
    }
}

/// Restores the previous opening context when dropped.
pub(crate) struct OpeningGuard {
    previous: Option<Opening>,
    /// The request's files for its `Upload<R>` fields, cleared with it.
    _uploads: crate::upload::StagedGuard,
    _not_send: PhantomData<*const ()>,
}

impl Drop for OpeningGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        OPENING.with(|c| *c.borrow_mut() = previous);
    }
}

/// An input field whose value the server sealed into the page: by the time
/// the handler sees it, it has been decrypted, authenticated for this action,
/// session and time, and type-checked. Only the decoder can make one.
///
/// ```rust,ignore
/// #[derive(Deserialize, garde::Validate)]
/// #[serde(rename_all = "camelCase")]
/// struct Rename {
///     #[garde(skip)]              // the server made it; nothing to validate
///     project_id: Sealed<i64>,
///     #[garde(length(chars, min = 2, max = 80))]
///     name: String,
/// }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sealed<T>(T);

impl<T> Sealed<T> {
    /// The opened value.
    pub fn into_inner(self) -> T {
        self.0
    }

    /// The opened value, borrowed (also reachable through `Deref`).
    pub fn get(&self) -> &T {
        &self.0
    }
}

impl<T> Deref for Sealed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Sealed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sealed").field(&self.0).finish()
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Sealed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if sealed_probe_hit() {
            // Registration is learning the input's shape; open nothing.
            return Err(<D::Error as de::Error>::custom("sealed field probe"));
        }
        let fail = |reason: OpenError, action: &str| {
            if reason == OpenError::NoContext {
                // A programming error, not an attack: say so louder.
                tracing::warn!(%reason, "sealed bound argument refused");
            } else {
                tracing::debug!(%reason, action, "sealed bound argument refused");
            }
            <D::Error as de::Error>::custom(FAILURE_MARKER)
        };
        // Anything but a string (a number, an object) is a forgery as well.
        let text = String::deserialize(d);
        OPENING.with(|c| match &*c.borrow() {
            Some(opening) => match text {
                Ok(text) => opening
                    .open::<T>(&text)
                    .map(Sealed)
                    .map_err(|r| fail(r, opening.action)),
                Err(_) => Err(fail(OpenError::NotBase64, opening.action)),
            },
            None => Err(fail(OpenError::NoContext, "")),
        })
    }
}

thread_local! {
    /// Set while [`probe`] runs (registration learning which fields are
    /// sealed, `shape.rs`); `Sealed<T>`'s
    /// deserializer reports itself here instead of opening anything.
    static SEALED_PROBE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Called first by `Sealed<T>::deserialize`: true (and the field recorded
/// as sealed) when this is a shape probe rather than a real request.
fn sealed_probe_hit() -> bool {
    SEALED_PROBE.with(|p| match p.get() {
        Some(_) => {
            p.set(Some(true));
            true
        }
        None => false,
    })
}

/// Runs `f` (a probe deserialization of one field) with the probe flag
/// set, and says whether a `Sealed<T>` reported itself.
pub(super) fn probe(f: impl FnOnce()) -> bool {
    SEALED_PROBE.with(|p| p.set(Some(false)));
    f();
    SEALED_PROBE.with(|p| p.take()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyRing, MasterSecret};

    const NOW: u64 = 1_800_000_000;

    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(&MasterSecret::from_bytes(vec![byte; 32]).unwrap(), None)
    }

    #[test]
    fn sealed_fields_need_a_context_and_the_guard_clears_it() {
        let sealer = Arc::new(Sealer::new(&ring(1)));
        let text = sealer
            .seal_at(&9i64, "a", &Binding::Anonymous, NOW + 60)
            .unwrap();
        let json = serde_json::to_string(&text).unwrap();
        let err = serde_json::from_str::<Sealed<i64>>(&json).unwrap_err();
        assert!(err.to_string().contains(FAILURE_MARKER), "{err}");
        let opening = Opening::new(sealer, "a", Binding::Anonymous, NOW);
        {
            let _guard = opening.enter();
            assert_eq!(*serde_json::from_str::<Sealed<i64>>(&json).unwrap(), 9);
            // Not a string: refused with the marker, not a type error.
            let err = serde_json::from_str::<Sealed<i64>>("9").unwrap_err();
            assert!(err.to_string().contains(FAILURE_MARKER), "{err}");
        }
        assert!(serde_json::from_str::<Sealed<i64>>(&json).is_err());
    }
}
