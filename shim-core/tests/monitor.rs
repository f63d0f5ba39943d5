//! The exit monitor from outside: thousands of short-lived processes started from several
//! threads at once, each exit reported to its one watcher with its real status; orphans
//! kept for `claim`; a pid that is not our child refused; one watcher per pid.
//!
//! A plain `main` (harness = false): `Monitor::start` must block `SIGCHLD` before any other
//! thread of the process exists.
//!
//! The children are spawned with `std::process::Command` and never `wait()`ed: the monitor
//! is their one waiter (a `wait()` here would race it for the status).
#![allow(clippy::zombie_processes)]

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_shim_core::Error;
use berth_shim_core::monitor::{Monitor, Reaped};
use berth_shim_core::reap::ExitStatus;

fn main() {
    let monitor = Monitor::start().expect("start the monitor");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    type Test = (&'static str, fn(&Monitor));
    let tests: [Test; 4] = [
        (
            "no_exit_is_lost_among_thousands",
            no_exit_is_lost_among_thousands,
        ),
        ("orphans_are_kept_for_claim", orphans_are_kept_for_claim),
        ("not_a_child_is_an_error", not_a_child_is_an_error),
        ("one_watcher_per_pid", one_watcher_per_pid),
    ];
    let mut failed = 0;
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&monitor))) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("\ntest result: {} failed", failed);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// What each process is told to do, and the status that must come back.
fn plan(i: usize) -> (String, ExitStatus) {
    match i % 4 {
        // exec straight into a program that exits with a code
        0 => (
            format!("exit {}", i % 200),
            ExitStatus::Exited((i % 200) as i32),
        ),
        // killed by a signal
        1 => (
            "kill -TERM $$".into(),
            ExitStatus::Signaled {
                signal: 15,
                core: false,
            },
        ),
        // a child of its own (reparented if it outlives the shell), then a code
        2 => ("/bin/true & exit 7".into(), ExitStatus::Exited(7)),
        // exec another program
        _ => ("exec /bin/false".into(), ExitStatus::Exited(1)),
    }
}

fn no_exit_is_lost_among_thousands(monitor: &Monitor) {
    let n: usize = std::env::var("MONITOR_PROCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let threads = 4;
    let (tx, rx) = mpsc::channel::<(usize, i32, Reaped)>();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let tx = tx.clone();
            s.spawn(move || {
                for i in (t..n).step_by(threads) {
                    let (script, _) = plan(i);
                    let spawning = monitor.spawning();
                    let child = Command::new("/bin/sh")
                        .args(["-c", &script])
                        .spawn()
                        .expect("spawn sh");
                    let pid = child.id() as i32;
                    let tx = tx.clone();
                    spawning
                        .watch(pid, move |r| {
                            let _ = tx.send((i, pid, r));
                        })
                        .expect("watch");
                }
            });
        }
    });
    drop(tx);
    let mut seen = vec![false; n];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got = 0;
    while got < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, pid, r) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {got} of {n} exits arrived"));
        assert_eq!(r.exit.pid, pid, "process {i}: an exit of another pid");
        assert!(!seen[i], "process {i}: two exits");
        seen[i] = true;
        assert_eq!(r.exit.status, plan(i).1, "process {i} (pid {pid})");
        got += 1;
    }
    assert_eq!(monitor.watched(), 0, "watchers left behind");
    println!(
        "  {n} processes from {threads} threads, every status right, in {:?}",
        started.elapsed()
    );
}

fn orphans_are_kept_for_claim(monitor: &Monitor) {
    let (tx, rx) = mpsc::channel();
    let spawning = monitor.spawning();
    // The grandchild outlives its parent: it is re-parented to us (the subreaper).
    let child = Command::new("/bin/sh")
        .args(["-c", "sh -c 'sleep 0.2; exit 9' & echo $!"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sh");
    spawning
        .watch(child.id() as i32, move |r| {
            let _ = tx.send(r);
        })
        .expect("watch");
    drop(spawning);
    let out = child.wait_with_output_nowait();
    let grandchild: i32 = out.trim().parse().expect("grandchild pid");
    assert_eq!(
        rx.recv().expect("the parent's exit").exit.status,
        ExitStatus::Exited(0)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let orphan = loop {
        if let Some(r) = monitor.claim(grandchild) {
            break r;
        }
        assert!(Instant::now() < deadline, "the orphan's exit was not kept");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(orphan.exit.status, ExitStatus::Exited(9));
    assert!(monitor.claim(grandchild).is_none(), "claimed twice");
}

fn not_a_child_is_an_error(monitor: &Monitor) {
    let spawning = monitor.spawning();
    match spawning.watch(1, |_| {}) {
        Err(Error::NotAChild { pid: 1 }) => {}
        other => panic!("watch(1): {other:?}"),
    }
}

fn one_watcher_per_pid(monitor: &Monitor) {
    let (tx, rx) = mpsc::channel();
    let spawning = monitor.spawning();
    let child = Command::new("/bin/sh")
        .args(["-c", "exit 4"])
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as i32;
    spawning
        .watch(pid, move |r| {
            let _ = tx.send(r);
        })
        .expect("first watch");
    match spawning.watch(pid, |_| {}) {
        Err(Error::AlreadyWatched { pid: p }) if p == pid => {}
        other => panic!("second watch: {other:?}"),
    }
    drop(spawning);
    assert_eq!(rx.recv().expect("exit").exit.status, ExitStatus::Exited(4));
}

/// Reads a child's piped stdout to EOF without waiting for it (the monitor reaps it).
trait ReadOut {
    fn wait_with_output_nowait(self) -> String;
}

impl ReadOut for std::process::Child {
    fn wait_with_output_nowait(mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut out) = self.stdout.take() {
            let _ = out.read_to_string(&mut s);
        }
        s
    }
}
