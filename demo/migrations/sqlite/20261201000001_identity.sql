-- Identity lifecycle (issue 16): user ids are never reused, and every user
-- has a security stamp that ends all of their sessions when it changes.
--
-- SQLite reuses the largest rowid once its row is deleted, so a deleted
-- account's id went to the next sign-up (and with it any session or token
-- still naming that id). AUTOINCREMENT never hands out an id twice; it can
-- only be declared when a table is created, so `users` is rebuilt with the
-- procedure SQLite documents (https://www.sqlite.org/lang_altertable.html,
-- "Making Other Kinds Of Table Schema Changes"): new table, copy, drop old,
-- rename new. The copy keeps every id, and other tables' REFERENCES users
-- clauses resolve to the new table by name.
--
-- The drop must run with foreign keys OFF: with them on, DROP TABLE deletes
-- every row first and ON DELETE CASCADE would empty teams, memberships,
-- projects, … . `PRAGMA foreign_keys` is a no-op inside a transaction, and
-- sqlx (0.8) runs each SQLite migration inside one, so this script ends
-- sqlx's transaction, switches the pragma, runs the rebuild in its own
-- transaction, switches the pragma back on, and
-- opens a transaction again for sqlx's bookkeeping row and COMMIT. A
-- failure inside the rebuild rolls the rebuild back and leaves the migration
-- unrecorded, so it runs again, whole, on the next start.
COMMIT;
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE users_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    email          TEXT    NOT NULL UNIQUE,
    display_name   TEXT    NOT NULL,
    password_hash  TEXT    NOT NULL,
    api_key        TEXT,
    created_at     INTEGER NOT NULL,
    -- Replaced (a fresh random value) on password change, sign-out
    -- everywhere and role changes; sessions remember it at sign-in.
    security_stamp TEXT    NOT NULL DEFAULT (lower(hex(randomblob(16))))
);
INSERT INTO users_new (id, email, display_name, password_hash, api_key, created_at)
    SELECT id, email, display_name, password_hash, api_key, created_at FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
-- Ids handed out before this migration and since deleted above the current
-- maximum cannot be known any more; from here on none is reused.

COMMIT;
PRAGMA foreign_keys = ON;
BEGIN;
