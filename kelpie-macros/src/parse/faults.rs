//! `faults = [StorageWriteFail(0.02), NetworkDelay(0.1, max_ms = 200), ...]`: each fault looked up
//! in the fault table (`kelpie_spec::FAULT_TABLE`), its positional parameters in table order, then
//! its named options (`kelpie_spec::FAULT_OPTIONS`).

use proc_macro2::Span;
use syn::ext::IdentExt as _;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprAssign, ExprPath, Ident, Token};

use kelpie_spec::{FaultInfo, OpKind, OptionInfo, ParamInfo, ParamKind};
use kelpie_spec::{FAULT_OPTIONS, FAULT_TABLE, OP_TABLE};

use super::values::kind_value;
use super::{expected, peel, suggestion, unknown, FAULTS};
use crate::ast::{Fault, Given, Value};
use crate::errors::Ctxt;

pub(super) fn faults(value: &Expr, cx: &Ctxt) -> Vec<Fault> {
    let Expr::Array(array) = peel(value) else {
        cx.error_spanned_by(value, format!("expected {}", expected(FAULTS)));
        return Vec::new();
    };
    array
        .elems
        .iter()
        .filter_map(|elem| fault(elem, cx))
        .collect()
}

/// One fault: its name looked up in the table, then its arguments read one by one.
fn fault(expr: &Expr, cx: &Ctxt) -> Option<Fault> {
    let expr = peel(expr);
    let (name, info, call_args) = head(expr, cx)?;
    let mut reader = ArgReader::new(info, name);
    let empty = Punctuated::new();
    for arg in call_args.unwrap_or(&empty) {
        match peel(arg) {
            Expr::Assign(assign) => reader.named(assign, cx),
            _ => reader.positional(arg, cx),
        }
    }
    reader.finish(expr, cx)
}

/// The arguments of a fault call, as written.
type CallArgs = Punctuated<Expr, Token![,]>;

/// `Name` or `Name(args)`: the fault's name, its table row and its arguments, if the shape is right
/// and the name known.
fn head<'a>(
    expr: &'a Expr,
    cx: &Ctxt,
) -> Option<(&'a Ident, &'static FaultInfo, Option<&'a CallArgs>)> {
    const SHAPE: &str =
        "expected a fault, like `StorageWriteFail(0.01)` or `NetworkDelay(0.1, 200)`";
    let (path, call_args): (&ExprPath, _) = match expr {
        Expr::Call(call) => match peel(&call.func) {
            Expr::Path(p) => (p, Some(&call.args)),
            other => {
                cx.error_spanned_by(other, SHAPE);
                return None;
            }
        },
        Expr::Path(p) => (p, None),
        other => {
            cx.error_spanned_by(other, SHAPE);
            return None;
        }
    };
    let Some(name) = path.path.get_ident() else {
        cx.error_spanned_by(path, format!("{SHAPE}: write the fault's bare name"));
        return None;
    };
    let written = name.unraw().to_string();
    let Some(info) = FAULT_TABLE.iter().find(|f| f.name == written) else {
        let names: Vec<&str> = FAULT_TABLE.iter().map(|f| f.name).collect();
        cx.error_spanned_by(name, unknown("fault", &written, &names));
        return None;
    };
    Some((name, info, call_args))
}

/// Reads one fault's arguments: positional parameters in table order, then `name = value`
/// options (or parameters by name).
struct ArgReader {
    fault: Fault,
    /// False once an argument was wrong (and reported): the fault is then left out, and no
    /// parameter is also called missing.
    complete: bool,
    /// Whether a named argument was seen, after which a positional one is out of place.
    named_seen: bool,
    /// The index of the next positional parameter in the table.
    next_positional: usize,
}

impl ArgReader {
    fn new(info: &'static FaultInfo, name: &Ident) -> Self {
        ArgReader {
            fault: Fault {
                info,
                name: name.clone(),
                params: Vec::new(),
                options: Vec::new(),
            },
            complete: true,
            named_seen: false,
            next_positional: 0,
        }
    }

    /// `name = value`: an option, or a positional parameter given by name.
    fn named(&mut self, assign: &ExprAssign, cx: &Ctxt) {
        let info = self.fault.info;
        let lhs = match peel(&assign.left) {
            Expr::Path(p) => p.path.get_ident().map(|i| (i, i.unraw().to_string())),
            _ => None,
        };
        let Some((ident, name)) = lhs else {
            cx.error_spanned_by(
                &assign.left,
                "expected an option name, like `key_prefix = \"wal/\"`",
            );
            self.complete = false;
            return;
        };
        self.named_seen = true;
        let already = self.fault.option(&name).is_some()
            || self.fault.params.iter().any(|p| p.what.name == name);
        if already {
            cx.error_spanned_by(ident, format!("`{name}` is given twice"));
            self.complete = false;
        } else if let Some(option) = FAULT_OPTIONS.iter().find(|o| o.name == name) {
            let value = option_value(info, option, &assign.right, cx);
            self.push_option(option, value, &assign.right);
        } else if let Some(param) = info.params.iter().find(|p| p.name == name) {
            let value = param_value(param, &assign.right, cx);
            self.push_param(param, value, &assign.right);
        } else {
            let names: Vec<&str> = FAULT_OPTIONS.iter().map(|o| o.name).collect();
            cx.error_spanned_by(
                ident,
                format!(
                    "unknown option `{name}` for `{}`{}",
                    info.name,
                    suggestion(&name, &names)
                ),
            );
            self.complete = false;
        }
    }

    /// A bare value: the next positional parameter.
    fn positional(&mut self, arg: &Expr, cx: &Ctxt) {
        let info = self.fault.info;
        if self.named_seen {
            cx.error_spanned_by(
                arg,
                format!(
                    "positional parameters go before named options: expected {}",
                    signature(info)
                ),
            );
            self.complete = false;
            return;
        }
        let Some(param) = info.params.get(self.next_positional) else {
            cx.error_spanned_by(
                arg,
                format!(
                    "too many parameters: `{}` takes {} ({}); named options follow as `name = value`",
                    info.name,
                    count(info.params.len(), "parameter"),
                    signature(info)
                ),
            );
            self.complete = false;
            return;
        };
        self.next_positional += 1;
        let value = param_value(param, arg, cx);
        self.push_param(param, value, arg);
    }

    fn push_param(&mut self, what: &'static ParamInfo, value: Option<Value>, expr: &Expr) {
        match value {
            Some(value) => self.fault.params.push(Given {
                what,
                value,
                span: span_of(expr),
            }),
            None => self.complete = false,
        }
    }

    fn push_option(&mut self, what: &'static OptionInfo, value: Option<Value>, expr: &Expr) {
        match value {
            Some(value) => self.fault.options.push(Given {
                what,
                value,
                span: span_of(expr),
            }),
            None => self.complete = false,
        }
    }

    /// The fault, with its parameters in table order, if every argument was valid and every
    /// required parameter given; `call` is the whole fault, where a missing parameter is reported.
    fn finish(mut self, call: &Expr, cx: &Ctxt) -> Option<Fault> {
        let info = self.fault.info;
        self.fault
            .params
            .sort_by_key(|given| info.params.iter().position(|p| p.name == given.what.name));
        let missing: Vec<&str> = info
            .params
            .iter()
            .filter(|p| {
                p.default.is_none() && !self.fault.params.iter().any(|g| g.what.name == p.name)
            })
            .map(|p| p.name)
            .collect();
        // A parameter whose value was wrong was already reported; don't also call it missing.
        if !missing.is_empty() && self.complete {
            cx.error_spanned_by(
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
        self.complete.then_some(self.fault)
    }
}

/// `NetworkDelay(probability, max_ms = 100)`: the fault's parameters, defaults shown.
fn signature(info: &FaultInfo) -> String {
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

fn param_value(param: &ParamInfo, expr: &Expr, cx: &Ctxt) -> Option<Value> {
    kind_value(param.kind, param.name, expr, cx)
}

fn option_value(info: &FaultInfo, option: &OptionInfo, expr: &Expr, cx: &Ctxt) -> Option<Value> {
    if option.name != "op" {
        return kind_value(option.kind, option.name, expr, cx);
    }
    let Value::Text(text) = kind_value(ParamKind::Text, option.name, expr, cx)? else {
        return None;
    };
    let Some(op) = OpKind::from_name(&text) else {
        let names: Vec<&str> = OP_TABLE.iter().map(|(n, _)| *n).collect();
        cx.error_spanned_by(expr, unknown("operation", &text, &names));
        return None;
    };
    let ops = info.kind.ops();
    if !ops.contains(&op) {
        let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
        cx.error_spanned_by(
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

#[cfg(test)]
mod tests {
    use super::super::tests::{one_error, parse_ok};
    use crate::ast::Value;
    use kelpie_spec::OpKind;
    use quote::quote;

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
}
