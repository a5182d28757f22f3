//! Stage 5: the mandatory access policy.
//!
//! Every action has exactly one [`Policy`], chosen on its builder before a
//! handler can be attached (see [`crate::action`]); an action without one does
//! not compile. The check uses the [`Viewer`] from the session only.
//!
//! | policy          | no viewer                        | viewer lacks it                  |
//! |-----------------|----------------------------------|----------------------------------|
//! | `public`        | allowed (rate limit required)    | –                                |
//! | `authenticated` | 401 `unauthenticated`            | –                                |
//! | `role(r)`       | 401 `unauthenticated`            | 403 `forbidden`                  |
//! | `recent(d)`     | 401 `unauthenticated`            | 401 `reauthentication_required`  |

use std::time::Duration;

use serde::Serialize;

use crate::error::{ErrorCode, Rejection};
use crate::viewer::Viewer;

/// Who may call an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Policy {
    /// Anyone, including anonymous callers. Requires a rate limit.
    Public,
    /// Any signed-in viewer.
    Authenticated,
    /// A signed-in viewer holding this role.
    Role {
        /// The role's name, as in [`Viewer::roles`].
        role: &'static str,
    },
    /// A signed-in viewer who entered their password within `within`
    /// (step-up for destructive operations).
    Recent {
        /// How long ago the password may have been entered.
        #[serde(rename = "withinSecs", serialize_with = "secs")]
        within: Duration,
    },
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Policy {
    /// Decides; `Ok` means the handler may run.
    pub fn check(&self, viewer: Option<&Viewer>) -> Result<(), Rejection> {
        let need_viewer = || viewer.ok_or_else(|| Rejection::new(ErrorCode::Unauthenticated));
        match self {
            Policy::Public => Ok(()),
            Policy::Authenticated => need_viewer().map(|_| ()),
            Policy::Role { role } => {
                if need_viewer()?.has_role(role) {
                    Ok(())
                } else {
                    Err(Rejection::new(ErrorCode::Forbidden))
                }
            }
            Policy::Recent { within } => {
                if need_viewer()?.reauthenticated_within(*within) {
                    Ok(())
                } else {
                    Err(Rejection::new(ErrorCode::ReauthenticationRequired))
                }
            }
        }
    }

    /// Whether a viewer is needed at all.
    pub fn requires_viewer(&self) -> bool {
        !matches!(self, Policy::Public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn viewer(roles: &[&str], reauth_ago: Duration) -> Viewer {
        let now = SystemTime::now();
        Viewer::new(
            7,
            roles
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .into(),
            now - Duration::from_secs(3600),
            now - reauth_ago,
        )
    }

    #[test]
    fn table() {
        let fresh = viewer(&["staff"], Duration::from_secs(60));
        let stale = viewer(&[], Duration::from_secs(3600));
        let fifteen = Policy::Recent {
            within: Duration::from_secs(900),
        };
        let code = |p: &Policy, v: Option<&Viewer>| p.check(v).err().map(|r| r.code);
        assert_eq!(code(&Policy::Public, None), None);
        assert_eq!(
            code(&Policy::Authenticated, None),
            Some(ErrorCode::Unauthenticated)
        );
        assert_eq!(code(&Policy::Authenticated, Some(&stale)), None);
        let staff = Policy::Role { role: "staff" };
        assert_eq!(code(&staff, Some(&fresh)), None);
        assert_eq!(code(&staff, Some(&stale)), Some(ErrorCode::Forbidden));
        assert_eq!(code(&staff, None), Some(ErrorCode::Unauthenticated));
        assert_eq!(code(&fifteen, Some(&fresh)), None);
        assert_eq!(
            code(&fifteen, Some(&stale)),
            Some(ErrorCode::ReauthenticationRequired)
        );
        assert_eq!(code(&fifteen, None), Some(ErrorCode::Unauthenticated));
    }
}
