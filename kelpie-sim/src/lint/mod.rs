//! The nondeterminism lint: finds uses of nondeterministic APIs (`tokio::spawn`, the wall clock,
//! OS randomness, ...) in DST test files.
//!
//! The table of forbidden APIs, [`FORBIDDEN`], is the one `#[kelpie::dst_test]` checks test bodies
//! against at compile time; this module applies it to whole files, where it also sees the file's
//! `use` declarations and the code outside test fns. Resolution is syntactic: imports, renames,
//! globs and shadowing by local definitions are followed, macro bodies are scanned, but names
//! coming through other crates' re-exports or macro expansion are not seen.
//!
//! ```
//! use std::path::Path;
//!
//! let source = "use tokio::spawn as go;\nfn f() { go(async {}); }\n";
//! let diagnostics = kelpie_sim::lint::lint_source(Path::new("tests/kv_dst.rs"), source);
//! assert_eq!(
//!     diagnostics[0].to_string(),
//!     "tests/kv_dst.rs:2:10: `tokio::spawn` (written `go`) is not deterministic in a DST test: \
//!      use `env.spawn(...)`",
//! );
//! ```

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

mod forbidden;

pub use forbidden::{
    scan_block, scan_file, scan_fn, scan_item, Forbidden, Kind, Match, Violation, FORBIDDEN,
};

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

/// Lints Rust source text, reporting positions against `file`. Diagnostics come in source order.
/// Source that does not parse yields exactly one diagnostic, at the parse error.
pub fn lint_source(file: &Path, source: &str) -> Vec<Diagnostic> {
    let diagnostic = |kind, (line, column), message| Diagnostic {
        kind,
        file: file.to_path_buf(),
        line,
        column,
        message,
    };
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

    /// `(line, column, resolved path)` of every violation in `source`.
    fn hits(source: &str) -> Vec<(usize, usize, String)> {
        let ast = syn::parse_file(source).expect("test source parses");
        scan_file(&ast)
            .into_iter()
            .map(|v| {
                let (line, column) = position(v.span);
                (line, column, v.path)
            })
            .collect()
    }

    fn hit(line: usize, column: usize, path: &str) -> (usize, usize, String) {
        (line, column, path.to_string())
    }

    fn messages(source: &str) -> Vec<String> {
        lint_source(Path::new("t_dst.rs"), source)
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

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
    fn renamed_import_is_resolved() {
        let source = "use tokio::spawn as go;\nfn t() { go(async {}); }\n";
        assert_eq!(hits(source), vec![hit(2, 10, "tokio::spawn")]);
        assert_eq!(
            messages(source),
            vec![
                "`tokio::spawn` (written `go`) is not deterministic in a DST test: use \
                 `env.spawn(...)`"
            ]
        );
    }

    #[test]
    fn grouped_and_nested_imports_are_resolved() {
        let source = "use tokio::{spawn, time::{sleep as nap}};\n\
                      fn t() {\n    spawn(async {});\n    nap(d);\n}\n";
        assert_eq!(
            hits(source),
            vec![hit(3, 5, "tokio::spawn"), hit(4, 5, "tokio::time::sleep")]
        );
        assert_eq!(
            messages(source)[1],
            "`tokio::time::sleep` (written `nap`) is not deterministic in a DST test: use \
             `env.sleep(...)`"
        );
    }

    #[test]
    fn glob_of_a_forbidden_module_resolves_its_members() {
        let source = "use tokio::time::*;\nfn t() {\n\
                      sleep(d);\ntimeout(d, f);\ninterval(d);\nlet i = Instant::now();\n\
                      let ok = Duration::from_secs(1);\nunrelated();\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 1, "tokio::time::sleep"),
                hit(4, 1, "tokio::time::timeout"),
                hit(5, 1, "tokio::time::interval"),
                hit(6, 9, "tokio::time::Instant::now"),
            ]
        );
        assert_eq!(
            messages(source)[2],
            "`tokio::time::interval` (written `interval`) is not deterministic in a DST test: use \
             the simulation's clock: `env.sleep(...)`, `env.timeout(...)`, `env.now()`"
        );
    }

    #[test]
    fn glob_of_tokio_resolves_spawn_select_and_submodules() {
        let source = "use tokio::*;\nfn t() {\nspawn(f);\nselect! { _ = a => {} }\n\
                      time::sleep(d);\ntask::spawn_blocking(g);\nsync::Mutex::new(0);\njoin!(a, b);\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 1, "tokio::spawn"),
                hit(4, 1, "tokio::select"),
                hit(5, 1, "tokio::time::sleep"),
                hit(6, 1, "tokio::task::spawn_blocking"),
            ]
        );
        assert_eq!(
            messages(source)[1],
            "`tokio::select!` (written `select`) is not deterministic in a DST test: write \
             `biased;` as its first line so that branches are polled in declaration order"
        );
    }

    #[test]
    fn glob_of_std_resolves_thread() {
        let source = "use std::*;\nfn t() { thread::spawn(f); time::Duration::from_secs(1); }\n";
        assert_eq!(hits(source), vec![hit(2, 10, "std::thread::spawn")]);
    }

    #[test]
    fn leading_colon_paths_are_flagged_at_the_colons() {
        let source = "fn t() {\n    ::tokio::spawn(f);\n    ::std::thread::sleep(d);\n}\n";
        assert_eq!(
            hits(source),
            vec![hit(2, 5, "tokio::spawn"), hit(3, 5, "std::thread::sleep")]
        );
        // A leading `::` alone does not make the path "written differently".
        assert_eq!(
            messages(source)[0],
            "`tokio::spawn` is not deterministic in a DST test: use `env.spawn(...)`"
        );
    }

    #[test]
    fn absolute_imports_and_raw_identifiers_are_resolved() {
        let source = "use ::tokio::time::sleep;\nuse ::std::thread::*;\n\
                      fn t() { sleep(d); r#spawn(f); }\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 10, "tokio::time::sleep"),
                hit(3, 20, "std::thread::spawn")
            ]
        );
    }

    #[test]
    fn to_error_covers_the_whole_path() {
        let ast = syn::parse_file("fn t() {\n    ::std::time::Instant::now();\n}\n").unwrap();
        let found = scan_file(&ast);
        assert_eq!(found.len(), 1);
        let error = found[0].to_error();
        assert_eq!(error.to_string(), found[0].message);
        let (start, end) = (error.span().start(), error.span().end());
        assert_eq!((start.line, start.column), (2, 4));
        assert_eq!((end.line, end.column), (2, 29));
    }

    #[test]
    fn self_imports_and_renames_are_resolved() {
        let source = "use tokio::task::{self as t};\nuse tokio::time::{self};\n\
                      fn a() { t::spawn(f); }\nfn b() { time::sleep(d); }\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 10, "tokio::task::spawn"),
                hit(4, 10, "tokio::time::sleep")
            ]
        );
    }

    #[test]
    fn module_renames_are_resolved() {
        let source = "use tokio as tk;\nextern crate rand as r;\n\
                      fn t() { tk::spawn(f); r::thread_rng(); }\n";
        assert_eq!(
            hits(source),
            vec![hit(3, 10, "tokio::spawn"), hit(3, 24, "rand::thread_rng")]
        );
    }

    #[test]
    fn std_thread_through_module_import() {
        let source = "use std::thread;\nfn t() {\n\
                      thread::spawn(f);\nthread::sleep(d);\nthread::Builder::new().spawn(f);\n\
                      thread::current();\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 1, "std::thread::spawn"),
                hit(4, 1, "std::thread::sleep"),
                hit(5, 1, "std::thread::Builder::new"),
            ]
        );
    }

    #[test]
    fn wall_clock_through_type_imports() {
        let source = "use std::time::{Instant, SystemTime};\n\
                      fn t(since: Instant) -> SystemTime {\n\
                      let a = Instant::now();\nlet b = std::time::SystemTime::now();\n\
                      SystemTime::now()\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 9, "std::time::Instant::now"),
                hit(4, 9, "std::time::SystemTime::now"),
                hit(5, 1, "std::time::SystemTime::now"),
            ]
        );
        assert_eq!(
            messages(source)[0],
            "`std::time::Instant::now` (written `Instant::now`) is not deterministic in a DST \
             test: use `env.now()`"
        );
    }

    #[test]
    fn macros_select_is_flagged_unless_biased_and_join_is_allowed() {
        let source = "fn t() {\n\
                      tokio::select! { _ = a => {}, _ = b => {} }\n\
                      tokio::select! { biased; _ = a => {}, _ = b => {} }\n\
                      tokio::join!(a, b);\n\
                      futures::select! { _ = a => {} }\n\
                      futures::select_biased! { _ = a => {} }\n}\n";
        assert_eq!(
            hits(source),
            vec![hit(2, 1, "tokio::select"), hit(5, 1, "futures::select")]
        );
    }

    #[test]
    fn tokio_attributes_are_flagged() {
        let source = "#[tokio::test]\nasync fn a() {}\n\
                      #[tokio::main]\nasync fn main() {}\n\
                      #[tokio::test(flavor = \"multi_thread\")]\nasync fn b() {}\n\
                      #[cfg_attr(not(madsim), tokio::test)]\nasync fn c() {}\n\
                      #[test]\nfn d() {}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(1, 3, "tokio::test"),
                hit(3, 3, "tokio::main"),
                hit(5, 3, "tokio::test"),
                hit(7, 25, "tokio::test"),
            ]
        );
        assert_eq!(
            messages(source)[0],
            "`#[tokio::test]` is not deterministic in a DST test: use `#[kelpie::dst_test]`"
        );
    }

    #[test]
    fn paths_used_as_values_and_types_are_flagged() {
        let source = "fn t() {\nlet f = tokio::spawn;\nlet r: tokio::runtime::Runtime = make();\n\
                      let i: Option<tokio::time::Instant> = None;\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(2, 9, "tokio::spawn"),
                hit(3, 8, "tokio::runtime::Runtime"),
                hit(4, 15, "tokio::time::Instant"),
            ]
        );
    }

    #[test]
    fn randomness_from_the_os_is_flagged() {
        let source = "use rand::rngs::OsRng;\nfn t() {\n\
                      let a = rand::thread_rng();\nlet b: u8 = rand::random::<u8>();\n\
                      OsRng.next_u32();\nlet mut buf = [0u8; 4];\n\
                      getrandom::getrandom(&mut buf);\nrand::rngs::StdRng::from_entropy();\n\
                      rand::rngs::StdRng::seed_from_u64(1);\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 9, "rand::thread_rng"),
                hit(4, 13, "rand::random"),
                hit(5, 1, "rand::rngs::OsRng"),
                hit(7, 1, "getrandom::getrandom"),
                hit(8, 1, "rand::rngs::StdRng::from_entropy"),
            ]
        );
    }

    #[test]
    fn task_and_runtime_apis_are_flagged() {
        let source = "fn t() {\n\
                      tokio::task::spawn(f);\ntokio::task::spawn_local(f);\n\
                      tokio::task::block_in_place(g);\ntokio::runtime::Builder::new_current_thread();\n\
                      tokio::task::JoinSet::new();\ntokio::task::yield_now();\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(2, 1, "tokio::task::spawn"),
                hit(3, 1, "tokio::task::spawn_local"),
                hit(4, 1, "tokio::task::block_in_place"),
                hit(5, 1, "tokio::runtime::Builder::new_current_thread"),
                hit(6, 1, "tokio::task::JoinSet::new"),
            ]
        );
    }

    #[test]
    fn deterministic_and_look_alike_code_is_not_flagged() {
        let source = r#"
use madsim::time::sleep;
use tokio::sync::mpsc;
fn spawn() {}
// tokio::spawn(f) in a comment
/// tokio::spawn in a doc comment
fn t(env: &Env, x: &X) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let _ = mpsc::unbounded_channel::<u8>();
    let m = tokio::sync::Mutex::new(0);
    spawn();
    x.spawn();
    env.spawn(async {});
    env.sleep(d);
    sleep(d);
    madsim::time::sleep(d);
    madsim::task::spawn(f);
    let s = "tokio::spawn(f)";
    println!("tokio::spawn({})", s);
    spawner();
    my_spawn();
    tokio_spawn();
    let map = std::collections::HashMap::<u8, u8>::new();
    let d = tokio::time::Duration::from_secs(1);
    std::time::Duration::from_millis(5);
    let t: std::time::Instant = since;
}
"#;
        assert_eq!(hits(source), vec![]);
    }

    #[test]
    fn local_definitions_shadow_glob_imports() {
        let source = "use tokio::*;\nfn spawn() {}\nfn t() { spawn(); }\n";
        assert_eq!(hits(source), vec![]);
        // Inside a block, a local fn shadows an outer explicit import.
        let source = "use tokio::spawn;\nfn t() { fn spawn() {} spawn(); }\n";
        assert_eq!(hits(source), vec![]);
    }

    #[test]
    fn let_bindings_shadow_imports_from_their_statement_on() {
        let source =
            "use tokio::spawn;\nfn t() {\nspawn(f);\nlet spawn = |x: u8| x;\nspawn(1);\n}\n\
                      fn u(spawn: fn()) { spawn(); }\n\
                      fn v() { let c = |spawn: fn()| spawn(); for spawn in fs { spawn(); } }\n\
                      fn w(o: Option<fn()>) { match o { Some(spawn) => spawn(), None => {} } }\n";
        assert_eq!(hits(source), vec![hit(3, 1, "tokio::spawn")]);
    }

    #[test]
    fn imports_are_scoped_to_their_fn_block_and_module() {
        let source = "fn a() {\nuse tokio::spawn;\nspawn(f);\n}\n\
                      fn b() {\nspawn(f);\n{\nuse tokio::time::sleep;\nsleep(d);\n}\nsleep(d);\n}\n";
        assert_eq!(
            hits(source),
            vec![hit(3, 1, "tokio::spawn"), hit(9, 1, "tokio::time::sleep")]
        );
    }

    #[test]
    fn modules_do_not_see_outer_imports_except_through_super() {
        let source = "use tokio::spawn;\n\
                      mod hidden {\nfn f() { spawn(x); }\n}\n\
                      mod tests {\nuse super::*;\nfn g() { spawn(x); }\n}\n\
                      mod explicit {\nfn h() { super::spawn(x); }\n}\n\
                      mod named {\nuse super::spawn as s;\nfn i() { s(x); }\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(7, 10, "tokio::spawn"),
                hit(10, 10, "tokio::spawn"),
                hit(14, 10, "tokio::spawn"),
            ]
        );
    }

    #[test]
    fn macro_bodies_are_scanned_as_expressions() {
        let source = "use tokio::spawn as go;\nfn t() {\n\
                      let v = vec![tokio::spawn(a), go(b)];\n\
                      assert!(tokio::time::timeout(d, f).is_ok());\n\
                      println!(\"{:?}\", std::time::Instant::now());\n\
                      let w = vec![rand::random::<u8>(); 3];\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 14, "tokio::spawn"),
                hit(3, 31, "tokio::spawn"),
                hit(4, 9, "tokio::time::timeout"),
                hit(5, 18, "std::time::Instant::now"),
                hit(6, 14, "rand::random"),
            ]
        );
    }

    #[test]
    fn macro_bodies_that_are_not_expressions_are_scanned_token_by_token() {
        let source = "use tokio::spawn as go;\n\
                      macro_rules! m {\n($x:expr) => { ::tokio::spawn($x) };\n}\n\
                      fn t() {\n\
                      tokio::select! { biased; _ = tokio::time::sleep(d) => {}, _ = go(f) => {} }\n\
                      custom!(=> std::thread::spawn(f), x.spawn(), fn spawn() {});\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 16, "tokio::spawn"),
                hit(6, 30, "tokio::time::sleep"),
                hit(6, 63, "tokio::spawn"),
                hit(7, 12, "std::thread::spawn"),
            ]
        );
    }

    #[test]
    fn qualified_paths_resolve_relative_to_their_type() {
        let source = "use tokio::spawn;\nfn t() {\n<T>::spawn();\n\
                      <T as Trait>::spawn();\n<tokio::time::Instant>::now();\n}\n";
        assert_eq!(hits(source), vec![hit(5, 2, "tokio::time::Instant")]);
    }

    #[test]
    fn impl_and_trait_methods_are_scanned() {
        let source = "struct S;\nimpl S {\nfn a(&self) { tokio::spawn(f); }\n}\n\
                      trait T {\nfn b() { std::thread::sleep(d); }\n}\n";
        assert_eq!(
            hits(source),
            vec![hit(3, 15, "tokio::spawn"), hit(6, 10, "std::thread::sleep")]
        );
    }

    #[test]
    fn scan_block_honours_uses_inside_the_block() {
        let block: syn::Block = syn::parse_str(
            "{\n    use tokio::spawn as go;\n    use tokio::time::*;\n    go(f);\n    sleep(d);\n    spawn(g);\n}",
        )
        .unwrap();
        let found: Vec<_> = scan_block(&block)
            .into_iter()
            .map(|v| (position(v.span), v.path))
            .collect();
        assert_eq!(
            found,
            vec![
                ((4, 5), "tokio::spawn".to_string()),
                ((5, 5), "tokio::time::sleep".to_string()),
            ]
        );
    }

    #[test]
    fn scan_fn_includes_attributes_and_scan_item_a_whole_item() {
        let item: syn::ItemFn =
            syn::parse_str("#[tokio::test]\nasync fn t() { tokio::spawn(f); }").unwrap();
        let paths: Vec<_> = scan_fn(&item).into_iter().map(|v| v.path).collect();
        assert_eq!(paths, vec!["tokio::test", "tokio::spawn"]);
        let item: syn::Item =
            syn::parse_str("mod m { use std::thread::sleep; fn f() { sleep(d); } }").unwrap();
        let paths: Vec<_> = scan_item(&item).into_iter().map(|v| v.path).collect();
        assert_eq!(paths, vec!["std::thread::sleep"]);
    }

    #[test]
    fn import_cycles_and_self_imports_terminate() {
        let source = "use tokio;\nuse a::b as a;\nuse x::*;\nuse y::*;\nuse self::y as x;\n\
                      fn t() { tokio::spawn(f); a(); z(); }\n";
        assert_eq!(hits(source), vec![hit(6, 10, "tokio::spawn")]);
    }

    #[test]
    fn every_table_entry_is_flagged_when_written_out() {
        for entry in FORBIDDEN {
            let path = entry.path;
            let source = match entry.kind {
                Kind::Item => format!("fn t() {{ let _ = {path}; }}"),
                Kind::Macro { .. } => format!("fn t() {{ {path}! {{ _ = a => {{}} }} }}"),
                Kind::Attribute => format!("#[{path}]\nfn t() {{}}"),
            };
            // A lone crate name (`getrandom`) is not resolved: it is checked through its members.
            if path.contains("::") {
                let found = hits(&source);
                assert_eq!(found.len(), 1, "{source}");
                assert_eq!(found[0].2, path, "{source}");
            }
            if let Match::Prefix { members, allowed } = entry.matching {
                for member in members {
                    let source = format!("use {path}::*;\nfn t() {{ let _ = {member}; }}");
                    assert_eq!(
                        hits(&source),
                        vec![hit(2, 18, &format!("{path}::{member}"))]
                    );
                }
                for member in allowed {
                    let source = format!("fn t() {{ let _ = {path}::{member}; }}");
                    assert_eq!(hits(&source), vec![], "{source}");
                }
            }
        }
    }

    #[test]
    fn table_entries_are_well_formed_and_unique() {
        for (i, entry) in FORBIDDEN.iter().enumerate() {
            assert!(
                syn::parse_str::<syn::Path>(entry.path).is_ok(),
                "{}",
                entry.path
            );
            assert!(!entry.path.starts_with("::"), "{}", entry.path);
            assert!(!entry.replacement.is_empty(), "{}", entry.path);
            assert!(
                FORBIDDEN[..i].iter().all(|other| other.path != entry.path),
                "duplicate {}",
                entry.path
            );
        }
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

    /// A fresh, empty directory for one test.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kelpie-lint-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
