//! The nondeterminism lint: finds uses of nondeterministic APIs (`tokio::spawn`, the wall clock,
//! OS randomness, ...) in DST test files.
//!
//! The table of forbidden APIs, [`FORBIDDEN`] (from the `kelpie-spec` crate, with its scanner), is
//! the one `#[kelpie::dst_test]` checks test bodies against at compile time; this module applies it
//! to whole files, where it also sees the file's
//! `use` declarations and the code outside test fns. Resolution is syntactic: imports, renames,
//! globs and shadowing by local definitions are followed, macro bodies are scanned, but names
//! coming through other crates' re-exports or macro expansion are not seen.
//!
//! ```
//! use std::path::Path;
//!
//! let source = "use tokio::spawn as go;\nfn f() { go(async {}); }\n";
//! let diagnostics = kelpie::lint::lint_source(Path::new("tests/kv_dst.rs"), source);
//! assert_eq!(
//!     diagnostics[0].to_string(),
//!     "tests/kv_dst.rs:2:10: `tokio::spawn` (written `go`) is not deterministic in a DST test: \
//!      use `env.spawn(...)`",
//! );
//! ```

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

// The table and the scanner live in the shared vocabulary crate, which `#[kelpie::dst_test]` reads
// too; these are their historical paths.
pub use kelpie_spec::forbidden::{Forbidden, Kind, Match, FORBIDDEN};
pub use kelpie_spec::scan::{nesting_bound, scan_block, scan_file, scan_fn, scan_item, Violation};

/// What a [`Diagnostic`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagnosticKind {
    /// A call or attribute that escapes the simulation.
    Forbidden,
    /// The file could not be read or parsed, so it was not linted.
    NotLinted,
}

/// One problem found in a file, positioned like rustc's diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What the problem is about.
    pub kind: DiagnosticKind,
    /// The file, as given to [`lint_source`] or [`lint_file`].
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what to use instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `path/to/file_dst.rs:12:5: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// 1-based line and column of a span's start (proc-macro2 counts columns from 0).
fn position(span: proc_macro2::Span) -> (usize, usize) {
    let start = span.start();
    (start.line.max(1), start.column + 1)
}

/// The deepest nesting the lint parses, as [`nesting_bound`] counts it: a file nested deeper gets
/// one [`DiagnosticKind::NotLinted`] diagnostic at its deepest token instead of a parse that
/// could overflow the stack. Real code stays far below (the corpus check prints its maximum).
pub const MAX_NESTING: usize = 4096;

/// The most opening delimiters a file may hold: a token stream's drop recurses once per nested
/// group, before its nesting can be measured.
pub const MAX_OPEN_DELIMITERS: usize = 500_000;

/// The stack the lint parses on, its own thread's: measured in a debug build, syn's parse and
/// the scanner use at most ~22 KiB per unit of [`nesting_bound`]; this leaves 2x on top of
/// [`MAX_NESTING`] units at 64 KiB each. The memory is reserved, and touched only as deep as a
/// file goes.
const LINT_STACK: usize = 512 << 20;

/// Lints Rust source text, reporting positions against `file`. Diagnostics come in source order.
/// Source that does not parse, or is nested too deep ([`MAX_NESTING`]) or too large
/// ([`MAX_OPEN_DELIMITERS`]) to parse safely, yields exactly one diagnostic; no input aborts the
/// process (the parse runs on a thread with a large stack, and a panic in it is a diagnostic).
pub fn lint_source(file: &Path, source: &str) -> Vec<Diagnostic> {
    let diagnostic = |kind, (line, column), message| Diagnostic {
        kind,
        file: file.to_path_buf(),
        line,
        column,
        message,
    };
    let opens = source
        .bytes()
        .filter(|b| matches!(b, b'(' | b'[' | b'{'))
        .count();
    if opens > MAX_OPEN_DELIMITERS {
        return vec![diagnostic(
            DiagnosticKind::NotLinted,
            (1, 1),
            format!(
                "file too large to lint: {opens} opening delimiters, more than \
                 {MAX_OPEN_DELIMITERS}"
            ),
        )];
    }
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("kelpie-lint".to_string())
            .stack_size(LINT_STACK)
            .spawn_scoped(scope, || lint_on_this_thread(file, source))
            .map(|thread| thread.join())
    });
    match outcome {
        Ok(Ok(diagnostics)) => diagnostics,
        Ok(Err(panic)) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            vec![diagnostic(
                DiagnosticKind::NotLinted,
                (1, 1),
                format!("the lint failed on this file (please report it): {why}"),
            )]
        }
        Err(err) => vec![diagnostic(
            DiagnosticKind::NotLinted,
            (1, 1),
            format!("cannot start the lint's thread: {err}"),
        )],
    }
}

/// [`lint_source`] on the current thread, which must have [`LINT_STACK`] of stack.
fn lint_on_this_thread(file: &Path, source: &str) -> Vec<Diagnostic> {
    let diagnostic = |kind, (line, column), message| Diagnostic {
        kind,
        file: file.to_path_buf(),
        line,
        column,
        message,
    };
    // Measured on the token stream first (lexing does not recurse), parsed only if shallow enough.
    if let Ok(tokens) = source.parse::<proc_macro2::TokenStream>() {
        let (bound, at) = nesting_bound(&tokens);
        if bound > MAX_NESTING {
            return vec![diagnostic(
                DiagnosticKind::NotLinted,
                position(at),
                format!(
                    "nested too deep to lint: {bound} levels here, more than {MAX_NESTING} \
                     (split the expression or item)"
                ),
            )];
        }
    }
    match syn::parse_file(source) {
        Ok(ast) => scan_file(&ast)
            .into_iter()
            .map(|v| diagnostic(DiagnosticKind::Forbidden, position(v.span), v.message))
            .collect(),
        Err(err) => {
            let message = err.to_string();
            // syn spans an early end of input at the call site (1:1): point at the end instead.
            let at = if message.starts_with("unexpected end of input") {
                end_position(source)
            } else {
                position(err.span())
            };
            // proc-macro2's lexer error names no cause.
            let message = if message == "cannot parse string into token stream" {
                "unbalanced delimiter, unterminated literal or invalid character".to_string()
            } else {
                message
            };
            vec![diagnostic(
                DiagnosticKind::NotLinted,
                at,
                format!("cannot parse file: {message}"),
            )]
        }
    }
}

/// 1-based line and column just after the last non-whitespace character of `source`.
fn end_position(source: &str) -> (usize, usize) {
    let text = source.trim_end();
    let line = text.matches('\n').count() + 1;
    let last_line = text.rsplit('\n').next().unwrap_or("");
    (line, last_line.chars().count() + 1)
}

/// Lints the file at `path`. A file that cannot be read (missing, not UTF-8, ...) yields one
/// diagnostic at 1:1.
pub fn lint_file(path: &Path) -> Vec<Diagnostic> {
    match fs::read_to_string(path) {
        Ok(source) => lint_source(path, &source),
        Err(err) => vec![Diagnostic {
            kind: DiagnosticKind::NotLinted,
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read file: {err}"),
        }],
    }
}

/// Every `*_dst.rs` file under `root/tests` and `root/examples`, recursively, sorted. Directories
/// named `target` and symbolic links to directories are skipped, as are directories that cannot
/// be read.
pub fn dst_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                if entry.file_name() != "target" {
                    walk(&path, out);
                }
            } else if entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.ends_with("_dst.rs"))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for dir in ["tests", "examples"] {
        walk(&root.join(dir), &mut out);
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_call_is_flagged_with_position_and_message() {
        let source = "fn t() {\n    tokio::spawn(async {});\n}\n";
        let found = lint_source(Path::new("tests/a_dst.rs"), source);
        assert_eq!(
            found,
            vec![Diagnostic {
                kind: DiagnosticKind::Forbidden,
                file: PathBuf::from("tests/a_dst.rs"),
                line: 2,
                column: 5,
                message: "`tokio::spawn` is not deterministic in a DST test: use `env.spawn(...)`"
                    .to_string(),
            }]
        );
        assert_eq!(
            found[0].to_string(),
            "tests/a_dst.rs:2:5: `tokio::spawn` is not deterministic in a DST test: use \
             `env.spawn(...)`"
        );
    }

    #[test]
    fn tokio_under_another_name_is_flagged_as_tokio() {
        // A service's tokio is kelpie-tokio or madsim-tokio; a DST file that names them directly
        // still spawns and sleeps outside `env`.
        let source = "use kelpie_tokio::time::sleep;\nfn t() {\n    \
                      madsim_tokio::spawn(async {});\n    sleep(d);\n}\n";
        let found = lint_source(Path::new("tests/a_dst.rs"), source);
        let found: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(
            found,
            [
                "tests/a_dst.rs:3:5: `madsim_tokio::spawn` is not deterministic in a DST test: \
                 use `env.spawn(...)`",
                "tests/a_dst.rs:4:5: `kelpie_tokio::time::sleep` (written `sleep`) is not \
                 deterministic in a DST test: use `env.sleep(...)`"
            ]
        );
    }

    #[test]
    fn ending_the_process_is_flagged_through_a_module_import() {
        // The import is outside the fn: the file lint sees it, the attribute (which sees only the
        // fn) would not.
        let source = "use std::process;\n\n#[kelpie::dst_test]\nasync fn t(env: SimEnv) {\n    \
                      process::exit(0);\n}\n";
        let found = lint_source(Path::new("tests/a_dst.rs"), source);
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "tests/a_dst.rs:5:5: `std::process::exit` (written `process::exit`) ends the test \
              process before the runner's summary, so this seed and every later one go \
              unreported: return an error from the test or panic instead"
            ]
        );
    }

    #[test]
    fn parse_error_is_one_diagnostic_at_its_location() {
        let found = lint_source(Path::new("bad_dst.rs"), "fn t() {\n    let x = ;\n}\n");
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].column), (2, 13));
        assert_eq!(
            found[0].message,
            "cannot parse file: expected an expression"
        );
        // Unbalanced delimiters fail in the lexer, at the offending delimiter.
        let found = lint_source(Path::new("bad_dst.rs"), "fn t() {\n    let x = 1;\n");
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].column), (1, 8));
        assert_eq!(
            found[0].message,
            "cannot parse file: unbalanced delimiter, unterminated literal or invalid character"
        );
        // An early end of input is reported where the input ends.
        let found = lint_source(Path::new("bad_dst.rs"), "fn t() {}\nstruct  \n\n");
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].column), (2, 7));
        assert_eq!(
            found[0].message,
            "cannot parse file: unexpected end of input, expected identifier"
        );
    }

    #[test]
    fn unreadable_file_is_one_diagnostic() {
        let path = Path::new("/nonexistent/kelpie/lint_dst.rs");
        let found = lint_file(path);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].column), (1, 1));
        assert_eq!(found[0].file, path);
        assert!(found[0].message.starts_with("cannot read file: "));
    }

    #[test]
    fn lint_file_reads_and_positions() {
        let dir = scratch_dir("lint_file");
        let path = dir.join("x_dst.rs");
        fs::write(
            &path,
            "fn t() {\n  let now = std::time::Instant::now();\n}\n",
        )
        .unwrap();
        let found = lint_file(&path);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![format!(
                "{}:2:13: `std::time::Instant::now` is not deterministic in a DST test: use \
                 `env.now()`",
                path.display()
            )]
        );
    }

    #[test]
    fn dst_files_finds_sorted_dst_files_in_tests_and_examples() {
        let root = scratch_dir("dst_files");
        for file in [
            "tests/b_dst.rs",
            "tests/a_dst.rs",
            "tests/nested/deeper/c_dst.rs",
            "tests/helper.rs",
            "tests/dst.rs",
            "tests/target/skipped_dst.rs",
            "examples/e_dst.rs",
            "src/s_dst.rs",
            "target/t_dst.rs",
        ] {
            let path = root.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "").unwrap();
        }
        let found = dst_files(&root);
        let relative: Vec<_> = found
            .iter()
            .map(|p| {
                p.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            relative,
            vec![
                "examples/e_dst.rs",
                "tests/a_dst.rs",
                "tests/b_dst.rs",
                "tests/nested/deeper/c_dst.rs",
            ]
        );
        assert_eq!(
            dst_files(Path::new("/nonexistent/kelpie")),
            Vec::<PathBuf>::new()
        );
    }

    /// A small deterministic generator for the fuzz tests (splitmix64).
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Lints `source` and checks the lint itself did not fail (a panic becomes a diagnostic).
    fn lint_survives(source: &str) -> Vec<Diagnostic> {
        let found = lint_source(Path::new("fuzz_dst.rs"), source);
        for d in &found {
            assert!(
                !d.message.starts_with("the lint failed"),
                "{d} on input of {} bytes",
                source.len()
            );
            assert!(d.line >= 1 && d.column >= 1);
        }
        found
    }

    /// Nestings of every shape at `depth`: delimiters, generics, prefix operators, keywords.
    fn nestings(depth: usize) -> Vec<String> {
        let d = depth;
        vec![
            format!("fn f() {{ let x = {}1{}; }}", "(".repeat(d), ")".repeat(d)),
            format!("fn f() {}{}", "{".repeat(d), "}".repeat(d)),
            format!("fn f() {{ let x = {}1{}; }}", "[".repeat(d), "]".repeat(d)),
            format!("fn f() {{ let x = {}1; }}", "- ".repeat(d)),
            format!("fn f() {{ let x = {}1; }}", "!".repeat(d)),
            format!("fn f() {{ {}1; }}", "return ".repeat(d)),
            format!("fn f() {{ let x = {}1; }}", "|a, b| ".repeat(d)),
            format!("type T = {}u8{};", "Box<".repeat(d), ">".repeat(d)),
            format!("type T = {}u8{};", "HashMap<u8, ".repeat(d), ">".repeat(d)),
            format!("type T = {}u8{};", "(".repeat(d), ",)".repeat(d)),
            format!("fn f() {{ {}{} }}", "if x { ".repeat(d), "}".repeat(d)),
            format!("{}{}", "mod m { ".repeat(d), "}".repeat(d)),
            format!("fn f() {{ m!{}{}; }}", "(".repeat(d), ")".repeat(d)),
            format!("fn f() {{ let x = a{}; }}", ".b".repeat(d)),
            format!("fn f() {{ let x = 1{}; }}", " + 1".repeat(d)),
            format!(
                "fn f() {{ let x = {}1{}; }}",
                "S { a: 1, b: ".repeat(d),
                " }".repeat(d)
            ),
            format!(
                "fn f() {{ {}1{} }}",
                "match x { a => 1, b => ".repeat(d),
                " }".repeat(d)
            ),
            format!("#[a{}]\nfn f() {{}}", "(b".repeat(d) + &")".repeat(d)),
            format!("fn f() {{ let {}x{} = 1; }}", "(".repeat(d), ")".repeat(d)),
            format!("fn f() {{ {}{{}} }}", "if a {} else ".repeat(d)),
            format!("fn f() {{ let x = 1{}; }}", " + {1}".repeat(d)),
            format!(
                "fn f() {{ let x = {}1{}; }}",
                "|a| -> u8 { ".repeat(d),
                " }".repeat(d)
            ),
        ]
    }

    #[test]
    fn deep_nesting_is_a_diagnostic_not_an_abort() {
        // 3,000 levels (the depth that aborted before) and far beyond.
        for depth in [3_000, 100_000] {
            for source in nestings(depth) {
                let found = lint_survives(&source);
                let head: String = source.chars().take(40).collect();
                assert!(
                    found.iter().any(|d| d.kind == DiagnosticKind::NotLinted) || found.is_empty(),
                    "{head}: {found:?}"
                );
            }
        }
        let found = lint_survives(&nestings(5_000)[0]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].message.starts_with("nested too deep to lint: "),
            "{}",
            found[0].message
        );
        assert_eq!(found[0].line, 1);
        // Moderate nesting is linted as usual, and a forbidden call deep inside is found.
        for source in nestings(200) {
            let found = lint_survives(&source);
            assert!(found.is_empty(), "{found:?}");
        }
        let source = format!(
            "fn f() {{ {}tokio::spawn(x){}; }}",
            "(".repeat(300),
            ")".repeat(300)
        );
        let found = lint_survives(&source);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].column, 310);
    }

    #[test]
    fn huge_files_are_linted_or_declined_never_crash() {
        let unit = "fn t() {\n    let v = vec![1, 2, 3];\n    tokio::spawn(async move { v });\n}\n";
        let source = unit.repeat(5_000);
        let found = lint_survives(&source);
        assert_eq!(found.len(), 5_000);
        assert_eq!((found[4_999].line, found[4_999].column), (19_999, 5));
        let source = "(".repeat(MAX_OPEN_DELIMITERS + 1);
        let found = lint_survives(&source);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.starts_with("file too large to lint: "));
        // A long flat statement is not "deep": its commas separate elements parsed in a loop.
        let source = format!("const A: &[u8] = &[{}];\n", "1, ".repeat(200_000));
        assert_eq!(lint_survives(&source), vec![]);
    }

    #[test]
    fn random_bytes_and_token_soup_never_crash_the_lint() {
        let mut gen = Gen(14);
        for _ in 0..300 {
            let len = gen.below(3_000);
            let bytes: Vec<u8> = (0..len).map(|_| gen.next() as u8).collect();
            lint_survives(&String::from_utf8_lossy(&bytes));
        }
        const VOCAB: &[&str] = &[
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            "<",
            ">",
            "|",
            "||",
            "-",
            "=>",
            "->",
            "::",
            ":",
            ";",
            ",",
            ".",
            "!",
            "#",
            "&",
            "*",
            "'a",
            "\"s\"",
            "1",
            "r#\"x\"#",
            "//c\n",
            "/*c*/",
            "fn",
            "use",
            "mod",
            "let",
            "match",
            "if",
            "else",
            "return",
            "async",
            "move",
            "impl",
            "struct",
            "as",
            "tokio",
            "spawn",
            "time",
            "sleep",
            "std",
            "thread",
            "rand",
            "thread_rng",
            "select",
            "self",
            "super",
            "crate",
            "x",
            "go",
            "test",
            "cfg",
            "=",
            "+",
            "$",
            "?",
            "@",
            "_",
        ];
        for round in 0..2_000 {
            let len = gen.below(if round % 10 == 0 { 5_000 } else { 200 });
            let mut source = String::new();
            for _ in 0..len {
                source.push_str(VOCAB[gen.below(VOCAB.len())]);
                source.push(' ');
            }
            lint_survives(&source);
        }
    }

    #[test]
    fn mutations_of_real_dst_files_never_crash_the_lint() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = dst_files(root);
        assert!(files.len() >= 5, "{files:?}");
        let mut gen = Gen(7);
        for file in &files {
            let source = fs::read_to_string(file).unwrap();
            let clean = lint_survives(&source);
            assert!(clean.is_empty(), "{}: {clean:?}", file.display());
            for _ in 0..20 {
                let mut chars: Vec<char> = source.chars().collect();
                for _ in 0..1 + gen.below(8) {
                    let at = gen.below(chars.len().max(1));
                    match gen.below(3) {
                        0 if !chars.is_empty() => {
                            chars.remove(at);
                        }
                        1 => chars.insert(at, ['(', '{', '<', '|', ';', '"', '\''][gen.below(7)]),
                        _ => {
                            let end = (at + gen.below(200)).min(chars.len());
                            let copy: Vec<char> = chars[at..end].to_vec();
                            chars.splice(at..at, copy);
                        }
                    }
                }
                lint_survives(&chars.into_iter().collect::<String>());
            }
        }
    }

    /// A fresh, empty directory for one test.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kelpie-lint-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
