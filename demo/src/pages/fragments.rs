//! The demo's fragments. The project list is a template of per-project row
//! fragments, so renaming one project re-renders one row (a few hundred
//! bytes in the action's response), not the list. Tags:
//!
//! | tag                  | read by                         | updated by |
//! |----------------------|---------------------------------|------------|
//! | `team-projects:<t>`  | the list of a member of team t  | create, delete, archive, restore |
//! | `project:<id>`       | that project's row              | rename, archive, restore |
//! | `comments:<id>`      | that project's comment thread   | post, edit, delete comment |
//! | `attachments:<id>`   | that project's attachment list  | upload, delete attachment |
//! | `member:<u>`         | every fragment rendered for viewer u | accept invite, set role, remove member, leave (for the user whose access changed) |
//! | `user:<u>`           | threads showing u's comments    | profile update (display name) |
//!
//! Account deletion expires `team-projects:`, `project:` and `comments:` for
//! what the deleted account took with it.
//!
//! The list hands each row it read to the row's fragment
//! (`RenderCx::slot_with`), so an uncached list is one query, not one per
//! row; a row rendered on its own (after a rename, or missing from the
//! cache under a cached list) reads its project itself.
//!
//! All are per-viewer (rows carry viewer-specific forms), and all writes
//! use `update_tag`, so another member sees a new comment on their next
//! load, not after a stale-while-revalidate window. Why `member:`: what a
//! viewer may see depends on their memberships, and the cache is keyed by
//! viewer; without it a removed member would be served their cached copy of
//! the team's projects until the entry's TTL.

use maud::html;
use portcullis::{ActionError, Fragments, RenderCx, Viewer, fragment};

use crate::AppState;
use crate::actions::{attachments, comments, projects};
use crate::dal::projects::ProjectRow;

pub fn register(f: &mut Fragments<AppState>) {
    f.add(fragment("projects").per_viewer(project_list))
        .add(fragment("project").element().per_viewer(project_row))
        .add(fragment("comments").per_viewer(comment_thread))
        .add(fragment("attachments").per_viewer(attachment_list));
}

fn id(param: &str) -> Result<i64, ActionError> {
    param.parse().map_err(|_| ActionError::NotFound)
}

async fn project_list(
    rcx: RenderCx<AppState>,
    viewer: Viewer,
    _: String,
) -> Result<maud::Markup, ActionError> {
    let dal = &rcx.state().dal;
    rcx.tag(format!("member:{}", viewer.id()));
    for team in dal.teams().mine(&viewer).await? {
        rcx.tag(format!("team-projects:{}", team.id));
    }
    let list = dal.projects().list(&viewer).await?;
    // One form group: the rows' rename forms share its error region and
    // sign-in paths (a row carries neither; 100 rows weigh ~20 KB less).
    Ok(html! {
        @if list.is_empty() { p.muted { "No projects yet." } }
        (rcx.form_group(html! {
            ul.list {
                @for p in list { (rcx.slot_with(&format!("project:{}", p.id), p)) }
            }
        }))
    })
}

async fn project_row(
    rcx: RenderCx<AppState>,
    viewer: Viewer,
    param: String,
) -> Result<maud::Markup, ActionError> {
    let pid = id(&param)?;
    rcx.tag(format!("member:{}", viewer.id()));
    rcx.tag(format!("project:{pid}"));
    // From the list's own query when it rendered this row just now (and
    // neither tag moved since); otherwise one query of our own.
    let p = match rcx.handed::<ProjectRow>() {
        Some(p) if p.id == pid => p,
        _ => rcx.state().dal.projects().get(&viewer, pid).await?,
    };
    // Lean (100 of these make the page): no error slots (the list's group
    // has the one region), the input named by `aria-label` (the list's CSS
    // hid the label anyway), layout from the list's CSS rather than classes,
    // and the project id carried by the submit button (a form's submitter
    // is submitted with it, with and without JavaScript, Enter included)
    // instead of a hidden input next to it.
    Ok(html! {
        li {
            // (No spaces between: the row is a flex box with a gap.)
            a href={"/projects/" (p.id)} { (p.name) }
            span.badge { (p.team_name) }
            @if p.archived_at.is_some() { span.badge { "archived" } }
            (rcx.form(projects::RENAME).in_group().return_to("/projects").body(html! {
                input name="name" value=(p.name) aria-label="Name";
                button name="projectId" value=(p.id) { "Rename" }
            }))
        }
    })
}

async fn comment_thread(
    rcx: RenderCx<AppState>,
    viewer: Viewer,
    param: String,
) -> Result<maud::Markup, ActionError> {
    let pid = id(&param)?;
    rcx.tag(format!("member:{}", viewer.id()));
    rcx.tag(format!("comments:{pid}"));
    let list = rcx.state().dal.comments().list(&viewer, pid).await?;
    let authors: std::collections::BTreeSet<i64> = list.iter().map(|c| c.author_id).collect();
    for a in authors {
        rcx.tag(format!("user:{a}"));
    }
    let back = format!("/projects/{pid}");
    Ok(html! {
        div.card #comments {
            @if list.is_empty() { p.muted #no-comments { "No comments yet." } }
            @for c in &list {
                div.comment id={"comment-" (c.id)} {
                    strong { (c.author_name) }
                    p { (c.body) }
                    @if c.author_id == viewer.id() {
                        (rcx.form(comments::DELETE).class("inline").return_to(&back).body(html! {
                            input type="hidden" name="commentId" value=(c.id);
                            button.secondary type="submit" { "Delete" }
                        }))
                    }
                }
            }
        }
    })
}

async fn attachment_list(
    rcx: RenderCx<AppState>,
    viewer: Viewer,
    param: String,
) -> Result<maud::Markup, ActionError> {
    let pid = id(&param)?;
    rcx.tag(format!("member:{}", viewer.id()));
    rcx.tag(format!("attachments:{pid}"));
    let list = rcx.state().dal.attachments().list(&viewer, pid).await?;
    let authors: std::collections::BTreeSet<i64> = list.iter().map(|a| a.uploader_id).collect();
    for a in authors {
        rcx.tag(format!("user:{a}"));
    }
    let back = format!("/projects/{pid}");
    Ok(html! {
        div.card #attachments {
            @if list.is_empty() { p.muted #no-attachments { "No attachments yet." } }
            @for a in &list {
                div.attachment id={"attachment-" (a.id)} {
                    // A download, never shown inline (see pages::attachment_download).
                    a href={"/attachments/" (a.id)} download { (a.file_name) }
                    " " span.muted { (a.size / 1024) " KiB · " (a.uploader_name) }
                    @if a.uploader_id == viewer.id() {
                        (rcx.form(attachments::DELETE).class("inline").return_to(&back).body(html! {
                            input type="hidden" name="attachmentId" value=(a.id);
                            button.secondary type="submit" { "Delete" }
                        }))
                    }
                }
            }
        }
    })
}
