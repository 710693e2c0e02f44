//! The scanner that finds uses of [`FORBIDDEN`] APIs in Rust syntax (feature `syn`).
//!
//! Shared by `#[kelpie::dst_test]`, which scans a test fn's body, and the file lint, which scans
//! whole files. It never asks a span for its line and column (`Span::start` is unavailable inside
//! a proc macro): converting spans to positions is the caller's business.
//!
//! Resolution is syntactic. The scanner keeps a stack of scopes (file, inline `mod`, fn, block,
//! closure, match arm, loop) with the `use` declarations, items and `let` bindings of each, and
//! resolves every path it meets, macro and attribute paths included, to the absolute path it names:
//! `use tokio::spawn as go; go(..)` is `tokio::spawn`, `use tokio::time::*; sleep(..)` is
//! `tokio::time::sleep`. A name defined locally (a `fn spawn`, a `let spawn`) is never forbidden,
//! and method calls (`env.spawn(..)`) are not paths at all.
//!
//! ```
//! let block: syn::Block = syn::parse_quote!({
//!     use std::process;
//!     process::exit(1);
//! });
//! let found = kelpie_spec::scan::scan_block(&block);
//! assert_eq!(found[0].path, "std::process::exit");
//! assert!(found[0].message.starts_with("`std::process::exit` (written `process::exit`) ends"));
//! ```

use std::cell::RefCell;

use proc_macro2::{Delimiter, Ident, Spacing, Span, TokenStream, TokenTree};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};

#[cfg(doc)]
use crate::forbidden::FORBIDDEN;
use crate::forbidden::{known_member, lookup, Kind, REEXPORTS};

/// A use of a [`FORBIDDEN`] API found in source.
#[derive(Debug, Clone)]
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
    /// DST test: use `env.spawn(...)`" ([`Forbidden::message`](crate::Forbidden::message)).
    pub message: String,
}

impl Violation {
    /// The violation as a `syn::Error` covering the whole path, ready for `to_compile_error()` or
    /// `syn::Error::combine`.
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
pub fn scan_file(file: &syn::File) -> Vec<Violation> {
    let mut scanner = Scanner::new();
    scanner.visit_file(file);
    scanner.out
}

/// Every forbidden use in one item (its attributes included), in source order. Imports outside
/// the item are not seen.
pub fn scan_item(item: &syn::Item) -> Vec<Violation> {
    let mut scanner = Scanner::with_root();
    scanner.visit_item(item);
    scanner.out
}

/// Every forbidden use in a fn: its attributes (`#[tokio::test]`), signature and body, in source
/// order. Imports outside the fn are not seen.
pub fn scan_fn(item: &syn::ItemFn) -> Vec<Violation> {
    let mut scanner = Scanner::with_root();
    scanner.visit_item_fn(item);
    scanner.out
}

/// Every forbidden use in a block, honouring the `use` items inside it, in source order. Imports
/// outside the block are not seen.
pub fn scan_block(block: &syn::Block) -> Vec<Violation> {
    let mut scanner = Scanner::with_root();
    scanner.visit_block(block);
    scanner.out
}

/// An upper bound on how deep a recursive-descent parse (and a walk of the tree it builds) of
/// `tokens` can recurse, computed without recursion, with the token where it is reached: the
/// most, over every token, of the tokens before it since the construct of its own group began,
/// summed over the groups enclosing it.
///
/// Each level of syn's recursion consumes at least one token. A `;` at a group's level ends the
/// construct being parsed there (a statement or an item), and so does a `,` outside `<..>` and
/// closure parameters (`|a, b|`), where a comma separates elements parsed in a loop, and a
/// `{..}` outside `<..>` not followed by `else` (it closed an item, a block-like statement or
/// the innermost of the prefixes before it). So the bound
/// holds for every nesting: delimiters, `Box<Box<..>>`, `- - - x`, `return return x`,
/// `a + b + c`, `|a, b| |c, d| ..`. A caller sizes its stack by it, or declines a file whose
/// bound is too high, rather than let a deep file overflow the stack (which aborts the process).
///
/// ```
/// let flat: proc_macro2::TokenStream = "fn f() { a(1, 2); b(); }".parse().unwrap();
/// let deep: proc_macro2::TokenStream =
///     format!("fn f() {{ {}1; }}", "- ".repeat(500)).parse().unwrap();
/// assert!(kelpie_spec::scan::nesting_bound(&flat).0 < 10);
/// assert!(kelpie_spec::scan::nesting_bound(&deep).0 > 500);
/// ```
pub fn nesting_bound(tokens: &TokenStream) -> (usize, Span) {
    /// One group being walked.
    struct Level {
        rest: proc_macro2::token_stream::IntoIter,
        /// The bound at the group's own token.
        base: usize,
        /// Tokens since the construct at this level began.
        since: usize,
        /// Unclosed `<` at this level (a comma inside generics separates nothing).
        angles: usize,
        /// A `|` seen since the construct began (a comma may separate closure parameters).
        pipe: bool,
        /// The previous token was a joint `-` or `=` (so a `>` is an arrow, not a closing angle).
        arrow: bool,
        /// The previous token was a `{..}` group outside `<..>`: unless `else` follows, it ended
        /// the item, statement or expression it closed.
        after_brace: bool,
    }
    let level = |rest, base| Level {
        rest,
        base,
        since: 0,
        angles: 0,
        pipe: false,
        arrow: false,
        after_brace: false,
    };
    let mut stack = vec![level(tokens.clone().into_iter(), 0)];
    let (mut max, mut at) = (0, Span::call_site());
    while let Some(top) = stack.last_mut() {
        let Some(tt) = top.rest.next() else {
            stack.pop();
            continue;
        };
        if std::mem::take(&mut top.after_brace)
            && !matches!(&tt, TokenTree::Ident(ident) if ident == "else")
        {
            (top.since, top.pipe) = (0, false);
        }
        top.since += 1;
        let score = top.base + top.since;
        if score > max {
            (max, at) = (score, tt.span());
        }
        let arrow = std::mem::take(&mut top.arrow);
        match tt {
            TokenTree::Punct(p) => match p.as_char() {
                ';' => {
                    (top.since, top.angles, top.pipe) = (0, 0, false);
                }
                ',' if top.angles == 0 && !top.pipe => top.since = 0,
                '<' => top.angles += 1,
                '>' if !arrow => top.angles = top.angles.saturating_sub(1),
                '|' => top.pipe = true,
                '-' | '=' => top.arrow = p.spacing() == Spacing::Joint,
                _ => {}
            },
            TokenTree::Group(group) => {
                top.after_brace = group.delimiter() == Delimiter::Brace && top.angles == 0;
                stack.push(level(group.stream().into_iter(), score));
            }
            _ => {}
        }
    }
    (max, at)
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
    /// Items defined in the scope (`fn spawn() {}`), with their namespaces and whether a `#[cfg]`
    /// gates them (a gated item is one alternative among the imports of its name, not a shadow).
    items: Vec<(String, Ns, bool)>,
    /// `use` and `extern crate` names, with what they name.
    imports: Vec<(String, Target)>,
    /// Glob imports (`use tokio::time::*;`).
    globs: Vec<Target>,
    /// `let`, parameter and pattern bindings seen so far.
    locals: Vec<String>,
}

/// A set of rustc's namespaces, as bits: an item shadows an import of its name only in the
/// namespaces it occupies (`fn task` does not hide `use tokio::task;` for `task::spawn(..)`).
type Ns = u8;
/// Types, modules, traits and crates: the namespace of a path's leading segments.
const TYPE: Ns = 1;
/// Fns, consts, statics, unit and tuple struct constructors, `let` bindings.
const VALUE: Ns = 2;
/// Macros (`name!`) and attributes.
const MACRO: Ns = 4;
/// A single name whose namespace the syntax does not tell (`spawn` in `f(spawn)`).
const ANY: Ns = TYPE | VALUE | MACRO;

/// The most alternatives one name may resolve to before the rest are dropped: bounds the work
/// of adversarial files (every alternative of every import in a chain multiplies).
const MAX_ALTERNATIVES: usize = 16;

/// The most name lookups one use may cost: resolution through alternatives and globs can
/// multiply (every alternative of every import in a chain), and real files (tokio's `cfg_*!`
/// macros full of `use`) reach that. Past the budget the name is left unresolved.
const MAX_LOOKUPS: u32 = 4096;

/// What a name or path resolves to.
#[derive(Debug, Clone)]
enum Res {
    /// Several alternatives: a name imported more than once under different `cfg`s
    /// (`#[cfg(x)] use a::test as t; #[cfg(not(x))] use tokio::test as t;`). A use is forbidden if
    /// any alternative is.
    Many(Vec<Res>),
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
    /// Lookups spent on the current use, against [`MAX_LOOKUPS`].
    lookups: std::cell::Cell<u32>,
    /// What each import resolved to, by (frame, index, is glob, namespace): an import's meaning
    /// depends only on its frame and the frames outside it, so an entry holds until its frame
    /// (or one outside it) changes.
    imports_resolved: RefCell<std::collections::HashMap<(usize, usize, bool, Ns), Res>>,
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

/// Whether `attrs` hold a `#[cfg(..)]`.
fn has_cfg(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| attr.path().is_ident("cfg"))
}

fn collect_item(item: &syn::Item, frame: &mut Frame) {
    let (ident, ns, attrs) = match item {
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
                let cfg = has_cfg(&m.attrs);
                match item {
                    syn::ForeignItem::Fn(f) => {
                        frame
                            .items
                            .push((name(&f.sig.ident), VALUE, cfg || has_cfg(&f.attrs)));
                    }
                    syn::ForeignItem::Static(s) => {
                        frame
                            .items
                            .push((name(&s.ident), VALUE, cfg || has_cfg(&s.attrs)));
                    }
                    syn::ForeignItem::Type(t) => {
                        frame
                            .items
                            .push((name(&t.ident), TYPE, cfg || has_cfg(&t.attrs)));
                    }
                    _ => {}
                }
            }
            return;
        }
        syn::Item::Fn(f) => (&f.sig.ident, VALUE, &f.attrs),
        syn::Item::Struct(s) => {
            // A unit or tuple struct is also a constructor in the value namespace.
            let ns = match s.fields {
                syn::Fields::Named(_) => TYPE,
                _ => TYPE | VALUE,
            };
            (&s.ident, ns, &s.attrs)
        }
        syn::Item::Enum(e) => (&e.ident, TYPE, &e.attrs),
        syn::Item::Union(u) => (&u.ident, TYPE, &u.attrs),
        syn::Item::Const(c) => (&c.ident, VALUE, &c.attrs),
        syn::Item::Static(s) => (&s.ident, VALUE, &s.attrs),
        syn::Item::Mod(m) => (&m.ident, TYPE, &m.attrs),
        syn::Item::Trait(t) => (&t.ident, TYPE, &t.attrs),
        syn::Item::TraitAlias(t) => (&t.ident, TYPE, &t.attrs),
        syn::Item::Type(t) => (&t.ident, TYPE, &t.attrs),
        syn::Item::Macro(m) => match &m.ident {
            Some(ident) => (ident, MACRO, &m.attrs),
            None => {
                // `cfg_if! { if #[cfg(x)] { use a::b; } else { use c::b; } }`: the macro's `use`
                // declarations import into the enclosing scope, every branch an alternative.
                collect_macro_uses(m.mac.tokens.clone(), frame);
                return;
            }
        },
        _ => return,
    };
    frame.items.push((name(ident), ns, has_cfg(attrs)));
}

/// Collects the `use` declarations written anywhere in a macro's tokens (`use a::b;`, at any
/// depth of delimiters) into `frame`, as the imports they would be once expanded.
fn collect_macro_uses(tokens: TokenStream, frame: &mut Frame) {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tts.len() {
        match &tts[i] {
            TokenTree::Group(group) => collect_macro_uses(group.stream(), frame),
            TokenTree::Ident(ident) if ident == "use" => {
                let after_dot = matches!(
                    i.checked_sub(1).map(|j| &tts[j]),
                    Some(TokenTree::Punct(p)) if p.as_char() == '.' || p.as_char() == '$'
                );
                let end = tts[i + 1..]
                    .iter()
                    .position(|tt| matches!(tt, TokenTree::Punct(p) if p.as_char() == ';'))
                    .map(|n| i + 1 + n);
                if let (false, Some(end)) = (after_dot, end) {
                    let tree: TokenStream = tts[i..=end].iter().cloned().collect();
                    if let Ok(item) = syn::parse2::<syn::ItemUse>(tree) {
                        collect_use(
                            &item.tree,
                            item.leading_colon.is_some(),
                            &mut Vec::new(),
                            frame,
                        );
                        i = end + 1;
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
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
        match stmt {
            syn::Stmt::Item(item) => collect_item(item, &mut frame),
            syn::Stmt::Macro(m) => collect_macro_uses(m.mac.tokens.clone(), &mut frame),
            _ => {}
        }
    }
    frame
}

/// The alternatives of `res`, each an absolute path or `None` (defined locally, unknown).
fn flatten(res: Res, out: &mut Vec<Option<Vec<String>>>) {
    match res {
        Res::Path(path) => out.push(Some(path)),
        Res::Many(alternatives) => {
            for alt in alternatives {
                flatten(alt, out);
            }
        }
        _ => out.push(None),
    }
}

/// The absolute path that `name` stands for after `use module::*;`, when the table knows it:
/// a member of a forbidden module (`tokio::time::*` brings `sleep`), or a name of a known prelude
/// (`rand::prelude::*` brings `thread_rng`, which is `rand::thread_rng`).
fn glob_member(module: &[String], name: &str) -> Option<Vec<String>> {
    // Most globs are of crates the table does not know: skip them without walking the table.
    if !module.first().is_some_and(|root| known_root(root)) {
        return None;
    }
    let mut path = module.to_vec();
    path.push(name.to_string());
    if let Some(canonical) = canonical(&path) {
        return Some(canonical);
    }
    known_member(module, name).then_some(path)
}

/// Whether some table entry or re-export starts with the crate `root`.
fn known_root(root: &str) -> bool {
    static ROOTS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots: Vec<&'static str> = forbidden_paths()
                .chain(REEXPORTS.iter().map(|(alias, _)| *alias))
                .filter_map(|path| path.split("::").next())
                .collect();
            roots.sort_unstable();
            roots.dedup();
            roots
        })
        .binary_search(&root)
        .is_ok()
}

/// The paths of the table's entries.
fn forbidden_paths() -> impl Iterator<Item = &'static str> {
    crate::forbidden::FORBIDDEN.iter().map(|entry| entry.path)
}

/// `path` with a known re-export replaced by the path it re-exports (`rand::prelude::random` is
/// `rand::random`), or `None` if it names no known re-export.
fn canonical(path: &[String]) -> Option<Vec<String>> {
    REEXPORTS.iter().find_map(|(alias, target)| {
        let len = alias.split("::").count();
        let matches = path.len() >= len && alias.split("::").zip(path).all(|(a, b)| a == b);
        matches.then(|| {
            let mut out: Vec<String> = target.split("::").map(str::to_string).collect();
            out.extend_from_slice(&path[len..]);
            out
        })
    })
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
            lookups: std::cell::Cell::new(0),
            imports_resolved: RefCell::new(std::collections::HashMap::new()),
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
        self.forget_imports_from(self.frames.len());
    }

    /// Drops the cached resolutions of imports in frame `i` and the frames inside it.
    fn forget_imports_from(&self, i: usize) {
        self.imports_resolved
            .borrow_mut()
            .retain(|&(frame, ..), _| frame < i);
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

    /// Resolves a written path from frame `from`; `ns` is the namespace of its last segment
    /// (leading segments are always looked up as types and modules).
    fn resolve(&self, target: &Target, from: usize, ctx: Ctx, ns: Ns, depth: u8) -> Res {
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
                return self.join(Res::Module(module), segs, ns, depth);
            }
            _ => {}
        }
        let locals = matches!(ctx, Ctx::UseSite) && rest.is_empty() && ns & VALUE != 0;
        let head_ns = if rest.is_empty() { ns } else { TYPE };
        let head = self.resolve_name(first, from, locals, head_ns, depth + 1);
        match head {
            Res::Unknown if rest.is_empty() && matches!(ctx, Ctx::UseSite) => Res::Opaque,
            // Not defined in scope: an extern crate's path.
            Res::Unknown => Res::Path(target.segs.clone()),
            head => self.join(head, rest, ns, depth),
        }
    }

    fn join(&self, head: Res, rest: &[String], ns: Ns, depth: u8) -> Res {
        match head {
            Res::Path(mut path) => {
                path.extend_from_slice(rest);
                Res::Path(path)
            }
            Res::Module(m) => match rest.split_first() {
                None => Res::Module(m),
                Some((name, more)) => {
                    let name_ns = if more.is_empty() { ns } else { TYPE };
                    match self.lookup_in(m, name, name_ns, depth + 1) {
                        Some(res) => self.join(res, more, ns, depth + 1),
                        None => Res::Opaque,
                    }
                }
            },
            Res::Many(alternatives) => Res::Many(
                alternatives
                    .into_iter()
                    .map(|alt| self.join(alt, rest, ns, depth + 1))
                    .collect(),
            ),
            other => other,
        }
    }

    /// Looks a name up lexically, from frame `from` outwards to the nearest module.
    fn resolve_name(&self, name: &str, from: usize, locals: bool, ns: Ns, depth: u8) -> Res {
        let mut locals = locals;
        let mut i = from;
        loop {
            let frame = &self.frames[i];
            if locals && frame.locals.iter().any(|l| l == name) {
                return Res::Opaque;
            }
            if let Some(res) = self.lookup_in(i, name, ns, depth) {
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

    /// Looks a name up among the items and imports of frame `i` alone, in namespaces `ns`.
    ///
    /// An item not gated by `#[cfg]` in one of the namespaces shadows the imports of its name
    /// (rustc rejects a name defined twice in one namespace, so the import then names
    /// something else). Otherwise every import of the name, and every gated item, is an
    /// alternative: the `cfg`s that choose between them are not evaluated.
    fn lookup_in(&self, i: usize, name: &str, ns: Ns, depth: u8) -> Option<Res> {
        self.lookups.set(self.lookups.get() + 1);
        if depth > MAX_DEPTH || self.lookups.get() > MAX_LOOKUPS {
            return None;
        }
        let frame = &self.frames[i];
        let mut alternatives = Vec::new();
        for (item, item_ns, gated) in &frame.items {
            if item == name && item_ns & ns != 0 {
                if !gated {
                    return Some(Res::Opaque);
                }
                alternatives.push(Res::Opaque);
            }
        }
        for (k, (bound, target)) in frame.imports.iter().enumerate() {
            if bound == name && alternatives.len() < MAX_ALTERNATIVES {
                if let Some(res) = self.resolve_import(target, (i, k, false), ns, depth) {
                    alternatives.push(res);
                }
            }
        }
        if alternatives.iter().any(|alt| !matches!(alt, Res::Opaque)) || alternatives.len() > 1 {
            return Some(Self::many(alternatives));
        }
        if let Some(alt) = alternatives.pop() {
            return Some(alt);
        }
        for (k, glob) in frame.globs.iter().enumerate() {
            match self
                .resolve_import(glob, (i, k, true), TYPE, depth)
                .unwrap_or(Res::Opaque)
            {
                Res::Module(m) if m != i => {
                    if let Some(res) = self.lookup_in(m, name, ns, depth + 1) {
                        return Some(res);
                    }
                }
                Res::Path(module) => {
                    if let Some(path) = glob_member(&module, name) {
                        return Some(Res::Path(path));
                    }
                }
                Res::Many(modules) => {
                    for module in modules {
                        if let Res::Path(module) = module {
                            if let Some(path) = glob_member(&module, name) {
                                return Some(Res::Path(path));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// One result for a list of alternatives.
    fn many(mut alternatives: Vec<Res>) -> Res {
        if alternatives.len() == 1 {
            alternatives.pop().unwrap_or(Res::Opaque)
        } else {
            Res::Many(alternatives)
        }
    }

    /// Resolves the path of import `key`, unless it is already being resolved.
    fn resolve_import(
        &self,
        target: &Target,
        key: (usize, usize, bool),
        ns: Ns,
        depth: u8,
    ) -> Option<Res> {
        let cache_key = (key.0, key.1, key.2, ns);
        if let Some(res) = self.imports_resolved.borrow().get(&cache_key) {
            return Some(res.clone());
        }
        if self.resolving.borrow().contains(&key) {
            return None;
        }
        self.resolving.borrow_mut().push(key);
        let res = self.resolve(target, key.0, Ctx::Import, ns, depth + 1);
        self.resolving.borrow_mut().pop();
        // Only a resolution that no cycle cut short and no budget ran out on is kept.
        if self.resolving.borrow().is_empty() && self.lookups.get() <= MAX_LOOKUPS {
            self.imports_resolved
                .borrow_mut()
                .insert(cache_key, res.clone());
        }
        Some(res)
    }

    /// Checks one written path; `mac` is the body when the path is a macro's, `ns` the namespace
    /// its last segment is looked up in.
    fn check(
        &mut self,
        written: Target,
        (first, last): (Span, Span),
        ns: Ns,
        mac: Option<&TokenStream>,
    ) {
        if written.segs.is_empty() || self.frames.is_empty() {
            return;
        }
        let from = self.frames.len() - 1;
        self.lookups.set(0);
        let res = self.resolve(&written, from, Ctx::UseSite, ns, 0);
        let mut paths = Vec::new();
        flatten(res, &mut paths);
        paths.dedup();
        let alternatives = paths.len();
        // The first alternative that is forbidden: with `cfg`s unevaluated, any may be compiled.
        let Some((path, entry)) = paths.into_iter().flatten().find_map(|path| {
            let path = canonical(&path).unwrap_or(path);
            let entry = lookup(&path)?;
            let biased = matches!(entry.kind, Kind::Macro { biased_ok: true })
                && mac.is_some_and(starts_biased);
            (!biased).then_some((path, entry))
        }) else {
            return;
        };
        let resolved = path.join("::");
        let mut message = entry.message(&resolved, &written.segs.join("::"));
        if alternatives > 1 {
            message.push_str(&format!(
                " (`{}` is imported {alternatives} ways under different `cfg`s; this is one)",
                written.segs[0]
            ));
        }
        self.out.push(Violation {
            span: first.join(last).unwrap_or(first),
            end: last,
            path: resolved,
            message,
        });
    }

    fn check_path(&mut self, path: &syn::Path, ns: Ns, mac: Option<&TokenStream>) {
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
        self.check(written, (first, last_seg.ident.span()), ns, mac);
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

    /// Finds paths in raw tokens, wherever a path can be written: every `a::b` or `::a` sequence
    /// (after `:` in a struct-like body, after `=>` or `->`, inside `<T as Trait>`), and a single
    /// name directly called or invoked (`go(..)`, `select! {..}`), but not a name after `.`, `$`,
    /// `'`, `::`, `fn` or `mod`, nor the item of `<T as Trait>::item` (relative to `T`). A `use`
    /// declaration among the tokens imports into the current scope, from there on.
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
            if let TokenTree::Ident(ident) = &tts[i] {
                if ident == "use"
                    && !matches!(prev, Some(TokenTree::Punct(p)) if matches!(p.as_char(), '.' | '$'))
                {
                    if let Some(end) = self.token_use(&tts[i..]) {
                        i += end;
                        continue;
                    }
                }
            }
            // A `>` closing generics (`Vec::<u8>::new`, `<T as Trait>::f`) continues a path; the
            // `>` of `=>` and `->` does not.
            let arrow = |k: usize| {
                matches!((k.checked_sub(1).map(|j| &tts[j]), tts.get(k)),
                    (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                        if matches!(a.as_char(), '=' | '-') && a.spacing() == Spacing::Joint && b.as_char() == '>')
            };
            let after_colons = i >= 2 && is_path_sep(&tts, i - 2);
            let leading = is_path_sep(&tts, i)
                && matches!(tts.get(i + 2), Some(TokenTree::Ident(_)))
                && !matches!(prev, Some(TokenTree::Ident(_)))
                && !matches!(prev, Some(TokenTree::Punct(p)) if p.as_char() == '$')
                && !matches!(prev, Some(TokenTree::Punct(p)) if p.as_char() == '>' && !arrow(i - 1));
            let starts_name = matches!(tts[i], TokenTree::Ident(_))
                && !after_colons
                && !matches!(prev, Some(TokenTree::Punct(p)) if matches!(p.as_char(), '.' | '$' | '\''))
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
            let called = matches!(tts.get(j), Some(TokenTree::Group(args)) if args.delimiter() == Delimiter::Parenthesis);
            if leading || segs.len() > 1 || called || mac.is_some() {
                let written = Target {
                    absolute: leading,
                    segs,
                };
                let ns = if mac.is_some() { MACRO } else { ANY };
                self.check(written, (first_span, last_span), ns, mac.as_ref());
            }
            i = j.max(i + 1);
        }
    }

    /// A `use` declaration at the start of `tts`: imports it into the innermost scope and returns
    /// how many tokens it spans, or `None` if the tokens are not one.
    fn token_use(&mut self, tts: &[TokenTree]) -> Option<usize> {
        let end = tts
            .iter()
            .position(|tt| matches!(tt, TokenTree::Punct(p) if p.as_char() == ';'))?;
        let item: syn::ItemUse = syn::parse2(tts[..=end].iter().cloned().collect()).ok()?;
        self.forget_imports_from(self.frames.len().saturating_sub(1));
        let frame = self.frames.last_mut()?;
        collect_use(
            &item.tree,
            item.leading_colon.is_some(),
            &mut Vec::new(),
            frame,
        );
        Some(end + 1)
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
        self.check_path(path, ANY, None);
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.check_path(&mac.path, MACRO, Some(&mac.tokens));
        self.scan_macro_body(&mac.tokens);
    }

    // Syntax syn keeps as raw tokens (newer or unstable forms): scanned token by token.
    fn visit_expr(&mut self, expr: &'ast syn::Expr) {
        match expr {
            syn::Expr::Verbatim(tokens) => self.scan_tokens(tokens.clone()),
            _ => visit::visit_expr(self, expr),
        }
    }

    fn visit_item(&mut self, item: &'ast syn::Item) {
        match item {
            syn::Item::Verbatim(tokens) => self.scan_tokens(tokens.clone()),
            _ => visit::visit_item(self, item),
        }
    }

    fn visit_type(&mut self, ty: &'ast syn::Type) {
        match ty {
            syn::Type::Verbatim(tokens) => self.scan_tokens(tokens.clone()),
            _ => visit::visit_type(self, ty),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forbidden::{Match, FORBIDDEN};

    /// 1-based line and column of a span's start (proc-macro2 counts columns from 0).
    fn position(span: Span) -> (usize, usize) {
        let start = span.start();
        (start.line.max(1), start.column + 1)
    }

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

    /// The message of every violation in `source`.
    fn messages(source: &str) -> Vec<String> {
        let ast = syn::parse_file(source).expect("test source parses");
        scan_file(&ast).into_iter().map(|v| v.message).collect()
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
            "`#[tokio::test]` is not deterministic in a DST test: rename to `_chaos.rs` or use \
             `#[kelpie::dst_test]`"
        );
        assert_eq!(
            messages("#[kelpie::chaos_test]\nasync fn t() {}\n"),
            [
                "`#[kelpie::chaos_test]` runs on the wall clock and real tokio, so it does not \
              belong in a DST file: rename to `_chaos.rs` or use `#[kelpie::dst_test]`"
            ]
        );
        assert_eq!(
            messages("fn main() { tokio::runtime::Builder::new_multi_thread().build(); }")[0],
            "`tokio::runtime::Builder::new_multi_thread` is not deterministic in a DST test: the \
             simulation is the runtime: rename to `_chaos.rs` or use `#[kelpie::dst_test]` and \
             its `env`"
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
    fn process_exit_and_abort_are_flagged_however_written() {
        let source = "use std::process;\nuse std::process::abort as die;\nfn t() {\n\
                      process::exit(0);\nstd::process::exit(1);\ndie();\n\
                      ::std::process::abort();\nprocess::id();\n}\n\
                      fn u() { use std::process::*; exit(2); }\n";
        assert_eq!(
            hits(source),
            vec![
                hit(4, 1, "std::process::exit"),
                hit(5, 1, "std::process::exit"),
                hit(6, 1, "std::process::abort"),
                hit(7, 1, "std::process::abort"),
                hit(10, 31, "std::process::exit"),
            ]
        );
        assert_eq!(
            messages(source)[0],
            "`std::process::exit` (written `process::exit`) ends the test process before the \
             runner's summary, so this seed and every later one go unreported: return an error \
             from the test or panic instead"
        );
        // A local `exit` is not the process's.
        assert_eq!(hits("fn exit(_: i32) {}\nfn t() { exit(0); }\n"), vec![]);
    }

    #[test]
    fn every_cfg_alternative_of_an_import_is_a_candidate() {
        let source =
            "#[cfg(madsim)]\nuse madsim::test as t;\n#[cfg(not(madsim))]\nuse tokio::test as t;\n\
                      #[t]\nasync fn a() {}\n\
                      #[cfg(x)]\nfn go() {}\n#[cfg(not(x))]\nuse std::thread::spawn as go;\n\
                      fn b() { go(f); }\n";
        assert_eq!(
            hits(source),
            vec![hit(5, 3, "tokio::test"), hit(11, 10, "std::thread::spawn")]
        );
        assert_eq!(
            messages(source)[0],
            "`#[tokio::test]` (written `t`) is not deterministic in a DST test: rename to \
             `_chaos.rs` or use `#[kelpie::dst_test]` (`t` is imported 2 ways under different \
             `cfg`s; this is one)"
        );
        // Two alternatives that are both deterministic: nothing.
        let source = "#[cfg(a)]\nuse madsim::task as t;\n#[cfg(not(a))]\nuse crate::shim as t;\n\
                      fn c() { t::spawn(f); }\n";
        assert_eq!(hits(source), vec![]);
    }

    #[test]
    fn items_shadow_imports_only_in_their_own_namespace() {
        let source = "use tokio::task;\nuse tokio::time;\n\
                      async fn task(x: u8) {}\nconst time: u8 = 0;\n\
                      fn t() { task::spawn(f); let s = time::Instant::now(); task(1); }\n";
        assert_eq!(
            hits(source),
            vec![
                hit(5, 10, "tokio::task::spawn"),
                hit(5, 34, "tokio::time::Instant::now")
            ]
        );
        // A module or type of the same name does hide it, and so does a local macro.
        let source = "use tokio::task;\nmod task { pub fn spawn() {} }\n\
                      use tokio::select;\nmacro_rules! select { () => {} }\n\
                      fn t() { task::spawn(); select!(); }\n";
        assert_eq!(hits(source), vec![]);
        // A `fn select` does not hide `select!`; a `let` does not hide a module.
        let source = "use tokio::{select, time};\nfn select() {}\n\
                      fn t() { let time = 1; select! { _ = a => {} } time::sleep(d); }\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 24, "tokio::select"),
                hit(3, 48, "tokio::time::sleep")
            ]
        );
    }

    #[test]
    fn globs_of_known_preludes_bring_their_forbidden_names() {
        let source = "use rand::prelude::*;\nfn t() {\n\
                      let mut r = thread_rng();\nlet x: u8 = random();\nlet y = rng();\n\
                      let z = random_range(0..3);\nlet s = StdRng::from_entropy();\n\
                      let o = SmallRng::from_os_rng();\nlet k = StdRng::seed_from_u64(7);\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 13, "rand::thread_rng"),
                hit(4, 13, "rand::random"),
                hit(5, 9, "rand::rng"),
                hit(6, 9, "rand::random_range"),
                hit(7, 9, "rand::rngs::StdRng::from_entropy"),
                hit(8, 9, "rand::rngs::SmallRng::from_os_rng"),
            ]
        );
        // The path through the prelude, written out, is the same API.
        assert_eq!(
            hits("fn t() { rand::prelude::thread_rng(); }"),
            vec![hit(1, 10, "rand::thread_rng")]
        );
    }

    #[test]
    fn macro_bodies_are_scanned_for_paths_wherever_they_occur() {
        let source = "use std::time::Instant;\n\
                      fn t() {\n\
                      config! { started: Instant::now(), clock: ::std::time::SystemTime::now() }\n\
                      tokio::select! { biased; v = rx.recv() => ::tokio::spawn(f), _ = x => std::thread::sleep(d) }\n\
                      mk!(<tokio::time::Instant as Clone>::clone(&i), <T as Spawn>::spawn());\n\
                      arms!(x => tokio::task::spawn(f), y -> tokio::runtime::Handle);\n\
                      }\n";
        assert_eq!(
            hits(source),
            vec![
                hit(3, 20, "std::time::Instant::now"),
                hit(3, 43, "std::time::SystemTime::now"),
                hit(4, 43, "tokio::spawn"),
                hit(4, 71, "std::thread::sleep"),
                hit(5, 6, "tokio::time::Instant"),
                hit(6, 12, "tokio::task::spawn"),
                hit(6, 40, "tokio::runtime::Handle"),
            ]
        );
    }

    #[test]
    fn uses_inside_macro_calls_apply_to_the_rest_of_the_scope() {
        let source = "cfg_if::cfg_if! {\nif #[cfg(x)] {\nuse madsim::time::sleep;\n} else {\n\
                      use tokio::time::sleep;\n}\n}\n\
                      fn t() { sleep(d); }\n\
                      fn u() {\nmy_macro! { use std::thread as th; => th::spawn(f) }\nth::sleep(d);\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(8, 10, "tokio::time::sleep"),
                hit(10, 39, "std::thread::spawn"),
                hit(11, 1, "std::thread::sleep"),
            ]
        );
    }

    #[test]
    fn randomness_messages_say_which_case_applies() {
        let source = "fn t() {\nrand::thread_rng();\nrand::rng();\ngetrandom::getrandom(&mut b);\n\
                      getrandom::fill(&mut b);\nuuid::Uuid::new_v4();\nfastrand::u32(..);\n\
                      fastrand::Rng::with_seed(7);\nrand::rngs::OsRng;\n}\n";
        let found = messages(source);
        assert_eq!(found.len(), 7, "{found:#?}");
        assert!(found[0].contains("rand 0.8 and 0.9") && found[0].ends_with("use `env.rng()`"));
        assert!(found[1].starts_with("`rand::rng` is deterministic per seed only through madsim's"));
        assert!(
            found[2].starts_with("`getrandom::getrandom` is deterministic per seed only through"),
            "{}",
            found[2]
        );
        assert!(found[3].starts_with("`getrandom::fill` is deterministic per seed only through"));
        assert!(found[4].contains("one extra draw anywhere") && found[4].contains("env.rng()"));
        assert!(found[5].starts_with("`fastrand::u32` is seeded from the thread and the clock"));
        assert!(found[6].starts_with("`rand::rngs::OsRng` is deterministic per seed only through"));
    }

    #[test]
    fn executors_and_spawners_are_flagged_with_their_replacement() {
        let source = "use futures::executor::{block_on, ThreadPool};\nuse std::thread;\n\
                      fn t() {\nblock_on(f);\nlet p = ThreadPool::new();\n\
                      tokio::task::Builder::new().name(\"x\").spawn(f);\n\
                      thread::Builder::new().spawn(f);\nfutures::executor::LocalPool::new();\n\
                      futures::future::ready(1);\n}\n";
        assert_eq!(
            hits(source),
            vec![
                hit(4, 1, "futures::executor::block_on"),
                hit(5, 9, "futures::executor::ThreadPool::new"),
                hit(6, 1, "tokio::task::Builder::new"),
                hit(7, 1, "std::thread::Builder::new"),
                hit(8, 1, "futures::executor::LocalPool::new"),
            ]
        );
        let found = messages(source);
        assert!(found[0].ends_with(
            "`.await` the future instead: `block_on` runs it outside the simulation's scheduler"
        ));
        assert!(found[2].ends_with("use `env.spawn(...)`"));
    }

    #[test]
    fn clean_code_naming_the_same_words_gets_nothing() {
        let source = r#"
use tokio::sync::{mpsc, Mutex};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus as X;
fn spawn<F>(f: F) {}
fn t(env: &Env) {
    // tokio::spawn(f); rand::thread_rng(); futures::executor::block_on(f)
    let s = "tokio::task::Builder::new().spawn(f) std::thread::Builder";
    tokio::join!(a, b);
    tokio::try_join!(a, b);
    spawn(async {});
    let r = X::seed_from_u64(env.rng().next_u64());
    let mut rng = env.rng();
    let v: u8 = rng.gen_range(0..3);
    tokio::select! { biased; _ = a => {} }
    m! { field: tokio::sync::Mutex<u8>, x => tokio::sync::oneshot::channel() }
    let u = uuid::Uuid::from_u64_pair(1, 2);
    fastrand::Rng::with_seed(3).u32(..);
}
"#;
        assert_eq!(hits(source), vec![]);
    }

    #[test]
    fn resolution_through_many_alternatives_and_globs_is_bounded() {
        // 12 names, each imported 12 ways (under cfgs) through the next, plus globs of each
        // other: without a budget the lookups multiply past 12^8.
        let mut source = String::new();
        for i in 0..12 {
            for j in 0..12 {
                source.push_str(&format!(
                    "#[cfg(c{j})] use self::n{}::m{j} as n{i};\n",
                    (i + 1) % 12
                ));
            }
            source.push_str(&format!("use self::n{i}::*;\n"));
        }
        source.push_str("#[cfg(z)] use tokio::spawn as n0;\nfn t() { n0(f); n5::x(); q(); }\n");
        let found = hits(&source);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].2, "tokio::spawn");
    }
}
