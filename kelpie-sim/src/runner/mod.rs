//! The `dst_harness` runner: registered tests, trials, reporting.

mod registry;

pub use registry::{registered, DstTest, IntoTestResult, SeedSet, TestFuture, TestOptions};

#[doc(hidden)]
pub use inventory;
