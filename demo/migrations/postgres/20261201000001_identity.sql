-- Identity lifecycle (issue 16). Postgres identity columns never hand out
-- an id twice, so `users.id` needs no change (the SQLite twin rebuilds the
-- table with AUTOINCREMENT). Every user gets a security stamp that ends all
-- of their sessions when it changes: password change, sign-out everywhere,
-- role changes. The default (volatile) gives each existing row its own value.
ALTER TABLE users
    ADD COLUMN security_stamp TEXT NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', '');
