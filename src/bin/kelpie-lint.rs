//! `kelpie-lint [PATH...]`: reports nondeterministic APIs (`tokio::spawn`, the wall clock, OS
//! randomness, ...) in DST test files.
//!
//! Each file PATH is linted; each directory PATH contributes its `tests/**/*_dst.rs` and
//! `examples/**/*_dst.rs` files; with no PATH, the current directory's. Diagnostics go to stdout,
//! one per line (`file:line:column: message`), and a summary to stderr. Exit status: 0 when clean,
//! 1 when anything was reported, 2 on bad usage.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kelpie::lint::{dst_files, lint_file};

const USAGE: &str = "\
usage: kelpie-lint [PATH...]

Reports nondeterministic APIs (tokio::spawn, tokio::time, std::thread, the wall clock,
OS randomness, ...) in DST test files.

A file PATH is linted as is. A directory PATH is searched for tests/**/*_dst.rs and
examples/**/*_dst.rs. Without PATH, the current directory is searched.

Exit status: 0 if clean, 1 if anything was reported, 2 on bad usage.";

fn main() -> ExitCode {
    let mut paths = Vec::new();
    let mut options_done = false;
    for arg in std::env::args_os().skip(1) {
        if !options_done && arg == "--" {
            options_done = true;
        } else if !options_done && (arg == "-h" || arg == "--help") {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        } else if !options_done && arg.to_string_lossy().starts_with('-') {
            eprintln!(
                "kelpie-lint: unknown option `{}`\n\n{USAGE}",
                arg.to_string_lossy()
            );
            return ExitCode::from(2);
        } else {
            paths.push(PathBuf::from(arg));
        }
    }
    if paths.is_empty() {
        paths.push(PathBuf::from("."));
    }

    let mut files = Vec::new();
    for path in &paths {
        if path.is_dir() {
            let found = dst_files(path);
            if found.is_empty() {
                eprintln!(
                    "kelpie-lint: no *_dst.rs files in {}",
                    path.join("{tests,examples}").display()
                );
            }
            // `./tests/a_dst.rs` reads better as `tests/a_dst.rs`.
            files.extend(found.iter().map(|file| strip_dot(file).to_path_buf()));
        } else {
            files.push(path.clone());
        }
    }

    let mut problems = 0;
    let mut failing = 0;
    for file in &files {
        let diagnostics = lint_file(file);
        if !diagnostics.is_empty() {
            failing += 1;
        }
        for diagnostic in &diagnostics {
            println!("{diagnostic}");
        }
        problems += diagnostics.len();
    }

    let checked = plural(files.len(), "file");
    if problems == 0 {
        eprintln!("kelpie-lint: {checked} checked, no problems");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "kelpie-lint: {} in {failing} of {checked}",
            plural(problems, "problem")
        );
        ExitCode::FAILURE
    }
}

fn strip_dot(path: &Path) -> &Path {
    path.strip_prefix(".").unwrap_or(path)
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
