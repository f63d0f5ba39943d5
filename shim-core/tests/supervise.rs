//! The foreground supervisor from outside: plain `/bin/sh` children (no container) get the
//! signals forwarded, their exit status (128 + N for a signal) is reported, orphans are
//! reaped by the subreaper, and a pid that is not our child is an error, not an exit.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use berth_shim_core::Error;
use berth_shim_core::reap::{self, ExitStatus};
use berth_shim_core::signals::Signals;
use berth_shim_core::supervise::{Event, supervise};
use common::ChildGuard;
use nix::sys::signal::{Signal, kill};
use nix::unistd::getpid;

fn main() {
    common::run(&[
        ("exit_code_is_reported", exit_code_is_reported),
        ("signal_death_is_128_plus_n", signal_death_is_128_plus_n),
        ("sigterm_is_forwarded", |s| {
            forwarded(s, Signal::SIGTERM, 42)
        }),
        ("sigusr1_is_forwarded", |s| {
            forwarded(s, Signal::SIGUSR1, 43)
        }),
        (
            "orphan_is_reaped_by_the_subreaper",
            orphan_is_reaped_by_the_subreaper,
        ),
        ("not_a_child_is_an_error", not_a_child_is_an_error),
    ]);
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", script]);
    c
}

fn exit_code_is_reported(signals: &Signals) {
    let mut guard = ChildGuard::new(sh("exit 7").spawn().unwrap());
    let status = supervise(guard.pid, signals, None, |_| {}).unwrap();
    guard.disarm();
    assert_eq!(status, ExitStatus::Exited(7));
    assert_eq!(status.code(), 7);
}

fn signal_death_is_128_plus_n(signals: &Signals) {
    let mut guard = ChildGuard::new(sh("kill -KILL $$").spawn().unwrap());
    let status = supervise(guard.pid, signals, None, |_| {}).unwrap();
    guard.disarm();
    assert!(
        matches!(status, ExitStatus::Signaled { signal: 9, .. }),
        "{status:?}"
    );
    assert_eq!(status.code(), 137);
}

/// The child traps `sig` and exits with `code`; the signal is sent to the supervisor (as a
/// terminal or a `kill` would), which must pass it on.
fn forwarded(signals: &Signals, sig: Signal, code: i32) {
    let name = sig.as_str().trim_start_matches("SIG");
    // Bounded: a signal never forwarded ends the shell with 1 after about 20 s.
    let script = format!(
        "trap 'exit {code}' {name}; echo ready; i=0
         while [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done; exit 1"
    );
    let mut guard = ChildGuard::new(sh(&script).stdout(Stdio::piped()).spawn().unwrap());
    // Only once the trap is set: a signal before it would kill the shell with 128 + N.
    let mut line = String::new();
    BufReader::new(guard.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    // Blocked in this process: it stays pending on the signalfd until the supervisor reads it.
    kill(getpid(), sig).unwrap();
    let mut forwarded = Vec::new();
    let status = supervise(guard.pid, signals, None, |e| {
        if let Event::Forwarding { signal, pid } = e {
            forwarded.push((signal, pid));
        }
    })
    .unwrap();
    guard.disarm();
    assert_eq!(status, ExitStatus::Exited(code));
    assert_eq!(forwarded, vec![(sig, guard.pid)]);
}

fn orphan_is_reaped_by_the_subreaper(signals: &Signals) {
    reap::set_child_subreaper().unwrap();
    assert!(reap::is_child_subreaper().unwrap());
    // The inner shell backgrounds a sleep and exits: the sleep is re-parented to us. The init
    // prints its pid and waits (at most about 10 s) until /proc/<pid> is gone, which only our
    // reaping does; it exits 0 if so, 1 if not.
    let script = r#"o=$(sh -c 'sleep 0.01 >/dev/null 2>&1 & echo $!'); echo $o
        i=0; while [ -e /proc/$o ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
        [ ! -e /proc/$o ]"#;
    let mut guard = ChildGuard::new(sh(script).stdout(Stdio::piped()).spawn().unwrap());
    let mut reaped = Vec::new();
    let status = supervise(guard.pid, signals, None, |e| {
        if let Event::Reaped(exit) = e {
            reaped.push(exit);
        }
    })
    .unwrap();
    guard.disarm();
    let mut out = String::new();
    guard
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let orphan: i32 = out.trim().parse().unwrap();
    assert_eq!(
        status,
        ExitStatus::Exited(0),
        "the orphan {orphan} was not reaped"
    );
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0].pid, orphan);
    assert_eq!(reaped[0].status, ExitStatus::Exited(0));
}

fn not_a_child_is_an_error(signals: &Signals) {
    // pid 1 is not ours and never exits: without children left, waiting for it must fail
    // rather than report an exit.
    let err = supervise(1, signals, None, |_| {}).unwrap_err();
    assert!(matches!(err, Error::NotAChild { pid: 1 }), "{err}");
    assert!(err.to_string().contains("ECHILD"), "{err}");
}
