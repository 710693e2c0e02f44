//! Code generation. The generated items name only absolute paths under `::kelpie::__private` and
//! `::core`/`::std`, and live inside `const _: () = { ... };` so that they add no names to the
//! user's module.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned as _;
use syn::{FnArg, ItemFn, ReturnType};

use crate::args::{self, Args, Fault, Seeds, Value};
use crate::check::{self, Errors};
use crate::table::{FaultKind, ParamKind};

/// Parses and checks the arguments and the function, then generates the registration; on any
/// error, emits the function unchanged plus one `compile_error!` per mistake.
pub(crate) fn dst_test(attr: TokenStream, item: ItemFn) -> TokenStream {
    let errors = Errors::default();
    let args = args::parse(attr, &errors);
    check::args(&args, &errors);
    check::function(&item, &errors);
    check::body(&item, &errors);
    match errors.finish() {
        Ok(()) => expand(&args, &item),
        Err(error) => fallback(&item, error),
    }
}

/// The function as written, so that code calling it or its own body's type errors are still
/// reported normally, plus the compile errors; no registration, so nothing cascades from it.
pub(crate) fn fallback(item: &ItemFn, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote! {
        #error
        #[allow(dead_code)]
        #item
    }
}

fn expand(args: &Args, item: &ItemFn) -> TokenStream {
    let name = &item.sig.ident;
    let name_str = name.unraw().to_string();
    // Spanned at the function's name, so that `line!()` gives the line of the `fn`, not of the
    // attribute.
    let here = Span::call_site().located_at(name.span());
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

    quote! {
        #[allow(dead_code)]
        #item

        const _: () = {
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
    quote! {
        ::kelpie::__private::TestOptions {
            #max_time #wall_timeout #fault_tick #nodes #ignore #should_fail #check_determinism
            ..::kelpie::__private::TestOptions::DEFAULT
        }
    }
}

/// `FaultSpec::new(FaultKind::NetworkDelay, 0.1f64).with_param("max_ms", 200u64).node("n1")`.
fn fault(fault: &Fault) -> TokenStream {
    let probability = match fault.param_of_kind(ParamKind::Probability).map(|p| &p.value) {
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
