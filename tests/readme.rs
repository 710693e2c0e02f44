//! The README's fault and environment tables are derived from the code's tables; this test
//! fails (and prints the current tables) when they drift apart.

use kelpie::faults::{FAULT_OPTIONS, FAULT_TABLE};

fn fault_table() -> String {
    let mut out = String::from("| fault | parameters | what it does |\n|---|---|---|\n");
    for f in FAULT_TABLE {
        out += &format!(
            "| `{}` | {} | {} |\n",
            f.name,
            f.params_signature(),
            f.doc.trim()
        );
    }
    out +=
        "\nOptions every fault accepts after its parameters:\n\n| option | meaning |\n|---|---|\n";
    for o in FAULT_OPTIONS {
        out += &format!("| `{}` | {} |\n", o.name, o.doc);
    }
    out
}

fn attribute_table() -> String {
    let mut out = String::from("| key | value | meaning |\n|---|---|---|\n");
    for k in kelpie::harness::ATTRIBUTE_KEYS {
        out += &format!("| `{}` | `{}` | {} |\n", k.name, k.value, k.doc);
    }
    out
}

fn env_table() -> String {
    let mut out = String::from("| variable | form | effect |\n|---|---|---|\n");
    for v in kelpie::harness::ENV_VARS {
        out += &format!("| `{}` | {} | {} |\n", v.name, v.expected, v.doc);
    }
    out
}

#[test]
fn readme_tables_match_the_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let tables = [
        ("attribute", attribute_table()),
        ("fault", fault_table()),
        ("environment", env_table()),
    ];
    for (what, table) in tables {
        assert!(
            readme.contains(&table),
            "README.md's {what} table is out of date; replace it with:\n\n{table}"
        );
    }
}
