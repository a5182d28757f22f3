//! The data-access layer: the only code in the demo that issues SQL.
//!
//! Every read and write of team data takes the [`Viewer`] and is scoped by it
//! *in the SQL itself* (`… AND team_id IN (SELECT team_id FROM memberships
//! WHERE user_id = $viewer)`). A row from another team is therefore
//! indistinguishable from a missing row: the caller gets `NotFound` (404
//! `not_found`), never a 403 that would confirm the row exists.
//!
//! Row types here (`ProjectRow`, `UserRow`, …) deliberately do not implement
//! `portcullis::Dto`, so no handler can return one; handlers map them to
//! purpose-built DTOs.

pub mod attachments;
pub mod audit;
pub mod comments;
pub mod contact;
pub mod projects;
pub mod sql;
pub mod teams;
pub mod tokens;
pub mod users;

use portcullis::ActionError;

pub use portcullis::Viewer;

/// The DAL handle, cheap to clone.
#[derive(Clone)]
pub struct Dal {
    pub(crate) pool: sql::Pool,
}

/// Every DAL call returns this: `NotFound` for absent-or-not-yours, field
/// errors for conflicts, `Internal` for database failures.
pub type DalResult<T> = Result<T, ActionError>;

impl Dal {
    pub fn new(pool: sql::Pool) -> Self {
        Dal { pool }
    }

    pub fn users(&self) -> users::Users<'_> {
        users::Users(self)
    }
    pub fn teams(&self) -> teams::Teams<'_> {
        teams::Teams(self)
    }
    pub fn projects(&self) -> projects::Projects<'_> {
        projects::Projects(self)
    }
    pub fn attachments(&self) -> attachments::Attachments<'_> {
        attachments::Attachments(self)
    }
    pub fn comments(&self) -> comments::Comments<'_> {
        comments::Comments(self)
    }
    pub fn tokens(&self) -> tokens::Tokens<'_> {
        tokens::Tokens(self)
    }
    pub fn contact(&self) -> contact::Contact<'_> {
        contact::Contact(self)
    }
    pub fn audit_log(&self) -> audit::AuditLog<'_> {
        audit::AuditLog(self)
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The SQL fragment every team-scoped query uses; `$1` is the viewer id.
pub(crate) const VIEWER_TEAMS: &str = "SELECT team_id FROM memberships WHERE user_id = $1";

/// "The viewer (`$1`) is a member of the team in column `$col`", for
/// statements about one row. SQLite runs `team_id IN (VIEWER_TEAMS)` by
/// filling an ephemeral table on every execution (a b-tree opened, filled
/// and closed: about a tenth of a rename's instructions); `EXISTS` probes
/// the memberships primary key instead. Lists keep `IN`: one table per list.
macro_rules! viewer_in_team {
    ($col:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM memberships vt WHERE vt.team_id = ",
            $col,
            " AND vt.user_id = $1)"
        )
    };
}

/// [`viewer_in_team!`] for a projects row aliased `p`.
pub(crate) const VIEWER_IN_P_TEAM: &str = viewer_in_team!("p.team_id");

/// [`viewer_in_team!`] for `UPDATE projects` (no alias there).
pub(crate) const VIEWER_IN_PROJECTS_TEAM: &str = viewer_in_team!("projects.team_id");

fn not_found<T>(row: Option<T>) -> DalResult<T> {
    row.ok_or(ActionError::NotFound)
}

/// A scoped write that matched no row touched nothing the viewer may see:
/// the same `NotFound` as a missing id.
fn touched_one(done: sql::Done) -> DalResult<()> {
    if done.rows_affected() == 0 {
        return Err(ActionError::NotFound);
    }
    Ok(())
}
