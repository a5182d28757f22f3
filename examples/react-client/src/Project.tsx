// A React 19 UI on a portcullis backend, typed end to end by the client
// `portcullis ts` generated from the demo (demo/client/actions.d.ts). No
// build step of ours: the generated actions.js is a plain ES module that a
// bundler (or the browser) takes as is; the page that hosts this UI lists
// the actions it may call with `page.client_actions(..)`.
import { useActionState, useState } from "react";
import {
  actionState,
  call,
  commentsPost,
  projectsArchive,
  projectsRename,
  type CommentDto,
  type ProjectDto,
} from "../../../demo/client/actions.js";

/** Rename through a form: `useActionState` with the typed adapter. */
export function RenameForm({ project }: { project: ProjectDto }) {
  const [state, formAction, pending] = useActionState(actionState(projectsRename), null);
  // Field errors are keyed by the input's fields: `errors.name`, `errors.projectId`.
  const errors = state && !state.ok ? state.error.fieldErrors : {};
  const current = state?.ok ? state.value : project;
  return (
    <form action={formAction}>
      <h1>{current.name}</h1>
      <input type="hidden" name="projectId" value={project.id} />
      <input name="name" defaultValue={current.name} aria-invalid={errors.name ? true : undefined} />
      {errors.name && <p role="alert">{errors.name.join(" ")}</p>}
      {state && !state.ok && state.error.formErrors.map((m) => <p key={m}>{m}</p>)}
      <button type="submit" disabled={pending}>
        Rename
      </button>
    </form>
  );
}

/** Post a comment and archive the project from code: `call`. */
export function Comments({ project }: { project: ProjectDto }) {
  const [comments, setComments] = useState<CommentDto[]>([]);
  const [error, setError] = useState<string | null>(null);

  async function post(body: string) {
    const r = await call(commentsPost, { projectId: project.id, body });
    if (r.ok) setComments([...comments, r.value]);
    else setError(r.error.fieldErrors.body?.join(" ") ?? r.error.message);
  }

  async function archive(): Promise<boolean> {
    const r = await call(projectsArchive, { projectId: project.id });
    return r.ok && r.value.archived;
  }

  return (
    <section>
      {comments.map((c) => (
        <p key={c.id}>
          <strong>{c.author}</strong> {c.body}
        </p>
      ))}
      {error && <p role="alert">{error}</p>}
      <button type="button" onClick={() => void post("First!")}>
        Post
      </button>
      <button type="button" onClick={() => void archive()}>
        Archive
      </button>
    </section>
  );
}
