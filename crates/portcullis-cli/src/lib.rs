//! The `portcullis` CLI as a library: read an app's action manifest, check
//! every action against the review checklist, report.
//!
//! Why a manifest and not source scanning: the framework already knows, per
//! action, the policy, limits, bot checks, input fields, sealed fields, DTO
//! type and the author's declarations (`.mutates(..)`, `.read_only()`,
//! `.idempotent()`, `.allow_audit(..)`), because the typestate builder made
//! the author say them. The app prints that as JSON (`manifest --json`), and
//! the audit reads it — from any app on the library, in CI, without
//! compiling the app into the tool. The manifest is read leniently (unknown
//! keys ignored, missing ones defaulted) so an older app still audits.
//!
//! ```text
//! portcullis audit   (--cmd "CMD" | --manifest FILE) [--json | --sarif] [--output FILE]
//! portcullis manifest --cmd "CMD"          print the manifest CMD produces
//! portcullis ts (--cmd "CMD" | --manifest FILE) --out-dir DIR
//!                                          write DIR/actions.d.ts and DIR/actions.js (see [`ts`])
//! portcullis new NAME [--path PORTCULLIS]  write a runnable app into NAME (see [`new`])
//! ```
//! Exit code: 0 clean, 1 findings, 2 usage or I/O error.

pub mod manifest;
pub mod new;
pub mod report;
pub mod rules;
pub mod ts;

use std::io::Write;

pub use manifest::{Entry, Manifest};
pub use rules::{Finding, RULES, Rule, audit};

const USAGE: &str = "usage:
  portcullis audit (--cmd \"CMD\" | --manifest FILE) [--json | --sarif] [--output FILE]
  portcullis manifest --cmd \"CMD\"
  portcullis ts (--cmd \"CMD\" | --manifest FILE) --out-dir DIR
  portcullis new NAME [--path DIR]

  --cmd CMD        run CMD (through sh -c) and read the manifest JSON from its stdout,
                   e.g. --cmd \"cargo run -q -p demo -- manifest --json\"
  --manifest FILE  read the manifest JSON from FILE (- for stdin)
  --json           findings as JSON
  --sarif          findings as SARIF 2.1.0 (for code-scanning UIs)
  --output FILE    write the report to FILE instead of stdout
  --out-dir DIR    (ts) write the typed client, actions.d.ts and actions.js, into DIR
  new NAME         write a runnable app into the new directory NAME (package name: its last part)
  --path DIR       (new) depend on the portcullis crate at DIR instead of crates.io

exit code: 0 no findings, 1 findings, 2 usage or input error";

/// Output format of `audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Sarif,
}

struct Args {
    command: String,
    cmd: Option<String>,
    manifest: Option<String>,
    format: Format,
    output: Option<String>,
    out_dir: Option<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let command = it.next().ok_or("missing command")?.clone();
    if command == "-h" || command == "--help" || command == "help" {
        return Err(String::new());
    }
    if command != "audit" && command != "manifest" && command != "ts" {
        return Err(format!("unknown command `{command}`"));
    }
    let mut out = Args {
        command,
        cmd: None,
        manifest: None,
        format: Format::Table,
        output: None,
        out_dir: None,
    };
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--cmd" => out.cmd = Some(value()?),
            "--manifest" => out.manifest = Some(value()?),
            "--output" | "-o" => out.output = Some(value()?),
            "--out-dir" => out.out_dir = Some(value()?),
            "--json" => out.format = Format::Json,
            "--sarif" => out.format = Format::Sarif,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if (out.command == "ts") != out.out_dir.is_some() {
        return Err("--out-dir goes with `ts`, and `ts` needs it".into());
    }
    if out.cmd.is_some() == out.manifest.is_some() {
        return Err("give exactly one of --cmd and --manifest".into());
    }
    Ok(out)
}

/// Reads the manifest text: from a command's stdout or from a file.
fn manifest_text(args: &Args) -> Result<String, String> {
    if let Some(cmd) = &args.cmd {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
        if !output.status.success() {
            return Err(format!("`{cmd}` failed with {}", output.status));
        }
        return String::from_utf8(output.stdout).map_err(|_| format!("`{cmd}` printed non-UTF-8"));
    }
    let path = args.manifest.as_deref().unwrap_or("-");
    if path == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| format!("stdin: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// Runs the CLI with `args` (without the program name); returns the exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    if args.first().map(String::as_str) == Some("new") {
        return run_new(&args[1..], out, err);
    }
    let args = match parse(args) {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                let _ = writeln!(err, "error: {msg}");
            }
            let _ = writeln!(err, "{USAGE}");
            return 2;
        }
    };
    let text = match manifest_text(&args) {
        Ok(text) => text,
        Err(msg) => {
            let _ = writeln!(err, "error: {msg}");
            return 2;
        }
    };
    let manifest = match Manifest::parse(&text) {
        Ok(m) => m,
        Err(msg) => {
            let _ = writeln!(err, "error: not an action manifest: {msg}");
            return 2;
        }
    };
    if args.command == "manifest" {
        let _ = writeln!(out, "{}", text.trim_end());
        return 0;
    }
    if let Some(dir) = &args.out_dir {
        return run_ts(&manifest, std::path::Path::new(dir), out, err);
    }
    let findings = audit(&manifest);
    let rendered = match args.format {
        Format::Table => report::table(&manifest, &findings),
        Format::Json => report::json(&manifest, &findings),
        Format::Sarif => report::sarif(&findings),
    };
    let written = match &args.output {
        Some(path) => std::fs::write(path, rendered.as_bytes()).map_err(|e| format!("{path}: {e}")),
        None => out
            .write_all(rendered.as_bytes())
            .map_err(|e| e.to_string()),
    };
    if let Err(msg) = written {
        let _ = writeln!(err, "error: {msg}");
        return 2;
    }
    if findings.iter().any(|f| f.allowed.is_none()) {
        1
    } else {
        0
    }
}

/// `portcullis ts … --out-dir DIR`.
fn run_ts(
    manifest: &Manifest,
    dir: &std::path::Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let generated = match ts::generate(manifest) {
        Ok(g) => g,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return 2;
        }
    };
    for (file, text) in [
        ("actions.d.ts", &generated.dts),
        ("actions.js", &generated.js),
    ] {
        let path = dir.join(file);
        if let Err(e) = std::fs::write(&path, text) {
            let _ = writeln!(err, "error: {}: {e}", path.display());
            return 2;
        }
        let _ = writeln!(out, "wrote {}", path.display());
    }
    0
}

/// `portcullis new NAME [--path DIR]`.
fn run_new(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let (dir, path) = match args {
        [dir] => (dir, None),
        [dir, flag, path] if flag == "--path" => (dir, Some(path)),
        [flag, path, dir] if flag == "--path" => (dir, Some(path)),
        _ => {
            let _ = writeln!(
                err,
                "error: usage: portcullis new NAME [--path DIR]\n{USAGE}"
            );
            return 2;
        }
    };
    let source = match path {
        Some(p) => new::Source::Path(std::path::Path::new(p)),
        None => new::Source::Registry,
    };
    match new::generate(std::path::Path::new(dir), source) {
        Ok(files) => {
            let _ = writeln!(
                out,
                "wrote {} files into {dir}; next: cd {dir} && cargo run   (and cargo test)",
                files.len()
            );
            0
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            2
        }
    }
}
