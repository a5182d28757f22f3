//! The framework's modules form no import cycle (ARCHITECTURE.md, "Layering").
//!
//! A cycle is how the old `app::Shared` hub grew: once two modules import
//! each other, every change to one recompiles, re-reads and risks the other,
//! and the "one concept per module" map stops being true. This test reads
//! `src/` as text (no dependency, no build script): a module is a top-level
//! file or folder under `src/`; it depends on another when its non-test code
//! names `crate::other` (also inside `use crate::{..}` groups, and through the
//! root re-exports of `lib.rs`). `#[cfg(test)]` modules are left out: tests
//! may reach anywhere.
//!
//! On failure it prints each cycle with the file and line of every edge in
//! it, so the fix starts from the right place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One import: `from` names `to` at `file:line`.
#[derive(Debug, Clone)]
struct Edge {
    file: PathBuf,
    line: usize,
}

type Graph = BTreeMap<String, BTreeMap<String, Edge>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`None` for lib.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

/// Source without `#[cfg(test)]` items (a test module runs to its closing
/// brace, found by counting braces) and without comments.
fn production_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // Skip the attributed item: up to the end of its brace block, or
            // to the `;` of a one-line item.
            let mut depth = 0i32;
            let mut opened = false;
            for (_, l) in lines.by_ref() {
                for c in l.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if (opened && depth <= 0) || (!opened && l.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let code = match line.find("//") {
            // A `//` inside a string literal (a URL) would cut code short;
            // only cut when the prefix has balanced quotes.
            Some(i) if line[..i].matches('"').count() % 2 == 0 => &line[..i],
            _ => line,
        };
        out.push((n + 1, code.to_string()));
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every top-level name after `crate::` in `code`, expanding `crate::{a, b::c}`
/// groups (which may span lines: `code` is the whole file, joined).
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut rest = code;
    let mut offset = 0;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        let at = offset + i;
        let after = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            // `$crate::` in macros and `portcullis_crate::`: not ours.
        } else if let Some(group) = after.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            // Top-level items of the group: split on commas at depth 0.
            let mut depth = 0;
            let mut start = 0;
            let inner = &group[..end];
            for (j, c) in inner.char_indices().chain([(inner.len(), ',')]) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let item = inner[start..j].trim();
                        let name = ident_at(item);
                        if !name.is_empty() {
                            found.push((at, name.to_string()));
                        }
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(after);
            if !name.is_empty() {
                found.push((at, name.to_string()));
            }
        }
        offset = at + "crate::".len();
        rest = &code[offset..];
    }
    found
}

/// `pub use module::{A, B}` / `pub use module::A` in lib.rs: which module
/// a root re-export comes from.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let joined: String = production_lines(lib)
        .into_iter()
        .map(|(_, l)| l + "\n")
        .collect();
    for stmt in joined.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = ident_at(rest).to_string();
        let tail = &rest[module.len()..];
        let names: Vec<&str> = match tail.find('{') {
            Some(i) => tail[i + 1..].trim_end_matches('}').split(',').collect(),
            None => vec![tail.rsplit("::").next().unwrap_or("")],
        };
        for name in names {
            let name = name.trim();
            let name = name.rsplit("::").next().unwrap_or(name);
            let name = name.split(" as ").last().unwrap_or(name).trim();
            if !name.is_empty() {
                map.insert(name.to_string(), module.clone());
            }
        }
    }
    map
}

fn import_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let reexports = root_reexports(&lib);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let Some(from) = module_of(src, file) else {
            continue;
        };
        graph.entry(from.clone()).or_default();
        let text = std::fs::read_to_string(file).expect("read source");
        let lines = production_lines(&text);
        let mut joined = String::new();
        let mut starts = Vec::new();
        for (n, l) in &lines {
            starts.push((joined.len(), *n));
            joined.push_str(l);
            joined.push('\n');
        }
        for (at, name) in crate_paths(&joined) {
            let to = if modules.contains(&name) {
                name
            } else if let Some(m) = reexports.get(&name) {
                m.clone()
            } else {
                continue; // a root helper (`crate::hex`) or a macro path
            };
            if to == from {
                continue;
            }
            let line = starts
                .iter()
                .rev()
                .find(|(s, _)| *s <= at)
                .map_or(0, |(_, n)| *n);
            graph
                .entry(from.clone())
                .or_default()
                .entry(to)
                .or_insert(Edge {
                    file: file.strip_prefix(src).unwrap_or(file).to_path_buf(),
                    line,
                });
        }
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn framework_modules_have_no_import_cycle() {
    let graph = import_graph(&src_dir());
    let found = cycles(&graph);
    let mut report = String::new();
    for component in &found {
        report.push_str(&format!("cycle among {}:\n", component.join(", ")));
        for from in component {
            for (to, edge) in &graph[from] {
                if component.contains(to) {
                    report.push_str(&format!(
                        "  {from} -> {to}  (src/{}:{})\n",
                        edge.file.display(),
                        edge.line
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} import cycle(s) among the framework's modules:\n{report}",
        found.len()
    );
}

/// The layering diagram in ARCHITECTURE.md ("Layering") is the real one:
/// every module of `src/` is in it, and every import goes to a row above
/// the importer's (a module imports only leftwards). The rows are the
/// lines of the first fenced block after the heading, `→`-prefixed,
/// comma-separated; `name (note)` entries count as `name`.
#[test]
fn architecture_layering_diagram_matches_the_imports() {
    let graph = import_graph(&src_dir());
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ARCHITECTURE.md"),
    )
    .expect("ARCHITECTURE.md at the repository root");
    let section = doc.split("## Layering").nth(1).expect("a Layering section");
    let block = section.split("```").nth(1).expect("a fenced diagram");
    let mut row_of: BTreeMap<String, usize> = BTreeMap::new();
    for (row, line) in block.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let line = line.trim().trim_start_matches('→').trim();
        for entry in line.split(',') {
            let name = ident_at(entry.trim());
            if !name.is_empty() {
                row_of.insert(name.to_string(), row);
            }
        }
    }
    let mut problems = Vec::new();
    for (from, deps) in &graph {
        let Some(&row) = row_of.get(from) else {
            problems.push(format!("{from} is not in the diagram"));
            continue;
        };
        for (to, edge) in deps {
            if row_of.get(to).is_some_and(|&r| r >= row) {
                problems.push(format!(
                    "{from} (row {row}) imports {to} (row {}) at src/{}:{}",
                    row_of[to],
                    edge.file.display(),
                    edge.line
                ));
            }
        }
    }
    for name in row_of.keys() {
        if !graph.contains_key(name) {
            problems.push(format!("{name} is in the diagram but not in src/"));
        }
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md layering is out of date:\n{}",
        problems.join("\n")
    );
}

/// The checker itself: a planted cycle is found, a chain is not, and test
/// modules and comments do not count.
#[test]
fn checker_finds_a_planted_cycle_and_ignores_tests_and_comments() {
    let dir = std::env::temp_dir().join(format!("layering-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\npub use a::Thing;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("a.rs"),
        "use crate::{b::x, c};\n// crate::d in a comment\n",
    )
    .unwrap();
    std::fs::write(src.join("b/mod.rs"), "pub fn x() {}\n").unwrap();
    std::fs::write(
        src.join("b/inner.rs"),
        "fn f() { crate::Thing::new(); }\n#[cfg(test)]\nmod tests {\n    use crate::d;\n}\n",
    )
    .unwrap();
    std::fs::write(src.join("c.rs"), "").unwrap();
    std::fs::write(src.join("d.rs"), "use crate::a;\n").unwrap();
    let graph = import_graph(&src);
    let found = cycles(&graph);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(found, vec![vec!["a".to_string(), "b".to_string()]]);
    assert!(graph["a"].contains_key("c"));
    assert!(!graph["a"].contains_key("d"), "comment counted");
    assert!(!graph["b"].contains_key("d"), "test module counted");
}
