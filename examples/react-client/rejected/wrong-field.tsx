// Must NOT type-check (scripts/test asserts tsc exits non-zero and names
// the field): `title` is not a field of projects.rename's input.
import { call, projectsRename } from "../../../demo/client/actions.js";

export async function rename(projectId: number) {
  return call(projectsRename, { projectId, title: "Apollo" });
}
