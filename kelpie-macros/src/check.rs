//! Validation: the test function's signature, its body (no calls that escape the simulation), and
//! the consistency of the parsed arguments. Every problem is recorded in [`Errors`], spanned at
//! the token that has to change, and checking goes on so that one compile shows them all.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;
use syn::{FnArg, ItemFn, ReturnType};

use crate::args::{Args, Value};
use crate::forbidden;

/// Collects every error of one expansion, like serde_derive's `Ctxt`; [`Errors::finish`] joins
/// them with [`syn::Error::combine`] so that rustc reports each at its own span.
#[derive(Default)]
pub(crate) struct Errors {
    errors: RefCell<Vec<syn::Error>>,
}

impl Errors {
    /// Records an error spanning `tokens`.
    pub fn spanned(&self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records an error at `span`.
    pub fn at(&self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records an error from syn's parser.
    pub fn push(&self, error: syn::Error) {
        self.errors.borrow_mut().push(error);
    }

    /// All errors as one, or `Ok` if there were none.
    pub fn finish(self) -> syn::Result<()> {
        let mut errors = self.errors.into_inner().into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            combined.combine(error);
        }
        Err(combined)
    }
}

/// The shape every `#[kelpie::dst_test]` function has, as shown in error messages.
const SHAPE: &str = "`async fn name(env: kelpie::SimEnv)`";

/// Checks the function's signature and attributes.
pub(crate) fn function(item: &ItemFn, errors: &Errors) {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            format!("`#[kelpie::dst_test]` needs an `async fn`: expected {SHAPE}"),
        );
    }
    if let Some(constness) = &sig.constness {
        errors.spanned(
            constness,
            format!("a DST test cannot be `const`: expected {SHAPE}"),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(
            unsafety,
            format!("a DST test cannot be `unsafe`: expected {SHAPE}"),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(
            abi,
            format!("a DST test cannot have an ABI: expected {SHAPE}"),
        );
    }
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            format!("a DST test cannot be generic: the runner calls it with one `kelpie::SimEnv`; expected {SHAPE}"),
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.spanned(
            where_clause,
            format!("a DST test cannot have a `where` clause: expected {SHAPE}"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(
            variadic,
            format!("a DST test cannot be variadic: expected {SHAPE}"),
        );
    }
    for input in &sig.inputs {
        if let FnArg::Receiver(receiver) = input {
            errors.spanned(
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
        errors.at(
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
        errors.spanned(
            quote::quote!(#(#extra),*),
            format!("a DST test takes exactly one argument, the simulation environment; remove the others: expected {SHAPE}"),
        );
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let syn::Type::ImplTrait(_) = &**ty {
            errors.spanned(
                ty,
                "a DST test returns `()` or `Result<(), E>` where `E: Display`, not `impl Trait`",
            );
        }
    }
    for attr in &item.attrs {
        if is_test_attribute(attr) {
            errors.spanned(
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

/// Rejects calls in the body that escape the simulation (real threads, real time, tokio's runtime),
/// using the same scanner as `kelpie-sim`'s lint.
pub(crate) fn body(item: &ItemFn, errors: &Errors) {
    for violation in forbidden::scan_block(&item.block) {
        errors.push(violation.to_error());
    }
}

/// Checks what no single value can: relations between the options of one fault.
pub(crate) fn args(args: &Args, errors: &Errors) {
    for fault in &args.faults {
        let after = fault.option("after_ms");
        let until = fault.option("until_ms");
        if let (Some(after), Some(until)) = (after, until) {
            if let (Value::Millis(a), Value::Millis(u)) = (&after.value, &until.value) {
                if a >= u {
                    errors.at(
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
        let errors = Errors::default();
        function(&item, &errors);
        match errors.finish() {
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
        let errors = Errors::default();
        body(&item, &errors);
        let messages: Vec<String> = errors
            .finish()
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
        let errors = Errors::default();
        body(&item, &errors);
        let messages: Vec<String> = errors
            .finish()
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
    fn fault_windows_must_not_be_empty() {
        let errors = Errors::default();
        let args = crate::args::parse(
            quote!(faults = [StorageWriteFail(0.1, after_ms = 500, until_ms = "500ms")]),
            &errors,
        );
        super::args(&args, &errors);
        let messages: Vec<String> = errors
            .finish()
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
