//! Project actions. Inputs carry only what the user may choose: an id (whose
//! ownership the DAL re-checks in SQL) and a name. Never `teamId` on rename,
//! never `ownerId`, `archived` only through its own action.

use portcullis::prelude::*;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::RECENT;
use crate::AppState;
use crate::dal::projects::ProjectRow;

pub const CREATE: ActionRef<Create, ProjectDto> = ActionRef::new("projects.create");
pub const RENAME: ActionRef<Rename, ProjectDto> = ActionRef::new("projects.rename");
pub const ARCHIVE: ActionRef<ProjectId, ProjectDto> = ActionRef::new("projects.archive");
pub const RESTORE: ActionRef<ProjectId, ProjectDto> = ActionRef::new("projects.restore");
pub const DELETE: ActionRef<ProjectId, ()> = ActionRef::new("projects.delete");
pub const TRANSFER: ActionRef<Transfer, ProjectDto> = ActionRef::new("projects.transfer");

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions
        .add(
            action(CREATE)
                .authenticated()
                .limit(per_user(30).per_minute())
                .mutates(&["update_tag:project", "update_tag:team-projects"])
                .not_idempotent()
                .typescript()
                .handler(create),
        )
        .add(
            action(RENAME)
                .authenticated() // exactly one policy, or there is no .handler()
                .limit(per_user(rename_limit()).per_minute())
                .mutates(&["update_tag:project"])
                .idempotent()
                .typescript() // its types in the manifest, for `portcullis ts`
                .handler(rename),
        )
        .add(
            action(ARCHIVE)
                .authenticated()
                .mutates(&["update_tag:project", "update_tag:team-projects"])
                .idempotent()
                .typescript()
                .handler(archive),
        )
        .add(
            action(RESTORE)
                .authenticated()
                .mutates(&["update_tag:project", "update_tag:team-projects"])
                .idempotent()
                .typescript()
                .handler(restore),
        )
        .add(
            action(DELETE)
                .recent(RECENT)
                .mutates(&["update_tag:project", "update_tag:team-projects", "redirect"])
                .idempotent()
                .handler(delete),
        )
        .add(
            action(TRANSFER)
                .recent(RECENT)
                .mutates(&["update_tag:project", "update_tag:team-projects", "redirect"])
                .idempotent()
                .handler(transfer),
        );
}

/// Moving a project to another team. The project id arrives *sealed*: the
/// transfer page put it there for this action and this session, so a form
/// cannot be pointed at another project by editing a hidden field, nor
/// replayed into another action. The destination is the user's choice and
/// is re-checked (member of it, admin of the source) in the UPDATE.
#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Transfer {
    #[garde(skip)]
    pub project_id: portcullis::Sealed<i64>,
    #[garde(range(min = 1))]
    pub to_team: i64,
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

#[derive(Deserialize, garde::Validate, TS)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[ts(rename = "CreateProject")]
pub struct Create {
    /// Which of the viewer's teams; membership is checked in the INSERT.
    #[garde(range(min = 1))]
    pub team_id: i64,
    #[garde(length(chars, min = 2, max = 80))]
    pub name: String,
}

#[derive(Deserialize, garde::Validate, TS)] // TS: the typed client (`portcullis ts`)
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rename {
    #[garde(range(min = 1))]
    pub project_id: i64, // only an id: ownership is re-checked in SQL
    #[garde(length(chars, min = 2, max = 80))]
    pub name: String,
}

#[derive(Deserialize, garde::Validate, TS)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectId {
    #[garde(range(min = 1))]
    pub project_id: i64,
}

/// A project as the client sees it.
#[derive(Serialize, Dto, TS)] // only Dto types can be returned; DAL rows are not Dto
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

/// Expires what a change to project `p` makes stale.
fn touched(cx: &Cx<AppState>, p: &ProjectRow, list_changed: bool) {
    cx.update_tag(format!("project:{}", p.id));
    if list_changed {
        cx.update_tag(format!("team-projects:{}", p.team_id));
    }
}

async fn create(cx: Cx<AppState>, viewer: Viewer, input: Valid<Create>) -> Outcome<ProjectDto> {
    let p = cx
        .state()
        .dal
        .projects()
        .create(&viewer, input.team_id, input.name.trim())
        .await?;
    touched(&cx, &p, true);
    cx.audit_record(format_args!("project:{}", p.id));
    Ok(p.into())
}

async fn rename(cx: Cx<AppState>, viewer: Viewer, input: Valid<Rename>) -> Outcome<ProjectDto> {
    let p = cx
        .state()
        .dal
        .projects()
        .rename(&viewer, input.project_id, input.name.trim())
        .await?;
    touched(&cx, &p, false);
    cx.audit_record(format_args!("project:{}", p.id));
    Ok(p.into())
}

async fn archive(cx: Cx<AppState>, viewer: Viewer, input: Valid<ProjectId>) -> Outcome<ProjectDto> {
    let p = cx
        .state()
        .dal
        .projects()
        .set_archived(&viewer, input.project_id, true)
        .await?;
    touched(&cx, &p, true);
    cx.audit_record(format_args!("project:{}", p.id));
    Ok(p.into())
}

async fn restore(cx: Cx<AppState>, viewer: Viewer, input: Valid<ProjectId>) -> Outcome<ProjectDto> {
    let p = cx
        .state()
        .dal
        .projects()
        .set_archived(&viewer, input.project_id, false)
        .await?;
    touched(&cx, &p, true);
    cx.audit_record(format_args!("project:{}", p.id));
    Ok(p.into())
}

async fn transfer(cx: Cx<AppState>, viewer: Viewer, input: Valid<Transfer>) -> Outcome<ProjectDto> {
    let dal = &cx.state().dal;
    let id = *input.project_id.get();
    let before = dal.projects().get(&viewer, id).await?;
    let p = dal.projects().transfer(&viewer, id, input.to_team).await?;
    touched(&cx, &before, true);
    touched(&cx, &p, true);
    cx.audit_record(format_args!("project:{id}"));
    cx.redirect(&format!("/projects/{id}"))?;
    Ok(p.into())
}

async fn delete(cx: Cx<AppState>, viewer: Viewer, input: Valid<ProjectId>) -> Outcome<()> {
    let dal = &cx.state().dal;
    let p = dal.projects().get(&viewer, input.project_id).await?;
    let files = dal
        .attachments()
        .keys_of_project(&viewer, input.project_id)
        .await?;
    dal.projects().delete(&viewer, input.project_id).await?;
    // The rows went with the project (ON DELETE CASCADE); now the files.
    crate::attachments_gone(&cx.state().files, &files).await;
    touched(&cx, &p, true);
    cx.audit_record(format_args!("project:{}", input.project_id));
    cx.redirect("/projects")?;
    Ok(())
}
