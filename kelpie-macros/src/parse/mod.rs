//! Parsing of the attribute's arguments: `#[kelpie::dst_test(seeds = 0..500, faults = [...], ...)]`.
//!
//! Two steps. [`args`] first splits the tokens into `key` / `key = <expr>` entries, recovering at
//! the next top-level comma after a syntax error so that one typo does not hide the other mistakes.
//! Then each entry's value is interpreted by what its key expects (the keys' table is
//! `kelpie_spec::ATTRIBUTE_KEYS`): seeds in [`seeds`], durations, counts and probabilities in
//! [`values`], faults against the fault table in [`faults`]. Every mistake is recorded in the
//! [`Ctxt`] at the offending token and parsing goes on.

mod faults;
mod seeds;
pub(crate) mod values;

use proc_macro2::{TokenStream, TokenTree};
use syn::ext::IdentExt as _;
use syn::parse::{ParseStream, Parser as _};
use syn::{Expr, ExprLit, Ident, Lit, Token};

use kelpie_spec::{AttrKey as Key, ATTRIBUTE_KEYS as KEYS};

use crate::ast::Args;
use crate::errors::Ctxt;

const SEEDS: &str = "seeds";
const FAULTS: &str = "faults";
const MAX_TIME: &str = "max_time";
const WALL_TIMEOUT: &str = "wall_timeout";
const FAULT_TICK: &str = "fault_tick";
const NODES: &str = "nodes";
const IGNORE: &str = "ignore";
const SHOULD_FAIL: &str = "should_fail";
const CHECK_DETERMINISM: &str = "check_determinism";
const CANARY: &str = "canary";
const SWARM: &str = "swarm";
const ALLOW_UNFIRED: &str = "allow_unfired";

/// The shape of `key`'s value, for error messages.
fn expected(key: &str) -> &'static str {
    KEYS.iter()
        .find(|k| k.name == key)
        .map_or("", |k| k.expected)
}

/// One `key` or `key = value` entry, before interpretation.
struct Entry {
    key: Ident,
    value: Option<Expr>,
}

/// Parses the attribute's tokens. Mistakes go to `errors`; what could be understood is returned.
pub(crate) fn args(tokens: TokenStream, cx: &Ctxt) -> Args {
    let mut args = Args::default();
    let mut seen: Vec<String> = Vec::new();
    for entry in split_entries(tokens, cx) {
        let key = entry.key.unraw().to_string();
        let Some(known) = KEYS.iter().find(|k| k.name == key) else {
            let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            cx.error_spanned_by(&entry.key, unknown("key", &key, &names));
            continue;
        };
        let duplicate = seen.contains(&key);
        if duplicate {
            cx.error_spanned_by(&entry.key, format!("duplicate key `{key}`: give it once"));
        } else {
            seen.push(key.clone());
        }
        // A duplicate's value is still checked, so that its own mistakes are reported too; the
        // first occurrence wins.
        let mut scratch = Args::default();
        let target = if duplicate { &mut scratch } else { &mut args };
        interpret(known, &entry, target, cx);
    }
    args
}

/// Splits `a = x, b, c = [..]` into entries, recovering at the next comma after a syntax error.
fn split_entries(tokens: TokenStream, cx: &Ctxt) -> Vec<Entry> {
    let parser = |input: ParseStream| -> syn::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        while !input.is_empty() {
            match parse_entry(input) {
                Ok(entry) if input.is_empty() || input.peek(Token![,]) => entries.push(entry),
                Ok(entry) => {
                    // Not understood to its end: report, and don't interpret it.
                    cx.syn_error(input.error(match entry.value {
                        None => format!("expected `=` or `,` after `{}`", entry.key.unraw()),
                        Some(_) => {
                            format!("expected `,` after the value of `{}`", entry.key.unraw())
                        }
                    }));
                    skip_to_comma(input)?;
                }
                Err(err) => {
                    cx.syn_error(err);
                    skip_to_comma(input)?;
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(entries)
    };
    parser.parse2(tokens).unwrap_or_else(|err| {
        cx.syn_error(err);
        Vec::new()
    })
}

fn parse_entry(input: ParseStream) -> syn::Result<Entry> {
    if !input.peek(Ident::peek_any) {
        return Err(input.error(format!(
            "expected a key such as `seeds = 0..100` or `faults = [...]`; valid keys: {}",
            KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
        )));
    }
    let key = input.call(Ident::parse_any)?;
    let value = if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Some(input.parse::<Expr>()?)
    } else {
        None
    };
    Ok(Entry { key, value })
}

fn skip_to_comma(input: ParseStream) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                return Ok(((), rest));
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

fn interpret(key: &Key, entry: &Entry, args: &mut Args, cx: &Ctxt) {
    if key.flag {
        let on = match &entry.value {
            None => Some(true),
            Some(expr) => match peel(expr) {
                Expr::Lit(ExprLit {
                    lit: Lit::Bool(b), ..
                }) => Some(b.value),
                other => {
                    cx.error_spanned_by(other, format!("expected {}", key.expected));
                    None
                }
            },
        };
        match key.name {
            IGNORE => args.ignore = on,
            SHOULD_FAIL => args.should_fail = on,
            CHECK_DETERMINISM => args.check_determinism = on,
            CANARY => args.canary = on,
            SWARM => args.swarm = on,
            ALLOW_UNFIRED => args.allow_unfired = on,
            other => unreachable!("flag `{other}` has no field"),
        }
        return;
    }
    let Some(value) = &entry.value else {
        cx.error_spanned_by(
            &entry.key,
            format!("`{}` needs a value: expected {}", key.name, key.expected),
        );
        return;
    };
    match key.name {
        SEEDS => args.seeds = seeds::seeds(value, cx),
        FAULTS => args.faults = faults::faults(value, cx),
        MAX_TIME => args.max_time_ms = values::positive_duration(value, key, cx),
        WALL_TIMEOUT => args.wall_timeout_ms = values::positive_duration(value, key, cx),
        FAULT_TICK => args.fault_tick_ms = values::positive_duration(value, key, cx),
        NODES => args.nodes = values::nodes(value, key, cx),
        _ => unreachable!("key `{}` has no interpretation", key.name),
    }
}

/// Looks through invisible groups (from `macro_rules!` fragments) and parentheses.
fn peel(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(g) => peel(&g.expr),
        Expr::Paren(p) => peel(&p.expr),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Names

/// "unknown fault `StorageWriteFial`; did you mean `StorageWriteFail`?" or, with no close name,
/// the list of valid ones.
fn unknown(what: &str, written: &str, names: &[&str]) -> String {
    format!("unknown {what} `{written}`{}", suggestion(written, names))
}

/// "; did you mean `seeds`?" or "; expected one of: a, b, c".
fn suggestion(written: &str, names: &[&str]) -> String {
    match kelpie_spec::closest(written, names) {
        Some(best) => format!("; did you mean `{best}`?"),
        None => format!("; expected one of: {}", names.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    /// The arguments parsed from `tokens`, which must have no mistake.
    pub(super) fn parse_ok(tokens: TokenStream) -> Args {
        let cx = Ctxt::new();
        let args = args(tokens, &cx);
        if let Err(err) = cx.check() {
            let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
            panic!("unexpected errors: {messages:#?}");
        }
        args
    }

    /// Every error message for `tokens`, in order.
    pub(super) fn errors_of(tokens: TokenStream) -> Vec<String> {
        let cx = Ctxt::new();
        args(tokens, &cx);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    /// The one error message for `tokens`.
    pub(super) fn one_error(tokens: TokenStream) -> String {
        let mut errors = errors_of(tokens);
        assert_eq!(
            errors.len(),
            1,
            "expected exactly one error, got {errors:#?}"
        );
        errors.remove(0)
    }

    #[test]
    fn no_arguments_leave_everything_to_the_runtime_defaults() {
        let args = parse_ok(quote!());
        assert_eq!(args.seeds, None);
        assert!(args.faults.is_empty());
        assert_eq!(
            (args.max_time_ms, args.nodes, args.ignore),
            (None, None, None)
        );
    }

    #[test]
    fn unknown_and_duplicate_keys() {
        assert_eq!(
            one_error(quote!(seed = 0..5)),
            "unknown key `seed`; did you mean `seeds`?"
        );
        assert!(one_error(quote!(verbose)).starts_with(
            "unknown key `verbose`; expected one of: seeds, faults, max_time, wall_timeout, fault_tick, nodes, ignore, should_fail, check_determinism"
        ));
        assert_eq!(
            one_error(quote!(seeds = 0..5, seeds = 0..6)),
            "duplicate key `seeds`: give it once"
        );
        // The first occurrence wins; the duplicate's own value is still checked.
        let errors = errors_of(quote!(nodes = 2, nodes = 0));
        assert_eq!(
            errors,
            [
                "duplicate key `nodes`: give it once",
                "`nodes` must be at least 1"
            ]
        );
    }

    #[test]
    fn syntax_errors_recover_at_the_next_comma() {
        let errors = errors_of(quote!(seeds 0..5, bogus = 1, nodes = 0));
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert_eq!(errors[0], "expected `=` or `,` after `seeds`");
        assert_eq!(
            one_error(quote!(nodes = 3 ignore)),
            "expected `,` after the value of `nodes`"
        );
        assert!(errors[1].starts_with("unknown key `bogus`"));
        assert_eq!(errors[2], "`nodes` must be at least 1");
        assert!(one_error(quote!(= 3)).starts_with("expected a key such as"));
    }

    #[test]
    fn many_errors_at_once() {
        let errors = errors_of(quote!(
            seeds = 5..5,
            faults = [
                StorageWriteFial(0.1),
                NetworkDelay(1.5),
                PacketLoss(0.1, colour = 1)
            ],
            max_time = "soon",
            verbose,
        ));
        assert_eq!(errors.len(), 6, "{errors:#?}");
    }
}
