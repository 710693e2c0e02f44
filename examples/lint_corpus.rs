//! The lint's measurement on real code: `cargo run --release --example lint_corpus [DIR...]`.
//!
//! Lints every `.rs` file under the given directories (default: every crate source in the cargo
//! registry cache, `~/.cargo/registry/src`, plus this repository's `tests/`, plus small files of
//! the constructs written to a scratch directory) and prints: files linted, crashes
//! (the lint failing on a file), files not parsed or declined, time per file, the deepest
//! nesting, and the lint against an independent scanner — a plain scan of each line's text, with
//! comments and strings blanked, for fully written forbidden calls (`tokio::spawn(`,
//! `thread::sleep(`, `Instant::now()`, `#[tokio::test]`, ...). Recall is the share of the plain
//! scanner's lines the lint also flags; the lines only the lint flags are listed (up to
//! `KELPIE_CORPUS_SHOW`, default 40) for a person to judge as true or false positives. Nothing is
//! fetched: the corpus is what the machine already has.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kelpie::lint::{lint_source, nesting_bound, DiagnosticKind};

/// Fully written forbidden paths the plain scanner looks for in a blanked line, where no
/// identifier or `ident::` comes before them (so `loom::thread::spawn(` is not
/// `std::thread::spawn(`).
const QUALIFIED: &[&str] = &[
    "tokio::spawn(",
    "tokio::task::spawn(",
    "tokio::task::spawn_blocking(",
    "tokio::task::spawn_local(",
    "tokio::time::sleep(",
    "tokio::time::timeout(",
    "tokio::time::interval(",
    "tokio::time::Instant::now()",
    "std::thread::spawn(",
    "std::thread::sleep(",
    "std::time::Instant::now()",
    "std::time::SystemTime::now()",
    "rand::thread_rng()",
    "rand::random",
    "rand::rng()",
    "rand::rngs::OsRng",
    "uuid::Uuid::new_v4(",
    "getrandom::getrandom(",
    "getrandom::fill(",
    "futures::executor::block_on(",
    "#[tokio::test",
    "#[tokio::main",
    "tokio::runtime::Builder::",
    "std::process::exit(",
];

/// Short forms, which need imports to mean the forbidden API (`thread::spawn(` after
/// `use std::thread;`, but also after `use loom::thread;`): the plain scanner cannot tell.
const PLAIN: &[&str] = &[
    "tokio::spawn(",
    "task::spawn(",
    "task::spawn_blocking(",
    "task::spawn_local(",
    "tokio::time::sleep(",
    "time::sleep(",
    "time::timeout(",
    "thread::spawn(",
    "thread::sleep(",
    "Instant::now()",
    "SystemTime::now()",
    "thread_rng()",
    "rand::random",
    "OsRng",
    "Uuid::new_v4(",
    "getrandom::getrandom(",
    "getrandom::fill(",
    "fastrand::",
    "executor::block_on(",
    "#[tokio::test",
    "#[tokio::main",
    "Builder::new_current_thread(",
    "Builder::new_multi_thread(",
    "process::exit(",
];

/// `source` with comments, string and char literals replaced by spaces (lines kept).
fn blank(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let keep = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(keep(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_ident(&chars, i) {
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &chars[i..j.min(chars.len())] {
                out.push(keep(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(keep(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether `line` holds `needle` with no identifier, and no `ident::`, right before it.
fn written_out(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(at, _)| {
        let before = line[..at].trim_end_matches("::");
        let ident_before = before
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        // `::tokio::spawn(` (leading colons) counts; `crate::tokio::spawn(` does not.
        !(ident_before || line[..at].ends_with("::") && before.ends_with('>'))
    })
}

fn prev_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Every `.rs` file under `dir`, skipping `target` folders.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && entry.file_name() != "target" {
            rust_files(&path, out);
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The constructs, written anew, one small file each; every file's marked lines
/// (`// FLAG`) must be flagged and no other line.
const WRITTEN: &[(&str, &str)] = &[
    (
        "cfg_alternatives_dst.rs",
        "#[cfg(feature = \"sim\")]\nuse madsim::time as clock;\n#[cfg(not(feature = \"sim\"))]\n\
         use tokio::time as clock;\nasync fn t() { clock::sleep(d).await; } // FLAG\n",
    ),
    (
        "namespaces_dst.rs",
        "use std::thread;\nfn thread() {}\nfn t() { thread(); thread::sleep(d); } // FLAG\n",
    ),
    (
        "prelude_dst.rs",
        "use rand::prelude::*;\nfn t() -> u32 {\n    let mut r = thread_rng(); // FLAG\n    r.gen()\n}\n",
    ),
    (
        "macro_paths_dst.rs",
        "fn t() {\n    tokio::select! {\n        biased;\n        _ = a => { std::thread::sleep(d) } // FLAG\n    }\n\
         \n    make! { at: std::time::SystemTime::now() } // FLAG\n}\n",
    ),
    (
        "macro_use_dst.rs",
        "wrap! { use futures::executor::block_on as run; }\nfn t() { run(f); } // FLAG\n",
    ),
    (
        "clean_dst.rs",
        "use tokio::sync::Mutex;\nfn spawn() {}\nfn t() {\n    // tokio::spawn(x)\n    \
         let s = \"tokio::spawn(x)\";\n    tokio::join!(a, b);\n    spawn();\n}\n",
    ),
];

fn main() {
    let show: usize = std::env::var("KELPIE_CORPUS_SHOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let scratch = std::env::temp_dir().join(format!("kelpie-lint-corpus-{}", std::process::id()));
    if dirs.is_empty() {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
        if let Some(home) = home {
            dirs.push(home.join("registry").join("src"));
        }
        dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests"));
        fs::create_dir_all(&scratch).expect("scratch directory");
        for (name, text) in WRITTEN {
            fs::write(scratch.join(name), text).expect("write a corpus file");
        }
        dirs.push(scratch.clone());
    }
    let mut files = Vec::new();
    for dir in &dirs {
        rust_files(dir, &mut files);
    }
    files.sort();

    let (mut linted, mut crashes, mut unparsed, mut declined, mut diagnostics) = (0, 0, 0, 0, 0);
    let (mut plain_lines, mut both_lines) = (0usize, 0usize);
    let mut only_lint = Vec::new();
    let mut missed = Vec::new();
    let mut times = Vec::new();
    let (mut deepest, mut deepest_file) = (0, PathBuf::new());
    let mut written_ok = 0;
    let (mut qualified_lines, mut qualified_both) = (0usize, 0usize);
    let mut qualified_missed = Vec::new();
    let mut slowest: Vec<(Duration, PathBuf)> = Vec::new();
    for file in &files {
        let Ok(source) = fs::read_to_string(file) else {
            continue;
        };
        if let Ok(tokens) = source.parse::<proc_macro2::TokenStream>() {
            let (bound, _) = nesting_bound(&tokens);
            if bound > deepest {
                (deepest, deepest_file) = (bound, file.clone());
            }
        }
        let start = Instant::now();
        let found = lint_source(file, &source);
        times.push(start.elapsed());
        linted += 1;
        let mut flagged = BTreeSet::new();
        for d in &found {
            match d.kind {
                DiagnosticKind::Forbidden => {
                    diagnostics += 1;
                    flagged.insert(d.line);
                }
                DiagnosticKind::NotLinted if d.message.starts_with("the lint failed") => {
                    crashes += 1;
                    println!("CRASH {d}");
                }
                DiagnosticKind::NotLinted if d.message.starts_with("cannot parse") => unparsed += 1,
                DiagnosticKind::NotLinted => {
                    declined += 1;
                    println!("declined: {d}");
                }
            }
        }
        let blanked = blank(&source);
        let lines: Vec<&str> = source.lines().collect();
        let mut plain = BTreeSet::new();
        let mut qualified = BTreeSet::new();
        for (n, line) in blanked.lines().enumerate() {
            if PLAIN.iter().any(|needle| line.contains(needle)) {
                plain.insert(n + 1);
            }
            if QUALIFIED.iter().any(|needle| written_out(line, needle)) {
                qualified.insert(n + 1);
            }
        }
        qualified_lines += qualified.len();
        qualified_both += qualified.intersection(&flagged).count();
        for &line in qualified.difference(&flagged) {
            qualified_missed.push(format!(
                "{}:{line}: {}",
                file.display(),
                lines[line - 1].trim()
            ));
        }
        if let Some(&last) = times.last() {
            slowest.push((last, file.clone()));
            slowest.sort_by_key(|(took, _)| std::cmp::Reverse(*took));
            slowest.truncate(8);
        }
        plain_lines += plain.len();
        both_lines += plain.intersection(&flagged).count();
        for &line in plain.difference(&flagged) {
            missed.push(format!(
                "{}:{line}: {}",
                file.display(),
                lines[line - 1].trim()
            ));
        }
        for &line in flagged.difference(&plain) {
            only_lint.push(format!(
                "{}:{line}: {}",
                file.display(),
                lines[line - 1].trim()
            ));
        }
        if file.starts_with(&scratch) {
            let marked: BTreeSet<usize> = (1..=lines.len())
                .filter(|&n| lines[n - 1].contains("// FLAG"))
                .collect();
            if marked == flagged {
                written_ok += 1;
            } else {
                println!(
                    "WRITTEN {}: flagged lines {flagged:?}, marked {marked:?}",
                    file.display()
                );
            }
        }
    }
    let _ = fs::remove_dir_all(&scratch);

    times.sort();
    let total: Duration = times.iter().sum();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize];
    println!(
        "files linted: {linted} (in {})",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("crashes: {crashes}; not parsed (syntax syn does not accept): {unparsed}; declined (too deep/large): {declined}");
    println!("forbidden-use diagnostics: {diagnostics}");
    if !times.is_empty() {
        println!(
            "time per file (lint_source, incl. its thread): mean {:.3} ms, median {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            total.as_secs_f64() * 1e3 / times.len() as f64,
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            at(1.0).as_secs_f64() * 1e3,
        );
    }
    println!(
        "deepest nesting bound: {deepest} ({}), limit {}",
        deepest_file.display(),
        kelpie::lint::MAX_NESTING
    );
    println!("slowest files:");
    for (took, file) in &slowest {
        println!("  {:.1} ms {}", took.as_secs_f64() * 1e3, file.display());
    }
    println!(
        "plain scanner, fully written paths: {qualified_lines} lines; the lint flags {qualified_both} of them: recall {:.1} %",
        100.0 * qualified_both as f64 / qualified_lines.max(1) as f64
    );
    println!("-- every fully written line the lint does not flag (up to {show}):");
    for line in qualified_missed.iter().take(show) {
        println!("  {line}");
    }
    println!(
        "plain scanner, short forms too (thread::spawn(, Instant::now(), ...): {plain_lines} lines; the lint flags {both_lines} of them: recall {:.1} %",
        100.0 * both_lines as f64 / plain_lines.max(1) as f64
    );
    println!(
        "lines only the lint flags (imports, renames, globs, or false positives): {}",
        only_lint.len()
    );
    if !dirs.is_empty() && files.iter().any(|f| f.starts_with(&scratch)) {
        println!("issue constructs written anew: {written_ok} of {} files flagged exactly on their marked lines", WRITTEN.len());
    }
    println!("-- a sample of the plain scanner's lines the lint does not flag:");
    let step_missed = (missed.len() / show.max(1)).max(1);
    for line in missed.iter().step_by(step_missed).take(show) {
        println!("  {line}");
    }
    println!("-- a sample of the lines only the lint flags:");
    let step = (only_lint.len() / show.max(1)).max(1);
    for line in only_lint.iter().step_by(step).take(show) {
        println!("  {line}");
    }
}
