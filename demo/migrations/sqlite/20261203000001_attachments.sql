-- Project attachments. The bytes live in the file store under `file_key`
-- (random, server-drawn); this row is the only way to reach them, and it is
-- reachable only through the project's team (src/dal/attachments.rs).
CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY,
    project_id   INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    uploader_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    file_key     TEXT    NOT NULL UNIQUE,
    file_name    TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX attachments_project ON attachments(project_id);
