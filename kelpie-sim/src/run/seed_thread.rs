//! The OS thread a seed runs on, joined with a deadline (the wall-clock watchdog).
//!
//! Each seed needs a fresh thread, and the next seed's thread should start only after this one
//! has fully exited: glibc hands an exited thread's malloc arena to the next thread, warm; a
//! thread started while the previous one still exits gets another arena and pays page faults
//! (measured: 1.6x the time per seed of a joined loop). On Linux the caller sleeps once per
//! seed, in `pthread_timedjoin_np`, woken by the thread's exit like a plain `join`. Elsewhere,
//! the thread signals the end of its work on a channel and is then joined (two wake-ups).

use std::time::Duration;

/// A running seed thread; dropping it without a successful join detaches it.
pub(crate) struct SeedThread {
    inner: imp::Inner,
}

impl SeedThread {
    /// Spawns `work` on a new thread.
    pub(crate) fn spawn(work: impl FnOnce() + Send + 'static) -> std::io::Result<SeedThread> {
        imp::Inner::spawn(work).map(|inner| SeedThread { inner })
    }

    /// Waits until the thread has exited, at most `timeout`; `true` if it exited (it is then
    /// joined), `false` if it is still running.
    pub(crate) fn join_timeout(&mut self, timeout: Duration) -> bool {
        self.inner.join_timeout(timeout)
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::os::unix::thread::{JoinHandleExt, RawPthread};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub(super) struct Inner {
        /// Owned: joined by `join_timeout` or detached on drop, exactly once.
        pthread: Option<RawPthread>,
    }

    impl Inner {
        pub(super) fn spawn(work: impl FnOnce() + Send + 'static) -> std::io::Result<Inner> {
            let handle = std::thread::Builder::new().spawn(work)?;
            Ok(Inner {
                pthread: Some(handle.into_pthread_t()),
            })
        }

        pub(super) fn join_timeout(&mut self, timeout: Duration) -> bool {
            let Some(pthread) = self.pthread else {
                return true;
            };
            // `pthread_timedjoin_np` takes an absolute CLOCK_REALTIME deadline.
            let deadline = SystemTime::now() + timeout;
            let since = deadline.duration_since(UNIX_EPOCH).unwrap_or_default();
            let abstime = libc::timespec {
                tv_sec: since.as_secs() as libc::time_t,
                tv_nsec: since.subsec_nanos() as libc::c_long,
            };
            loop {
                // SAFETY: `pthread` is a joinable thread we own (from `into_pthread_t`), not
                // yet joined or detached: `self.pthread` is cleared once it is joined.
                let rc =
                    unsafe { libc::pthread_timedjoin_np(pthread, std::ptr::null_mut(), &abstime) };
                match rc {
                    0 => {
                        self.pthread = None;
                        return true;
                    }
                    libc::EINTR => continue,
                    // ETIMEDOUT, or a deadline already past (EINVAL is not possible: the
                    // timespec is normalised).
                    _ => return false,
                }
            }
        }
    }

    impl Drop for Inner {
        fn drop(&mut self) {
            if let Some(pthread) = self.pthread.take() {
                // SAFETY: as above; a thread left running is detached so that its resources
                // are freed when it ends.
                unsafe {
                    libc::pthread_detach(pthread);
                }
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    use std::sync::mpsc;
    use std::thread::JoinHandle;
    use std::time::Duration;

    pub(super) struct Inner {
        handle: Option<JoinHandle<()>>,
        done: mpsc::Receiver<()>,
    }

    impl Inner {
        pub(super) fn spawn(work: impl FnOnce() + Send + 'static) -> std::io::Result<Inner> {
            let (tx, done) = mpsc::sync_channel(1);
            let handle = std::thread::Builder::new().spawn(move || {
                work();
                let _ = tx.send(());
            })?;
            Ok(Inner {
                handle: Some(handle),
                done,
            })
        }

        pub(super) fn join_timeout(&mut self, timeout: Duration) -> bool {
            let Some(handle) = self.handle.take() else {
                return true;
            };
            match self.done.recv_timeout(timeout) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.handle = Some(handle);
                    false
                }
                _ => {
                    let _ = handle.join();
                    true
                }
            }
        }
    }
}
