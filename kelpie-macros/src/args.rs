//! Parsing of the attribute's arguments: `#[kelpie::dst_test(seeds = 0..500, faults = [...], ...)]`.
//!
//! Two steps. [`parse`] first splits the tokens into `key` / `key = <expr>` entries, recovering at
//! the next top-level comma after a syntax error so that one typo does not hide the other mistakes.
//! Then each entry's value is interpreted by what its key expects; fault names, parameters and
//! options are looked up in the fault table that `kelpie-sim` also uses at run time. Every mistake
//! is recorded in [`Errors`] at the offending token and parsing goes on.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt as _;
use syn::parse::{ParseStream, Parser as _};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, RangeLimits, Token, UnOp};

use crate::check::Errors;
use crate::table::{FaultInfo, OpKind, OptionInfo, ParamInfo, ParamKind};
use crate::table::{FAULT_OPTIONS, FAULT_TABLE, OP_TABLE};

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

/// Every key of `#[kelpie::dst_test(...)]`, from the table the runner's help also reads.
use crate::attributes::{AttrKey as Key, ATTRIBUTE_KEYS as KEYS};

/// The shape of `key`'s value, for error messages.
fn expected(key: &str) -> &'static str {
    KEYS.iter()
        .find(|k| k.name == key)
        .map_or("", |k| k.expected)
}

/// The attribute's arguments, validated and converted. Unset options are `None`: the runtime's
/// `TestOptions::DEFAULT` decides them, so defaults live in one place.
#[derive(Debug, Default)]
pub(crate) struct Args {
    pub seeds: Option<Seeds>,
    pub faults: Vec<Fault>,
    pub max_time_ms: Option<u64>,
    pub wall_timeout_ms: Option<u64>,
    pub fault_tick_ms: Option<u64>,
    pub nodes: Option<u32>,
    pub ignore: Option<bool>,
    pub should_fail: Option<bool>,
    pub check_determinism: Option<bool>,
    pub canary: Option<bool>,
    pub swarm: Option<bool>,
    pub allow_unfired: Option<bool>,
}

/// The seeds a test runs with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seeds {
    /// `start..end`, end exclusive (`a..=b` is stored as `a..b + 1`); never empty.
    Range { start: u64, end: u64 },
    /// An explicit, non-empty list without duplicates.
    List(Vec<u64>),
}

/// One entry of `faults = [...]`.
#[derive(Debug)]
pub(crate) struct Fault {
    pub info: &'static FaultInfo,
    /// The fault's name as written, for spans.
    pub name: Ident,
    /// Positional (or named) parameters that were given, in table order; omitted ones keep the
    /// table's default, which the runtime applies.
    pub params: Vec<Given<&'static ParamInfo>>,
    /// Named options that were given, in the order written.
    pub options: Vec<Given<&'static OptionInfo>>,
}

impl Fault {
    /// The value given for the parameter or option called `name`, if any.
    pub fn option(&self, name: &str) -> Option<&Given<&'static OptionInfo>> {
        self.options.iter().find(|o| o.what.name == name)
    }

    /// The value given for the positional parameter of kind `kind`, if any (the first one).
    pub fn param_of_kind(&self, kind: ParamKind) -> Option<&Given<&'static ParamInfo>> {
        self.params.iter().find(|p| p.what.kind == kind)
    }
}

/// A parameter or option value, with the expression it came from.
#[derive(Debug)]
pub(crate) struct Given<W> {
    pub what: W,
    pub value: Value,
    pub span: Span,
}

/// A converted parameter value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Probability(f64),
    Millis(u64),
    Count(u64),
    Text(String),
    Op(OpKind),
}

/// One `key` or `key = value` entry, before interpretation.
struct Entry {
    key: Ident,
    value: Option<Expr>,
}

/// Parses the attribute's tokens. Mistakes go to `errors`; what could be understood is returned.
pub(crate) fn parse(tokens: TokenStream, errors: &Errors) -> Args {
    let mut args = Args::default();
    let mut seen: Vec<String> = Vec::new();
    for entry in split_entries(tokens, errors) {
        let key = entry.key.unraw().to_string();
        let Some(known) = KEYS.iter().find(|k| k.name == key) else {
            let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            errors.spanned(&entry.key, unknown("key", &key, &names));
            continue;
        };
        let duplicate = seen.contains(&key);
        if duplicate {
            errors.spanned(&entry.key, format!("duplicate key `{key}`: give it once"));
        } else {
            seen.push(key.clone());
        }
        // A duplicate's value is still checked, so that its own mistakes are reported too; the
        // first occurrence wins.
        let mut scratch = Args::default();
        let target = if duplicate { &mut scratch } else { &mut args };
        interpret(known, &entry, target, errors);
    }
    args
}

/// Splits `a = x, b, c = [..]` into entries, recovering at the next comma after a syntax error.
fn split_entries(tokens: TokenStream, errors: &Errors) -> Vec<Entry> {
    let parser = |input: ParseStream| -> syn::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        while !input.is_empty() {
            match parse_entry(input) {
                Ok(entry) if input.is_empty() || input.peek(Token![,]) => entries.push(entry),
                Ok(entry) => {
                    // Not understood to its end: report, and don't interpret it.
                    errors.push(input.error(match entry.value {
                        None => format!("expected `=` or `,` after `{}`", entry.key.unraw()),
                        Some(_) => {
                            format!("expected `,` after the value of `{}`", entry.key.unraw())
                        }
                    }));
                    skip_to_comma(input)?;
                }
                Err(err) => {
                    errors.push(err);
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
        errors.push(err);
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

fn interpret(key: &Key, entry: &Entry, args: &mut Args, errors: &Errors) {
    if key.flag {
        let on = match &entry.value {
            None => Some(true),
            Some(expr) => match peel(expr) {
                Expr::Lit(ExprLit {
                    lit: Lit::Bool(b), ..
                }) => Some(b.value),
                other => {
                    errors.spanned(other, format!("expected {}", key.expected));
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
        errors.spanned(
            &entry.key,
            format!("`{}` needs a value: expected {}", key.name, key.expected),
        );
        return;
    };
    match key.name {
        SEEDS => args.seeds = seeds(value, errors),
        FAULTS => args.faults = faults(value, errors),
        MAX_TIME => args.max_time_ms = positive_duration(value, key, errors),
        WALL_TIMEOUT => args.wall_timeout_ms = positive_duration(value, key, errors),
        FAULT_TICK => args.fault_tick_ms = positive_duration(value, key, errors),
        NODES => args.nodes = nodes(value, key, errors),
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
// Seeds

fn seeds(value: &Expr, errors: &Errors) -> Option<Seeds> {
    let expected = expected(SEEDS);
    match peel(value) {
        Expr::Range(range) => {
            let (Some(start), Some(end)) = (&range.start, &range.end) else {
                errors.spanned(
                    range,
                    format!("a seed range needs both ends: expected {expected}"),
                );
                return None;
            };
            let start_v = seed(start, errors);
            let end_v = seed(end, errors);
            let (start_v, end_v) = (start_v?, end_v?);
            let end_excl = match range.limits {
                RangeLimits::HalfOpen(_) => end_v,
                RangeLimits::Closed(_) => {
                    match end_v.checked_add(1) {
                        Some(e) => e,
                        None => {
                            errors.spanned(end, "seed range end too large: use `..` with an end of at most u64::MAX");
                            return None;
                        }
                    }
                }
            };
            if start_v >= end_excl {
                errors.spanned(
                    range,
                    format!(
                        "empty seed range `{}`: it contains no seeds; expected a range like `{start_v}..{}`",
                        range.to_token_stream().to_string().replace(' ', ""),
                        start_v.saturating_add(100)
                    ),
                );
                return None;
            }
            Some(Seeds::Range {
                start: start_v,
                end: end_excl,
            })
        }
        Expr::Array(array) => {
            if array.elems.is_empty() {
                errors.spanned(array, format!("empty seed list: expected {expected}"));
                return None;
            }
            let mut list: Vec<u64> = Vec::new();
            let mut ok = true;
            for elem in &array.elems {
                match seed(elem, errors) {
                    Some(s) if list.contains(&s) => {
                        errors.spanned(elem, format!("seed {s} is listed twice"));
                        ok = false;
                    }
                    Some(s) => list.push(s),
                    None => ok = false,
                }
            }
            ok.then_some(Seeds::List(list))
        }
        other => {
            errors.spanned(other, format!("expected {expected}"));
            None
        }
    }
}

fn seed(expr: &Expr, errors: &Errors) -> Option<u64> {
    match peel(expr) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errors.spanned(int, "seed out of range: seeds are u64");
                None
            }
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => {
            errors.spanned(u, "seeds are u64 and cannot be negative");
            None
        }
        other => {
            errors.spanned(
                other,
                "seeds must be integer literals, like `0..100` or `[1, 7, 42]`: the macro reads them at compile time",
            );
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Durations and numbers

fn positive_duration(value: &Expr, key: &Key, errors: &Errors) -> Option<u64> {
    let ms = duration_ms(value, errors, &format!("a duration for `{}`", key.name))?;
    if ms == 0 {
        errors.spanned(
            value,
            format!(
                "`{}` must be greater than zero: expected {}",
                key.name, key.expected
            ),
        );
        return None;
    }
    Some(ms)
}

/// A duration: a string literal with a unit (`"250ms"`, `"60s"`, `"2m"`) or an integer of ms.
fn duration_ms(value: &Expr, errors: &Errors, what: &str) -> Option<u64> {
    match peel(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errors.spanned(int, "duration too large: milliseconds must fit in u64");
                None
            }
        },
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => match parse_duration(&s.value()) {
            Ok(ms) => Some(ms),
            Err(why) => {
                errors.spanned(s, format!("bad duration {}: {why}", s.to_token_stream()));
                None
            }
        },
        other => {
            errors.spanned(
                other,
                format!("expected {what}: a string with a unit, like \"250ms\", \"60s\" or \"2m\", or an integer number of milliseconds"),
            );
            None
        }
    }
}

/// Parses `"<whole number><unit>"`, unit `ms`, `s` or `m`, into milliseconds. The error says what
/// to write instead.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    const FORMS: &str =
        "expected a whole number and a unit (ms, s or m), like \"250ms\", \"60s\" or \"2m\"";
    let text = text.trim();
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let factor: u64 = match unit.trim() {
        _ if number.is_empty() => return Err(FORMS.to_string()),
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "" => {
            return Err(format!(
                "no unit; write \"{number}ms\", \"{number}s\" or \"{number}m\""
            ))
        }
        other => {
            return Err(format!(
                "unknown unit `{other}`; use ms, s or m, like \"{number}s\""
            ))
        }
    };
    if !number.contains('.') {
        let whole = number.parse::<u64>().ok();
        return whole
            .and_then(|n| n.checked_mul(factor))
            .ok_or_else(|| "too large".to_string());
    }
    let Ok(fraction) = number.parse::<f64>() else {
        return Err(FORMS.to_string());
    };
    let ms = fraction * factor as f64;
    if (ms - ms.round()).abs() < 1e-6 && ms < u64::MAX as f64 {
        Err(format!(
            "fractions are not supported; write \"{}ms\"",
            ms.round() as u64
        ))
    } else {
        Err("fractions are not supported; use a whole number of milliseconds".to_string())
    }
}

fn nodes(value: &Expr, key: &Key, errors: &Errors) -> Option<u32> {
    match peel(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u32>() {
            Ok(0) => {
                errors.spanned(int, "`nodes` must be at least 1");
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                errors.spanned(int, "`nodes` must fit in u32");
                None
            }
        },
        other => {
            errors.spanned(other, format!("expected {}", key.expected));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Faults

fn faults(value: &Expr, errors: &Errors) -> Vec<Fault> {
    let Expr::Array(array) = peel(value) else {
        errors.spanned(value, format!("expected {}", expected(FAULTS)));
        return Vec::new();
    };
    array
        .elems
        .iter()
        .filter_map(|elem| fault(elem, errors))
        .collect()
}

fn fault(expr: &Expr, errors: &Errors) -> Option<Fault> {
    const SHAPE: &str =
        "expected a fault, like `StorageWriteFail(0.01)` or `NetworkDelay(0.1, 200)`";
    let expr = peel(expr);
    let (path, call_args, call) = match expr {
        Expr::Call(call) => match peel(&call.func) {
            Expr::Path(p) => (p, Some(&call.args), expr),
            other => {
                errors.spanned(other, SHAPE);
                return None;
            }
        },
        Expr::Path(p) => (p, None, expr),
        other => {
            errors.spanned(other, SHAPE);
            return None;
        }
    };
    let Some(name) = path.path.get_ident() else {
        errors.spanned(path, format!("{SHAPE}: write the fault's bare name"));
        return None;
    };
    let written = name.unraw().to_string();
    let Some(info) = FAULT_TABLE.iter().find(|f| f.name == written) else {
        let names: Vec<&str> = FAULT_TABLE.iter().map(|f| f.name).collect();
        errors.spanned(name, unknown("fault", &written, &names));
        return None;
    };

    let mut fault = Fault {
        info,
        name: name.clone(),
        params: Vec::new(),
        options: Vec::new(),
    };
    let mut complete = true;
    let mut named_from: Option<Span> = None;
    let mut next_positional = 0;
    let empty = Punctuated::new();
    for arg in call_args.unwrap_or(&empty) {
        if let Expr::Assign(assign) = peel(arg) {
            let lhs = match peel(&assign.left) {
                Expr::Path(p) => p.path.get_ident().map(|i| (i, i.unraw().to_string())),
                _ => None,
            };
            let Some((opt_ident, opt_name)) = lhs else {
                errors.spanned(
                    &assign.left,
                    "expected an option name, like `key_prefix = \"wal/\"`",
                );
                complete = false;
                continue;
            };
            named_from.get_or_insert(opt_ident.span());
            let already = fault.option(&opt_name).is_some()
                || fault.params.iter().any(|p| p.what.name == opt_name);
            if already {
                errors.spanned(opt_ident, format!("`{opt_name}` is given twice"));
                complete = false;
            } else if let Some(option) = FAULT_OPTIONS.iter().find(|o| o.name == opt_name) {
                match option_value(info, option, &assign.right, errors) {
                    Some(value) => fault.options.push(Given {
                        what: option,
                        value,
                        span: span_of(&assign.right),
                    }),
                    None => complete = false,
                }
            } else if let Some(param) = info.params.iter().find(|p| p.name == opt_name) {
                match param_value(param, &assign.right, errors) {
                    Some(value) => fault.params.push(Given {
                        what: param,
                        value,
                        span: span_of(&assign.right),
                    }),
                    None => complete = false,
                }
            } else {
                let names: Vec<&str> = FAULT_OPTIONS.iter().map(|o| o.name).collect();
                errors.spanned(
                    opt_ident,
                    format!(
                        "unknown option `{opt_name}` for `{}`{}",
                        info.name,
                        suggestion(&opt_name, &names)
                    ),
                );
                complete = false;
            }
            continue;
        }
        if named_from.is_some() {
            errors.spanned(
                arg,
                format!(
                    "positional parameters go before named options: expected {}",
                    signature(info)
                ),
            );
            complete = false;
            continue;
        }
        let Some(param) = info.params.get(next_positional) else {
            errors.spanned(
                arg,
                format!(
                "too many parameters: `{}` takes {} ({}); named options follow as `name = value`",
                info.name,
                count(info.params.len(), "parameter"),
                signature(info)
            ),
            );
            complete = false;
            continue;
        };
        next_positional += 1;
        match param_value(param, arg, errors) {
            Some(value) => fault.params.push(Given {
                what: param,
                value,
                span: span_of(arg),
            }),
            None => complete = false,
        }
    }
    fault
        .params
        .sort_by_key(|given| info.params.iter().position(|p| p.name == given.what.name));

    let missing: Vec<&str> = info
        .params
        .iter()
        .filter(|p| p.default.is_none() && !fault.params.iter().any(|g| g.what.name == p.name))
        .map(|p| p.name)
        .collect();
    // A parameter whose value was wrong was already reported; don't also call it missing.
    if !missing.is_empty() && complete {
        errors.spanned(
            call,
            format!(
                "`{}` is missing its {}: expected {}, like `{}`",
                info.name,
                missing.join(" and "),
                signature(info),
                example(info)
            ),
        );
        return None;
    }
    complete.then_some(fault)
}

/// `NetworkDelay(probability, max_ms = 100)`: the fault's parameters, defaults shown.
pub(crate) fn signature(info: &FaultInfo) -> String {
    let params: Vec<String> = info
        .params
        .iter()
        .map(|p| match p.default {
            Some(d) => format!("{} = {d}", p.name),
            None => p.name.to_string(),
        })
        .collect();
    format!("`{}({})`", info.name, params.join(", "))
}

/// `Custom("MyFault", 0.05)`: a call with only the required parameters filled in.
fn example(info: &FaultInfo) -> String {
    let values: Vec<&str> = info
        .params
        .iter()
        .filter(|p| p.default.is_none())
        .map(|p| match p.kind {
            ParamKind::Probability => "0.05",
            ParamKind::Millis => "100",
            ParamKind::Count => "1",
            ParamKind::Text => "\"MyFault\"",
        })
        .collect();
    format!("{}({})", info.name, values.join(", "))
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn span_of(expr: &Expr) -> Span {
    syn::spanned::Spanned::span(expr)
}

fn param_value(param: &ParamInfo, expr: &Expr, errors: &Errors) -> Option<Value> {
    kind_value(param.kind, param.name, expr, errors)
}

fn option_value(
    info: &FaultInfo,
    option: &OptionInfo,
    expr: &Expr,
    errors: &Errors,
) -> Option<Value> {
    if option.name != "op" {
        return kind_value(option.kind, option.name, expr, errors);
    }
    let Value::Text(text) = kind_value(ParamKind::Text, option.name, expr, errors)? else {
        return None;
    };
    let Some(op) = OpKind::from_name(&text) else {
        let names: Vec<&str> = OP_TABLE.iter().map(|(n, _)| *n).collect();
        errors.spanned(expr, unknown("operation", &text, &names));
        return None;
    };
    let ops = info.kind.ops();
    if !ops.contains(&op) {
        let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
        errors.spanned(
            expr,
            format!(
                "`{}` never acts on `{text}` operations; it acts on: {}",
                info.name,
                names.join(", ")
            ),
        );
        return None;
    }
    Some(Value::Op(op))
}

fn kind_value(kind: ParamKind, name: &str, expr: &Expr, errors: &Errors) -> Option<Value> {
    match kind {
        ParamKind::Probability => probability(name, expr, errors).map(Value::Probability),
        ParamKind::Millis => {
            duration_ms(expr, errors, &format!("a duration for `{name}`")).map(Value::Millis)
        }
        ParamKind::Count => match peel(expr) {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => match int.base10_parse::<u64>() {
                Ok(0) | Err(_) => {
                    errors.spanned(int, format!("`{name}` must be a count of at least 1"));
                    None
                }
                Ok(n) => Some(Value::Count(n)),
            },
            other => {
                errors.spanned(
                    other,
                    format!("`{name}` must be an integer literal, like `{name} = 3`"),
                );
                None
            }
        },
        ParamKind::Text => match peel(expr) {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) if s.value().is_empty() => {
                errors.spanned(s, format!("`{name}` must not be empty"));
                None
            }
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => Some(Value::Text(s.value())),
            other => {
                let example = match name {
                    "key_prefix" => "\"wal/\"",
                    "node" => "\"n1\"",
                    "op" => "\"set\"",
                    _ => "\"LlmTimeout\"",
                };
                errors.spanned(
                    other,
                    format!("`{name}` must be a string literal, like `{example}`"),
                );
                None
            }
        },
    }
}

fn probability(name: &str, expr: &Expr, errors: &Errors) -> Option<f64> {
    let (value, lit_span): (f64, &dyn ToTokens) = match peel(expr) {
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => (f.base10_parse().ok()?, f),
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => match i.base10_parse::<u64>() {
            Ok(v) => (v as f64, i),
            Err(_) => (f64::INFINITY, i),
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => {
            errors.spanned(
                u,
                format!(
                    "{name} out of range: expected a number between 0 and 1, like `0.05`, got `{}`",
                    u.to_token_stream().to_string().replace(' ', "")
                ),
            );
            return None;
        }
        other => {
            errors.spanned(
                other,
                format!("expected the {name} as a number literal between 0 and 1, like `0.05`"),
            );
            return None;
        }
    };
    if !(0.0..=1.0).contains(&value) {
        errors.spanned(
            lit_span,
            format!(
                "{name} out of range: expected a number between 0 and 1, like `0.05`, got `{}`",
                lit_span.to_token_stream()
            ),
        );
        return None;
    }
    Some(value)
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
    match closest(written, names) {
        Some(best) => format!("; did you mean `{best}`?"),
        None => format!("; expected one of: {}", names.join(", ")),
    }
}

/// The name nearest to `written` (case-insensitive edit distance, or containment), if any is
/// close enough to be a likely typo.
pub(crate) fn closest<'a>(written: &str, names: &[&'a str]) -> Option<&'a str> {
    let lower = written.to_lowercase();
    let best = names
        .iter()
        .map(|name| (levenshtein(&lower, &name.to_lowercase()), *name))
        .min_by_key(|(distance, _)| *distance)?;
    let limit = (written.chars().count() / 3).max(1);
    if best.0 <= limit {
        return Some(best.1);
    }
    // "Partition" for "NetworkPartition": a unique name containing what was written.
    let mut containing = names
        .iter()
        .filter(|n| lower.len() >= 4 && n.to_lowercase().contains(&lower));
    match (containing.next(), containing.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse_ok(tokens: TokenStream) -> Args {
        let errors = Errors::default();
        let args = parse(tokens, &errors);
        if let Err(err) = errors.finish() {
            let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
            panic!("unexpected errors: {messages:#?}");
        }
        args
    }

    fn errors_of(tokens: TokenStream) -> Vec<String> {
        let errors = Errors::default();
        parse(tokens, &errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn one_error(tokens: TokenStream) -> String {
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
    fn seed_ranges_and_lists() {
        assert_eq!(
            parse_ok(quote!(seeds = 0..500)).seeds,
            Some(Seeds::Range { start: 0, end: 500 })
        );
        assert_eq!(
            parse_ok(quote!(seeds = 0..=9)).seeds,
            Some(Seeds::Range { start: 0, end: 10 })
        );
        assert_eq!(
            parse_ok(quote!(seeds = 7..=7)).seeds,
            Some(Seeds::Range { start: 7, end: 8 })
        );
        assert_eq!(
            parse_ok(quote!(seeds = [1, 7, 42u64])).seeds,
            Some(Seeds::List(vec![1, 7, 42]))
        );
        assert_eq!(
            parse_ok(quote!(seeds = (3..5),)).seeds,
            Some(Seeds::Range { start: 3, end: 5 })
        );
    }

    #[test]
    fn bad_seeds() {
        assert!(one_error(quote!(seeds = 5..5)).starts_with("empty seed range `5..5`"));
        assert!(one_error(quote!(seeds = 5..3)).starts_with("empty seed range `5..3`"));
        assert!(one_error(quote!(seeds = 5..=4)).starts_with("empty seed range"));
        assert!(one_error(quote!(seeds = 0..N)).starts_with("seeds must be integer literals"));
        assert!(one_error(quote!(seeds = 0..)).starts_with("a seed range needs both ends"));
        assert!(one_error(quote!(seeds = [])).starts_with("empty seed list"));
        assert_eq!(
            one_error(quote!(seeds = [1, 2, 1])),
            "seed 1 is listed twice"
        );
        assert!(one_error(quote!(seeds = -1..3)).contains("cannot be negative"));
        assert!(one_error(quote!(seeds = 100)).starts_with("expected `seeds = 0..100`"));
        assert!(one_error(quote!(seeds = 0..=18446744073709551615))
            .starts_with("seed range end too large"));
        // Both ends wrong: both reported.
        assert_eq!(errors_of(quote!(seeds = a..b)).len(), 2);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("60s"), Ok(60_000));
        assert_eq!(parse_duration("2m"), Ok(120_000));
        assert_eq!(parse_duration(" 5 s "), Ok(5_000));
        let err = |text: &str| parse_duration(text).unwrap_err();
        assert_eq!(err("10"), "no unit; write \"10ms\", \"10s\" or \"10m\"");
        assert_eq!(err("1.5s"), "fractions are not supported; write \"1500ms\"");
        assert_eq!(
            err("0.3m"),
            "fractions are not supported; write \"18000ms\""
        );
        assert_eq!(
            err("1.5ms"),
            "fractions are not supported; use a whole number of milliseconds"
        );
        assert_eq!(err("5h"), "unknown unit `h`; use ms, s or m, like \"5s\"");
        assert_eq!(
            err("60 seconds"),
            "unknown unit `seconds`; use ms, s or m, like \"60s\""
        );
        let forms =
            "expected a whole number and a unit (ms, s or m), like \"250ms\", \"60s\" or \"2m\"";
        assert_eq!(err("s"), forms);
        assert_eq!(err(""), forms);
        assert_eq!(err("soon"), forms);
        assert_eq!(err("1.2.3s"), forms);
        assert_eq!(err("99999999999999999999ms"), "too large");

        let args = parse_ok(quote!(
            max_time = "60s",
            wall_timeout = 1500,
            fault_tick = "10ms"
        ));
        assert_eq!(args.max_time_ms, Some(60_000));
        assert_eq!(args.wall_timeout_ms, Some(1_500));
        assert_eq!(args.fault_tick_ms, Some(10));

        assert!(one_error(quote!(max_time = "60 seconds"))
            .starts_with("bad duration \"60 seconds\": unknown unit"));
        assert!(
            one_error(quote!(max_time = "0s")).starts_with("`max_time` must be greater than zero")
        );
        assert!(one_error(quote!(fault_tick = 1.5))
            .starts_with("expected a duration for `fault_tick`: "));
    }

    #[test]
    fn nodes_and_flags() {
        let args = parse_ok(quote!(
            nodes = 3,
            ignore,
            should_fail = false,
            check_determinism
        ));
        assert_eq!(args.nodes, Some(3));
        assert_eq!(
            (args.ignore, args.should_fail, args.check_determinism),
            (Some(true), Some(false), Some(true))
        );
        assert_eq!(one_error(quote!(nodes = 0)), "`nodes` must be at least 1");
        assert!(one_error(quote!(nodes = "3")).starts_with("expected a number of nodes"));
        assert!(one_error(quote!(ignore = "slow")).starts_with("expected a bare `ignore`"));
        assert!(one_error(quote!(nodes)).starts_with("`nodes` needs a value"));
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
    fn faults_with_positional_parameters_and_options() {
        let args = parse_ok(quote!(
            faults = [
                StorageWriteFail(0.02),
                NetworkDelay(0.1, 200),
                NetworkDelay(1, max_ms = "1s"),
                StorageWriteFail(
                    0.5,
                    key_prefix = "wal/",
                    max = 3,
                    after_ms = 100,
                    until_ms = 5000,
                    op = "set",
                    node = "n1"
                ),
                Custom("LlmTimeout", 0.1),
                NodeCrash(probability = 0.25),
            ]
        ));
        let f = &args.faults;
        assert_eq!(f.len(), 6);
        assert_eq!(f[0].info.name, "StorageWriteFail");
        assert_eq!(f[0].params.len(), 1);
        assert_eq!(f[0].params[0].value, Value::Probability(0.02));
        assert_eq!(f[1].params[1].what.name, "max_ms");
        assert_eq!(f[1].params[1].value, Value::Millis(200));
        assert_eq!(f[2].params[0].value, Value::Probability(1.0));
        assert_eq!(f[2].params[1].value, Value::Millis(1000));
        let names: Vec<&str> = f[3].options.iter().map(|o| o.what.name).collect();
        assert_eq!(
            names,
            ["key_prefix", "max", "after_ms", "until_ms", "op", "node"]
        );
        assert_eq!(f[3].option("op").unwrap().value, Value::Op(OpKind::Set));
        assert_eq!(f[3].option("max").unwrap().value, Value::Count(3));
        assert_eq!(
            f[3].option("key_prefix").unwrap().value,
            Value::Text("wal/".into())
        );
        assert_eq!(f[4].params[0].value, Value::Text("LlmTimeout".into()));
        assert_eq!(f[4].params[1].value, Value::Probability(0.1));
        assert_eq!(f[5].params[0].value, Value::Probability(0.25));
        assert!(parse_ok(quote!(faults = [])).faults.is_empty());
    }

    #[test]
    fn unknown_faults_suggest_the_closest_name() {
        assert_eq!(
            one_error(quote!(faults = [StorageWriteFial(0.1)])),
            "unknown fault `StorageWriteFial`; did you mean `StorageWriteFail`?"
        );
        assert_eq!(
            one_error(quote!(faults = [storage_write_fail(0.1)])),
            "unknown fault `storage_write_fail`; did you mean `StorageWriteFail`?"
        );
        assert_eq!(
            one_error(quote!(faults = [Corruption(0.1)])),
            "unknown fault `Corruption`; did you mean `StorageCorruption`?"
        );
        assert!(one_error(quote!(faults = [Meteor(0.1)])).starts_with(
            "unknown fault `Meteor`; expected one of: StorageWriteFail, StorageReadFail,"
        ));
        assert!(one_error(quote!(faults = [FaultKind::NodeCrash(0.1)]))
            .ends_with("write the fault's bare name"));
        assert!(one_error(quote!(faults = StorageWriteFail(0.1)))
            .starts_with("expected a list of faults"));
        assert!(one_error(quote!(faults = [0.1])).starts_with("expected a fault, like"));
    }

    #[test]
    fn probabilities() {
        let msg = one_error(quote!(faults = [StorageWriteFail(1.5)]));
        assert_eq!(
            msg,
            "probability out of range: expected a number between 0 and 1, like `0.05`, got `1.5`"
        );
        assert!(one_error(quote!(faults = [StorageWriteFail(2)])).ends_with("got `2`"));
        assert!(one_error(quote!(faults = [StorageWriteFail(-0.1)]))
            .starts_with("probability out of range"));
        assert!(one_error(quote!(faults = [StorageWriteFail(P)]))
            .starts_with("expected the probability as a number literal"));
        assert!(one_error(quote!(faults = [StorageWriteFail("0.1")]))
            .starts_with("expected the probability"));
        parse_ok(quote!(
            faults = [
                StorageWriteFail(0),
                StorageWriteFail(1),
                StorageWriteFail(1.0f64),
                StorageWriteFail(1e-3)
            ]
        ));
    }

    #[test]
    fn parameter_counts() {
        assert_eq!(
            one_error(quote!(faults = [StorageWriteFail()])),
            "`StorageWriteFail` is missing its probability: expected `StorageWriteFail(probability)`, like `StorageWriteFail(0.05)`"
        );
        assert!(one_error(quote!(faults = [PacketLoss]))
            .starts_with("`PacketLoss` is missing its probability"));
        assert_eq!(
            one_error(quote!(faults = [Custom()])),
            "`Custom` is missing its name and probability: expected `Custom(name, probability)`, like `Custom(\"MyFault\", 0.05)`"
        );
        assert_eq!(
            one_error(quote!(faults = [StorageWriteFail(0.1, 2)])),
            "too many parameters: `StorageWriteFail` takes 1 parameter (`StorageWriteFail(probability)`); named options follow as `name = value`"
        );
        assert!(one_error(quote!(faults = [NetworkDelay(0.1, 2, 3)]))
            .contains("takes 2 parameters (`NetworkDelay(probability, max_ms = 100)`)"));
        // A wrong value is not also reported as missing.
        assert!(one_error(quote!(faults = [Custom(0.1)]))
            .starts_with("`name` must be a string literal"));
        assert!(one_error(quote!(faults = [NetworkDelay(0.1, "fast")]))
            .starts_with("bad duration \"fast\""));
    }

    #[test]
    fn options() {
        assert_eq!(
            one_error(quote!(faults = [StorageWriteFail(0.1, prefix = "wal/")])),
            "unknown option `prefix` for `StorageWriteFail`; did you mean `key_prefix`?"
        );
        assert!(
            one_error(quote!(faults = [StorageWriteFail(0.1, colour = 1)]))
                .ends_with("expected one of: op, key_prefix, node, max, after_ms, until_ms")
        );
        assert_eq!(
            one_error(quote!(faults = [StorageWriteFail(0.1, op = "write")])),
            "unknown operation `write`; expected one of: get, set, delete, scan, commit, sync, send, tick, custom"
        );
        assert_eq!(
            one_error(quote!(faults = [StorageWriteFail(0.1, op = "get")])),
            "`StorageWriteFail` never acts on `get` operations; it acts on: set, delete, commit"
        );
        assert_eq!(
            one_error(quote!(faults = [StorageWriteFail(0.1, max = 1, max = 2)])),
            "`max` is given twice"
        );
        assert_eq!(
            one_error(quote!(faults = [NetworkDelay(0.1, 5, max_ms = 2)])),
            "`max_ms` is given twice"
        );
        assert_eq!(
            one_error(quote!(faults = [StorageWriteFail(0.1, max = 0)])),
            "`max` must be a count of at least 1"
        );
        assert_eq!(
            one_error(quote!(faults = [StorageWriteFail(0.1, node = "")])),
            "`node` must not be empty"
        );
        assert!(one_error(quote!(faults = [NetworkDelay(max_ms = 5, 0.1)]))
            .starts_with("positional parameters go before named options"));
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

    #[test]
    fn closest_names() {
        let names = ["seeds", "faults", "nodes"];
        assert_eq!(closest("seed", &names), Some("seeds"));
        assert_eq!(closest("FAULTS", &names), Some("faults"));
        assert_eq!(closest("x", &names), None);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
