//! One trial per `*_dst.rs` file of the package, `lint::<path>`, failing on nondeterministic
//! calls found by [`crate::lint`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::Failed;

use crate::harness::report::Invocation;
use crate::harness::stream::Pending;
use crate::lint::{dst_files, lint_file, Diagnostic, DiagnosticKind};

/// The package root: the runtime `CARGO_MANIFEST_DIR` (cargo sets it when running tests), else
/// the current directory.
pub(crate) fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default()
}

/// `file` relative to `root`, with `/` separators.
fn relative(root: &Path, file: &Path) -> PathBuf {
    file.strip_prefix(root).unwrap_or(file).to_path_buf()
}

/// The trial name of a file: `lint::tests/storage_dst.rs`.
pub(crate) fn lint_trial_name(relative: &Path) -> String {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    format!("lint::{}", parts.join("/"))
}

/// The message of a file with diagnostics: one `file:line:col: message` per line, then the
/// `reproduce:` line.
pub(crate) fn lint_message(diagnostics: &[Diagnostic], reproduce: &str) -> String {
    let mut m = String::new();
    let calls = diagnostics
        .iter()
        .filter(|d| d.kind == DiagnosticKind::Forbidden)
        .count();
    let unlinted = diagnostics.len() - calls;
    let mut heading = Vec::new();
    if unlinted > 0 {
        heading.push("a DST file that could not be linted".to_string());
    }
    if calls > 0 {
        let s = if calls == 1 { "" } else { "s" };
        heading.push(format!("{calls} nondeterministic call{s} in a DST file"));
    }
    let _ = writeln!(m, "{}:", heading.join("; "));
    for d in diagnostics {
        let _ = writeln!(m, "{d}");
    }
    let _ = write!(m, "reproduce: {reproduce}");
    m
}

/// Lints the file `file` (under `root`): `Err` with the message if it has diagnostics.
pub(crate) fn lint_one(root: &Path, file: &Path, invocation: &Invocation) -> Result<(), String> {
    let rel = relative(root, file);
    let diagnostics: Vec<Diagnostic> = lint_file(file)
        .into_iter()
        .map(|d| Diagnostic {
            file: rel.clone(),
            ..d
        })
        .collect();
    if diagnostics.is_empty() {
        return Ok(());
    }
    let reproduce = invocation.command(&[], &lint_trial_name(&rel), false);
    Err(lint_message(&diagnostics, &reproduce))
}

/// One trial per `*_dst.rs` file under `root` (see [`dst_files`]).
pub(crate) fn lint_trials(root: &Path, invocation: &Arc<Invocation>) -> Vec<Pending> {
    dst_files(root)
        .into_iter()
        .map(|file| {
            let name = lint_trial_name(&relative(root, &file));
            let (root, invocation) = (root.to_path_buf(), invocation.clone());
            Pending::test(name, move || {
                lint_one(&root, &file, &invocation).map_err(Failed::from)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kelpie-lint-trials-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tests/nested")).unwrap();
        dir
    }

    #[test]
    fn one_trial_per_dst_file_failing_with_each_diagnostic() {
        let root = scratch("files");
        std::fs::write(root.join("tests/clean_dst.rs"), "fn t() {}\n").unwrap();
        std::fs::write(
            root.join("tests/nested/bad_dst.rs"),
            "fn t() {\n    tokio::spawn(async {});\n}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("tests/helper.rs"),
            "fn t() { tokio::spawn(async {}); }\n",
        )
        .unwrap();
        let invocation = Arc::new(Invocation::default());
        let names: Vec<String> = lint_trials(&root, &invocation)
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        assert_eq!(
            names,
            ["lint::tests/clean_dst.rs", "lint::tests/nested/bad_dst.rs"]
        );

        assert_eq!(
            lint_one(&root, &root.join("tests/clean_dst.rs"), &invocation),
            Ok(())
        );
        let msg = lint_one(&root, &root.join("tests/nested/bad_dst.rs"), &invocation).unwrap_err();
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines[0], "1 nondeterministic call in a DST file:");
        assert!(
            lines[1].starts_with("tests/nested/bad_dst.rs:2:5: `tokio::spawn`"),
            "{msg}"
        );
        assert_eq!(
            lines[2],
            "reproduce: cargo test -- --exact lint::tests/nested/bad_dst.rs"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn an_unparsable_file_is_headed_as_not_linted_not_as_a_call() {
        let root = scratch("unparsable");
        std::fs::write(root.join("tests/broken_dst.rs"), "fn t( {\n").unwrap();
        let invocation = Arc::new(Invocation::default());
        let msg = lint_one(&root, &root.join("tests/broken_dst.rs"), &invocation).unwrap_err();
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines[0], "a DST file that could not be linted:", "{msg}");
        assert!(lines[1].contains("cannot parse file"), "{msg}");
        std::fs::write(
            root.join("tests/broken_dst.rs"),
            "fn t() { tokio::spawn(async {}); std::thread::sleep(d); }\n",
        )
        .unwrap();
        let msg = lint_one(&root, &root.join("tests/broken_dst.rs"), &invocation).unwrap_err();
        assert!(
            msg.starts_with("2 nondeterministic calls in a DST file:\n"),
            "{msg}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
