//! `seeds = 0..500`, `seeds = 0..=9` or `seeds = [1, 7, 42]`: integer literals, read at compile
//! time, never an empty set.

use quote::ToTokens;
use syn::{Expr, ExprLit, Lit, RangeLimits, UnOp};

use super::{expected, peel, SEEDS};
use crate::ast::Seeds;
use crate::errors::Ctxt;

pub(super) fn seeds(value: &Expr, cx: &Ctxt) -> Option<Seeds> {
    let expected = expected(SEEDS);
    match peel(value) {
        Expr::Range(range) => {
            let (Some(start), Some(end)) = (&range.start, &range.end) else {
                cx.error_spanned_by(
                    range,
                    format!("a seed range needs both ends: expected {expected}"),
                );
                return None;
            };
            let start_v = seed(start, cx);
            let end_v = seed(end, cx);
            let (start_v, end_v) = (start_v?, end_v?);
            let end_excl = match range.limits {
                RangeLimits::HalfOpen(_) => end_v,
                RangeLimits::Closed(_) => {
                    match end_v.checked_add(1) {
                        Some(e) => e,
                        None => {
                            cx.error_spanned_by(end, "seed range end too large: use `..` with an end of at most u64::MAX");
                            return None;
                        }
                    }
                }
            };
            if start_v >= end_excl {
                cx.error_spanned_by(
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
                cx.error_spanned_by(array, format!("empty seed list: expected {expected}"));
                return None;
            }
            let mut list: Vec<u64> = Vec::new();
            let mut ok = true;
            for elem in &array.elems {
                match seed(elem, cx) {
                    Some(s) if list.contains(&s) => {
                        cx.error_spanned_by(elem, format!("seed {s} is listed twice"));
                        ok = false;
                    }
                    Some(s) => list.push(s),
                    None => ok = false,
                }
            }
            ok.then_some(Seeds::List(list))
        }
        other => {
            cx.error_spanned_by(other, format!("expected {expected}"));
            None
        }
    }
}

fn seed(expr: &Expr, cx: &Ctxt) -> Option<u64> {
    match peel(expr) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                cx.error_spanned_by(int, "seed out of range: seeds are u64");
                None
            }
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => {
            cx.error_spanned_by(u, "seeds are u64 and cannot be negative");
            None
        }
        other => {
            cx.error_spanned_by(
                other,
                "seeds must be integer literals, like `0..100` or `[1, 7, 42]`: the macro reads them at compile time",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors_of, one_error, parse_ok};
    use crate::ast::Seeds;
    use quote::quote;

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
}
