//! Start-up errors a person can act on: the demo binary, run with a wrong
//! setting, exits non-zero with one `error:` line that names the variable,
//! what is wrong with its value and the fix — no `Debug` dump, and a URL's
//! password never printed.

use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Run {
    code: Option<i32>,
    stderr: String,
}

/// Runs `demo` (serve) in a fresh data directory with `env` set.
fn demo(env: &[(&str, &str)]) -> Run {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let data = std::env::temp_dir().join(format!(
        "portcullis-startup-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::create_dir_all(&data);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_demo"));
    cmd.env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("PORTCULLIS_ENV")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env("PORTCULLIS_DATA_DIR", &data)
        .env("PORTCULLIS_ADDR", "127.0.0.1:0")
        .env("DEMO_DB_ACQUIRE_TIMEOUT_MS", "500");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run demo");
    let _ = std::fs::remove_dir_all(&data);
    Run {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The one `error:` line; asserts the run failed and nothing was dumped.
fn error_line(run: &Run) -> String {
    assert_eq!(run.code, Some(1), "exit code; stderr:\n{}", run.stderr);
    for dump in ["Os {", "kind:", "Error {", "Configuration(", "Io("] {
        assert!(
            !run.stderr.contains(dump),
            "a Debug dump ({dump}) in:\n{}",
            run.stderr
        );
    }
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line in:\n{}", run.stderr);
    lines[0].to_owned()
}

fn assert_says(line: &str, parts: &[&str]) {
    for part in parts {
        assert!(line.contains(part), "`{part}` missing from: {line}");
    }
}

#[test]
fn a_database_url_that_is_not_a_url_names_the_variable_and_the_fix() {
    let line = error_line(&demo(&[("DATABASE_URL", "bogus")]));
    assert_says(
        &line,
        &[
            "DATABASE_URL=bogus is not a database URL",
            "Fix: set it to sqlite://",
            "postgres://",
            "or unset it",
        ],
    );
}

#[test]
fn an_unreachable_postgres_names_the_variable_without_its_password() {
    let line = error_line(&demo(&[(
        "DATABASE_URL",
        "postgres://demo:hunter2-secret@127.0.0.1:1/demo",
    )]));
    assert_says(
        &line,
        &[
            "DATABASE_URL=postgres://demo:***@127.0.0.1:1/demo",
            "cannot reach the database",
            "Fix: start PostgreSQL or correct the host and port",
        ],
    );
    assert!(!line.contains("hunter2"), "password printed: {line}");
}

#[test]
fn an_sqlite_file_that_cannot_be_created_names_the_variable() {
    let line = error_line(&demo(&[(
        "DATABASE_URL",
        "sqlite:///nonexistent-portcullis-dir/sub/demo.db",
    )]));
    assert_says(
        &line,
        &[
            "DATABASE_URL=sqlite:///nonexistent-portcullis-dir/sub/demo.db",
            "cannot open the SQLite database",
            "Fix:",
        ],
    );
}

#[test]
fn an_unreachable_redis_names_the_variable_and_the_fix() {
    let line = error_line(&demo(&[("REDIS_URL", "redis://127.0.0.1:1")]));
    assert_says(
        &line,
        &[
            "REDIS_URL=redis://127.0.0.1:1: cannot reach Redis",
            "Connection refused",
            "Fix: start Redis or correct the host and port in REDIS_URL, or unset it",
        ],
    );
}

#[test]
fn a_redis_url_that_is_not_a_redis_url_names_the_variable_and_what_it_expects() {
    // Checked by the framework's configuration (`Config::from_env`).
    let line = error_line(&demo(&[("REDIS_URL", "localhost:6379")]));
    assert_says(
        &line,
        &[
            "REDIS_URL: expected a redis:// or rediss:// URL",
            "got `localhost:6379 (",
            "did not parse",
        ],
    );
    let line = error_line(&demo(&[("REDIS_URL", "http://user:hunter2@localhost")]));
    assert_says(&line, &["REDIS_URL: expected a redis:// or rediss:// URL"]);
    assert!(!line.contains("hunter2"), "password printed: {line}");
}

#[test]
fn an_address_in_use_names_the_variable_and_the_fix() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = error_line(&demo(&[("PORTCULLIS_ADDR", &addr)]));
    assert_says(
        &line,
        &[
            &format!("PORTCULLIS_ADDR={addr}: cannot listen there"),
            "Fix: set PORTCULLIS_ADDR to a free local address",
        ],
    );
}
