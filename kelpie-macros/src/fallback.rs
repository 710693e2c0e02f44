//! What the attribute emits on error, as thiserror's `fallback.rs` does: the compile errors plus
//! the item as written, so that one mistake doesn't cascade into "function not found" errors at
//! every call of the function, and its body's own errors are still reported.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

use crate::validate;

/// The errors, then the function unchanged (minus a reported `#[test]`-like attribute), with no
/// registration, so nothing cascades from it.
pub(crate) fn expand(mut item: ItemFn, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    // A `#[test]`-like attribute on the function was reported; expanding it on an `async fn` with
    // an argument would only add errors of its own.
    item.attrs.retain(|attr| !validate::is_test_attribute(attr));
    quote! {
        #error
        #[allow(dead_code)]
        #item
    }
}

/// The attribute is on something that is not a fn: one error at syn's parse error, then the item's
/// tokens unchanged.
pub(crate) fn not_a_function(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = syn::Error::new(
        error.span(),
        "`#[kelpie::dst_test]` applies to an `async fn name(env: kelpie::SimEnv)`",
    )
    .to_compile_error();
    quote!(#error #item)
}
