//! `create` from many threads at once while other threads hammer the allocator and stdio:
//! the fragile-child code between clone and exec must never need a lock another thread may
//! have held at the moment of the clone, and containers created concurrently must not get in
//! each other's way.
//!
//! A deadlock shows up as a hang: no container gets done for a while. The watchdog measures
//! the time since the last container got done, not since the test began (on a slow or busy
//! machine the 40 containers may take longer than the limit without any of them being
//! stuck). It first SIGKILLs every container init of the test (which turns the hang into a
//! failure and leaves no orphan behind), and aborts the whole process if even that does not
//! end it within 120 s. Hence a test binary of its own, whose
//! tests run one at a time (so that a failure of one can't be caused by the other).

mod common;
mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_runtime_core::oci_spec::runtime::{Hook, Hooks};
use common::{Bundle, TempDir, busybox};
use support::*;

const THREADS: usize = 8;
const PER_THREAD: usize = 5;
/// How long without progress before the watchdog kills the containers (the test then fails).
const GIVE_UP: Duration = Duration::from_secs(30);
/// How long without progress before the watchdog aborts the process.
const ABORT: Duration = Duration::from_secs(120);

/// Runs `f` with a watchdog over `h`: see the module doc. `f` adds one to `progress` each
/// time a container got done; the watchdog's limits count from the last such step. True if
/// the watchdog had to kill.
fn watched<R>(h: &Harness, progress: &AtomicUsize, f: impl FnOnce() -> R) -> (R, bool) {
    let finished = AtomicBool::new(false);
    let killed = AtomicBool::new(false);
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            let mut seen = progress.load(Ordering::SeqCst);
            let mut since = Instant::now();
            while !finished.load(Ordering::SeqCst) {
                let now = progress.load(Ordering::SeqCst);
                if now != seen {
                    seen = now;
                    since = Instant::now();
                }
                let t = since.elapsed();
                if t > ABORT {
                    eprintln!("concurrency test: no progress for {ABORT:?}: aborting");
                    h.kill_all();
                    std::process::abort();
                }
                if t > GIVE_UP && !killed.swap(true, Ordering::SeqCst) {
                    eprintln!(
                        "concurrency test: no progress for {GIVE_UP:?} ({seen} done): killing the containers"
                    );
                    h.kill_all();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let r = f();
        finished.store(true, Ordering::SeqCst);
        r
    });
    (r, killed.load(Ordering::SeqCst))
}

#[test]
fn parallel_creates_under_allocator_pressure() {
    // One bundle per worker; config.json is rewritten before each create.
    let bundles: Vec<Bundle> = (0..THREADS).map(|_| Bundle::new()).collect();
    let h = Harness::exclusive();
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);

    let (results, killed) = watched(&h, &done, || {
        std::thread::scope(|s| {
            // Allocator hammer: many sizes, so several arenas and size classes are busy.
            for t in 0..2usize {
                let stop = &stop;
                s.spawn(move || {
                    let mut keep: Vec<Vec<u8>> = Vec::new();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let size = 1 + (i * 7919 + t * 31) % 65_536;
                        keep.push(vec![i as u8; size]);
                        if keep.len() > 64 {
                            keep.drain(..32);
                        }
                        std::hint::black_box(format!("{i}-{size}"));
                        i = i.wrapping_add(1);
                    }
                });
            }
            // Stdio hammer: takes the stderr lock all the time.
            {
                let stop = &stop;
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut e = std::io::stderr().lock();
                        let _ = e.write_all(b"");
                        drop(e);
                    }
                });
            }
            let workers: Vec<_> = bundles
                .into_iter()
                .enumerate()
                .map(|(t, mut bundle)| {
                    let (h, done) = (&h, &done);
                    s.spawn(move || {
                        let mut codes = Vec::new();
                        for k in 0..PER_THREAD {
                            let n = 1 + t * PER_THREAD + k;
                            sh(&mut bundle, &format!("exit {n}"));
                            let id = h.id(&format!("par{t}"));
                            let c = h
                                .create(&id, &bundle)
                                .unwrap_or_else(|e| panic!("create {id}: {e}"));
                            h.rt.start(&id)
                                .unwrap_or_else(|e| panic!("start {id}: {e}"));
                            let code = h.wait(&c);
                            h.rt.delete(&id, false)
                                .unwrap_or_else(|e| panic!("delete {id}: {e}"));
                            codes.push((n, code));
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        codes
                    })
                })
                .collect();
            // Join every worker before stopping the hammers, even if one panicked.
            let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
            stop.store(true, Ordering::Relaxed);
            results
        })
    });
    assert!(
        !killed,
        "deadlock: no container got done for {GIVE_UP:?}, the rest had to be killed"
    );
    let mut all = Vec::new();
    for (t, r) in results.into_iter().enumerate() {
        all.extend(r.unwrap_or_else(|_| panic!("worker {t} failed (see its panic above)")));
    }
    assert_eq!(all.len(), THREADS * PER_THREAD);
    for (want, got) in &all {
        assert_eq!(*got as usize, *want, "container `exit {want}` exited {got}");
    }
    assert!(
        h.leftover_state().is_empty(),
        "state left: {:?}",
        h.leftover_state()
    );
}

/// Where the descriptors of `pid` point.
fn fd_targets(pid: i32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_waiting_init_holds_nothing_of_another_container() {
    // Container A's create is slow (a createRuntime hook sleeps), so its state dir is open
    // and locked while container B is created from another thread. B's init then waits in
    // "created". A must still be startable: nothing of A may be held by B's init.
    let log = TempDir::new("berth-slowhook");
    fs::set_permissions(log.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let (mut a, out_a) = sh_bundle("echo a > /out/ran");
    let mut slow = Hook::default();
    slow.set_path(busybox());
    slow.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        r#"touch "$1/started"; sleep 1"#.into(),
        "hook".into(),
        log.path().display().to_string(),
    ]));
    slow.set_env(Some(vec!["PATH=/usr/bin:/bin".into()]));
    let mut hooks = Hooks::default();
    hooks.set_create_runtime(Some(vec![slow]));
    a.spec.set_hooks(Some(hooks));
    let (b, _out_b) = sh_bundle("echo b > /out/ran");
    let h = Harness::exclusive();
    let (id_a, id_b) = (h.id("slow"), h.id("bystander"));
    let a_dir = h.state_dir(&id_a);

    let started = AtomicBool::new(false);
    // Two containers, no steps in between: the limits count from the start.
    let no_steps = AtomicUsize::new(0);
    let ((leaked, start_a_blocked, start_a), killed) = watched(&h, &no_steps, || {
        std::thread::scope(|s| {
            let creating_a = s.spawn(|| h.create(&id_a, &a));
            assert!(
                wait_until(Duration::from_secs(10), || log
                    .path()
                    .join("started")
                    .exists()),
                "A's createRuntime hook did not start"
            );
            let cb = h
                .create(&id_b, &b)
                .expect("create B while A is being created");
            let ca = creating_a
                .join()
                .expect("create A thread")
                .expect("create A");
            let b_fds = fd_targets(cb.pid());
            let leaked: Vec<String> = b_fds
                .iter()
                .filter(|t| Path::new(t).starts_with(&a_dir))
                .cloned()
                .collect();
            let leaked = (leaked, b_fds);

            let starting_a = s.spawn(|| {
                let r = h.rt.start(&id_a);
                started.store(true, Ordering::SeqCst);
                r
            });
            let blocked = !wait_until(Duration::from_secs(5), || started.load(Ordering::SeqCst));
            if blocked {
                // Release A by getting rid of B, so that the test can report and clean up.
                let _ = h.rt.delete(&id_b, true);
            }
            let start_a = starting_a.join().expect("start A thread");
            if start_a.is_ok() {
                assert_eq!(h.wait(&ca), 0);
            }
            (leaked, blocked, start_a)
        })
    });
    assert!(!killed, "deadlock: the containers had to be killed");
    let (leaked, b_fds) = leaked;
    assert!(
        leaked.is_empty(),
        "B's waiting init holds descriptors of A's state dir: {leaked:?} (all its fds: {b_fds:?})"
    );
    assert!(
        !start_a_blocked,
        "start of A blocked until B (created, not started) went away"
    );
    start_a.expect("start A");
    assert_eq!(read(out_a.path().join("ran")), "a");
}
