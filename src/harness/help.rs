//! The `KELPIE_HELP=1` text, derived from the environment table and the fault table.

use std::fmt::Write as _;

use crate::harness::attributes::ATTRIBUTE_KEYS;
use crate::harness::env::ENV_VARS;
use kelpie_sim::{FAULT_OPTIONS, FAULT_TABLE};

fn one_line(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The help text: environment variables, command line, attribute keys, faults.
pub(crate) fn help_text() -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "Kelpie DST harness: one trial per (test, seed), named <module>::<test>::seed_<N>."
    );
    let _ = writeln!(
        h,
        "\nEnvironment variables (an empty value counts as unset):"
    );
    for var in ENV_VARS {
        let _ = writeln!(h, "  {:<26} {}", var.name, var.doc);
        let _ = writeln!(h, "  {:<26} value: {}", "", var.expected);
    }
    let _ = writeln!(
        h,
        "\nCommand line (after `--`): a name filter, --exact, --skip <filter>, --list, --ignored,\n  \
         --include-ignored, --test-threads <n>, and the other libtest flags (see --help)."
    );
    let _ = writeln!(h, "\nAttribute #[kelpie::dst_test(key = value, ...)]:");
    for key in ATTRIBUTE_KEYS {
        let _ = writeln!(h, "  {:<18} {:<30} {}", key.name, key.value, key.doc);
    }
    let _ = writeln!(h, "\nFaults, faults = [Name(parameters, options), ...]:");
    let signatures: Vec<String> = FAULT_TABLE
        .iter()
        .map(|info| format!("{}({})", info.name, info.params_signature()))
        .collect();
    let width = signatures.iter().map(String::len).max().unwrap_or(0);
    for (info, signature) in FAULT_TABLE.iter().zip(&signatures) {
        let _ = writeln!(h, "  {signature:<width$} {}", one_line(info.doc));
    }
    let _ = writeln!(
        h,
        "\nFault options, after a fault's parameters (e.g. `max = 3`):"
    );
    for option in FAULT_OPTIONS {
        let _ = writeln!(h, "  {:<18} {}", option.name, option.doc);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_variable_fault_and_option() {
        let help = help_text();
        for var in ENV_VARS {
            assert!(
                help.contains(var.name) && help.contains(var.expected),
                "{}",
                var.name
            );
        }
        for info in FAULT_TABLE {
            assert!(help.contains(&format!("  {}(", info.name)), "{}", info.name);
        }
        for option in FAULT_OPTIONS {
            assert!(help.contains(option.doc), "{}", option.name);
        }
        assert!(
            help.contains("NetworkDelay(probability, max_ms = 100)"),
            "{help}"
        );
    }
}
