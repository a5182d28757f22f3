// Each line below is a mistake the generated types catch; `@ts-expect-error`
// makes tsc fail if one of them ever stops being an error. (The file in
// rejected/ is the same kind of mistake without the marker: tsc must exit
// non-zero on it; scripts/test checks both.)
import { actionState, call, projectsRename } from "../../../demo/client/actions.js";

export async function mistakes() {
  // @ts-expect-error a misspelt field
  await call(projectsRename, { projectId: 1, nmae: "Apollo" });
  // @ts-expect-error a field of the wrong type
  await call(projectsRename, { projectId: "1", name: "Apollo" });
  // @ts-expect-error a missing field
  await call(projectsRename, { projectId: 1 });
  // @ts-expect-error a field the input does not have (the server refuses it too)
  await call(projectsRename, { projectId: 1, name: "Apollo", isAdmin: true });
  const r = await call(projectsRename, { projectId: 1, name: "Apollo" });
  if (r.ok) {
    // @ts-expect-error the DTO has no such member
    r.value.owner;
  } else {
    // @ts-expect-error field errors are keyed by the input's fields
    r.error.fieldErrors.title;
  }
  // @ts-expect-error the adapter takes FormData, not an object
  await actionState(projectsRename)(null, { projectId: 1, name: "Apollo" });
}
