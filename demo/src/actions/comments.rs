//! Comments: anyone in the project's team may post; only the author may edit
//! or delete, and the DAL enforces both in SQL.

use portcullis::prelude::*;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::AppState;
use crate::dal::comments::CommentRow;

pub const POST: ActionRef<Post, CommentDto> = ActionRef::new("comments.post");
pub const EDIT: ActionRef<Edit, CommentDto> = ActionRef::new("comments.edit");
pub const DELETE: ActionRef<CommentId, ()> = ActionRef::new("comments.delete");

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions
        .add(
            action(POST)
                .authenticated()
                .limit(per_user(20).per_minute())
                .mutates(&["update_tag:comments"])
                .not_idempotent()
                .typescript()
                .handler(post),
        )
        .add(
            action(EDIT)
                .authenticated()
                .mutates(&["update_tag:comments"])
                .idempotent()
                .typescript()
                .handler(edit),
        )
        .add(
            action(DELETE)
                .authenticated()
                .mutates(&["update_tag:comments"])
                .idempotent()
                .allow_audit(
                    "destructive-without-recent",
                    "an author deletes their own comment (the DAL scopes it to the author); low stakes, and a password prompt per comment would be friction without protection",
                )
                .typescript()
                .handler(delete),
        );
}

#[derive(Deserialize, garde::Validate, TS)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[ts(rename = "PostComment")]
pub struct Post {
    #[garde(range(min = 1))]
    pub project_id: i64,
    #[garde(length(chars, min = 1, max = 2000))]
    pub body: String,
}

#[derive(Deserialize, garde::Validate, TS)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[ts(rename = "EditComment")]
pub struct Edit {
    #[garde(range(min = 1))]
    pub comment_id: i64,
    #[garde(length(chars, min = 1, max = 2000))]
    pub body: String,
}

#[derive(Deserialize, garde::Validate, TS)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommentId {
    #[garde(range(min = 1))]
    pub comment_id: i64,
}

/// A comment as the client sees it: the author's display name, not their email.
#[derive(Serialize, Dto, TS)]
#[serde(rename_all = "camelCase")]
pub struct CommentDto {
    pub id: i64,
    pub author: String,
    pub body: String,
}

impl From<CommentRow> for CommentDto {
    fn from(c: CommentRow) -> Self {
        CommentDto {
            id: c.id,
            author: c.author_name,
            body: c.body,
        }
    }
}

async fn post(cx: Cx<AppState>, viewer: Viewer, input: Valid<Post>) -> Outcome<CommentDto> {
    let c = cx
        .state()
        .dal
        .comments()
        .post(&viewer, input.project_id, input.body.trim())
        .await?;
    cx.update_tag(format!("comments:{}", c.project_id));
    cx.audit_record(format_args!("comment:{}", c.id));
    Ok(c.into())
}

async fn edit(cx: Cx<AppState>, viewer: Viewer, input: Valid<Edit>) -> Outcome<CommentDto> {
    let c = cx
        .state()
        .dal
        .comments()
        .edit(&viewer, input.comment_id, input.body.trim())
        .await?;
    cx.update_tag(format!("comments:{}", c.project_id));
    cx.audit_record(format_args!("comment:{}", c.id));
    Ok(c.into())
}

async fn delete(cx: Cx<AppState>, viewer: Viewer, input: Valid<CommentId>) -> Outcome<()> {
    let project = cx
        .state()
        .dal
        .comments()
        .delete(&viewer, input.comment_id)
        .await?;
    cx.update_tag(format!("comments:{project}"));
    cx.audit_record(format_args!("comment:{}", input.comment_id));
    Ok(())
}
