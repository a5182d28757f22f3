//! The `Viewer`: the authenticated principal of a request.
//!
//! Only this crate can make one, and only from the server-side session
//! ([`crate::session`]); it has no public constructor, no `Deserialize`, and no
//! field a handler can set. Identity therefore never comes from a payload: a
//! request body that says `userId=1` is an unknown field (422), not a login.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A user id. Apps store it as an integer primary key.
pub type UserId = i64;

/// The signed-in user of the current request.
#[derive(Clone, Debug)]
pub struct Viewer {
    id: UserId,
    roles: Arc<[String]>,
    authenticated_at: SystemTime,
    reauthenticated_at: SystemTime,
}

impl Viewer {
    pub(crate) fn new(
        id: UserId,
        roles: Arc<[String]>,
        authenticated_at: SystemTime,
        reauthenticated_at: SystemTime,
    ) -> Self {
        Viewer {
            id,
            roles,
            authenticated_at,
            reauthenticated_at,
        }
    }

    /// The user's id, as given to [`crate::session::Auth::login`].
    pub fn id(&self) -> UserId {
        self.id
    }

    /// The roles granted at sign-in (a role change takes effect at the
    /// next `login`).
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether `role` is among [`Viewer::roles`] (exact match).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// When this session signed in.
    pub fn authenticated_at(&self) -> SystemTime {
        self.authenticated_at
    }

    /// Whether the password was (re-)entered in this session within `window`.
    pub fn reauthenticated_within(&self, window: Duration) -> bool {
        SystemTime::now()
            .duration_since(self.reauthenticated_at)
            .map(|age| age <= window)
            .unwrap_or(false)
    }
}

/// What a public action's handler receives: a viewer if one is signed in.
#[derive(Clone, Debug)]
pub struct MaybeViewer(pub Option<Viewer>);

impl MaybeViewer {
    /// The signed-in viewer, or `None` for an anonymous caller.
    pub fn get(&self) -> Option<&Viewer> {
        self.0.as_ref()
    }
}
