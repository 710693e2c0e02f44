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
        errors.spanned(
            &sig.fn_token,
            format!("`#[kelpie::dst_test]` needs an `async fn`: expected {SHAPE}"),
        );
    }
    if let Some(constness) = &sig.constness {
        errors.spanned(constness, format!("a DST test cannot be `const`: expected {SHAPE}"));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(unsafety, format!("a DST test cannot be `unsafe`: expected {SHAPE}"));
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, format!("a DST test cannot have an ABI: expected {SHAPE}"));
    }
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            format!("a DST test cannot be generic: the runner calls it with one `kelpie::SimEnv`; expected {SHAPE}"),
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.spanned(where_clause, format!("a DST test cannot have a `where` clause: expected {SHAPE}"));
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, format!("a DST test cannot be variadic: expected {SHAPE}"));
    }
    for input in &sig.inputs {
        if let FnArg::Receiver(receiver) = input {
            errors.spanned(
                receiver,
                format!("a DST test is a free function, not a method: remove `self`; expected {SHAPE}"),
            );
        }
    }
    let typed = sig.inputs.iter().filter(|i| matches!(i, FnArg::Typed(_))).count();
    let receivers = sig.inputs.len() - typed;
    if typed == 0 && receivers == 0 {
        errors.at(
            sig.paren_token.span.join(),
            format!("a DST test takes exactly one argument, the simulation environment: expected {SHAPE}"),
        );
    } else if typed > 1 {
        let extra: Vec<&FnArg> = sig.inputs.iter().filter(|i| matches!(i, FnArg::Typed(_))).skip(1).collect();
        errors.spanned(
            quote::quote!(#(#extra),*),
            format!("a DST test takes exactly one argument, the simulation environment; remove the others: expected {SHAPE}"),
        );
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let syn::Type::ImplTrait(_) = &**ty {
            errors.spanned(ty, "a DST test returns `()` or `Result<(), E>` where `E: Display`, not `impl Trait`");
        }
    }
    for attr in &item.attrs {
        let path = attr.path();
        let is_test = path.segments.last().is_some_and(|s| s.ident == "test");
        if is_test {
            errors.spanned(
                attr,
                "remove this attribute: `#[kelpie::dst_test]` registers the test with the DST runner itself",
            );
        }
    }
}

/// Rejects calls in the body that escape the simulation (real threads, real time, tokio's runtime),
/// using the same scanner as `kelpie-sim`'s lint.
pub(crate) fn body(item: &ItemFn, errors: &Errors) {
    for violation in forbidden::scan_block(&item.block) {
        errors.at(violation.span, violation.message);
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
