//! `portcullis new`: the versions it writes are the framework's, and it
//! refuses names and directories it cannot use. (That the generated app
//! builds and passes its own tests is `scripts/test`'s "portcullis new" step:
//! it needs a full dependency build of its own.)

use portcullis_cli::new::{FILES, GARDE, MAUD, NewError, Source, generate};

/// The requirement the workspace `Cargo.toml` gives `dep`.
fn workspace_dep(dep: &str) -> String {
    let text = include_str!("../../../Cargo.toml");
    let prefix = format!("{dep} = ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{dep} is not in [workspace.dependencies]"))
        .to_owned()
}

#[test]
fn garde_and_maud_are_exactly_the_frameworks() {
    assert_eq!(GARDE, workspace_dep("garde"));
    assert_eq!(MAUD, workspace_dep("maud"));
}

/// A path `name` inside a directory of the calling test's own: the tests run
/// in parallel and each removes its directory at the end, so a shared one was
/// removed under the other test (a CI failure: `Cargo.toml` not found).
fn temp(test: &str, name: &str) -> std::path::PathBuf {
    let base = std::env::temp_dir().join(format!("pc-new-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    base.join(name)
}

#[test]
fn writes_every_file_with_the_name_and_the_registry_version() {
    let dir = temp("registry", "my-app");
    let files = generate(&dir, Source::Registry).unwrap();
    assert_eq!(files.len(), FILES.len());
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("name = \"my-app\""), "{cargo}");
    let v = env!("CARGO_PKG_VERSION");
    assert!(cargo.contains(&format!("portcullis = \"{v}\"")), "{cargo}");
    assert!(cargo.contains(&format!("garde = {GARDE}")), "{cargo}");
    let test = std::fs::read_to_string(dir.join("tests/app.rs")).unwrap();
    assert!(test.contains("use my_app::actions"), "{test}");
    for (file, _) in FILES {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(!text.contains("{{"), "{file} has an unfilled placeholder");
    }
    // Never over an existing directory.
    assert!(matches!(
        generate(&dir, Source::Registry),
        Err(NewError::Exists(_))
    ));
    std::fs::remove_dir_all(dir.parent().unwrap()).ok();
}

#[test]
fn path_source_and_bad_names() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = temp("path", "local");
    generate(&dir, Source::Path(&here.join("../portcullis"))).unwrap();
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("portcullis = { path = \""), "{cargo}");
    assert!(matches!(
        generate(&temp("path", "x2"), Source::Path(&here.join("nope"))),
        Err(NewError::Path(_))
    ));
    for bad in ["My App", "9lives", "a/..", "Ünï"] {
        assert!(
            matches!(
                generate(&temp("path", bad), Source::Registry),
                Err(NewError::Name(_))
            ),
            "{bad}"
        );
    }
    std::fs::remove_dir_all(dir.parent().unwrap()).ok();
}
