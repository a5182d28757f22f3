// The policy comes before `.handler(..)` and there is exactly one: a policy
// after the handler, or a second policy, does not compile, and the error
// says where it goes.
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
    // Handler first, policy after.
    let _ = action(RENAME).handler(rename).authenticated();
    // A policy after a complete action.
    let _ = action(RENAME).authenticated().handler(rename).role("admin");
    // Two policies.
    let _ = action(RENAME).public().authenticated().handler(rename);
}
