//! TEMPORARY stub of kelpie-sim/src/lint/forbidden.rs, with its announced API.
use proc_macro2::Span;

/// A forbidden call.
pub struct Violation {
    /// Where.
    pub span: Span,
    /// The called path.
    pub path: String,
    /// What to do instead.
    pub message: String,
}

/// Scans a block.
pub fn scan_block(block: &syn::Block) -> Vec<Violation> {
    use syn::visit::Visit;
    struct V(Vec<Violation>);
    impl<'a> Visit<'a> for V {
        fn visit_expr_call(&mut self, call: &'a syn::ExprCall) {
            if let syn::Expr::Path(p) = &*call.func {
                let s: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
                let s = s.join("::");
                if s == "tokio::spawn" || s == "std::thread::spawn" {
                    self.0.push(Violation { span: syn::spanned::Spanned::span(&call.func), path: s.clone(), message: format!("`{s}` escapes the simulation") });
                }
            }
            syn::visit::visit_expr_call(self, call);
        }
    }
    let mut v = V(Vec::new());
    v.visit_block(block);
    v.0
}
