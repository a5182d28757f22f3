//! Benchmark and fuzzing support for portcullis (not part of the framework).
//!
//! * `src/bin/echo-server.rs` — the `echo` case of `scripts/bench`: the same
//!   urlencoded echo as a bare axum handler and as a public portcullis action.
//! * `benches/decoders.rs` — criterion: decoder cost per byte for hostile input.
//! * `benches/sqlite_driver.rs` — criterion and an `--ir` mode for callgrind
//!   (`scripts/profile-sqlite-driver`): the demo's hot SQLite statements through
//!   sqlx (`AnyPool`, `SqlitePool`) and rusqlite on blocking threads (#19).
//! * [`harness`] — the functions the fuzz targets in `fuzz/` call, shared with
//!   the stable corpus replay test (`tests/fuzz_corpus.rs`), so CI replays
//!   exactly what the fuzzer exercised without needing nightly.
#![forbid(unsafe_code)]

pub mod harness;

use serde::{Deserialize, Serialize};

/// The echo input: two fields, like the demo's rename.
#[derive(Debug, Deserialize, Serialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Echo {
    #[garde(range(min = 1))]
    pub project_id: i64,
    #[garde(length(chars, min = 1, max = 200))]
    pub name: String,
}

/// The echo result.
#[derive(Debug, Serialize, portcullis::Dto)]
#[serde(rename_all = "camelCase")]
pub struct EchoDto {
    pub project_id: i64,
    pub name: String,
}
