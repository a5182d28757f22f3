//! The demo's pages (GET only). Page handlers get `portcullis::Page`: they
//! can read who is viewing and render action forms, but cannot write cookies,
//! redirect after the fact or sign anyone in — that is what actions are for.

pub mod fragments;
pub mod layout;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{Markup, html};
use portcullis::{ErrorCode, Page, Viewer, field, submit};
use serde::Deserialize;

use crate::AppState;
use crate::actions::{account, attachments, auth, comments, contact, projects, teams, tokens};
use crate::dal::teams::InviteRow;
use layout::{CSS, Nav};

type PageResult = Result<Markup, Response>;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/signup", get(signup))
        .route("/reauth", get(reauth))
        .route("/projects", get(project_list))
        .route("/projects/{id}", get(project_page))
        .route("/projects/{id}/transfer", get(transfer_page))
        .route("/attachments/{id}", get(attachment_download))
        .route("/teams/{id}", get(team_page))
        .route("/invites/{token}", get(invite_page))
        .route("/settings", get(settings))
        .route("/contact", get(contact_page))
        .route("/assets/app.css", get(css))
        .route("/assets/actions.js", get(typed_client))
        .with_state(state)
}

async fn css() -> Response {
    (
        [
            ("content-type", "text/css; charset=utf-8"),
            ("cache-control", "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// The typed client `portcullis ts` generated (`demo/client/`, checked in;
/// `demo/tests/security_review.rs` fails when it is stale), served as is:
/// no build step. A script imports it and calls the actions the page lists
/// with `page.client_actions(..)`.
async fn typed_client() -> Response {
    (
        [
            ("content-type", "text/javascript; charset=utf-8"),
            ("cache-control", "no-cache"),
        ],
        crate::TYPED_CLIENT,
    )
        .into_response()
}

/// Wraps a page body in the layout, with the viewer's name in the nav.
async fn shell(state: &AppState, page: &Page, title: &str, body: Markup) -> PageResult {
    let me = match page.viewer() {
        Some(v) => Some(state.dal.users().me(v).await.map_err(|e| page.failed(e))?),
        None => None,
    };
    let sign_out = me.as_ref().map(|_| {
        page.form(auth::SIGN_OUT)
            .return_to("/")
            .body(html! { button.secondary type="submit" { "Sign out" } })
    });
    Ok(layout::page(
        title,
        Nav {
            display_name: me.as_ref().map(|m| m.display_name.as_str()),
            sign_out,
        },
        body,
    ))
}

fn viewer(page: &Page) -> Result<Viewer, Response> {
    page.require_viewer().cloned()
}

async fn home(State(state): State<AppState>, page: Page) -> Response {
    if page.viewer().is_some() {
        return Redirect::to("/projects").into_response();
    }
    let body = html! {
        div.card {
            h1 { "Secure server actions, by default" }
            p { "This demo is a small team workspace: projects, comments, invites. Every form on it is a portcullis action — origin-checked, rate-limited, policy-gated, validated and scoped to you." }
            p { a href="/signup" { "Create an account" } " or " a href="/login" { "sign in" } "." }
        }
    };
    shell(&state, &page, "Welcome", body).await.into_response()
}

#[derive(Deserialize)]
struct ReturnQuery {
    #[serde(rename = "return")]
    return_to: Option<String>,
    /// Set by sign-up's redirect, new address or not (no enumeration).
    signed_up: Option<String>,
}

fn return_or(q: &ReturnQuery, default: &str) -> String {
    q.return_to
        .as_deref()
        .and_then(portcullis::security::safe_return_path)
        .unwrap_or(default)
        .to_owned()
}

async fn login(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<ReturnQuery>,
) -> PageResult {
    let body = html! {
        h1 { "Sign in" }
        @if q.signed_up.is_some() {
            p.notice role="status" { "If this address was not registered yet, your account is ready: sign in with the password you chose." }
        }
        (page.form(auth::SIGN_IN).class("card").return_to(&return_or(&q, "/projects")).body(html! {
            (field("email").label("Email").kind("email").autocomplete("username").required())
            (field("password").label("Password").kind("password").autocomplete("current-password").required())
            (submit("Sign in"))
        }))
        p.muted { "No account? " a href="/signup" { "Sign up" } }
    };
    shell(&state, &page, "Sign in", body).await
}

async fn signup(State(state): State<AppState>, page: Page) -> PageResult {
    let body = html! {
        h1 { "Create your account" }
        (page.form(auth::SIGN_UP).class("card").body(html! {
            (field("email").label("Email").kind("email").autocomplete("username").required())
            (field("displayName").label("Display name").autocomplete("nickname").required())
            (field("password").label("Password (10+ characters)").kind("password").autocomplete("new-password").required())
            (submit("Sign up"))
        }))
    };
    shell(&state, &page, "Sign up", body).await
}

async fn reauth(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<ReturnQuery>,
) -> PageResult {
    viewer(&page)?;
    let body = html! {
        h1 { "Confirm your password" }
        p.muted { "This step protects destructive changes. It stays valid for 15 minutes in this browser session only." }
        (page.form(auth::REAUTH).class("card").return_to(&return_or(&q, "/settings")).body(html! {
            (field("password").label("Password").kind("password").autocomplete("current-password").required())
            (submit("Confirm"))
        }))
    };
    shell(&state, &page, "Confirm password", body).await
}

async fn project_list(State(state): State<AppState>, page: Page) -> PageResult {
    let v = viewer(&page)?;
    let dal = &state.dal;
    let err = |e| page.failed(e);
    let teams = dal.teams().mine(&v).await.map_err(err)?;
    let list = page.fragment("projects").await;
    let body = html! {
        (layout::Reserve::around(list.0.len()))
        h1 { "Projects" }
        (page.form(projects::CREATE).class("card").id("create-project").body(html! {
            div.field {
                label for="f-teamId" { "Team" }
                select id="f-teamId" name="teamId" {
                    @for t in &teams { option value=(t.id) { (t.name) } }
                }
            }
            (field("name").label("New project name").id("f-create-name").required())
            (submit("Create project"))
        }))
        div.card #project-list {
            (list)
        }
    };
    shell(&state, &page, "Projects", body).await
}

/// An attachment, as a download: only for a member of the project's team
/// (404 otherwise, as for a missing id), never for another site's page
/// (403), and always `Content-Disposition: attachment` with `nosniff` and a
/// sandboxing CSP (`portcullis::action::upload::download`).
async fn attachment_download(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<i64>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, axum::response::Response> {
    use axum::response::IntoResponse;
    use portcullis::action::upload::{FileKey, download, refuse_cross_site};
    refuse_cross_site(&headers)?;
    let v = viewer(&page).map_err(IntoResponse::into_response)?;
    let row = match state.dal.attachments().get(&v, id).await {
        Ok(row) => row,
        Err(portcullis::ActionError::NotFound) => {
            return Err(page.error(ErrorCode::NotFound).into_response());
        }
        Err(e) => return Err(page.failed(e).into_response()),
    };
    let missing = || page.error(ErrorCode::NotFound).into_response();
    let key = FileKey::parse(&row.file_key).ok_or_else(missing)?;
    match state.files.get(&key).await {
        Ok(Some(file)) => Ok(download(file, &row.file_name, &row.content_type)),
        Ok(None) => Err(missing()),
        Err(e) => Err(page
            .failed(portcullis::ActionError::internal(e.to_string()))
            .into_response()),
    }
}

async fn project_page(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<i64>,
) -> PageResult {
    let v = viewer(&page)?;
    let dal = &state.dal;
    let project = match dal.projects().get(&v, id).await {
        Ok(p) => p,
        Err(portcullis::ActionError::NotFound) => return Err(page.error(ErrorCode::NotFound)),
        Err(e) => return Err(page.failed(e)),
    };
    let archived = project.archived_at.is_some();
    let me_name = dal
        .users()
        .me(&v)
        .await
        .map_err(|e| page.failed(e))?
        .display_name;
    let body = html! {
        p.muted { a href="/projects" { "← Projects" } " · " a href={"/teams/" (project.team_id)} { (project.team_name) } }
        h1 #project-title { span #project-name { (project.name) } @if archived { " " span.badge { "archived" } } }
        (page.form(projects::RENAME).class("card inline").optimistic_text("#project-name", "name").body(html! {
            input type="hidden" name="projectId" value=(project.id);
            (field("name").label("Name").value(&project.name))
            button type="submit" { "Rename" }
        }))
        h2 { "Comments" }
        (page.fragment(&format!("comments:{}", project.id)).await)
        // Shown at once when a comment is posted (optimistic), removed if
        // the action fails.
        template #comment-template {
            div.comment.pending {
                strong { (me_name) }
                p data-slot="body" {}
            }
        }
        (page.form(comments::POST).class("card").id("post-comment")
            .optimistic_append("#comments", "comment-template").reset_on_success().body(html! {
            input type="hidden" name="projectId" value=(project.id);
            (field("body").label("Add a comment").kind("textarea").required())
            (submit("Post comment"))
        }))
        h2 { "Attachments" }
        (page.fragment(&format!("attachments:{}", project.id)).await)
        // multipart/form-data (the action has an upload field); with
        // JavaScript the runtime shows upload progress.
        (page.form(attachments::UPLOAD).class("card").id("upload-attachment").reset_on_success().body(html! {
            input type="hidden" name="projectId" value=(project.id);
            (field("file").label("Attach a file (image, PDF or text, up to 5 MiB)").kind("file").required())
            (submit("Upload"))
        }))
        h2 { "Manage" }
        div.card {
            @if archived {
                (page.form(projects::RESTORE).class("inline").body(html! {
                    input type="hidden" name="projectId" value=(project.id);
                    button.secondary type="submit" { "Restore" }
                }))
            } @else {
                (page.form(projects::ARCHIVE).class("inline").body(html! {
                    input type="hidden" name="projectId" value=(project.id);
                    button.secondary type="submit" { "Archive" }
                }))
            }
            p { a href={"/projects/" (project.id) "/transfer"} { "Move to another team…" } }
            p.muted { "Deleting needs a team admin and a password confirmed in the last 15 minutes." }
            (page.form(projects::DELETE).class("inline").return_to("/projects").body(html! {
                input type="hidden" name="projectId" value=(project.id);
                button.danger type="submit" { "Delete project" }
            }))
        }
        // The actions a script on this page may call through the typed
        // client (`/assets/actions.js`), by client key.
        (page.client_actions(&[
            projects::RENAME.into(), projects::ARCHIVE.into(), projects::RESTORE.into(),
            comments::POST.into(),
        ]))
    };
    shell(&state, &page, &project.name, body).await
}

async fn transfer_page(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<i64>,
) -> PageResult {
    let v = viewer(&page)?;
    let project = match state.dal.projects().get(&v, id).await {
        Ok(p) => p,
        Err(portcullis::ActionError::NotFound) => return Err(page.error(ErrorCode::NotFound)),
        Err(e) => return Err(page.failed(e)),
    };
    let teams = state
        .dal
        .teams()
        .mine(&v)
        .await
        .map_err(|e| page.failed(e))?;
    let body = html! {
        p.muted { a href={"/projects/" (project.id)} { "← " (project.name) } }
        h1 { "Move “" (project.name) "” to another team" }
        (page.form(projects::TRANSFER).class("card").bind_sealed("projectId", project.id).body(html! {
            div.field {
                label for="f-toTeam" { "Destination team" }
                select id="f-toTeam" name="toTeam" {
                    @for t in teams.iter().filter(|t| t.id != project.team_id) { option value=(t.id) { (t.name) } }
                }
            }
            p.muted { "You need to be an admin of the current team and a member of the destination." }
            (submit("Move project"))
        }))
    };
    shell(&state, &page, "Move project", body).await
}

async fn team_page(State(state): State<AppState>, page: Page, Path(id): Path<i64>) -> PageResult {
    let v = viewer(&page)?;
    let dal = &state.dal;
    let team = match dal.teams().get(&v, id).await {
        Ok(t) => t,
        Err(portcullis::ActionError::NotFound) => return Err(page.error(ErrorCode::NotFound)),
        Err(e) => return Err(page.failed(e)),
    };
    let err = |e| page.failed(e);
    let members = dal.teams().members(&v, id).await.map_err(err)?;
    let admin = team.role == "admin";
    let invites = if admin {
        dal.teams().invites(&v, id).await.map_err(err)?
    } else {
        Vec::new()
    };
    let body = html! {
        h1 { (team.name) " " span.badge { (team.plan) } }
        h2 { "Members" }
        div.card {
            ul.list {
                @for m in &members {
                    li {
                        span { (m.display_name) " " span.badge { (m.role) } }
                        @if admin && m.user_id != v.id() {
                            (page.form(teams::SET_ROLE).class("inline").body(html! {
                                input type="hidden" name="teamId" value=(team.id);
                                input type="hidden" name="memberId" value=(m.user_id);
                                input type="hidden" name="role" value=(if m.role == "admin" { "member" } else { "admin" });
                                button.secondary type="submit" { @if m.role == "admin" { "Make member" } @else { "Make admin" } }
                            }))
                            (page.form(teams::REMOVE).class("inline").body(html! {
                                input type="hidden" name="teamId" value=(team.id);
                                input type="hidden" name="memberId" value=(m.user_id);
                                button.danger type="submit" { "Remove" }
                            }))
                        }
                    }
                }
            }
        }
        h2 { "Leave" }
        (page.form(teams::LEAVE).class("card").body(html! {
            input type="hidden" name="teamId" value=(team.id);
            p.muted { "The owner cannot leave, and a team always keeps at least one admin." }
            button.danger type="submit" { "Leave this team" }
        }))
        @if admin {
            h2 { "Invite someone" }
            (page.form(teams::INVITE).class("card").body(html! {
                input type="hidden" name="teamId" value=(team.id);
                (field("email").label("Email").kind("email").required())
                (submit("Create invite link"))
                p.muted data-invite-link {}
            }))
            @if !invites.is_empty() {
                div.card {
                    ul.list {
                        @for i in &invites {
                            li { span { (i.email) } span.badge {
                                @if i.state == InviteRow::ACCEPTED { "accepted" }
                                @else if i.state == InviteRow::USED_BY_OTHER { "used by another account" }
                                @else { "pending" }
                            } }
                        }
                    }
                }
            }
        }
    };
    shell(&state, &page, &team.name, body).await
}

async fn invite_page(
    State(state): State<AppState>,
    page: Page,
    Path(token): Path<String>,
) -> PageResult {
    viewer(&page)?;
    let body = html! {
        h1 { "Join a team" }
        (page.form(teams::ACCEPT).class("card").bind_sealed("token", &token).body(html! {
            p { "You have been invited to join a team." }
            (submit("Accept invite"))
        }))
    };
    shell(&state, &page, "Invite", body).await
}

async fn settings(State(state): State<AppState>, page: Page) -> PageResult {
    let v = viewer(&page)?;
    let api_tokens = state
        .dal
        .tokens()
        .mine(&v)
        .await
        .map_err(|e| page.failed(e))?;
    let me = state.dal.users().me(&v).await.map_err(|e| page.failed(e))?;
    let body = html! {
        h1 { "Settings" }
        h2 { "Profile" }
        (page.form(account::UPDATE_PROFILE).class("card").body(html! {
            (field("displayName").label("Display name").value(&me.display_name).required())
            (submit("Save"))
        }))
        h2 { "Third-party API key" }
        (page.form(account::SET_API_KEY).class("card").body(html! {
            p.muted {
                @if me.api_key.is_some() { "A key is stored. It is never shown again; enter a new one to replace it, or leave empty to remove it." }
                @else { "No key stored." }
            }
            (field("apiKey").label("API key").kind("password").autocomplete("off"))
            (submit("Save key"))
        }))
        h2 { "API tokens" }
        div.card {
            p.muted { "For scripts: " code { "Authorization: Bearer <token>" } " on " code { "/api/projects" } ". A token is shown once; only its hash is stored." }
            ul.list #tokens {
                @for t in &api_tokens {
                    li {
                        span { (t.name) " " span.badge { (t.scope) }
                            @if t.revoked_at.is_some() { " " span.badge { "revoked" } } }
                        @if t.revoked_at.is_none() {
                            (page.form(tokens::REVOKE).class("inline").body(html! {
                                input type="hidden" name="tokenId" value=(t.id);
                                button.secondary type="submit" { "Revoke" }
                            }))
                        }
                    }
                }
            }
            (page.form(tokens::CREATE).id("create-token").show_result("#new-token", "token").body(html! {
                (field("name").label("Token name").id("f-token-name").required())
                div.field {
                    label for="f-token-scope" { "Scope" }
                    select id="f-token-scope" name="scope" { option value="read" { "read" } option value="write" { "write" } }
                }
                (field("days").label("Valid for (days)").value("30").id("f-token-days"))
                (submit("Create token"))
                p.notice #new-token hidden aria-live="polite" {}
            }))
        }
        h2 { "Password" }
        (page.form(account::CHANGE_PASSWORD).class("card").body(html! {
            (field("currentPassword").label("Current password").kind("password").autocomplete("current-password").required())
            (field("newPassword").label("New password (10+ characters)").kind("password").autocomplete("new-password").required())
            (field("revokeTokens").label("Also revoke all my API tokens").kind("checkbox").value("true").id("f-revoke-tokens"))
            p.muted { "Changing the password signs you out everywhere else." }
            (submit("Change password"))
        }))
        h2 { "Sessions" }
        (page.form(account::SIGN_OUT_EVERYWHERE).class("card").body(html! {
            p.muted { "Ends every other session of your account (other browsers and devices). API tokens are not affected: revoke them above." }
            button.secondary type="submit" { "Sign out everywhere else" }
        }))
        h2 { "Delete account" }
        (page.form(account::DELETE).class("card").return_to("/").body(html! {
            p.muted { "This deletes your account, the teams you own and their projects. It cannot be undone." }
            (field("password").label("Password").kind("password").id("f-delete-password").autocomplete("current-password").required())
            button.danger type="submit" { "Delete my account" }
        }))
    };
    shell(&state, &page, "Settings", body).await
}

#[derive(Deserialize)]
struct SentQuery {
    sent: Option<String>,
}

async fn contact_page(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<SentQuery>,
) -> PageResult {
    let body = html! {
        h1 { "Contact us" }
        @if q.sent.is_some() { p.notice role="status" { "Thanks — your message was received." } }
        (page.form(contact::SEND).class("card").body(html! {
            (field("name").label("Your name").autocomplete("name").required())
            (field("email").label("Email").kind("email").autocomplete("email").required())
            (field("message").label("Message").kind("textarea").required())
            (submit("Send"))
        }))
    };
    shell(&state, &page, "Contact", body).await
}
