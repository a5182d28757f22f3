//! Project actions. Inputs carry only what the user may choose: an id (whose
//! ownership the DAL re-checks in SQL) and a name. Never `teamId` on rename,
//! never `ownerId`, `archived` only through its own action.

use portcullis::prelude::*;
use serde::{Deserialize, Serialize};

use super::RECENT;
use crate::AppState;
use crate::dal::projects::ProjectRow;

pub const CREATE: &str = "projects.create";
pub const RENAME: &str = "projects.rename";
pub const ARCHIVE: &str = "projects.archive";
pub const RESTORE: &str = "projects.restore";
pub const DELETE: &str = "projects.delete";

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions
        .add(
            action(CREATE)
                .authenticated()
                .limit(per_user(30).per_minute())
                .handler(create),
        )
        .add(
            action(RENAME)
                .authenticated()
                .limit(per_user(rename_limit()).per_minute())
                .handler(rename),
        )
        .add(action(ARCHIVE).authenticated().handler(archive))
        .add(action(RESTORE).authenticated().handler(restore))
        .add(action(DELETE).recent(RECENT).handler(delete));
}

/// Renames per user per minute: 60, or `DEMO_RENAME_LIMIT` (read at start-up;
/// `scripts/bench` raises it so the limiter stage runs on every request but
/// does not turn the benchmark into a 429 benchmark). Shown in the manifest.
fn rename_limit() -> u32 {
    std::env::var("DEMO_RENAME_LIMIT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(60)
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Create {
    /// Which of the viewer's teams; membership is checked in the INSERT.
    #[garde(range(min = 1))]
    pub team_id: i64,
    #[garde(length(chars, min = 2, max = 80))]
    pub name: String,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rename {
    #[garde(range(min = 1))]
    pub project_id: i64,
    #[garde(length(chars, min = 2, max = 80))]
    pub name: String,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectId {
    #[garde(range(min = 1))]
    pub project_id: i64,
}

/// A project as the client sees it.
#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct ProjectDto {
    pub id: i64,
    pub name: String,
    pub archived: bool,
}

impl From<ProjectRow> for ProjectDto {
    fn from(p: ProjectRow) -> Self {
        ProjectDto {
            id: p.id,
            name: p.name,
            archived: p.archived_at.is_some(),
        }
    }
}

async fn create(cx: Cx<AppState>, viewer: Viewer, input: Valid<Create>) -> Outcome<ProjectDto> {
    let p = cx
        .state()
        .dal
        .projects()
        .create(&viewer, input.team_id, input.name.trim())
        .await?;
    Ok(p.into())
}

async fn rename(cx: Cx<AppState>, viewer: Viewer, input: Valid<Rename>) -> Outcome<ProjectDto> {
    let p = cx
        .state()
        .dal
        .projects()
        .rename(&viewer, input.project_id, input.name.trim())
        .await?;
    Ok(p.into())
}

async fn archive(cx: Cx<AppState>, viewer: Viewer, input: Valid<ProjectId>) -> Outcome<ProjectDto> {
    let p = cx
        .state()
        .dal
        .projects()
        .set_archived(&viewer, input.project_id, true)
        .await?;
    Ok(p.into())
}

async fn restore(cx: Cx<AppState>, viewer: Viewer, input: Valid<ProjectId>) -> Outcome<ProjectDto> {
    let p = cx
        .state()
        .dal
        .projects()
        .set_archived(&viewer, input.project_id, false)
        .await?;
    Ok(p.into())
}

async fn delete(cx: Cx<AppState>, viewer: Viewer, input: Valid<ProjectId>) -> Outcome<()> {
    cx.state()
        .dal
        .projects()
        .delete(&viewer, input.project_id)
        .await?;
    cx.redirect("/projects")?;
    Ok(())
}
