// An action without an access policy does not compile, and the error says
// which methods choose one.
use portcullis::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, garde::Validate)]
pub struct Rename {
    #[garde(length(min = 1))]
    pub name: String,
}

#[derive(Serialize, Dto)]
pub struct ProjectDto {
    pub name: String,
}

pub const RENAME: ActionRef<Rename, ProjectDto> = ActionRef::new("projects.rename");

async fn rename(_: Cx<()>, _: Viewer, _: Valid<Rename>) -> Outcome<ProjectDto> {
    Err(ActionError::NotFound)
}

fn main() {
    let _ = action(RENAME).handler(rename);
}
