//! Makes getrandom 0.2 (and through it rand 0.8's `thread_rng`, `random` and `OsRng`)
//! deterministic in a simulation, as getrandom 0.3/0.4 already are.
//!
//! madsim replaces libc's `getrandom` function with one that draws from its seeded stream
//! inside a simulation. getrandom 0.3/0.4 call that function; getrandom 0.2 on Linux calls
//! `syscall(SYS_getrandom, ..)` instead, which reached the kernel: two runs of one seed drew
//! different bytes. This module defines libc's `syscall` the way madsim defines `getrandom`
//! (same technique, same limits): `SYS_getrandom` goes to the `getrandom` function, so it
//! draws from madsim's stream inside a simulation and from the kernel outside one; every other
//! system call number goes to the C library's own `syscall`, unchanged.
//!
//! Only in simulation builds (`--cfg madsim`) on Linux with glibc, the platform madsim's
//! override itself supports; `tests/os_random.rs` proves it per seed.

use std::sync::atomic::{AtomicPtr, Ordering};

use libc::{c_long, c_void};

/// The C library's `syscall`, looked up once (no lock, no allocation: `syscall` is called by
/// std's thread parking, so this must not itself park).
static REAL_SYSCALL: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

type RealSyscall = unsafe extern "C" fn(c_long, ...) -> c_long;

fn real_syscall() -> RealSyscall {
    let mut ptr = REAL_SYSCALL.load(Ordering::Acquire);
    if ptr.is_null() {
        // SAFETY: a NUL-terminated name; RTLD_NEXT finds the definition after ours (libc's).
        ptr = unsafe { libc::dlsym(libc::RTLD_NEXT, c"syscall".as_ptr()) };
        assert!(!ptr.is_null(), "kelpie-sim: libc's `syscall` not found");
        REAL_SYSCALL.store(ptr, Ordering::Release);
    }
    // SAFETY: `ptr` is libc's `syscall`, whose C signature is `long syscall(long, ...)`.
    unsafe { std::mem::transmute::<*mut c_void, RealSyscall>(ptr) }
}

/// libc's `syscall(number, ...)`: `SYS_getrandom` goes to `getrandom` (madsim's seeded one in a
/// simulation), anything else to the C library. Declared with six fixed arguments, as a
/// variadic C function's integer arguments are passed on the targets madsim supports (x86-64
/// and AArch64 Linux); the C library reads only those the call number uses.
///
/// # Safety
///
/// As for the C function: the arguments must be valid for the system call `num`.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn syscall(
    num: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    if num == libc::SYS_getrandom {
        // SAFETY: the caller's buffer and length, as the system call would have taken them.
        return unsafe { libc::getrandom(a1 as *mut c_void, a2 as usize, a3 as libc::c_uint) }
            as c_long;
    }
    // SAFETY: forwarded unchanged to the function the caller meant to call.
    unsafe { real_syscall()(num, a1, a2, a3, a4, a5, a6) }
}
