//! Which trials are running right now, for two reports: a note when a seed overruns (before its
//! wall-clock watchdog fires), and the early-exit guard, which turns a process that ends before
//! the harness's summary (`std::process::exit` in test code) into a failing exit status naming
//! the trials that were running.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Running trials: name → (start, wall-clock limit, overrun already noted).
static RUNNING: Mutex<BTreeMap<String, (Instant, Duration, bool)>> = Mutex::new(BTreeMap::new());
/// Set once the harness has printed its summary: an exit after that is the normal one.
static FINISHED: AtomicBool = AtomicBool::new(false);

/// A seed that has run this long without finishing gets a note on stderr.
pub(crate) const OVERRUN_NOTE_AFTER: Duration = Duration::from_secs(10);

/// Marks a trial as running until the returned guard is dropped.
pub(crate) fn enter(name: &str, wall_limit: Duration) -> Running {
    lock().insert(name.to_string(), (Instant::now(), wall_limit, false));
    Running(name.to_string())
}

/// A running trial; dropping it (also by unwinding) marks it finished.
pub(crate) struct Running(String);

impl Drop for Running {
    fn drop(&mut self) {
        lock().remove(&self.0);
    }
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<String, (Instant, Duration, bool)>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// One note per trial that has run longer than [`OVERRUN_NOTE_AFTER`] since the last call:
/// `kelpie: <trial> still running after 10s (its wall-clock watchdog fires at 60s)`.
pub(crate) fn overrun_notes() -> Vec<String> {
    let mut running = lock();
    let mut notes = Vec::new();
    for (name, (started, limit, noted)) in running.iter_mut() {
        let elapsed = started.elapsed();
        if !*noted && elapsed >= OVERRUN_NOTE_AFTER {
            *noted = true;
            notes.push(format!(
                "kelpie: {name} still running after {}s (its wall-clock watchdog fires at {}s)",
                elapsed.as_secs(),
                limit.as_secs()
            ));
        }
    }
    notes
}

/// The names of the trials running now.
fn names() -> Vec<String> {
    match RUNNING.try_lock() {
        Ok(running) => running.keys().cloned().collect(),
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().keys().cloned().collect(),
        // Another thread holds the lock while the process exits: say so rather than wait.
        Err(std::sync::TryLockError::WouldBlock) => vec!["(unknown: the list was busy)".into()],
    }
}

/// The message of an early exit.
fn early_exit_message(running: &[String]) -> String {
    let which = if running.is_empty() {
        "no trial was running (the exit came from outside a trial)".to_string()
    } else {
        format!("running: {}", running.join(", "))
    };
    format!(
        "error: the test process exited before the kelpie harness finished (was \
         `std::process::exit` called in test code? return an error or panic instead); {which}; \
         the run is failed with exit code 101"
    )
}

/// Installs the early-exit guard (once per process). Until [`finish`] is called, an exit of
/// the process prints which trials were running and ends it with exit code 101 instead of the
/// status the code exited with (0 would read as a pass).
pub(crate) fn guard_early_exit() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(install);
}

/// The harness finished and printed its summary: the process may exit as it likes.
pub(crate) fn finish() {
    FINISHED.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn install() {
    extern "C" fn on_exit() {
        if FINISHED.load(Ordering::SeqCst) {
            return;
        }
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{}", early_exit_message(&names()));
        // SAFETY: `_exit` ends the process at once without running further exit handlers; it is
        // async-signal-safe and may be called from an `atexit` handler (unlike `exit`).
        unsafe { libc::_exit(101) }
    }
    // SAFETY: `on_exit` is an `extern "C" fn()` that lives for the whole process and does not
    // unwind (it only writes to stderr and calls `_exit`).
    let registered = unsafe { libc::atexit(on_exit) };
    if registered != 0 {
        eprintln!("warning: kelpie could not install its early-exit guard (atexit failed)");
    }
}

#[cfg(not(unix))]
fn install() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_trials_are_listed_until_their_guard_drops() {
        let guard = enter("t::seed_1", Duration::from_secs(60));
        assert!(names().contains(&"t::seed_1".to_string()));
        drop(guard);
        assert!(!names().contains(&"t::seed_1".to_string()));
    }

    #[test]
    fn an_overrun_is_noted_once() {
        let _guard = enter("slow::seed_2", Duration::from_secs(60));
        lock().get_mut("slow::seed_2").unwrap().0 -= OVERRUN_NOTE_AFTER;
        let notes = overrun_notes();
        let mine: Vec<_> = notes
            .iter()
            .filter(|n| n.contains("slow::seed_2"))
            .collect();
        assert_eq!(mine.len(), 1);
        assert!(mine[0].contains("still running after 10s (its wall-clock watchdog fires at 60s)"));
        assert!(overrun_notes().iter().all(|n| !n.contains("slow::seed_2")));
    }

    #[test]
    fn the_early_exit_message_names_the_running_trials() {
        let m = early_exit_message(&["a::seed_1".into(), "b::seed_2".into()]);
        assert!(m.contains("running: a::seed_1, b::seed_2"), "{m}");
        assert!(m.contains("std::process::exit"), "{m}");
    }
}
