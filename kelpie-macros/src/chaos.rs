//! `#[kelpie::chaos_test]`: a test on the wall clock and real tokio, registered with the runner
//! apart from the deterministic tests.
//!
//! The whole pipeline of this small attribute is here: parse its arguments (`timeout = "30s"`,
//! `ignore`), check the function (an `async fn` at module level without parameters, returning
//! `()` or `Result<(), E>`), and register it as a `ChaosTest`. Its body is not checked against the
//! forbidden table: a chaos test is *meant* to use real tokio, threads and the clock. What keeps
//! the two kinds apart is the file name: the lint rejects this attribute in a `*_dst.rs` file.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::parse::Parser as _;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{ItemFn, ReturnType};

use crate::errors::Ctxt;
use crate::parse::values::parse_duration;

/// The arguments of `#[kelpie::chaos_test(..)]`.
#[derive(Default)]
struct ChaosArgs {
    /// Wall-clock limit of the test, in milliseconds.
    timeout_ms: Option<u64>,
    /// Registered but run only with `--ignored`.
    ignore: bool,
}

const USAGE: &str = "expected `timeout = \"30s\"` or `ignore`";

fn args(tokens: TokenStream, cx: &Ctxt) -> ChaosArgs {
    let mut out = ChaosArgs::default();
    let metas = match Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated.parse2(tokens) {
        Ok(metas) => metas,
        Err(error) => {
            cx.error_at(error.span(), format!("{error}: {USAGE}"));
            return out;
        }
    };
    for meta in metas {
        match &meta {
            syn::Meta::Path(path) if path.is_ident("ignore") => out.ignore = true,
            syn::Meta::NameValue(nv) if nv.path.is_ident("timeout") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(text),
                    ..
                }) => match parse_duration(&text.value()) {
                    Ok(ms) if ms > 0 => out.timeout_ms = Some(ms),
                    Ok(_) => cx.error_spanned_by(text, "`timeout` must be more than zero"),
                    Err(why) => cx.error_spanned_by(text, why),
                },
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Int(ms),
                    ..
                }) => match ms.base10_parse::<u64>() {
                    Ok(ms) if ms > 0 => out.timeout_ms = Some(ms),
                    _ => cx.error_spanned_by(ms, "`timeout` must be more than zero"),
                },
                other => cx.error_spanned_by(other, USAGE),
            },
            other => cx.error_spanned_by(other, format!("unknown argument: {USAGE}")),
        }
    }
    out
}

fn check(function: &ItemFn, cx: &Ctxt) {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(sig.fn_token, "`#[kelpie::chaos_test]` needs an `async fn`");
    }
    if !sig.inputs.is_empty() {
        cx.error_spanned_by(
            &sig.inputs,
            "a chaos test takes no arguments: it runs on real tokio, with no simulation `env`",
        );
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(&sig.generics, "a chaos test cannot be generic");
    }
}

/// Expands `#[kelpie::chaos_test(..)]` on `function`.
pub(crate) fn chaos_test(attr: TokenStream, function: ItemFn) -> TokenStream {
    let cx = Ctxt::new();
    let args = args(attr, &cx);
    check(&function, &cx);
    if let Err(error) = cx.check() {
        let error = error.to_compile_error();
        return quote! {
            #error
            #[allow(dead_code)]
            #function
        };
    }
    let name = &function.sig.ident;
    let name_str = name.unraw().to_string();
    let here = name.span();
    let module_path = quote_spanned!(here=> ::core::module_path!());
    let file = quote_spanned!(here=> ::core::file!());
    let line = quote_spanned!(here=> ::core::line!());
    let ret_span = match &function.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    let ret_span = Span::call_site().located_at(ret_span);
    let call = quote_spanned!(here=> #name());
    let result = quote_spanned!(ret_span=>
        ::kelpie::__private::IntoTestResult::into_test_result(#call.await)
    );
    let timeout = match args.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let ignore = args.ignore;
    let holder = format_ident!("__KELPIE_CHAOS_TEST_{}", name_str);
    quote! {
        #[allow(dead_code)]
        #function

        #[doc(hidden)]
        #[allow(dead_code, non_upper_case_globals)]
        const #holder: () = {
            fn __kelpie_run() -> ::kelpie::__private::ChaosFuture {
                ::std::boxed::Box::pin(async move { #result })
            }

            ::kelpie::__private::inventory::submit! {
                ::kelpie::__private::ChaosTest {
                    name: #name_str,
                    module_path: #module_path,
                    file: #file,
                    line: #line,
                    timeout_ms: #timeout,
                    ignore: #ignore,
                    run: __kelpie_run,
                }
            }
        };
    }
}
