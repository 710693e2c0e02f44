//! The fault table, from the shared vocabulary crate `kelpie-spec` (which `#[kelpie::dst_test]`
//! also reads): re-exported here so that `fault` and every public path stay as they were.

pub use kelpie_spec::faults::{
    Category, FaultInfo, FaultKind, OpKind, OptionInfo, ParamInfo, ParamKind, FAULT_OPTIONS,
    FAULT_TABLE, OP_TABLE,
};
