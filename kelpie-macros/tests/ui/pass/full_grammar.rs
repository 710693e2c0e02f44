//! Every key and value form of the attribute, and what the expansion registers.

use kelpie::__private::{inventory, DstTest, SeedSet};

// Names a careless expansion could collide with.
#[allow(dead_code)]
struct Box;
#[allow(dead_code)]
struct Vec;
#[allow(dead_code)]
fn __kelpie_run() {}
#[allow(dead_code)]
fn __kelpie_faults() {}

#[derive(Debug)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("broken")
    }
}

#[kelpie::dst_test(
    seeds = 0..500,
    faults = [
        StorageWriteFail(0.02),
        NetworkPartition(0.01),
        NetworkDelay(0.1, 200),
        NetworkDelay(1, max_ms = "1s"),
        StorageWriteFail(0.5, key_prefix = "wal/", max = 3, after_ms = 100, until_ms = 5000, op = "set", node = "n1"),
        Custom("LlmTimeout", 0.1),
    ],
    max_time = "60s",
    wall_timeout = "10s",
    fault_tick = 10,
    nodes = 3,
    ignore,
    should_fail,
    check_determinism,
)]
async fn everything(env: kelpie::SimEnv) -> Result<(), Broken> {
    let _ = env;
    Ok(())
}

mod inner {
    #[kelpie::dst_test(seeds = [1, 7, 42])]
    pub(crate) async fn listed(env: kelpie::SimEnv) {
        let _ = env;
    }

    #[kelpie::dst_test(seeds = 0..=9)]
    async fn r#inclusive(env: kelpie::SimEnv) {
        let _ = env;
    }
}

fn find(name: &str) -> &'static DstTest {
    inventory::iter::<DstTest>
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("`{name}` was not registered"))
}

fn main() {
    let everything = find("everything");
    assert_eq!(
        everything.line, 42,
        "the line of the `fn`, not of the attribute"
    );
    assert!(
        everything.file.ends_with("full_grammar.rs"),
        "{}",
        everything.file
    );
    assert!(matches!(
        everything.seeds,
        SeedSet::Range { start: 0, end: 500 }
    ));
    assert_eq!((everything.faults)().len(), 6);
    let o = &everything.options;
    assert_eq!(
        (o.max_time_ms, o.wall_timeout_ms, o.fault_tick_ms),
        (Some(60_000), Some(10_000), Some(10))
    );
    assert_eq!(o.nodes, 3);
    assert!(o.ignore && o.should_fail && o.check_determinism);

    let listed = find("listed");
    assert!(
        listed.module_path.ends_with("::inner"),
        "{}",
        listed.module_path
    );
    assert!(matches!(listed.seeds, SeedSet::List(&[1, 7, 42])));
    assert!((listed.faults)().is_empty());

    assert!(matches!(
        find("inclusive").seeds,
        SeedSet::Range { start: 0, end: 10 }
    ));
}
