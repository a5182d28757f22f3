//! Every ```rust snippet in README.md and docs/guide.md is code the compiler
//! checks: a verbatim excerpt of a file that a workspace member compiles.
//!
//! The line before the snippet's opening fence names the file, in a comment
//! GitHub does not render:
//!
//! ```text
//! <!-- excerpt: examples/minimal-action/src/lib.rs -->
//! ```rust
//! ```
//!
//! A snippet may leave lines out: a line that is only `// …` splits it into
//! parts, and each part must appear in the file as consecutive lines.
//! Indentation is normalised (each part and the lines it is compared with
//! lose their common leading whitespace; trailing whitespace is ignored);
//! nothing else is. So when an example, a test or the demo changes, the
//! snippet that shows it fails here until the docs show the new code, and a
//! snippet edited by hand must still be code that compiles.
//!
//! Why not doctests: the snippets are excerpts (a builder call, a form)
//! whose setup would have to be hidden `# ` lines, which GitHub renders.
//! Why the fences are found by hand instead of with a Markdown parser: the
//! docs only need "a line starting with ```", and a parser would be a new
//! dependency for one test.

use std::path::{Path, PathBuf};

/// The documents whose snippets are checked, relative to the workspace root.
const DOCS: [&str; 2] = ["README.md", "docs/guide.md"];

/// The marker line before a checked snippet.
const MARKER: &str = "<!-- excerpt:";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One ```rust block of a document.
#[derive(Debug)]
struct Snippet {
    /// `doc:line` of the opening fence.
    at: String,
    /// The file named by the marker, if there is one.
    source: Option<String>,
    lines: Vec<String>,
}

/// Every fenced block whose info string starts with `rust`.
fn snippets(doc: &str, text: &str) -> Vec<Snippet> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim_start().starts_with("```"))
            .unwrap_or(lines.len());
        i = end + 1;
        if !info.trim().starts_with("rust") {
            continue;
        }
        let source = start
            .checked_sub(1)
            .map(|p| lines[p].trim())
            .and_then(|l| l.strip_prefix(MARKER))
            .and_then(|l| l.strip_suffix("-->"))
            .map(|path| path.trim().to_owned());
        out.push(Snippet {
            at: format!("{doc}:{}", start + 1),
            source,
            lines: lines[start + 1..end.min(lines.len())]
                .iter()
                .map(|l| l.to_string())
                .collect(),
        });
    }
    out
}

fn is_elision(line: &str) -> bool {
    matches!(line.trim(), "// …" | "// ...")
}

/// The parts of a snippet between elision lines (blank edges dropped).
fn parts(lines: &[String]) -> Vec<Vec<&str>> {
    lines
        .split(|l| is_elision(l))
        .map(|part| {
            let part: Vec<&str> = part.iter().map(|l| l.trim_end()).collect();
            let first = part
                .iter()
                .position(|l| !l.is_empty())
                .unwrap_or(part.len());
            let last = part
                .iter()
                .rposition(|l| !l.is_empty())
                .map_or(first, |p| p + 1);
            part[first..last].to_vec()
        })
        .filter(|part| !part.is_empty())
        .collect()
}

/// `lines` without their common leading whitespace (blank lines empty).
fn dedent<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| {
            if l.trim().is_empty() {
                ""
            } else {
                &l[indent..]
            }
        })
        .collect()
}

/// Whether `part` appears in `file` as consecutive lines, up to indentation.
fn appears_in(part: &[&str], file: &str) -> bool {
    let want = dedent(part);
    let file: Vec<&str> = file.lines().map(str::trim_end).collect();
    file.windows(want.len())
        .any(|window| dedent(window) == want)
}

/// The directories of the workspace members, from the root Cargo.toml.
fn members() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").expect("a members list") + "members = [".len();
    let list = &manifest[start..start + manifest[start..].find(']').unwrap()];
    list.lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(|l| l.split(','))
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

/// What is wrong with `snippet`, if anything.
fn check(snippet: &Snippet, members: &[String]) -> Option<String> {
    let at = &snippet.at;
    let Some(source) = &snippet.source else {
        return Some(format!(
            "{at}: a ```rust snippet without `{MARKER} FILE -->` on the line above it. Make it a \
             verbatim excerpt of a file a workspace member compiles (an example under examples/, \
             the demo, a test) and name that file there, or, if it is not Rust, fence it as \
             ```text"
        ));
    };
    let compiled = source.ends_with(".rs")
        && members
            .iter()
            .any(|m| source.starts_with(&format!("{m}/")) && !source.contains(".."));
    if !compiled {
        return Some(format!(
            "{at}: `{source}` is not a .rs file of a workspace member (members: {members:?})"
        ));
    }
    let file = match std::fs::read_to_string(root().join(source)) {
        Ok(file) => file,
        Err(e) => return Some(format!("{at}: cannot read `{source}`: {e}")),
    };
    let parts = parts(&snippet.lines);
    if parts.is_empty() {
        return Some(format!("{at}: an empty snippet"));
    }
    let missing: Vec<String> = parts
        .iter()
        .filter(|part| !appears_in(part, &file))
        .map(|part| part.join("\n"))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{at}: not in `{source}` as written (update the snippet to the code, or the code):\n{}",
            missing.join("\n---\n")
        )
    })
}

#[test]
fn every_rust_snippet_in_the_docs_is_compiled_code() {
    let members = members();
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in DOCS {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        for snippet in snippets(doc, &text) {
            checked += 1;
            problems.extend(check(&snippet, &members));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {checked} snippets are not compiled code:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
    // The docs have snippets, and this test found them.
    assert!(checked >= 8, "only {checked} ```rust snippets found");
}

/// The checker has teeth: a snippet one character off, a missing marker, a
/// file outside the workspace and parts out of their file are refused.
#[test]
fn the_check_refuses_what_is_not_in_the_file() {
    let members = members();
    let source = "examples/minimal-action/src/main.rs";
    let file = std::fs::read_to_string(root().join(source)).unwrap();
    let line = file
        .lines()
        .find(|l| l.contains("fn main"))
        .expect("main.rs has a main")
        .trim()
        .to_owned();
    let snippet = |source: Option<&str>, lines: &[&str]| Snippet {
        at: "test".into(),
        source: source.map(str::to_owned),
        lines: lines.iter().map(|l| l.to_string()).collect(),
    };
    // The line itself, re-indented, with an elision: accepted.
    let ok = snippet(
        Some(source),
        &["        // …", &format!("    {line}"), "// …"],
    );
    assert_eq!(check(&ok, &members), None);
    let off = line.replacen("main", "mian", 1);
    for bad in [
        snippet(Some(source), &[&off]),
        snippet(None, &[&line]),
        snippet(Some("README.md"), &[&line]),
        snippet(Some("../outside/src/main.rs"), &[&line]),
        snippet(Some(source), &[&line, "// …", "fn no_such_function() {}"]),
        snippet(Some(source), &["// …"]),
    ] {
        assert!(check(&bad, &members).is_some(), "accepted: {bad:?}");
    }
}

#[test]
fn fences_and_markers_are_found() {
    let doc = "text\n<!-- excerpt: a/b.rs -->\n```rust\nlet x = 1;\n```\n```sh\nls\n```\n\
               ```rust,ignore\nfoo\n```\n";
    let found = snippets("doc", doc);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].source.as_deref(), Some("a/b.rs"));
    assert_eq!(found[0].lines, ["let x = 1;"]);
    assert_eq!(found[0].at, "doc:3");
    assert_eq!(found[1].source, None);
}
