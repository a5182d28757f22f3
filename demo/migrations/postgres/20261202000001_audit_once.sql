-- One audit row per request: the batched writer (src/audit.rs) retries a
-- batch whose commit it could not confirm, and skips rows already stored.
CREATE UNIQUE INDEX audit_log_request_id ON audit_log (request_id);
