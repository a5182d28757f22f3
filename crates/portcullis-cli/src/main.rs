//! `portcullis`: thin wrapper over [`portcullis_cli::run`], so the rules and
//! the output formats are a library that tests (and other tools) can call.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    ExitCode::from(portcullis_cli::run(&args, &mut out, &mut err))
}
