//! Project attachments: any member of the project's team may upload, list
//! and download; only the uploader may delete. Files are checked by the
//! framework before the handler runs (cap, type by magic bytes, name
//! sanitised; `portcullis::action::upload`), stored under a random key, and
//! served back only as downloads (`pages::attachment_download`).

use portcullis::action::upload::{FileKey, Upload, UploadRules};
use portcullis::prelude::*;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::dal::attachments::{AddError, AttachmentRow, NewAttachment};

pub const UPLOAD: ActionRef<Attach, AttachmentDto> = ActionRef::new("attachments.upload");
pub const DELETE: ActionRef<AttachmentId, ()> = ActionRef::new("attachments.delete");

/// What a project attachment may be: images, PDFs and plain text, up to
/// 5 MiB each (the team's total is capped in the DAL).
pub struct ProjectFile;
impl UploadRules for ProjectFile {
    const MAX_BYTES: u64 = 5 * 1024 * 1024;
    const TYPES: &'static [&'static str] = &[
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
        "text/plain",
    ];
}

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions
        .add(
            action(UPLOAD)
                .authenticated()
                .limit(per_user(30).per_minute())
                .mutates(&["update_tag:attachments"])
                .not_idempotent()
                .handler(upload),
        )
        .add(
            action(DELETE)
                .authenticated()
                .mutates(&["update_tag:attachments"])
                .idempotent()
                .allow_audit(
                    "destructive-without-recent",
                    "an uploader deletes their own attachment (the DAL scopes it to the uploader); low stakes, like deleting a comment",
                )
                .handler(delete),
        );
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Attach {
    #[garde(range(min = 1))]
    pub project_id: i64,
    #[garde(skip)] // checked by the decoder: cap, type by magic bytes, name
    pub file: Upload<ProjectFile>,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AttachmentId {
    #[garde(range(min = 1))]
    pub attachment_id: i64,
}

/// An attachment as the client sees it: no store key, no uploader id.
#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentDto {
    pub id: i64,
    pub file_name: String,
    pub content_type: String,
    pub size: i64,
    pub uploader: String,
}

impl From<AttachmentRow> for AttachmentDto {
    fn from(a: AttachmentRow) -> Self {
        AttachmentDto {
            id: a.id,
            file_name: a.file_name,
            content_type: a.content_type,
            size: a.size,
            uploader: a.uploader_name,
        }
    }
}

async fn upload(cx: Cx<AppState>, viewer: Viewer, input: Valid<Attach>) -> Outcome<AttachmentDto> {
    let Attach { project_id, file } = input.into_inner();
    let state = cx.state();
    let key = FileKey::random();
    let (name, kind, size, sha) = (
        file.file_name().to_owned(),
        file.content_type(),
        file.len() as i64,
        file.sha256_hex().to_owned(),
    );
    // The file first, then the row: a row never names a missing file. If
    // the row is refused the file goes again; if the process dies between
    // the two, the start-up sweep removes the file no row names.
    state
        .files
        .put(&key, file.into_staged())
        .await
        .map_err(|e| ActionError::internal(e.to_string()))?;
    let added = state
        .dal
        .attachments()
        .add(
            &viewer,
            NewAttachment {
                project_id,
                file_key: key.as_str(),
                file_name: &name,
                content_type: kind,
                size,
                sha256: &sha,
            },
        )
        .await;
    let row = match added {
        Ok(row) => row,
        Err(e) => {
            let _ = state.files.delete(&key).await;
            return Err(match e {
                AddError::NotFound => ActionError::NotFound,
                AddError::OverQuota { left } => ActionError::field(
                    "file",
                    format!(
                        "would exceed your team's 20 MiB for attachments ({} KiB left); delete an old one first",
                        left / 1024
                    ),
                ),
                AddError::Other(e) => e,
            });
        }
    };
    cx.update_tag(format!("attachments:{project_id}"));
    cx.audit_record(format_args!("attachment:{}", row.id));
    Ok(row.into())
}

async fn delete(cx: Cx<AppState>, viewer: Viewer, input: Valid<AttachmentId>) -> Outcome<()> {
    let state = cx.state();
    let (project, key) = state
        .dal
        .attachments()
        .delete(&viewer, input.attachment_id)
        .await?;
    if let Some(key) = FileKey::parse(&key) {
        // The row is gone, so the file is unreachable already; a failure
        // here leaves it to the start-up sweep.
        if let Err(e) = state.files.delete(&key).await {
            tracing::warn!(error = %e, "attachment file not removed; the sweep will");
        }
    }
    cx.update_tag(format!("attachments:{project}"));
    cx.audit_record(format_args!("attachment:{}", input.attachment_id));
    Ok(())
}
