//! Validation: the consistency of the parsed arguments, the test function's signature, and its
//! body (no calls that escape the simulation or end the process). Every problem is recorded in the
//! [`Ctxt`], spanned at the token that has to change, and checking goes on so that one compile
//! shows them all.

use syn::{FnArg, ItemFn, ReturnType};

use crate::ast::{Args, Test, Value};
use crate::errors::Ctxt;

/// Checks a parsed test: its arguments, then its function's signature, then its body.
pub(crate) fn test(test: &Test, cx: &Ctxt) {
    args(&test.args, cx);
    function(&test.function, cx);
    body(&test.function, cx);
}

/// The shape every `#[kelpie::dst_test]` function has, as shown in error messages.
const SHAPE: &str = "`async fn name(env: kelpie::SimEnv)`";

/// Checks the function's signature and attributes.
pub(crate) fn function(item: &ItemFn, cx: &Ctxt) {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        cx.error_at(
            sig.fn_token.span,
            format!("`#[kelpie::dst_test]` needs an `async fn`: expected {SHAPE}"),
        );
    }
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(
            constness,
            format!("a DST test cannot be `const`: expected {SHAPE}"),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        cx.error_spanned_by(
            unsafety,
            format!("a DST test cannot be `unsafe`: expected {SHAPE}"),
        );
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(
            abi,
            format!("a DST test cannot have an ABI: expected {SHAPE}"),
        );
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            format!("a DST test cannot be generic: the runner calls it with one `kelpie::SimEnv`; expected {SHAPE}"),
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            format!("a DST test cannot have a `where` clause: expected {SHAPE}"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(
            variadic,
            format!("a DST test cannot be variadic: expected {SHAPE}"),
        );
    }
    for input in &sig.inputs {
        if let FnArg::Receiver(receiver) = input {
            cx.error_spanned_by(
                receiver,
                format!(
                    "a DST test is a free function, not a method: remove `self`; expected {SHAPE}"
                ),
            );
        }
    }
    let typed = sig
        .inputs
        .iter()
        .filter(|i| matches!(i, FnArg::Typed(_)))
        .count();
    let receivers = sig.inputs.len() - typed;
    if typed == 0 && receivers == 0 {
        cx.error_at(
            sig.paren_token.span.join(),
            format!("a DST test takes exactly one argument, the simulation environment: expected {SHAPE}"),
        );
    } else if typed > 1 {
        let extra: Vec<&FnArg> = sig
            .inputs
            .iter()
            .filter(|i| matches!(i, FnArg::Typed(_)))
            .skip(1)
            .collect();
        cx.error_spanned_by(
            quote::quote!(#(#extra),*),
            format!("a DST test takes exactly one argument, the simulation environment; remove the others: expected {SHAPE}"),
        );
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let syn::Type::ImplTrait(_) = &**ty {
            cx.error_spanned_by(
                ty,
                "a DST test returns `()` or `Result<(), E>` where `E: Display`, not `impl Trait`",
            );
        }
    }
    for attr in &item.attrs {
        if is_test_attribute(attr) {
            cx.error_spanned_by(
                attr,
                "remove this attribute: `#[kelpie::dst_test]` registers the test with the DST runner itself",
            );
        }
    }
}

/// `#[test]`, `#[tokio::test]`, `#[madsim::test]`...: another test harness's attribute.
pub(crate) fn is_test_attribute(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "test")
}

/// Rejects calls in the body that escape the simulation (real threads, real time, tokio's runtime)
/// or end the process, with the scanner and table the file lint uses too (`kelpie_spec::scan`).
pub(crate) fn body(item: &ItemFn, cx: &Ctxt) {
    for violation in kelpie_spec::scan::scan_block(&item.block) {
        cx.syn_error(violation.to_error());
    }
}

/// Checks what no single value can: relations between the options of one fault.
pub(crate) fn args(args: &Args, cx: &Ctxt) {
    for fault in &args.faults {
        let after = fault.option("after_ms");
        let until = fault.option("until_ms");
        if let (Some(after), Some(until)) = (after, until) {
            if let (Value::Millis(a), Value::Millis(u)) = (&after.value, &until.value) {
                if a >= u {
                    cx.error_at(
                        until.span,
                        format!("`until_ms` ({u}) must be later than `after_ms` ({a}), or the fault never fires"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use syn::parse_quote;

    fn function_errors(item: ItemFn) -> Vec<String> {
        let cx = Ctxt::new();
        function(&item, &cx);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn one_error(item: ItemFn) -> String {
        let mut errors = function_errors(item);
        assert_eq!(
            errors.len(),
            1,
            "expected exactly one error, got {errors:#?}"
        );
        errors.remove(0)
    }

    #[test]
    fn accepts_the_usual_shapes() {
        assert!(function_errors(parse_quote!(
            async fn t(env: kelpie::SimEnv) {}
        ))
        .is_empty());
        assert!(function_errors(parse_quote!(
            pub async fn t(mut env: SimEnv) -> Result<(), String> {
                Ok(())
            }
        ))
        .is_empty());
        assert!(function_errors(parse_quote!(
            async fn t(_: Env) {}
        ))
        .is_empty());
    }

    #[test]
    fn signature_errors() {
        assert!(one_error(parse_quote!(
            fn t(env: SimEnv) {}
        ))
        .starts_with("`#[kelpie::dst_test]` needs an `async fn`"));
        assert!(one_error(parse_quote!(
            async fn t<T>(env: SimEnv) {}
        ))
        .starts_with("a DST test cannot be generic"));
        assert!(one_error(parse_quote!(
            async fn t<'a>(env: SimEnv) {}
        ))
        .starts_with("a DST test cannot be generic"));
        assert!(one_error(parse_quote!(
            async unsafe fn t(env: SimEnv) {}
        ))
        .starts_with("a DST test cannot be `unsafe`"));
        assert!(one_error(parse_quote!(
            async fn t() {}
        ))
        .starts_with("a DST test takes exactly one argument"));
        assert!(one_error(parse_quote!(
            async fn t(a: SimEnv, b: u32, c: u8) {}
        ))
        .contains("remove the others"));
        assert!(one_error(parse_quote!(
            async fn t(&self) {}
        ))
        .starts_with("a DST test is a free function"));
        assert!(one_error(parse_quote!(
            async fn t(self, env: SimEnv) {}
        ))
        .starts_with("a DST test is a free function"));
        assert!(one_error(parse_quote!(
            #[test]
            async fn t(env: SimEnv) {}
        ))
        .starts_with("remove this attribute"));
        assert!(one_error(parse_quote!(
            #[tokio::test]
            async fn t(env: SimEnv) {}
        ))
        .starts_with("remove this attribute"));
        assert!(one_error(parse_quote!(
            async fn t(env: SimEnv) -> impl Sized {}
        ))
        .contains("not `impl Trait`"));
        // Several mistakes, all reported.
        assert_eq!(
            function_errors(parse_quote!(
                fn t<T>()
                where
                    T: Copy,
                {
                }
            ))
            .len(),
            4
        );
    }

    #[test]
    fn forbidden_calls_in_the_body_are_errors() {
        let item: ItemFn = parse_quote!(
            async fn t(env: SimEnv) {
                std::thread::spawn(|| {});
                let ok = env.now();
            }
        );
        let cx = Ctxt::new();
        body(&item, &cx);
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages.len(), 1, "{messages:#?}");
        assert_eq!(
            messages[0],
            "`std::thread::spawn` is not deterministic in a DST test: use `env.spawn(...)`"
        );
    }

    #[test]
    fn forbidden_calls_are_found_through_aliases_in_the_body() {
        let item: ItemFn = parse_quote!(
            async fn t(env: SimEnv) {
                use tokio::spawn as go;
                go(async {});
                let _ = std::time::Instant::now();
            }
        );
        let cx = Ctxt::new();
        body(&item, &cx);
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages.len(), 2, "{messages:#?}");
        assert!(
            messages[0].starts_with("`tokio::spawn` (written `go`)"),
            "{messages:#?}"
        );
        assert!(
            messages[1].starts_with("`std::time::Instant::now`"),
            "{messages:#?}"
        );
    }

    #[test]
    fn ending_the_process_in_the_body_is_an_error() {
        let item: ItemFn = parse_quote!(
            async fn t(env: SimEnv) {
                use std::process;
                if env.now().is_zero() {
                    process::exit(0);
                }
                std::process::abort();
            }
        );
        let cx = Ctxt::new();
        body(&item, &cx);
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            messages,
            [
                "`std::process::exit` (written `process::exit`) ends the test process before the \
                 runner's summary, so this seed and every later one go unreported: return an error \
                 from the test or panic instead",
                "`std::process::abort` ends the test process before the runner's summary, so this \
                 seed and every later one go unreported: return an error from the test or panic \
                 instead",
            ]
        );
    }

    #[test]
    fn fault_windows_must_not_be_empty() {
        let cx = Ctxt::new();
        let args = crate::parse::args(
            quote!(faults = [StorageWriteFail(0.1, after_ms = 500, until_ms = "500ms")]),
            &cx,
        );
        super::args(&args, &cx);
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            messages,
            ["`until_ms` (500) must be later than `after_ms` (500), or the fault never fires"]
        );
    }
}
