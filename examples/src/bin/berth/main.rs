//! The `berth` binary: a runc-compatible command line; everything lives in [`berth_cli`].
//!
//! It starts at C's `main`, not std's: std's runtime start installs a stack-overflow guard
//! for the main thread, for which glibc reads and parses `/proc/self/maps` (an open, three
//! reads, a `sigaltstack` and its mapping: about 0.2 ms of every command, `perf stat`). What
//! berth needs of that start is done here: stdin, stdout and stderr opened on `/dev/null`
//! where they are closed (else the first files berth opens would become them, and the
//! container's stdio); std's clean-up at exit (stdout flushed) through `process::exit`.
//! (SIGPIPE is `berth_cli::main`'s: it restores the default disposition.)
#![no_main]

/// The process' entry point (the arguments are read by `std::env::args_os`, which glibc
/// hands to std before `main`).
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    for fd in 0..3 {
        // SAFETY: fcntl(F_GETFD) on a plain fd number only reads its flags.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
        if closed {
            // SAFETY: a C string literal; the lowest free fd is `fd`, the one closed.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
    std::process::exit(berth_cli::main(std::env::args_os()));
}
