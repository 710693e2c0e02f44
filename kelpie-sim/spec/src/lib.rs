//! The shared vocabulary of Kelpie DST: the tables that the attribute macro, the simulator, the
//! runner and the lint all read, so that a name is defined once.
//!
//! ```
//! use kelpie_spec::{closest, FaultKind, OpKind, ATTRIBUTE_KEYS, FAULT_TABLE};
//!
//! // The fault table: names, parameters and the operations each fault acts on.
//! let delay = FaultKind::from_name("NetworkDelay").unwrap();
//! assert_eq!(delay.info().params_signature(), "probability, max_ms = 100");
//! assert_eq!(delay.ops(), &[OpKind::Send]);
//!
//! // The attribute's keys, and the suggestion for a misspelled name.
//! let keys: Vec<&str> = ATTRIBUTE_KEYS.iter().map(|k| k.name).collect();
//! assert_eq!(closest("seed", &keys), Some("seeds"));
//! let faults: Vec<&str> = FAULT_TABLE.iter().map(|f| f.name).collect();
//! assert_eq!(closest("StorageWriteFial", &faults), Some("StorageWriteFail"));
//!
//! // The forbidden-API table: what a test must not call, and what to use instead.
//! let entry = kelpie_spec::forbidden::lookup(&["std", "thread", "sleep"]).unwrap();
//! assert_eq!(entry.replacement, "use `env.sleep(...)`");
//! ```
//!
//! | module | holds |
//! |--------|-------|
//! | [`faults`] | the fault table ([`FAULT_TABLE`], [`FaultKind`]), fault options, operation kinds |
//! | [`attributes`] | the keys of `#[kelpie::dst_test(...)]` ([`ATTRIBUTE_KEYS`]) |
//! | [`forbidden`] | the APIs a DST test must not use ([`FORBIDDEN`]) |
//! | `scan` | the scanner that finds [`FORBIDDEN`] uses in `syn` syntax trees (feature `syn`) |
//! | [`suggest`] | the closest-name suggestion ([`closest`]) |
//!
//! Without features the crate depends on nothing but `std`; the `syn` feature adds the scanner,
//! for the macro and the file lint.

#![forbid(unsafe_code)]

pub mod attributes;
pub mod faults;
pub mod forbidden;
#[cfg(feature = "syn")]
pub mod scan;
pub mod suggest;

pub use attributes::{AttrKey, ATTRIBUTE_KEYS};
pub use faults::{
    Category, FaultInfo, FaultKind, OpKind, OptionInfo, ParamInfo, ParamKind, FAULT_OPTIONS,
    FAULT_TABLE, OP_TABLE,
};
pub use forbidden::{Forbidden, Kind, Match, FORBIDDEN};
pub use suggest::closest;
