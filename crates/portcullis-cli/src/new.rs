//! `portcullis new NAME`: writes a runnable app into the directory NAME.
//!
//! Why templates embedded in the binary (`include_str!`): generating needs
//! no network and no template registry, and the app a given CLI writes is
//! the one its tests compiled (`scripts/test` generates one and runs its
//! `cargo test`). The app is small on purpose — one page, sign-up/sign-in,
//! an authenticated action with validation, a public rate-limited action, a
//! viewer-scoped DAL on SQLite, the attack harness as its first test — so a
//! newcomer reads all of it.
//!
//! Versions: the app depends on portcullis by this CLI's version (or by
//! path with `--path`, for the repository's own test), and on garde and
//! maud by exactly the requirements the framework uses ([`GARDE`],
//! [`MAUD`]; a test compares them with the workspace's). garde's derive and
//! maud's `html!` name their own crates, so they cannot come through
//! portcullis's re-exports, and a second garde or maud would be a different
//! crate whose types portcullis does not accept. axum (the page router)
//! and password hashing come from portcullis itself (`portcullis::axum`,
//! `portcullis::session::password`), so there is no third version to match.

use std::path::{Path, PathBuf};

/// garde as portcullis depends on it (the workspace `Cargo.toml`).
pub const GARDE: &str = r#"{ version = "0.22", features = ["derive", "email"] }"#;
/// maud as portcullis depends on it.
pub const MAUD: &str = r#"{ version = "0.27", features = ["axum"] }"#;

/// Every file of a new app: its path and its template.
pub const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/app/Cargo.toml.tmpl"),
    ),
    ("README.md", include_str!("../templates/app/README.md")),
    (".gitignore", include_str!("../templates/app/gitignore")),
    ("src/lib.rs", include_str!("../templates/app/src/lib.rs")),
    ("src/main.rs", include_str!("../templates/app/src/main.rs")),
    (
        "src/actions.rs",
        include_str!("../templates/app/src/actions.rs"),
    ),
    ("src/dal.rs", include_str!("../templates/app/src/dal.rs")),
    (
        "src/pages.rs",
        include_str!("../templates/app/src/pages.rs"),
    ),
    (
        "tests/app.rs",
        include_str!("../templates/app/tests/app.rs"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error(
        "`{0}` is not a usable package name: use lowercase letters, digits, `-` and `_`, starting with a letter"
    )]
    Name(String),
    #[error("{0} already exists; choose a new directory")]
    Exists(PathBuf),
    #[error(
        "--path {0}: no Cargo.toml there; point it at the portcullis crate (crates/portcullis)"
    )]
    Path(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the generated app gets portcullis from.
pub enum Source<'a> {
    /// crates.io, at this CLI's version.
    Registry,
    /// A local checkout of the crate (`--path`).
    Path(&'a Path),
}

/// Writes a new app into `dir` (which must not exist); its package name is
/// the directory's name. Returns the files written.
pub fn generate(dir: &Path, source: Source<'_>) -> Result<Vec<PathBuf>, NewError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(NewError::Name(name));
    }
    if dir.exists() {
        return Err(NewError::Exists(dir.to_owned()));
    }
    let (plain, testing) = match source {
        Source::Registry => {
            let v = env!("CARGO_PKG_VERSION");
            (
                format!("\"{v}\""),
                format!("{{ version = \"{v}\", features = [\"testing\"] }}"),
            )
        }
        Source::Path(path) => {
            let path = std::path::absolute(path).map_err(|source| NewError::Io {
                path: path.to_owned(),
                source,
            })?;
            if !path.join("Cargo.toml").is_file() {
                return Err(NewError::Path(path));
            }
            // A JSON string is a valid TOML basic string (same escapes).
            let quoted = serde_json::to_string(&path.to_string_lossy()).unwrap_or_default();
            (
                format!("{{ path = {quoted} }}"),
                format!("{{ path = {quoted}, features = [\"testing\"] }}"),
            )
        }
    };
    let crate_name = name.replace('-', "_");
    let mut written = Vec::new();
    for (file, template) in FILES {
        let text = template
            .replace("{{portcullis_testing}}", &testing)
            .replace("{{portcullis}}", &plain)
            .replace("{{garde}}", GARDE)
            .replace("{{maud}}", MAUD)
            .replace("{{crate}}", &crate_name)
            .replace("{{name}}", &name);
        let path = dir.join(file);
        let io = |source| NewError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}
