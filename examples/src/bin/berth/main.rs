//! The `berth` binary: a runc-compatible command line; everything lives in [`berth_cli`].
//!
//! It starts at C's `main`, not std's: std's runtime start installs a stack-overflow guard
//! for the main thread, for which glibc reads and parses `/proc/self/maps` (an open, three
//! reads, a `sigaltstack` and its mapping: tens of µs of every command, `benches/`). What
//! berth needs of that start is done here: `SIGPIPE` ignored (a closed pipe is an `EPIPE`
//! error, not a death), and std's clean-up (stdout flushed) through `process::exit`.
#![no_main]

/// The process' entry point (the arguments are read by `std::env::args_os`, which glibc
/// hands to std before `main`).
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: setting a signal's disposition to SIG_IGN, before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    std::process::exit(berth_cli::main(std::env::args_os()));
}
