//! The forbidden-API table and the scanner that finds its entries in Rust syntax.
//!
//! This file is shared: kelpie-sim's file linter (`lint/mod.rs`) declares it as a module, and
//! kelpie-macros includes the very same file with
//! `#[path = "../../kelpie-sim/src/lint/forbidden.rs"] mod forbidden;`. It therefore depends only on
//! `syn` and `proc_macro2`, names no `crate::` path, and never asks a span for its line and column
//! (`Span::start` is unavailable inside a proc macro): converting spans to positions is the caller's
//! business.
//!
//! Resolution is syntactic. The scanner keeps a stack of scopes (file, inline `mod`, fn, block,
//! closure, match arm, loop) with the `use` declarations, items and `let` bindings of each, and
//! resolves every path it meets, macro and attribute paths included, to the absolute path it names:
//! `use tokio::spawn as go; go(..)` is `tokio::spawn`, `use tokio::time::*; sleep(..)` is
//! `tokio::time::sleep`. A name defined locally (a `fn spawn`, a `let spawn`) is never forbidden,
//! and method calls (`env.spawn(..)`) are not paths at all.

use std::cell::RefCell;

use proc_macro2::{Delimiter, Ident, Spacing, Span, TokenStream, TokenTree};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};

/// How a forbidden path is used in source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A function, type, constant or module, named by a path (`tokio::spawn(..)`,
    /// `let f = tokio::spawn;`, `tokio::time::Instant`).
    Item,
    /// A macro, invoked as `path! { .. }`.
    Macro {
        /// The invocation is allowed when its body starts with `biased;` (tokio's `select!`
        /// then polls its branches in declaration order instead of from a random start).
        biased_ok: bool,
    },
    /// An attribute, written `#[path]` or `#[path(..)]`.
    Attribute,
}

/// Which paths an entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Exactly the entry's path.
    Exact,
    /// The entry's path and every path under it (`tokio::time` covers `tokio::time::sleep` and
    /// `tokio::time::Instant::now`).
    Prefix {
        /// Names known to live directly in the module, so that a glob import of it
        /// (`use tokio::time::*;`) lets a bare `sleep(..)` be recognised.
        members: &'static [&'static str],
        /// Names directly under the prefix that are deterministic and therefore allowed
        /// (`tokio::time::Duration` is `std::time::Duration`).
        allowed: &'static [&'static str],
    },
}

/// One entry of [`FORBIDDEN`]: a nondeterministic API and what to use instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden {
    /// The absolute path, `::`-separated, without a leading `::` or a trailing `!`
    /// (`"tokio::spawn"`, `"tokio::select"`).
    pub path: &'static str,
    /// How the path is used: item, macro or attribute. Shapes the message only.
    pub kind: Kind,
    /// Whether the entry covers only its path or everything under it.
    pub matching: Match,
    /// The advice appended to the message, naming the deterministic replacement.
    pub replacement: &'static str,
}

impl Forbidden {
    const fn item(path: &'static str, replacement: &'static str) -> Self {
        Forbidden {
            path,
            kind: Kind::Item,
            matching: Match::Exact,
            replacement,
        }
    }

    const fn prefix(
        path: &'static str,
        members: &'static [&'static str],
        allowed: &'static [&'static str],
        replacement: &'static str,
    ) -> Self {
        Forbidden {
            path,
            kind: Kind::Item,
            matching: Match::Prefix { members, allowed },
            replacement,
        }
    }

    const fn macro_(path: &'static str, biased_ok: bool, replacement: &'static str) -> Self {
        Forbidden {
            path,
            kind: Kind::Macro { biased_ok },
            matching: Match::Exact,
            replacement,
        }
    }

    const fn attribute(path: &'static str, replacement: &'static str) -> Self {
        Forbidden {
            path,
            kind: Kind::Attribute,
            matching: Match::Exact,
            replacement,
        }
    }

    /// The path's segments.
    fn segments(&self) -> impl Iterator<Item = &'static str> {
        self.path.split("::")
    }

    /// How the API is written in source: `tokio::spawn`, `tokio::select!` or `#[tokio::test]`.
    fn display(&self, resolved: &str) -> String {
        match self.kind {
            Kind::Item => resolved.to_string(),
            Kind::Macro { .. } => format!("{resolved}!"),
            Kind::Attribute => format!("#[{resolved}]"),
        }
    }
}

const USE_SPAWN: &str = "use `env.spawn(...)`";
const USE_SLEEP: &str = "use `env.sleep(...)`";
const USE_NOW: &str = "use `env.now()`";
const USE_RNG: &str = "use `env.rng()`";

/// The one table of nondeterministic APIs, shared by `#[kelpie::dst_test]` and `kelpie-lint`.
///
/// Not here, on purpose: `tokio::sync::*` (runtime-agnostic), `tokio::join!` and `try_join!` (poll
/// in order), `madsim::*` (the simulation itself), and `std::collections::HashMap` (the simulation
/// seeds hash keys per run).
pub const FORBIDDEN: &[Forbidden] = &[
    // tokio's tasks run on tokio's executor, not the simulation's.
    Forbidden::item("tokio::spawn", USE_SPAWN),
    Forbidden::item("tokio::task::spawn", USE_SPAWN),
    Forbidden::item("tokio::task::spawn_local", USE_SPAWN),
    Forbidden::item(
        "tokio::task::spawn_blocking",
        "use `env.spawn(...)`: the simulation has no blocking pool",
    ),
    Forbidden::item(
        "tokio::task::block_in_place",
        "`.await` the work instead: the simulation has no blocking pool",
    ),
    Forbidden::prefix(
        "tokio::task::JoinSet",
        &[],
        &[],
        "use `env.spawn(...)` and keep the handles",
    ),
    Forbidden::prefix("tokio::task::LocalSet", &[], &[], USE_SPAWN),
    // tokio's clock is the wall clock.
    Forbidden::item("tokio::time::sleep", USE_SLEEP),
    Forbidden::item("tokio::time::sleep_until", USE_SLEEP),
    Forbidden::item("tokio::time::timeout", "use `env.timeout(...)`"),
    Forbidden::item("tokio::time::timeout_at", "use `env.timeout(...)`"),
    Forbidden::prefix("tokio::time::Instant", &[], &[], USE_NOW),
    Forbidden::prefix(
        "tokio::time",
        &[
            "sleep",
            "sleep_until",
            "timeout",
            "timeout_at",
            "interval",
            "interval_at",
            "Instant",
            "Interval",
            "Sleep",
            "Timeout",
            "MissedTickBehavior",
            "advance",
            "pause",
            "resume",
            "error",
        ],
        &["Duration"],
        "use the simulation's clock: `env.sleep(...)`, `env.timeout(...)`, `env.now()`",
    ),
    Forbidden::prefix(
        "tokio::runtime",
        &[
            "Runtime",
            "Builder",
            "Handle",
            "EnterGuard",
            "RuntimeFlavor",
            "RuntimeMetrics",
            "TryCurrentError",
            "LocalRuntime",
            "Id",
        ],
        &[],
        "the simulation is the runtime: write the test as a `#[kelpie::dst_test]` fn and use `env`",
    ),
    Forbidden::macro_(
        "tokio::select",
        true,
        "write `biased;` as its first line so that branches are polled in declaration order",
    ),
    Forbidden::macro_(
        "futures::select",
        false,
        "use `futures::select_biased!`, which polls branches in declaration order",
    ),
    Forbidden::attribute(
        "tokio::main",
        "write the test as a `#[kelpie::dst_test]` fn",
    ),
    Forbidden::attribute("tokio::test", "use `#[kelpie::dst_test]`"),
    // OS threads and the wall clock.
    Forbidden::item("std::thread::spawn", USE_SPAWN),
    Forbidden::item("std::thread::scope", USE_SPAWN),
    Forbidden::prefix("std::thread::Builder", &[], &[], USE_SPAWN),
    Forbidden::item("std::thread::sleep", USE_SLEEP),
    Forbidden::item("std::time::Instant::now", USE_NOW),
    Forbidden::item("std::time::SystemTime::now", USE_NOW),
    // Randomness from the OS.
    Forbidden::item("rand::thread_rng", USE_RNG),
    Forbidden::item("rand::rng", USE_RNG),
    Forbidden::item("rand::random", USE_RNG),
    Forbidden::prefix("rand::rngs::OsRng", &[], &[], USE_RNG),
    Forbidden::prefix("rand::rngs::ThreadRng", &[], &[], USE_RNG),
    Forbidden::item("rand::rngs::StdRng::from_entropy", USE_RNG),
    Forbidden::item("rand::rngs::SmallRng::from_entropy", USE_RNG),
    Forbidden::prefix(
        "getrandom",
        &[
            "getrandom",
            "getrandom_uninit",
            "fill",
            "fill_uninit",
            "u32",
            "u64",
        ],
        &[],
        USE_RNG,
    ),
];

/// A use of a [`FORBIDDEN`] API found in source.
#[derive(Debug, Clone)]
// kelpie-macros reads the span and the message, kelpie-sim's linter all three fields.
#[allow(dead_code)]
pub struct Violation {
    /// Where the offending path is written: its first token, joined to its last where spans can
    /// be joined (outside proc macros, or on nightly). Its start is the path's start.
    pub span: Span,
    /// The path's last token, so that [`Violation::to_error`] can cover the whole path even where
    /// spans cannot be joined.
    end: Span,
    /// The resolved absolute path, e.g. `"tokio::spawn"` for `go(..)` after
    /// `use tokio::spawn as go;`.
    pub path: String,
    /// The full human message, naming the replacement: "`tokio::spawn` is not deterministic in a
    /// DST test: use `env.spawn(...)`".
    pub message: String,
}

impl Violation {
    /// The violation as a `syn::Error` covering the whole path, ready for `to_compile_error()` or
    /// `syn::Error::combine`.
    #[allow(dead_code)] // used by kelpie-macros only
    pub fn to_error(&self) -> syn::Error {
        // `Error::new_spanned` spans from its tokens' first span to their last, on stable too.
        let range: TokenStream = [self.span, self.end]
            .into_iter()
            .map(|span| TokenTree::Ident(Ident::new("path", span)))
            .collect();
        syn::Error::new_spanned(range, &self.message)
    }
}

/// Every forbidden use in a whole file, in source order.
#[allow(dead_code)] // used by kelpie-sim's file linter only
pub fn scan_file(file: &syn::File) -> Vec<Violation> {
    let mut scanner = Scanner::new();
    scanner.visit_file(file);
    scanner.out
}

/// Every forbidden use in one item (its attributes included), in source order. Imports outside
/// the item are not seen.
#[allow(dead_code)] // each caller uses a different entry point
pub fn scan_item(item: &syn::Item) -> Vec<Violation> {
    let mut scanner = Scanner::with_root();
    scanner.visit_item(item);
    scanner.out
}

/// Every forbidden use in a fn: its attributes (`#[tokio::test]`), signature and body, in source
/// order. Imports outside the fn are not seen.
#[allow(dead_code)] // each caller uses a different entry point
pub fn scan_fn(item: &syn::ItemFn) -> Vec<Violation> {
    let mut scanner = Scanner::with_root();
    scanner.visit_item_fn(item);
    scanner.out
}

/// Every forbidden use in a block, honouring the `use` items inside it, in source order. Imports
/// outside the block are not seen.
#[allow(dead_code)] // each caller uses a different entry point
pub fn scan_block(block: &syn::Block) -> Vec<Violation> {
    let mut scanner = Scanner::with_root();
    scanner.visit_block(block);
    scanner.out
}

/// The most specific entry covering `path`, if any.
fn lookup(path: &[String]) -> Option<&'static Forbidden> {
    FORBIDDEN
        .iter()
        .filter(|entry| {
            let len = entry.segments().count();
            let under = path.len() >= len && entry.segments().zip(path).all(|(a, b)| a == b);
            match entry.matching {
                Match::Exact => under && path.len() == len,
                Match::Prefix { allowed, .. } => {
                    let next = path.get(len).map(String::as_str);
                    under && !next.is_some_and(|next| allowed.contains(&next))
                }
            }
        })
        .max_by_key(|entry| entry.segments().count())
}

/// Whether `name` is known to exist in the module `module`, for glob imports: some entry lies at
/// or under `module::name`, or `module` is a prefix entry listing `name` among its members.
fn known_member(module: &[String], name: &str) -> bool {
    FORBIDDEN.iter().any(|entry| {
        let under = entry.segments().count() > module.len()
            && entry
                .segments()
                .zip(module.iter().map(String::as_str).chain([name]))
                .all(|(a, b)| a == b);
        let listed = match entry.matching {
            Match::Prefix { members, allowed } => {
                entry.segments().eq(module.iter().map(String::as_str))
                    && (members.contains(&name) || allowed.contains(&name))
            }
            Match::Exact => false,
        };
        under || listed
    })
}

/// A path as written: `::`-rooted or not, and its identifiers.
#[derive(Debug, Clone)]
struct Target {
    absolute: bool,
    segs: Vec<String>,
}

/// One lexical scope.
#[derive(Debug, Default)]
struct Frame {
    /// A module (file or inline `mod`): names of enclosing scopes are not visible through it.
    module: bool,
    /// A fn item: `let` bindings of enclosing scopes are not visible through it.
    item_boundary: bool,
    /// Items defined in the scope (`fn spawn() {}`).
    items: Vec<String>,
    /// `use` and `extern crate` names, with what they name.
    imports: Vec<(String, Target)>,
    /// Glob imports (`use tokio::time::*;`).
    globs: Vec<Target>,
    /// `let`, parameter and pattern bindings seen so far.
    locals: Vec<String>,
}

/// What a name or path resolves to.
#[derive(Debug, Clone)]
enum Res {
    /// An absolute path outside the scanned code (an extern crate's item).
    Path(Vec<String>),
    /// A module of the scanned code, by frame index.
    Module(usize),
    /// Something defined in the scanned code, or that cannot be known: never forbidden.
    Opaque,
    /// Not found in any visible scope.
    Unknown,
}

/// Where a path is resolved from.
#[derive(Clone, Copy)]
enum Ctx {
    /// A use site in code: `let` bindings shadow; an unknown single name is nothing we know.
    UseSite,
    /// The path of a `use` declaration: an unknown first segment is a crate.
    Import,
}

/// Bounds resolution through chains of imports (and breaks import cycles).
const MAX_DEPTH: u8 = 8;

struct Scanner {
    frames: Vec<Frame>,
    out: Vec<Violation>,
    /// Paths not to check (the path of a `<T as Trait>::item` being visited), by address.
    skip: Vec<*const syn::Path>,
    /// The imports being resolved, as (frame, index, is glob): an import's own path cannot
    /// resolve through the import itself (`use tokio;`, `use getrandom::*;`).
    resolving: RefCell<Vec<(usize, usize, bool)>>,
}

fn name(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    match s.strip_prefix("r#") {
        Some(raw) => raw.to_string(),
        None => s,
    }
}

fn bindings(pat: &syn::Pat) -> Vec<String> {
    struct Binder(Vec<String>);
    impl<'ast> Visit<'ast> for Binder {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.0.push(name(&p.ident));
            visit::visit_pat_ident(self, p);
        }
    }
    let mut binder = Binder(Vec::new());
    binder.visit_pat(pat);
    binder.0
}

fn collect_use(tree: &syn::UseTree, absolute: bool, prefix: &mut Vec<String>, frame: &mut Frame) {
    let mut import = |ident: &syn::Ident, rename: Option<&syn::Ident>, prefix: &[String]| {
        let ident = name(ident);
        let (bound, segs) = if ident == "self" {
            (prefix.last().cloned(), prefix.to_vec())
        } else {
            let mut segs = prefix.to_vec();
            segs.push(ident.clone());
            (Some(ident), segs)
        };
        let bound = rename.map(name).or(bound);
        if let Some(bound) = bound.filter(|b| b != "_") {
            frame.imports.push((bound, Target { absolute, segs }));
        }
    };
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(name(&p.ident));
            collect_use(&p.tree, absolute, prefix, frame);
            prefix.pop();
        }
        syn::UseTree::Name(n) => import(&n.ident, None, prefix),
        syn::UseTree::Rename(r) => import(&r.ident, Some(&r.rename), prefix),
        syn::UseTree::Glob(_) => frame.globs.push(Target {
            absolute,
            segs: prefix.clone(),
        }),
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                collect_use(tree, absolute, prefix, frame);
            }
        }
    }
}

fn collect_item(item: &syn::Item, frame: &mut Frame) {
    let ident = match item {
        syn::Item::Use(u) => {
            collect_use(&u.tree, u.leading_colon.is_some(), &mut Vec::new(), frame);
            return;
        }
        syn::Item::ExternCrate(e) => {
            let bound = e.rename.as_ref().map_or(&e.ident, |(_, r)| r);
            if e.ident != "self" {
                let target = Target {
                    absolute: true,
                    segs: vec![name(&e.ident)],
                };
                frame.imports.push((name(bound), target));
            }
            return;
        }
        syn::Item::ForeignMod(m) => {
            for item in &m.items {
                match item {
                    syn::ForeignItem::Fn(f) => frame.items.push(name(&f.sig.ident)),
                    syn::ForeignItem::Static(s) => frame.items.push(name(&s.ident)),
                    syn::ForeignItem::Type(t) => frame.items.push(name(&t.ident)),
                    _ => {}
                }
            }
            return;
        }
        syn::Item::Fn(f) => &f.sig.ident,
        syn::Item::Struct(s) => &s.ident,
        syn::Item::Enum(e) => &e.ident,
        syn::Item::Union(u) => &u.ident,
        syn::Item::Const(c) => &c.ident,
        syn::Item::Static(s) => &s.ident,
        syn::Item::Mod(m) => &m.ident,
        syn::Item::Trait(t) => &t.ident,
        syn::Item::TraitAlias(t) => &t.ident,
        syn::Item::Type(t) => &t.ident,
        syn::Item::Macro(m) => match &m.ident {
            Some(ident) => ident,
            None => return,
        },
        _ => return,
    };
    frame.items.push(name(ident));
}

fn module_frame<'a>(items: impl IntoIterator<Item = &'a syn::Item>) -> Frame {
    let mut frame = Frame {
        module: true,
        ..Frame::default()
    };
    for item in items {
        collect_item(item, &mut frame);
    }
    frame
}

fn block_frame(stmts: &[syn::Stmt]) -> Frame {
    let mut frame = Frame::default();
    for stmt in stmts {
        if let syn::Stmt::Item(item) = stmt {
            collect_item(item, &mut frame);
        }
    }
    frame
}

fn is_path_sep(tts: &[TokenTree], i: usize) -> bool {
    matches!(
        (tts.get(i), tts.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

fn starts_biased(tokens: &TokenStream) -> bool {
    let mut iter = tokens.clone().into_iter();
    matches!(
        (iter.next(), iter.next()),
        (Some(TokenTree::Ident(i)), Some(TokenTree::Punct(p))) if i == "biased" && p.as_char() == ';'
    )
}

impl Scanner {
    fn new() -> Self {
        Scanner {
            frames: Vec::new(),
            out: Vec::new(),
            skip: Vec::new(),
            resolving: RefCell::new(Vec::new()),
        }
    }

    /// A scanner inside an empty module, for fragments of a file.
    fn with_root() -> Self {
        let mut scanner = Scanner::new();
        scanner.frames.push(module_frame([]));
        scanner
    }

    fn with_frame(&mut self, frame: Frame, f: impl FnOnce(&mut Self)) {
        self.frames.push(frame);
        f(self);
        self.frames.pop();
    }

    fn bind(&mut self, pat: &syn::Pat) {
        let names = bindings(pat);
        if let Some(frame) = self.frames.last_mut() {
            frame.locals.extend(names);
        }
    }

    /// The nearest module frame at or outside `i`.
    fn module_of(&self, i: usize) -> Option<usize> {
        (0..=i).rev().find(|&j| self.frames[j].module)
    }

    fn parent_module(&self, m: usize) -> Option<usize> {
        m.checked_sub(1).and_then(|j| self.module_of(j))
    }

    /// Resolves a written path from frame `from`.
    fn resolve(&self, target: &Target, from: usize, ctx: Ctx, depth: u8) -> Res {
        if depth > MAX_DEPTH {
            return Res::Opaque;
        }
        if target.absolute {
            return Res::Path(target.segs.clone());
        }
        let Some((first, rest)) = target.segs.split_first() else {
            return Res::Opaque;
        };
        match first.as_str() {
            "crate" | "Self" => return Res::Opaque,
            "self" | "super" => {
                let Some(mut module) = self.module_of(from) else {
                    return Res::Opaque;
                };
                let mut segs = if first == "self" { rest } else { &target.segs };
                while segs.first().is_some_and(|seg| seg == "super") {
                    let Some(parent) = self.parent_module(module) else {
                        return Res::Opaque;
                    };
                    module = parent;
                    segs = &segs[1..];
                }
                return self.join(Res::Module(module), segs, depth);
            }
            _ => {}
        }
        let locals = matches!(ctx, Ctx::UseSite) && rest.is_empty();
        let head = self.resolve_name(first, from, locals, depth + 1);
        match head {
            Res::Unknown if rest.is_empty() && matches!(ctx, Ctx::UseSite) => Res::Opaque,
            // Not defined in scope: an extern crate's path.
            Res::Unknown => Res::Path(target.segs.clone()),
            head => self.join(head, rest, depth),
        }
    }

    fn join(&self, head: Res, rest: &[String], depth: u8) -> Res {
        match head {
            Res::Path(mut path) => {
                path.extend_from_slice(rest);
                Res::Path(path)
            }
            Res::Module(m) => match rest.split_first() {
                None => Res::Module(m),
                Some((name, more)) => match self.lookup_in(m, name, depth + 1) {
                    Some(res) => self.join(res, more, depth + 1),
                    None => Res::Opaque,
                },
            },
            other => other,
        }
    }

    /// Looks a name up lexically, from frame `from` outwards to the nearest module.
    fn resolve_name(&self, name: &str, from: usize, locals: bool, depth: u8) -> Res {
        let mut locals = locals;
        let mut i = from;
        loop {
            let frame = &self.frames[i];
            if locals && frame.locals.iter().any(|l| l == name) {
                return Res::Opaque;
            }
            if let Some(res) = self.lookup_in(i, name, depth) {
                return res;
            }
            if frame.item_boundary {
                locals = false;
            }
            if frame.module || i == 0 {
                return Res::Unknown;
            }
            i -= 1;
        }
    }

    /// Looks a name up among the items and imports of frame `i` alone.
    fn lookup_in(&self, i: usize, name: &str, depth: u8) -> Option<Res> {
        if depth > MAX_DEPTH {
            return None;
        }
        let frame = &self.frames[i];
        if frame.items.iter().any(|item| item == name) {
            return Some(Res::Opaque);
        }
        for (k, (bound, target)) in frame.imports.iter().enumerate() {
            if bound == name {
                if let Some(res) = self.resolve_import(target, (i, k, false), depth) {
                    return Some(res);
                }
            }
        }
        for (k, glob) in frame.globs.iter().enumerate() {
            match self
                .resolve_import(glob, (i, k, true), depth)
                .unwrap_or(Res::Opaque)
            {
                Res::Module(m) if m != i => {
                    if let Some(res) = self.lookup_in(m, name, depth + 1) {
                        return Some(res);
                    }
                }
                Res::Path(module) if known_member(&module, name) => {
                    let mut path = module;
                    path.push(name.to_string());
                    return Some(Res::Path(path));
                }
                _ => {}
            }
        }
        None
    }

    /// Resolves the path of import `key`, unless it is already being resolved.
    fn resolve_import(&self, target: &Target, key: (usize, usize, bool), depth: u8) -> Option<Res> {
        if self.resolving.borrow().contains(&key) {
            return None;
        }
        self.resolving.borrow_mut().push(key);
        let res = self.resolve(target, key.0, Ctx::Import, depth + 1);
        self.resolving.borrow_mut().pop();
        Some(res)
    }

    /// Checks one written path; `mac` is the body when the path is a macro's.
    fn check(&mut self, written: Target, first: Span, last: Span, mac: Option<&TokenStream>) {
        if written.segs.is_empty() || self.frames.is_empty() {
            return;
        }
        let from = self.frames.len() - 1;
        let Res::Path(path) = self.resolve(&written, from, Ctx::UseSite, 0) else {
            return;
        };
        let Some(entry) = lookup(&path) else {
            return;
        };
        if let Kind::Macro { biased_ok: true } = entry.kind {
            if mac.is_some_and(starts_biased) {
                return;
            }
        }
        let resolved = path.join("::");
        let as_written = written.segs.join("::");
        let mut message = format!("`{}`", entry.display(&resolved));
        if as_written != resolved {
            message.push_str(&format!(" (written `{as_written}`)"));
        }
        message.push_str(&format!(
            " is not deterministic in a DST test: {}",
            entry.replacement
        ));
        self.out.push(Violation {
            span: first.join(last).unwrap_or(first),
            end: last,
            path: resolved,
            message,
        });
    }

    fn check_path(&mut self, path: &syn::Path, mac: Option<&TokenStream>) {
        if self.skip.contains(&(path as *const syn::Path)) {
            return;
        }
        let (Some(first_seg), Some(last_seg)) = (path.segments.first(), path.segments.last())
        else {
            return;
        };
        let first = match &path.leading_colon {
            Some(colons) => colons.spans[0],
            None => first_seg.ident.span(),
        };
        let written = Target {
            absolute: path.leading_colon.is_some(),
            segs: path.segments.iter().map(|s| name(&s.ident)).collect(),
        };
        self.check(written, first, last_seg.ident.span(), mac);
    }

    /// Scans a macro's body: as comma-separated expressions, else as statements, else token by
    /// token for paths.
    fn scan_macro_body(&mut self, tokens: &TokenStream) {
        let exprs = Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
        if let Ok(exprs) = exprs.parse2(tokens.clone()) {
            for expr in &exprs {
                self.visit_expr(expr);
            }
        } else if let Ok(stmts) = syn::Block::parse_within.parse2(tokens.clone()) {
            self.with_frame(block_frame(&stmts), |s| {
                for stmt in &stmts {
                    s.visit_stmt(stmt);
                }
            });
        } else {
            self.scan_tokens(tokens.clone());
        }
    }

    /// Finds paths in raw tokens: every `a::b` or `::a` sequence, and a single name directly
    /// called or invoked (`go(..)`, `select! {..}`), but not a name after `.`, `$`, `'`, `::`, `fn`
    /// or `mod`.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tts: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tts.len() {
            if let TokenTree::Group(group) = &tts[i] {
                self.scan_tokens(group.stream());
                i += 1;
                continue;
            }
            let prev = i.checked_sub(1).map(|j| &tts[j]);
            let leading = is_path_sep(&tts, i)
                && matches!(tts.get(i + 2), Some(TokenTree::Ident(_)))
                && !matches!(prev, Some(TokenTree::Ident(_)))
                && !matches!(prev, Some(TokenTree::Punct(p)) if matches!(p.as_char(), '>' | '$'));
            let starts_name = matches!(tts[i], TokenTree::Ident(_))
                && !matches!(prev, Some(TokenTree::Punct(p)) if matches!(p.as_char(), '.' | '$' | '\'' | ':'))
                && !matches!(prev, Some(TokenTree::Ident(kw)) if kw == "fn" || kw == "mod");
            if !leading && !starts_name {
                i += 1;
                continue;
            }
            let first_span = tts[i].span();
            let mut last_span = first_span;
            let mut segs = Vec::new();
            let mut j = if leading { i + 2 } else { i };
            while let Some(TokenTree::Ident(ident)) = tts.get(j) {
                segs.push(name(ident));
                last_span = ident.span();
                j += 1;
                if is_path_sep(&tts, j) && matches!(tts.get(j + 2), Some(TokenTree::Ident(_))) {
                    j += 2;
                } else {
                    break;
                }
            }
            let mac = match (tts.get(j), tts.get(j + 1)) {
                (Some(TokenTree::Punct(bang)), Some(TokenTree::Group(body)))
                    if bang.as_char() == '!' =>
                {
                    Some(body.stream())
                }
                _ => None,
            };
            let called = mac.is_some()
                || matches!(tts.get(j), Some(TokenTree::Group(args)) if args.delimiter() == Delimiter::Parenthesis);
            if leading || segs.len() > 1 || called {
                let written = Target {
                    absolute: leading,
                    segs,
                };
                self.check(written, first_span, last_span, mac.as_ref());
            }
            i = j;
        }
    }
}

impl<'ast> Visit<'ast> for Scanner {
    fn visit_file(&mut self, file: &'ast syn::File) {
        self.with_frame(module_frame(&file.items), |s| visit::visit_file(s, file));
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        for attr in &item.attrs {
            self.visit_attribute(attr);
        }
        if let Some((_, items)) = &item.content {
            self.with_frame(module_frame(items), |s| {
                for item in items {
                    s.visit_item(item);
                }
            });
        }
    }

    fn visit_block(&mut self, block: &'ast syn::Block) {
        self.with_frame(block_frame(&block.stmts), |s| visit::visit_block(s, block));
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        for attr in &item.attrs {
            self.visit_attribute(attr);
        }
        self.visit_visibility(&item.vis);
        self.fn_body(&item.sig, Some(&item.block));
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        for attr in &item.attrs {
            self.visit_attribute(attr);
        }
        self.visit_visibility(&item.vis);
        self.fn_body(&item.sig, Some(&item.block));
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        for attr in &item.attrs {
            self.visit_attribute(attr);
        }
        self.fn_body(&item.sig, item.default.as_ref());
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        visit::visit_local(self, local);
        self.bind(&local.pat);
    }

    fn visit_expr_let(&mut self, expr: &'ast syn::ExprLet) {
        visit::visit_expr_let(self, expr);
        self.bind(&expr.pat);
    }

    fn visit_expr_if(&mut self, expr: &'ast syn::ExprIf) {
        self.with_frame(Frame::default(), |s| visit::visit_expr_if(s, expr));
    }

    fn visit_expr_while(&mut self, expr: &'ast syn::ExprWhile) {
        self.with_frame(Frame::default(), |s| visit::visit_expr_while(s, expr));
    }

    fn visit_expr_for_loop(&mut self, expr: &'ast syn::ExprForLoop) {
        for attr in &expr.attrs {
            self.visit_attribute(attr);
        }
        self.visit_pat(&expr.pat);
        self.visit_expr(&expr.expr);
        let frame = Frame {
            locals: bindings(&expr.pat),
            ..Frame::default()
        };
        self.with_frame(frame, |s| s.visit_block(&expr.body));
    }

    fn visit_expr_closure(&mut self, expr: &'ast syn::ExprClosure) {
        for attr in &expr.attrs {
            self.visit_attribute(attr);
        }
        let mut frame = Frame::default();
        for input in &expr.inputs {
            self.visit_pat(input);
            frame.locals.extend(bindings(input));
        }
        self.visit_return_type(&expr.output);
        self.with_frame(frame, |s| s.visit_expr(&expr.body));
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        self.with_frame(Frame::default(), |s| {
            for attr in &arm.attrs {
                s.visit_attribute(attr);
            }
            s.visit_pat(&arm.pat);
            s.bind(&arm.pat);
            if let Some((_, guard)) = &arm.guard {
                s.visit_expr(guard);
            }
            s.visit_expr(&arm.body);
        });
    }

    fn visit_expr_path(&mut self, expr: &'ast syn::ExprPath) {
        self.qualified(expr.qself.is_some(), &expr.path, |s| {
            visit::visit_expr_path(s, expr)
        });
    }

    fn visit_type_path(&mut self, ty: &'ast syn::TypePath) {
        self.qualified(ty.qself.is_some(), &ty.path, |s| {
            visit::visit_type_path(s, ty)
        });
    }

    fn visit_expr_struct(&mut self, expr: &'ast syn::ExprStruct) {
        self.qualified(expr.qself.is_some(), &expr.path, |s| {
            visit::visit_expr_struct(s, expr)
        });
    }

    fn visit_pat_struct(&mut self, pat: &'ast syn::PatStruct) {
        self.qualified(pat.qself.is_some(), &pat.path, |s| {
            visit::visit_pat_struct(s, pat)
        });
    }

    fn visit_pat_tuple_struct(&mut self, pat: &'ast syn::PatTupleStruct) {
        self.qualified(pat.qself.is_some(), &pat.path, |s| {
            visit::visit_pat_tuple_struct(s, pat)
        });
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.check_path(path, None);
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.check_path(&mac.path, Some(&mac.tokens));
        self.scan_macro_body(&mac.tokens);
    }

    fn visit_meta_list(&mut self, list: &'ast syn::MetaList) {
        visit::visit_meta_list(self, list);
        self.scan_tokens(list.tokens.clone());
    }
}

impl Scanner {
    /// Attributes, signature, then the body in a scope holding the parameters.
    fn fn_body(&mut self, sig: &syn::Signature, body: Option<&syn::Block>) {
        self.visit_signature(sig);
        let mut frame = Frame {
            item_boundary: true,
            ..Frame::default()
        };
        for input in &sig.inputs {
            if let syn::FnArg::Typed(arg) = input {
                frame.locals.extend(bindings(&arg.pat));
            }
        }
        if let Some(body) = body {
            self.with_frame(frame, |s| s.visit_block(body));
        }
    }

    /// In `<T as Trait>::item` the path is relative to `T`: it is not resolved lexically while
    /// `visit` walks it (its generic arguments and `T` still are).
    fn qualified(&mut self, qualified: bool, path: &syn::Path, visit: impl FnOnce(&mut Self)) {
        if qualified {
            self.skip.push(path as *const syn::Path);
            visit(self);
            self.skip.pop();
        } else {
            visit(self);
        }
    }
}
