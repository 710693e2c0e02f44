//! Typed fault injection.
//!
//! A [`FaultSpec`] declares one fault: its [`FaultKind`] (a row of the [fault table](FAULT_TABLE)),
//! a probability, its parameters and optional filters (operation kind, key prefix, node, maximum
//! trigger count, active window). At run time every declared fault gets its own random stream,
//! derived from the run's seed and the fault's name, and is *considered* at each operation of a
//! kind it applies to ([`FaultKind::ops`]); [`FaultStats`] counts how often each fault was
//! considered and how often it fired, so a test can show that its faults reached the code.
//!
//! Files: `table.rs` (the fault and operation tables), `spec.rs` (a declared fault),
//! `schedule.rs` (replaying chosen firings), `injector.rs` (the per-run decider), `stats.rs`.

mod injector;
mod schedule;
mod spec;
mod stats;
mod table;

pub use schedule::FaultSchedule;
pub use spec::{swarm_plan, FaultSpec};
pub use stats::{FaultStat, FaultStats};
pub use table::{
    Category, FaultInfo, FaultKind, OpKind, OptionInfo, ParamInfo, ParamKind, FAULT_OPTIONS,
    FAULT_TABLE, OP_TABLE,
};

pub(crate) use injector::{FaultInjector, Fired};

/// The most faults one run may declare.
pub const MAX_FAULTS: usize = 64;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn table_is_in_enum_order_and_names_round_trip() {
        for (i, info) in FAULT_TABLE.iter().enumerate() {
            assert_eq!(info.kind as usize, i, "{}", info.name);
            assert_eq!(FaultKind::from_name(info.name), Some(info.kind));
            assert!(!info.doc.is_empty());
            assert!(!info.kind.ops().is_empty());
        }
        for (name, op) in OP_TABLE {
            assert_eq!(OpKind::from_name(name), Some(*op));
            assert_eq!(
                (*op) as usize,
                OP_TABLE.iter().position(|(_, o)| o == op).unwrap()
            );
        }
    }

    #[test]
    fn validate_rejects_nonsense() {
        let bad = [
            FaultSpec::new(FaultKind::StorageWriteFail, 1.5),
            FaultSpec::new(FaultKind::StorageWriteFail, -0.1),
            FaultSpec::new(FaultKind::StorageWriteFail, f64::NAN),
            FaultSpec::new(FaultKind::StorageWriteFail, 0.1)
                .after_ms(10)
                .until_ms(10),
            FaultSpec::new(FaultKind::StorageWriteFail, 0.1).max_triggers(0),
            FaultSpec::new(FaultKind::StorageWriteFail, 0.1).with_param("max_ms", 3),
            FaultSpec::new(FaultKind::StorageWriteFail, 0.1).op(OpKind::Get),
            FaultSpec::custom("", 0.1),
        ];
        for spec in bad {
            let err = spec.validate().expect_err(&spec.to_string());
            assert!(!err.to_string().is_empty());
        }
        FaultSpec::new(FaultKind::StorageLatency, 1.0)
            .with_param("max_ms", 3)
            .validate()
            .unwrap();
    }

    #[test]
    fn decisions_of_one_fault_ignore_others() {
        let spec = FaultSpec::new(FaultKind::StorageWriteFail, 0.5);
        let run = |specs: &[FaultSpec]| {
            let mut inj = FaultInjector::new(9, specs);
            (0..200)
                .map(|_| {
                    inj.decide(OpKind::Set, "n", None, None, Duration::ZERO)
                        .iter()
                        .any(|f| f.spec.kind == FaultKind::StorageWriteFail)
                })
                .collect::<Vec<_>>()
        };
        let alone = run(std::slice::from_ref(&spec));
        let with_other = run(&[FaultSpec::new(FaultKind::DiskFull, 0.7), spec.clone()]);
        assert_eq!(alone, with_other);
    }

    #[test]
    fn filters_window_and_max() {
        let spec = FaultSpec::new(FaultKind::StorageWriteFail, 1.0)
            .key_prefix("wal/")
            .node("a")
            .after_ms(10)
            .until_ms(20)
            .max_triggers(2);
        let mut inj = FaultInjector::new(1, &[spec]);
        let t = Duration::from_millis(15);
        let mut fire = |node: &str, key: &[u8], now| {
            !inj.decide(OpKind::Set, node, Some(key), None, now)
                .is_empty()
        };
        assert!(!fire("a", b"data/1", t));
        assert!(!fire("b", b"wal/1", t));
        assert!(!fire("a", b"wal/1", Duration::from_millis(5)));
        assert!(!fire("a", b"wal/1", Duration::from_millis(20)));
        assert!(fire("a", b"wal/1", t));
        assert!(fire("a", b"wal/2", t));
        assert!(!fire("a", b"wal/3", t), "max = 2");
        assert_eq!(inj.stats().faults[0].fired, 2);
        assert_eq!(inj.stats().faults[0].considered, 2);
    }
}
