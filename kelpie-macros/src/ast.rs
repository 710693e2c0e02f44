//! The data model of a parsed `#[kelpie::dst_test(...)] async fn`: what the parser produces, the
//! validator checks and the expansion reads. Values are already converted (milliseconds, seeds,
//! operation kinds); each keeps the span it was written at, for later errors.

use proc_macro2::Span;
use syn::{Ident, ItemFn};

use kelpie_spec::{FaultInfo, OpKind, OptionInfo, ParamInfo, ParamKind};

/// One test: the attribute's arguments and the function they apply to.
pub(crate) struct Test {
    pub args: Args,
    pub function: ItemFn,
}

/// The attribute's arguments, validated and converted. Unset options are `None`: the runtime's
/// `TestOptions::DEFAULT` decides them, so defaults live in one place.
#[derive(Debug, Default)]
pub(crate) struct Args {
    pub seeds: Option<Seeds>,
    pub faults: Vec<Fault>,
    pub max_time_ms: Option<u64>,
    pub wall_timeout_ms: Option<u64>,
    pub fault_tick_ms: Option<u64>,
    pub nodes: Option<u32>,
    pub ignore: Option<bool>,
    pub should_fail: Option<bool>,
    pub check_determinism: Option<bool>,
    pub canary: Option<bool>,
    pub swarm: Option<bool>,
    pub allow_unfired: Option<bool>,
}

/// The seeds a test runs with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seeds {
    /// `start..end`, end exclusive (`a..=b` is stored as `a..b + 1`); never empty.
    Range { start: u64, end: u64 },
    /// An explicit, non-empty list without duplicates.
    List(Vec<u64>),
}

/// One entry of `faults = [...]`.
#[derive(Debug)]
pub(crate) struct Fault {
    pub info: &'static FaultInfo,
    /// The fault's name as written, for spans.
    pub name: Ident,
    /// Positional (or named) parameters that were given, in table order; omitted ones keep the
    /// table's default, which the runtime applies.
    pub params: Vec<Given<&'static ParamInfo>>,
    /// Named options that were given, in the order written.
    pub options: Vec<Given<&'static OptionInfo>>,
}

impl Fault {
    /// The value given for the option called `name`, if any.
    pub fn option(&self, name: &str) -> Option<&Given<&'static OptionInfo>> {
        self.options.iter().find(|o| o.what.name == name)
    }

    /// The value given for the positional parameter of kind `kind`, if any (the first one).
    pub fn param_of_kind(&self, kind: ParamKind) -> Option<&Given<&'static ParamInfo>> {
        self.params.iter().find(|p| p.what.kind == kind)
    }
}

/// A parameter or option value, with the expression it came from.
#[derive(Debug)]
pub(crate) struct Given<W> {
    pub what: W,
    pub value: Value,
    pub span: Span,
}

/// A converted parameter value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Probability(f64),
    Millis(u64),
    Count(u64),
    Text(String),
    Op(OpKind),
}
