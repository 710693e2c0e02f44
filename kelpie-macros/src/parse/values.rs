//! Values with a unit or a range: durations (`"250ms"`, `"60s"`, `"2m"` or milliseconds), node
//! counts, and a fault parameter's or option's value by its kind (probability, milliseconds,
//! count, text).

use quote::ToTokens;
use syn::{Expr, ExprLit, Lit, UnOp};

use kelpie_spec::ParamKind;

use super::{peel, Key};
use crate::ast::Value;
use crate::errors::Ctxt;

pub(super) fn positive_duration(value: &Expr, key: &Key, cx: &Ctxt) -> Option<u64> {
    let ms = duration_ms(value, cx, &format!("a duration for `{}`", key.name))?;
    if ms == 0 {
        cx.error_spanned_by(
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
fn duration_ms(value: &Expr, cx: &Ctxt, what: &str) -> Option<u64> {
    match peel(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                cx.error_spanned_by(int, "duration too large: milliseconds must fit in u64");
                None
            }
        },
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => match parse_duration(&s.value()) {
            Ok(ms) => Some(ms),
            Err(why) => {
                cx.error_spanned_by(s, format!("bad duration {}: {why}", s.to_token_stream()));
                None
            }
        },
        other => {
            cx.error_spanned_by(
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

pub(super) fn nodes(value: &Expr, key: &Key, cx: &Ctxt) -> Option<u32> {
    match peel(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u32>() {
            Ok(0) => {
                cx.error_spanned_by(int, "`nodes` must be at least 1");
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                cx.error_spanned_by(int, "`nodes` must fit in u32");
                None
            }
        },
        other => {
            cx.error_spanned_by(other, format!("expected {}", key.expected));
            None
        }
    }
}

pub(super) fn kind_value(kind: ParamKind, name: &str, expr: &Expr, cx: &Ctxt) -> Option<Value> {
    match kind {
        ParamKind::Probability => probability(name, expr, cx).map(Value::Probability),
        ParamKind::Millis => {
            duration_ms(expr, cx, &format!("a duration for `{name}`")).map(Value::Millis)
        }
        ParamKind::Count => match peel(expr) {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => match int.base10_parse::<u64>() {
                Ok(0) | Err(_) => {
                    cx.error_spanned_by(int, format!("`{name}` must be a count of at least 1"));
                    None
                }
                Ok(n) => Some(Value::Count(n)),
            },
            other => {
                cx.error_spanned_by(
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
                cx.error_spanned_by(s, format!("`{name}` must not be empty"));
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
                cx.error_spanned_by(
                    other,
                    format!("`{name}` must be a string literal, like `{example}`"),
                );
                None
            }
        },
    }
}

fn probability(name: &str, expr: &Expr, cx: &Ctxt) -> Option<f64> {
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
            cx.error_spanned_by(
                u,
                format!(
                    "{name} out of range: expected a number between 0 and 1, like `0.05`, got `{}`",
                    u.to_token_stream().to_string().replace(' ', "")
                ),
            );
            return None;
        }
        other => {
            cx.error_spanned_by(
                other,
                format!("expected the {name} as a number literal between 0 and 1, like `0.05`"),
            );
            return None;
        }
    };
    if !(0.0..=1.0).contains(&value) {
        cx.error_spanned_by(
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

#[cfg(test)]
mod tests {
    use super::super::tests::{one_error, parse_ok};
    use super::parse_duration;
    use quote::quote;

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
}
