// An action's handle fixes its handler's types: registering a handler that
// takes another input, or returns another DTO, under the handle does not
// compile. A misspelt handle is plain "cannot find value `RENAM`", and a
// name given as a string is not a handle at all.
use portcullis::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, garde::Validate)]
pub struct Rename {
    #[garde(length(min = 1))]
    pub name: String,
}

#[derive(Deserialize, garde::Validate)]
pub struct Archive {
    #[garde(range(min = 1))]
    pub id: i64,
}

#[derive(Serialize, Dto)]
pub struct ProjectDto {
    pub name: String,
}

pub const RENAME: ActionRef<Rename, ProjectDto> = ActionRef::new("projects.rename");

async fn archive(_: Cx<()>, _: Viewer, _: Valid<Archive>) -> Outcome<ProjectDto> {
    Err(ActionError::NotFound)
}

async fn rename_to_nothing(_: Cx<()>, _: Viewer, _: Valid<Rename>) -> Outcome<()> {
    Ok(())
}

fn page(page: portcullis::Page) {
    let _ = page.form("projects.rename");
}

fn main() {
    // Wrong input type.
    let _ = action(RENAME).authenticated().handler(archive);
    // Wrong output type.
    let _ = action(RENAME).authenticated().handler(rename_to_nothing);
    // A misspelt handle.
    let _ = action(RENAM).authenticated();
    let _ = page;
}
