//! Code generation: the registration of a checked test with the runner, or, on any error, the
//! [fallback](crate::fallback).
//!
//! The generated items name only absolute paths under `::kelpie::__private` and `::core`/`::std`.
//! They live in one hidden `const` named after the test (`__KELPIE_DST_TEST_<name>`), not in an
//! anonymous `const _`: a named `const` is also valid inside an `impl` or `trait` block, where an
//! associated fn that carries the attribute must get a kelpie error, not rustc's "`const` items in
//! this context need a name". See [`expand`] for how that error arises.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned as _;
use syn::{FnArg, ItemFn, ReturnType};

use kelpie_spec::{FaultKind, ParamKind};

use crate::ast::{Args, Fault, Seeds, Test, Value};
use crate::errors::Ctxt;
use crate::{fallback, parse, validate};

/// Parses and checks the arguments and the function, then generates the registration; on any
/// error, the [fallback](fallback::expand): the function unchanged plus every error.
pub(crate) fn dst_test(attr: TokenStream, function: ItemFn) -> TokenStream {
    let cx = Ctxt::new();
    let args = parse::args(attr, &cx);
    let test = Test { args, function };
    validate::test(&test, &cx);
    match cx.check() {
        Ok(()) => expand(&test),
        Err(error) => fallback::expand(test.function, error),
    }
}

/// The function, and its registration with the runner (`inventory::submit!` of a `DstTest`).
///
/// The registration calls the function by its bare name from a block that glob-imports the
/// enclosing module (`use self::*`). At module level that finds the user's fn. Inside an `impl` or
/// `trait` block the fn is an associated item, and inside a fn body a block item; either way the
/// module has no such name, and lookup falls through to a same-named fallback one scope further
/// out, whose bound (a trait nothing implements, with `#[diagnostic::on_unimplemented]`) fails
/// with kelpie's message at the fn's signature. At module level the fallback is shadowed and never
/// used. (A test must be at module level anyway: the runner names it by its module path, and two
/// block-level tests of one name in one module would collide.)
fn expand(test: &Test) -> TokenStream {
    let (args, item) = (&test.args, &test.function);
    let name = &item.sig.ident;
    let name_str = name.unraw().to_string();
    // The function name's own span (not merely its location): `line!()` and `file!()` report the
    // outermost macro call site, and tokens carrying the attribute's expansion context would make
    // that the attribute's line.
    let here = name.span();
    let module_path = quote_spanned!(here=> ::core::module_path!());
    let file = quote_spanned!(here=> ::core::file!());
    let line = quote_spanned!(here=> ::core::line!());

    // A wrong argument type is reported at the user's parameter type, a wrong return type at the
    // user's return type.
    let arg_span = item
        .sig
        .inputs
        .first()
        .map(|arg| match arg {
            FnArg::Typed(typed) => typed.ty.span(),
            FnArg::Receiver(receiver) => receiver.span(),
        })
        .unwrap_or_else(Span::call_site);
    let ret_span = match &item.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    let arg_span = Span::call_site().located_at(arg_span);
    let ret_span = Span::call_site().located_at(ret_span);
    let call = quote_spanned!(arg_span=> #name(env));
    let result = quote_spanned!(ret_span=>
        ::kelpie::__private::IntoTestResult::into_test_result(#call.await)
    );

    let seeds = seeds(args.seeds.as_ref());
    let faults = args.faults.iter().map(fault);
    let options = options(args);

    let holder = format_ident!("__KELPIE_DST_TEST_{}", name_str);
    let fallback_call = quote_spanned!(here=> #name);

    quote! {
        #[allow(dead_code)]
        #item

        #[doc(hidden)]
        #[allow(dead_code, non_upper_case_globals)]
        const #holder: () = {
            #[diagnostic::on_unimplemented(
                message = "`#[kelpie::dst_test]` goes on an `async fn` at module level, not on an associated fn, a method or a fn inside a block",
                label = "not a module-level fn: the runner names and calls each test by its module path",
                note = "move the test out of the `impl`, `trait` or fn body, to module level"
            )]
            trait DstTestAtModuleLevel {}

            // Reached only when the enclosing module has no fn of this name (see `expand`).
            fn #fallback_call<E: DstTestAtModuleLevel>(_: E) -> ::core::future::Ready<()> {
                ::core::future::ready(())
            }

            const _: () = {
                #[allow(unused_imports)]
                use self::*;

                fn __kelpie_run(env: ::kelpie::__private::SimEnv) -> ::kelpie::__private::TestFuture {
                    ::std::boxed::Box::pin(async move { #result })
                }

                fn __kelpie_faults() -> ::std::vec::Vec<::kelpie::__private::FaultSpec> {
                    ::std::vec![#(#faults),*]
                }

                ::kelpie::__private::inventory::submit! {
                    ::kelpie::__private::DstTest {
                        name: #name_str,
                        module_path: #module_path,
                        file: #file,
                        line: #line,
                        seeds: #seeds,
                        faults: __kelpie_faults,
                        options: #options,
                        run: __kelpie_run,
                    }
                }
            };
        };
    }
}

fn seeds(seeds: Option<&Seeds>) -> TokenStream {
    match seeds {
        None => quote!(::kelpie::__private::SeedSet::DEFAULT),
        Some(Seeds::Range { start, end }) => {
            let (start, end) = (Literal::u64_suffixed(*start), Literal::u64_suffixed(*end));
            quote!(::kelpie::__private::SeedSet::Range { start: #start, end: #end })
        }
        Some(Seeds::List(list)) => {
            let list = list.iter().map(|s| Literal::u64_suffixed(*s));
            quote!(::kelpie::__private::SeedSet::List(&[#(#list),*]))
        }
    }
}

fn options(args: &Args) -> TokenStream {
    let some_u64 = |field: &str, value: Option<u64>| {
        value.map(|v| {
            let field = format_ident!("{}", field);
            let v = Literal::u64_suffixed(v);
            quote!(#field: ::core::option::Option::Some(#v),)
        })
    };
    let flag = |field: &str, value: Option<bool>| {
        value.map(|v| {
            let field = format_ident!("{}", field);
            quote!(#field: #v,)
        })
    };
    let max_time = some_u64("max_time_ms", args.max_time_ms);
    let wall_timeout = some_u64("wall_timeout_ms", args.wall_timeout_ms);
    let fault_tick = some_u64("fault_tick_ms", args.fault_tick_ms);
    let nodes = args.nodes.map(|n| {
        let n = Literal::u32_suffixed(n);
        quote!(nodes: #n,)
    });
    let ignore = flag("ignore", args.ignore);
    let should_fail = flag("should_fail", args.should_fail);
    let check_determinism = flag("check_determinism", args.check_determinism);
    let canary = flag("canary", args.canary);
    let swarm = flag("swarm", args.swarm);
    let allow_unfired = flag("allow_unfired", args.allow_unfired);
    quote! {
        ::kelpie::__private::TestOptions {
            #max_time #wall_timeout #fault_tick #nodes #ignore #should_fail #check_determinism #canary #swarm #allow_unfired
            ..::kelpie::__private::TestOptions::DEFAULT
        }
    }
}

/// `FaultSpec::new(FaultKind::NetworkDelay, 0.1f64).with_param("max_ms", 200u64).node("n1")`.
fn fault(fault: &Fault) -> TokenStream {
    let probability = match fault
        .param_of_kind(ParamKind::Probability)
        .map(|p| &p.value)
    {
        Some(Value::Probability(p)) => Literal::f64_suffixed(*p),
        // Checked: every fault's probability is required.
        _ => Literal::f64_suffixed(0.0),
    };
    let mut spec = if fault.info.kind == FaultKind::Custom {
        let name = match fault.param_of_kind(ParamKind::Text).map(|p| &p.value) {
            Some(Value::Text(name)) => name.as_str(),
            _ => "",
        };
        quote!(::kelpie::__private::FaultSpec::custom(#name, #probability))
    } else {
        let kind = Ident::new(fault.info.name, fault.name.span());
        quote!(::kelpie::__private::FaultSpec::new(::kelpie::__private::FaultKind::#kind, #probability))
    };
    for param in &fault.params {
        match &param.value {
            Value::Millis(v) | Value::Count(v) => {
                let (name, v) = (param.what.name, Literal::u64_suffixed(*v));
                spec.extend(quote!(.with_param(#name, #v)));
            }
            // The probability and a custom fault's name are arguments of the constructor.
            Value::Probability(_) | Value::Text(_) | Value::Op(_) => {}
        }
    }
    for option in &fault.options {
        // Builder methods are named after the options, except `max`, which reads better in the
        // attribute than in code.
        let method = match option.what.name {
            "max" => "max_triggers",
            other => other,
        };
        let method = Ident::new(method, option.span);
        let value = match &option.value {
            Value::Millis(v) | Value::Count(v) => {
                let v = Literal::u64_suffixed(*v);
                quote!(#v)
            }
            Value::Text(text) => quote!(#text),
            Value::Op(op) => {
                let variant = Ident::new(&format!("{op:?}"), option.span);
                quote!(::kelpie::__private::OpKind::#variant)
            }
            Value::Probability(p) => {
                let p = Literal::f64_suffixed(*p);
                quote!(#p)
            }
        };
        spec.extend(quote!(.#method(#value)));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn expand_str(attr: TokenStream, item: ItemFn) -> String {
        dst_test(attr, item).to_string()
    }

    #[test]
    fn registers_the_test_with_defaults() {
        let out = expand_str(
            quote!(),
            parse_quote!(
                async fn leases(env: kelpie::SimEnv) {}
            ),
        );
        assert!(
            out.starts_with("# [allow (dead_code)] async fn leases"),
            "{out}"
        );
        assert!(
            out.contains("const __KELPIE_DST_TEST_leases : () = {"),
            "{out}"
        );
        assert!(
            out.contains("const _ : () = { # [allow (unused_imports)] use self :: * ;"),
            "{out}"
        );
        assert!(out.contains(":: kelpie :: __private :: IntoTestResult :: into_test_result (leases (env) . await)"), "{out}");
        assert!(out.contains(":: std :: vec ! []"), "{out}");
        assert!(out.contains("name : \"leases\""), "{out}");
        assert!(
            out.contains("seeds : :: kelpie :: __private :: SeedSet :: DEFAULT"),
            "{out}"
        );
        assert!(out.contains("options : :: kelpie :: __private :: TestOptions { .. :: kelpie :: __private :: TestOptions :: DEFAULT }"), "{out}");
        assert!(out.contains("line : :: core :: line ! ()"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn raw_identifiers_are_named_without_the_prefix() {
        let out = expand_str(
            quote!(),
            parse_quote!(
                async fn r#match(env: kelpie::SimEnv) {}
            ),
        );
        assert!(out.contains("name : \"match\""), "{out}");
        assert!(out.contains("r#match (env)"), "{out}");
    }

    #[test]
    fn seeds_options_and_faults() {
        let out = expand_str(
            quote!(
                seeds = [1, 7],
                nodes = 3,
                max_time = "2m",
                ignore,
                faults = [
                    NetworkDelay(0.1, 200),
                    StorageWriteFail(0.5, key_prefix = "wal/", max = 3, op = "set", until_ms = 10),
                    Custom("LlmTimeout", 1),
                ]
            ),
            parse_quote!(
                async fn t(env: kelpie::SimEnv) -> Result<(), String> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains("SeedSet :: List (& [1u64 , 7u64])"), "{out}");
        assert!(out.contains("max_time_ms : :: core :: option :: Option :: Some (120000u64) , nodes : 3u32 , ignore : true , .."), "{out}");
        assert!(out.contains(
            ":: kelpie :: __private :: FaultSpec :: new (:: kelpie :: __private :: FaultKind :: NetworkDelay , 0.1f64) . with_param (\"max_ms\" , 200u64)"
        ), "{out}");
        assert!(out.contains(
            "FaultKind :: StorageWriteFail , 0.5f64) . key_prefix (\"wal/\") . max_triggers (3u64) . op (:: kelpie :: __private :: OpKind :: Set) . until_ms (10u64)"
        ), "{out}");
        assert!(
            out.contains(":: kelpie :: __private :: FaultSpec :: custom (\"LlmTimeout\" , 1f64)"),
            "{out}"
        );
        let range = expand_str(
            quote!(seeds = 0..=9),
            parse_quote!(
                async fn t(env: E) {}
            ),
        );
        assert!(
            range.contains("SeedSet :: Range { start : 0u64 , end : 10u64 }"),
            "{range}"
        );
    }

    #[test]
    fn on_error_emits_the_function_and_the_errors_only() {
        let out = expand_str(
            quote!(seeds = 5..5, faults = [Nope(0.1)]),
            parse_quote!(
                fn t(env: kelpie::SimEnv) {
                    std::thread::spawn(|| {});
                }
            ),
        );
        assert_eq!(out.matches("compile_error").count(), 4, "{out}");
        assert!(
            out.contains("# [allow (dead_code)] fn t (env : kelpie :: SimEnv)"),
            "{out}"
        );
        assert!(!out.contains("inventory"), "{out}");
        assert!(!out.contains("const _"), "{out}");
        assert!(!out.contains("__KELPIE_DST_TEST"), "{out}");
    }
}
