//! Panics on seed threads: captured by our hook (message and location) instead of printed,
//! and caught around the test body's polls.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

thread_local! {
    /// The last panic on this seed thread: message and location, captured by our hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Whether this thread runs a seed (its panics are captured, not printed).
    static ON_SEED_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as a seed thread: its panics are captured from now on.
pub(super) fn mark_seed_thread() {
    ON_SEED_THREAD.set(true);
}

/// The last panic captured on this thread, if any (taken).
pub(super) fn take_last() -> Option<String> {
    LAST_PANIC.with(|p| p.borrow_mut().take())
}

/// Installs (once) a panic hook that captures panics of seed threads instead of printing them;
/// the runner reports them with the seed and the repro command. Other threads are unaffected.
pub(super) fn install_hook() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_seed_thread = ON_SEED_THREAD.get();
            if !on_seed_thread {
                return previous(info);
            }
            let message = message(info.payload());
            let text = match info.location() {
                Some(l) => format!("{message} (at {}:{}:{})", l.file(), l.line(), l.column()),
                None => message,
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        }));
    });
}

/// A panic payload's message.
pub(super) fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Polls a future, turning a panic during a poll into `Err(payload)`.
pub(super) struct CatchUnwind<F>(pub(super) Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}
