//! `Tasks` under load: 10,000 processes (container inits and execs) run through the task API
//! from several threads at once, and not one exit lost, duplicated, wrong or out of order.
//!
//! Every container is a real bundle (the default config on one read-only busybox rootfs
//! shared by all of them, in a cgroup under a parent of this test's own) created, started,
//! exec'd into, killed, waited for and deleted with `berth_shim_core::task::Tasks`. The mix:
//!
//! * inits that exit at once (`exit N`, or a signal to themselves), with an exec started
//!   right behind the start: it races the init's exit and is either refused or run (then it
//!   exits with its code, or is killed with its container);
//! * inits that run until `Tasks::kill` (SIGKILL in their own pid namespace, SIGTERM in the
//!   host's), or until an exec signals them (a trap: `exit N`), with execs of every kind
//!   running meanwhile, and one exec still running when the init dies;
//! * execs that exit with a code, at once or after a short sleep, exec a program, are killed
//!   with `Tasks::kill` (SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGUSR1) or kill themselves.
//!
//! For every process the status `Tasks::wait` gives and the events the callback got are
//! checked: exactly one exit, with the expected status (128 + N for signal N) and its pid, its
//! start before it, every exec's exit before its init's, the init's before the container's
//! delete. Then nothing may be left: no container, no watched pid and no child of this
//! process, no state dir, no cgroup under the test's parent, no mount under its temp dir.
//! The cgroups, mounts and temp dir are removed at the end whatever happened; a run that
//! makes no progress for [`STUCK`] (a lost exit makes `Tasks::wait` wait forever) is reported
//! with what each worker was waiting for, cleaned up and failed.
//!
//! A plain `main` (harness = false): `Monitor::start` must block `SIGCHLD` before any other
//! thread of the process exists. `BERTH_TEST_TASKS` sets the number of tasks (10,000).

#[path = "common/bundle.rs"]
mod bundle;

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_runtime_core::Runtime;
use berth_runtime_core::oci_spec::runtime::Spec;
use berth_shim_core::monitor::Monitor;
use berth_shim_core::task::{CreateTask, Event, ExitInfo, Tasks};
use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, waitid};

use bundle::Namespaces;

/// Processes to run (inits and execs), unless `BERTH_TEST_TASKS` says otherwise.
const TASKS: usize = 10_000;
/// Threads creating, exec'ing into, killing, waiting for and deleting containers.
const WORKERS: usize = 4;
/// The fewest containers a run of [`TASKS`] must have used.
const MIN_CONTAINERS: usize = 300;
/// Every how many containers one gets a network namespace of its own (the costliest part of
/// a create, so not every one).
const NET_EVERY: usize = 8;
/// How long without any progress before the run is declared stuck.
const STUCK: Duration = Duration::from_secs(90);

/// Signals `Tasks::kill` sends to execs, and signals execs send to themselves.
const KILL_SIGNALS: [i32; 5] = [
    libc::SIGTERM,
    libc::SIGKILL,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGUSR1,
];
const SELF_SIGNALS: [i32; 5] = [
    libc::SIGKILL,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGUSR2,
];

/// Status of a process killed by `signal`.
fn signaled(signal: i32) -> u32 {
    128 + signal as u32
}

/// What a container's init does, and so what else happens in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Own pid namespace, `exit N` at once; an exec races it.
    EarlyExit,
    /// Own pid namespace, `sleep` until `Tasks::kill` SIGKILLs it; execs meanwhile.
    KillInit,
    /// Own pid namespace, a shell that exits N on SIGUSR1, sent by an exec; execs meanwhile.
    TrapInit,
    /// The host's pid namespace, `sleep` until `Tasks::kill` SIGTERMs it; execs meanwhile.
    HostPid,
    /// The host's pid namespace, a signal to itself at once; an exec races it.
    EarlySignal,
}

impl Kind {
    fn of(i: usize) -> Kind {
        match i % 5 {
            0 => Kind::EarlyExit,
            1 => Kind::KillInit,
            2 => Kind::TrapInit,
            3 => Kind::HostPid,
            _ => Kind::EarlySignal,
        }
    }

    fn pid_ns(self) -> bool {
        !matches!(self, Kind::HostPid | Kind::EarlySignal)
    }
}

/// The status a process must end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Status(u32),
    /// An exec racing its container's end: its own code, or SIGKILLed with the container.
    CodeOrKilled(u32),
}

impl Expect {
    fn allows(self, status: u32) -> bool {
        match self {
            Expect::Status(s) => status == s,
            Expect::CodeOrKilled(c) => status == c || status == signaled(libc::SIGKILL),
        }
    }
}

/// One process run, and what the test learnt of it.
#[derive(Debug)]
struct Task {
    /// `None`: the init.
    exec_id: Option<String>,
    /// Its command line, for the messages.
    what: String,
    /// For the summary.
    label: &'static str,
    expect: Expect,
    pid: i32,
    /// What `Tasks::wait` said.
    waited: Option<ExitInfo>,
    /// What `Tasks::delete` of the exec said (every other container deletes its execs one
    /// by one).
    deleted: Option<ExitInfo>,
}

/// A container and its processes.
#[derive(Debug)]
struct Record {
    id: String,
    kind: Kind,
    init_pid: i32,
    /// The init first.
    tasks: Vec<Task>,
    /// Racing execs that `Tasks::exec` or `Tasks::start` refused: (exec id, why, whether it
    /// was registered).
    refused: Vec<(String, String, bool)>,
    /// What `Tasks::delete` of the container said.
    deleted: Option<ExitInfo>,
}

/// What the workers, the watchdog and the clean-up share.
struct Ctx {
    base: PathBuf,
    rootfs: PathBuf,
    state: PathBuf,
    cgroup_parent: String,
    target: usize,
    /// Every container id ever created, for the clean-up.
    ids: Mutex<Vec<String>>,
    /// Every event, in the order the callback got them.
    events: Arc<Mutex<Vec<Event>>>,
    next: AtomicUsize,
    started_tasks: AtomicUsize,
    progress: AtomicU64,
    abort: AtomicBool,
    finished: AtomicBool,
    /// Taken by whoever ends the run: the main thread, or the watchdog of a stuck one.
    ending: Mutex<()>,
    /// What each worker is doing (for a stuck run's report).
    doing: Vec<Mutex<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ctx {
    fn step(&self, worker: usize, what: impl FnOnce() -> String) {
        self.progress.fetch_add(1, Ordering::Relaxed);
        *lock(&self.doing[worker]) = what();
    }

    /// Kills and deletes whatever is left, removes the cgroups, the mounts and the temp dir.
    /// Returns the cgroups and mounts that could not be removed. `tasks` `None`: the raw
    /// runtime only (the watchdog's, when a worker may hold a lock of `Tasks` forever).
    fn clean_up(&self, tasks: Option<&Tasks>) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let runtime = Runtime::new(&self.state);
        let ids = lock(&self.ids).clone();
        for id in &ids {
            if let Some(tasks) = tasks {
                let _ = tasks.kill(id, None, libc::SIGKILL, true);
                let deadline = Instant::now() + Duration::from_secs(10);
                // Deleted once its init's exit (and its execs') are in.
                while tasks.delete(id, None).is_err()
                    && tasks.init_pid(id) != 0
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
            } else {
                let _ = runtime.kill(id, libc::SIGKILL, true);
            }
            let _ = runtime.delete(id, true);
        }
        let cgroups = bundle::remove_cgroups(&self.cgroup_parent);
        bundle::unmount_under(&self.base);
        let mounts = bundle::mounts_under(&self.base);
        if mounts.is_empty() {
            let _ = std::fs::remove_dir_all(&self.base);
        }
        (cgroups, mounts)
    }
}

fn main() {
    let monitor = Monitor::start().expect("start the exit monitor");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"no_exit_is_lost".contains(&f)) {
        println!("\ntest result: ok. 0 passed; 0 failed; 1 filtered out");
        return;
    }
    let pid = std::process::id();
    let base = std::env::temp_dir().join(format!("berth-test-tasks-{pid}"));
    let target = std::env::var("BERTH_TEST_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TASKS);
    let ctx = Arc::new(Ctx {
        rootfs: base.join("rootfs"),
        state: base.join("state"),
        base,
        cgroup_parent: format!("berth-test-tasks-{pid}"),
        target,
        ids: Mutex::new(Vec::new()),
        events: Arc::new(Mutex::new(Vec::new())),
        next: AtomicUsize::new(0),
        started_tasks: AtomicUsize::new(0),
        progress: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        ending: Mutex::new(()),
        doing: (0..WORKERS).map(|_| Mutex::new(String::new())).collect(),
    });
    let events = Arc::clone(&ctx.events);
    let tasks = Tasks::new(Runtime::new(&ctx.state), monitor.clone(), move |e| {
        lock(&events).push(e)
    });
    start_watchdog(&ctx);

    let result = catch_unwind(AssertUnwindSafe(|| {
        // Before any container: the rootfs' files are closed when the first init is cloned.
        std::fs::create_dir_all(&ctx.base).expect("create the test's temp dir");
        bundle::busybox_rootfs(&ctx.rootfs);
        no_exit_is_lost(&ctx, &tasks, &monitor)
    }));
    let _ending = lock(&ctx.ending);
    ctx.finished.store(true, Ordering::SeqCst);
    let (cgroups, mounts) = ctx.clean_up(Some(&tasks));
    let mut failed = result.is_err();
    if !cgroups.is_empty() {
        println!("cgroups that could not be removed: {cgroups:?}");
        failed = true;
    }
    if !mounts.is_empty() {
        println!("mounts that could not be removed: {mounts:?}");
        failed = true;
    }
    if failed {
        println!("test no_exit_is_lost ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed");
        std::process::exit(101);
    }
    println!("test no_exit_is_lost ... ok\n\ntest result: ok. 1 passed; 0 failed");
}

/// Fails the run (cleaned up) when nothing progressed for [`STUCK`].
fn start_watchdog(ctx: &Arc<Ctx>) {
    let ctx = Arc::clone(ctx);
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut last = (ctx.progress.load(Ordering::Relaxed), Instant::now());
            while !ctx.finished.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                let now = ctx.progress.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                    continue;
                }
                if last.1.elapsed() < STUCK {
                    continue;
                }
                let _ending = lock(&ctx.ending);
                if ctx.finished.load(Ordering::SeqCst) {
                    return;
                }
                println!("STUCK: no progress for {STUCK:?} (a lost exit?). The workers:");
                for (w, d) in ctx.doing.iter().enumerate() {
                    println!("  worker {w}: {}", lock(d));
                }
                let (cgroups, mounts) = ctx.clean_up(None);
                println!("cleaned up (left: cgroups {cgroups:?}, mounts {mounts:?})");
                println!(
                    "test no_exit_is_lost ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed"
                );
                std::process::exit(101);
            }
        })
        .expect("spawn the watchdog");
}

fn no_exit_is_lost(ctx: &Ctx, tasks: &Tasks, monitor: &Monitor) {
    let started = Instant::now();
    let records: Vec<Record> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| s.spawn(move || worker(ctx, tasks, w)))
            .collect();
        let mut all = Vec::new();
        let mut panic = None;
        for w in workers {
            match w.join() {
                Ok(r) => all.extend(r),
                Err(p) => panic = Some(p),
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
        all
    });
    let elapsed = started.elapsed();

    let events = std::mem::take(&mut *lock(&ctx.events));
    let mut by_id: HashMap<&str, Vec<(usize, &Event)>> = HashMap::new();
    for (pos, e) in events.iter().enumerate() {
        by_id.entry(event_id(e)).or_default().push((pos, e));
    }
    let mut tally = Tally::default();
    for r in &records {
        let evs = by_id.remove(r.id.as_str()).unwrap_or_default();
        check_container(r, &evs, &mut tally);
    }
    for (id, evs) in by_id {
        tally.bad(
            Bad::Unexpected,
            format!("{} events of unknown container {id}", evs.len()),
        );
    }
    for p in tally.problems.iter().take(30) {
        println!("  {p}");
    }
    let kinds: Vec<String> = tally
        .by_label
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "tasks: {} in {} containers ({} inits, {} execs; {} racing execs refused) from {WORKERS} \
         threads in {:.1?}: {}; lost={} duplicated={} wrong={} misordered={} unexpected={}",
        tally.tasks,
        records.len(),
        tally.inits,
        tally.execs,
        tally.refused,
        elapsed,
        kinds.join(", "),
        tally.lost,
        tally.duplicated,
        tally.wrong,
        tally.misordered,
        tally.unexpected,
    );
    assert_eq!(tally.lost, 0, "exits lost");
    assert_eq!(tally.duplicated, 0, "exits reported twice");
    assert_eq!(tally.wrong, 0, "exits with a wrong status or pid");
    assert_eq!(tally.misordered, 0, "events out of order");
    assert_eq!(tally.unexpected, 0, "unexpected events");
    assert!(tally.tasks >= ctx.target, "only {} tasks ran", tally.tasks);
    assert!(
        ctx.target < TASKS || records.len() >= MIN_CONTAINERS,
        "only {} containers",
        records.len()
    );

    // Nothing left.
    assert!(tasks.is_empty(), "{} containers left in Tasks", tasks.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let watched = monitor.watched();
        let flags = WaitPidFlag::WEXITED
            | WaitPidFlag::WNOHANG
            | WaitPidFlag::WNOWAIT
            | WaitPidFlag::__WALL;
        let none = matches!(waitid(Id::All, flags), Err(Errno::ECHILD));
        if watched == 0 && none {
            break;
        }
        if Instant::now() > deadline {
            let children: Vec<String> = bundle::children()
                .into_iter()
                .map(|p| {
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    format!("{p} {:?}", String::from_utf8_lossy(&cmd).replace('\0', " "))
                })
                .collect();
            panic!("left: {watched} watched pids, children {children:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let state: Vec<_> = std::fs::read_dir(&ctx.state)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        state.is_empty(),
        "state left under {:?}: {state:?}",
        ctx.state
    );
    let cgroups = bundle::cgroups_under(&ctx.cgroup_parent);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    let mounts = bundle::mounts_under(&ctx.base);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}

fn event_id(e: &Event) -> &str {
    match e {
        Event::Create { id, .. }
        | Event::Start { id, .. }
        | Event::ExecAdded { id, .. }
        | Event::ExecStarted { id, .. }
        | Event::Exit { id, .. }
        | Event::Delete { id, .. }
        | Event::Paused { id }
        | Event::Resumed { id }
        | Event::Oom { id } => id,
        _ => "",
    }
}

/// Runs containers until the tasks reach the target.
fn worker(ctx: &Ctx, tasks: &Tasks, w: usize) -> Vec<Record> {
    let mut records = Vec::new();
    while !ctx.abort.load(Ordering::SeqCst) && ctx.started_tasks.load(Ordering::SeqCst) < ctx.target
    {
        let i = ctx.next.fetch_add(1, Ordering::SeqCst);
        match catch_unwind(AssertUnwindSafe(|| run_container(ctx, tasks, w, i))) {
            Ok(r) => {
                ctx.started_tasks.fetch_add(r.tasks.len(), Ordering::SeqCst);
                records.push(r);
            }
            Err(p) => {
                ctx.abort.store(true, Ordering::SeqCst);
                resume_unwind(p);
            }
        }
    }
    *lock(&ctx.doing[w]) = "done".into();
    records
}

/// An exec of the mix: its command, the signal `Tasks::kill` sends it (if any), what it
/// must end with, its label.
fn assorted(i: usize, j: usize) -> (Vec<String>, Option<i32>, Expect, &'static str) {
    let code = ((i * 31 + j * 17) % 126) as u32;
    let sh = |script: String| vec!["sh".to_owned(), "-c".to_owned(), script];
    match (i + j) % 5 {
        0 => (
            sh(format!("exit {code}")),
            None,
            Expect::Status(code),
            "exec exit",
        ),
        1 => {
            let sig = KILL_SIGNALS[(i / 5 + j) % KILL_SIGNALS.len()];
            (
                vec!["sleep".into(), "3600".into()],
                Some(sig),
                Expect::Status(signaled(sig)),
                "exec killed",
            )
        }
        2 => {
            let sig = SELF_SIGNALS[(i / 5 + j) % SELF_SIGNALS.len()];
            (
                sh(format!("kill -{sig} $$")),
                None,
                Expect::Status(signaled(sig)),
                "exec self-signal",
            )
        }
        3 => {
            let (prog, status) = if code % 2 == 0 {
                ("true", 0)
            } else {
                ("false", 1)
            };
            (
                vec![prog.into()],
                None,
                Expect::Status(status),
                "exec immediate",
            )
        }
        _ => (
            sh(format!("sleep 0.0{}; exit {code}", 1 + code % 5)),
            None,
            Expect::Status(code),
            "exec exit",
        ),
    }
}

/// One container and its processes, start to delete.
fn run_container(ctx: &Ctx, tasks: &Tasks, w: usize, i: usize) -> Record {
    let kind = Kind::of(i);
    let id = format!("t{i}");
    let bundle_dir = ctx.base.join("bundles").join(&id);
    let n = (i % 100 + 20) as u32;
    let sh = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
    let self_sig = [libc::SIGKILL, libc::SIGTERM, libc::SIGHUP][(i / 5) % 3];
    // How long the init (or the exec that signals it) waits before it exits, so that an
    // exec started behind the start sometimes wins the race, sometimes loses it.
    let delay_ms = (i / 5) % 4 * 3;
    let pause = if delay_ms == 0 {
        String::new()
    } else {
        format!("sleep 0.00{delay_ms}; ")
    };
    let (init_args, init_expect, init_label) = match kind {
        Kind::EarlyExit => (
            sh(&format!("{pause}exit {n}")),
            Expect::Status(n),
            if delay_ms == 0 {
                "init exit at once"
            } else {
                "init exit after a sleep"
            },
        ),
        Kind::KillInit | Kind::HostPid => (
            vec!["sleep".to_owned(), "3600".to_owned()],
            Expect::Status(signaled(if kind == Kind::KillInit {
                libc::SIGKILL
            } else {
                libc::SIGTERM
            })),
            "init killed",
        ),
        Kind::TrapInit => (
            sh(&format!("trap 'exit {n}' USR1; sleep 3600 & wait")),
            Expect::Status(n),
            "init exit on a signal",
        ),
        Kind::EarlySignal => (
            sh(&format!("{pause}kill -{self_sig} $$")),
            Expect::Status(signaled(self_sig)),
            "init self-signal",
        ),
    };
    let args: Vec<&str> = init_args.iter().map(String::as_str).collect();
    let spec = bundle::config(
        &ctx.rootfs,
        &args,
        &format!("/{}/{id}", ctx.cgroup_parent),
        Namespaces {
            pid: kind.pid_ns(),
            net: i % NET_EVERY == 0,
        },
    );
    bundle::write_bundle(&bundle_dir, &spec);
    let stderr = bundle_dir.join("stderr.log").display().to_string();
    let mut req = CreateTask::new(&id, &bundle_dir);
    req.stderr = stderr.clone();

    lock(&ctx.ids).push(id.clone());
    ctx.step(w, || format!("{id}: create"));
    let init_pid = tasks
        .create(req)
        .unwrap_or_else(|e| panic!("create {id}: {e}"));
    if i % 100 == 0 {
        // Where the leftovers are looked for is where the container is.
        let cgroups = bundle::cgroups_under(&ctx.cgroup_parent);
        assert!(
            cgroups.iter().any(|c| c.ends_with(&id)),
            "{id}'s cgroup is not under {}: {cgroups:?}",
            ctx.cgroup_parent
        );
        assert!(ctx.state.join(&id).is_dir(), "{id} has no state dir");
    }
    ctx.step(w, || format!("{id}: start"));
    tasks
        .start(&id, None)
        .unwrap_or_else(|e| panic!("start {id}: {e}"));
    let mut rec = Record {
        id: id.clone(),
        kind,
        init_pid,
        tasks: vec![Task {
            exec_id: None,
            what: init_args.join(" "),
            label: init_label,
            expect: init_expect,
            pid: init_pid,
            waited: None,
            deleted: None,
        }],
        refused: Vec::new(),
        deleted: None,
    };
    let x = Exec {
        ctx,
        tasks,
        w,
        spec: &spec,
        stderr: &stderr,
    };
    let racing = |m: u32| (sh(&format!("exit {m}")), Expect::CodeOrKilled(m));
    match kind {
        Kind::EarlyExit | Kind::EarlySignal => {
            let (args, expect) = racing(n + 1);
            x.race(&mut rec, "r0", args, expect);
        }
        Kind::KillInit | Kind::TrapInit | Kind::HostPid => {
            let count = match kind {
                Kind::KillInit => 6,
                Kind::TrapInit => 4,
                _ => 5,
            };
            // A batch of execs running at once, then the kills.
            let mut kills = Vec::new();
            for j in 0..count {
                let (args, kill, expect, label) = assorted(i, j);
                let e = format!("e{j}");
                x.run(&mut rec, &e, args, expect, label);
                if let Some(sig) = kill {
                    kills.push((e, sig));
                }
            }
            for (e, sig) in kills {
                ctx.step(w, || format!("{id}: kill {e} with {sig}"));
                tasks
                    .kill(&id, Some(&e), sig, false)
                    .unwrap_or_else(|err| panic!("kill {id}/{e} with {sig}: {err}"));
            }
            for t in rec.tasks.iter_mut().skip(1) {
                t.waited = Some(x.wait(&id, t));
            }
            // One exec still running when the init dies, which takes it along (the pid
            // namespace's end, or the kill of the cgroup when it has none).
            let left = if kind == Kind::TrapInit {
                sh(&format!("{pause}while kill -USR1 1; do sleep 0.01; done"))
            } else {
                vec!["sleep".to_owned(), "3600".to_owned()]
            };
            x.run(
                &mut rec,
                "l",
                left,
                Expect::Status(signaled(libc::SIGKILL)),
                "exec killed with its init",
            );
            // An exec started while the init is about to exit: killed from another thread
            // (a little later each time) for the inits that run until they are.
            let signal = match kind {
                Kind::KillInit => Some(libc::SIGKILL),
                Kind::HostPid => Some(libc::SIGTERM),
                _ => None,
            };
            let (args, expect) = racing(n + 2);
            std::thread::scope(|s| {
                if let Some(sig) = signal {
                    let id = &id;
                    s.spawn(move || {
                        std::thread::sleep(Duration::from_millis((i / 5 % 4) as u64));
                        ctx.step(w, || format!("{id}: kill the init with {sig}"));
                        tasks
                            .kill(id, None, sig, false)
                            .unwrap_or_else(|e| panic!("kill {id} with {sig}: {e}"));
                    });
                }
                x.race(&mut rec, "r0", args, expect);
            });
        }
    }
    // The init, then the execs not waited for yet.
    for k in 0..rec.tasks.len() {
        if rec.tasks[k].waited.is_none() {
            let exit = x.wait(&id, &rec.tasks[k]);
            rec.tasks[k].waited = Some(exit);
        }
    }
    ctx.step(w, || format!("{id}: delete"));
    if i % 2 == 0 {
        for t in rec.tasks.iter_mut().skip(1) {
            let e = t.exec_id.as_deref().expect("an exec");
            let exit = tasks
                .delete(&id, Some(e))
                .unwrap_or_else(|err| panic!("delete {id}/{e}: {err}"));
            t.deleted = Some(exit);
        }
    }
    rec.deleted = Some(
        tasks
            .delete(&id, None)
            .unwrap_or_else(|e| panic!("delete {id}: {e}")),
    );
    rec
}

/// Execs into one container.
struct Exec<'a> {
    ctx: &'a Ctx,
    tasks: &'a Tasks,
    w: usize,
    spec: &'a Spec,
    stderr: &'a str,
}

impl Exec<'_> {
    /// Registers and starts an exec: `Err` with why, and whether it was registered.
    fn start(&self, id: &str, exec_id: &str, args: &[String]) -> Result<i32, (String, bool)> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = bundle::exec_process(self.spec, &args);
        let stdio = [String::new(), String::new(), self.stderr.to_owned()];
        self.ctx.step(self.w, || format!("{id}: exec {exec_id}"));
        self.tasks
            .exec(id, exec_id, process, false, stdio)
            .map_err(|e| (format!("exec: {e}"), false))?;
        self.ctx.step(self.w, || format!("{id}: start {exec_id}"));
        self.tasks
            .start(id, Some(exec_id))
            .map_err(|e| (format!("start: {e}"), true))
    }

    /// An exec that must start.
    fn run(
        &self,
        rec: &mut Record,
        exec_id: &str,
        args: Vec<String>,
        expect: Expect,
        label: &'static str,
    ) {
        let pid = self
            .start(&rec.id, exec_id, &args)
            .unwrap_or_else(|(e, _)| panic!("{}/{exec_id} ({args:?}): {e}", rec.id));
        rec.tasks.push(Task {
            exec_id: Some(exec_id.to_owned()),
            what: args.join(" "),
            label,
            expect,
            pid,
            waited: None,
            deleted: None,
        });
    }

    /// An exec racing the init's exit: refused, or run.
    fn race(&self, rec: &mut Record, exec_id: &str, args: Vec<String>, expect: Expect) {
        match self.start(&rec.id, exec_id, &args) {
            Ok(pid) => rec.tasks.push(Task {
                exec_id: Some(exec_id.to_owned()),
                what: args.join(" "),
                label: "racing exec",
                expect,
                pid,
                waited: None,
                deleted: None,
            }),
            Err((why, registered)) => rec.refused.push((exec_id.to_owned(), why, registered)),
        }
    }

    fn wait(&self, id: &str, t: &Task) -> ExitInfo {
        let e = t.exec_id.as_deref();
        self.ctx.step(self.w, || {
            format!("{id}: wait for {} ({})", e.unwrap_or("the init"), t.what)
        });
        self.tasks
            .wait(id, e)
            .unwrap_or_else(|err| panic!("wait {id}/{e:?}: {err}"))
    }
}

#[derive(Debug, Clone, Copy)]
enum Bad {
    Lost,
    Duplicated,
    Wrong,
    Misordered,
    Unexpected,
}

#[derive(Default)]
struct Tally {
    tasks: usize,
    inits: usize,
    execs: usize,
    refused: usize,
    by_label: BTreeMap<&'static str, usize>,
    lost: usize,
    duplicated: usize,
    wrong: usize,
    misordered: usize,
    unexpected: usize,
    problems: Vec<String>,
}

impl Tally {
    fn bad(&mut self, what: Bad, msg: String) {
        *match what {
            Bad::Lost => &mut self.lost,
            Bad::Duplicated => &mut self.duplicated,
            Bad::Wrong => &mut self.wrong,
            Bad::Misordered => &mut self.misordered,
            Bad::Unexpected => &mut self.unexpected,
        } += 1;
        self.problems.push(format!("{what:?}: {msg}"));
    }
}

/// Checks one container's processes against its events (position in the whole stream, event).
fn check_container(r: &Record, evs: &[(usize, &Event)], t: &mut Tally) {
    let id = &r.id;
    let pos = |f: &dyn Fn(&Event) -> bool| -> Vec<usize> {
        evs.iter().filter(|(_, e)| f(e)).map(|(p, _)| *p).collect()
    };
    let first = evs.first().map(|(p, _)| *p);
    let last = evs.last().map(|(p, _)| *p);

    // Create, first; Start, once.
    let creates: Vec<(usize, i32)> = evs
        .iter()
        .filter_map(|(p, e)| match e {
            Event::Create { pid, .. } => Some((*p, *pid)),
            _ => None,
        })
        .collect();
    if creates.len() != 1 || Some(creates[0].0) != first || creates[0].1 != r.init_pid {
        t.bad(
            Bad::Unexpected,
            format!(
                "{id}: creates {creates:?}, not one first with pid {}",
                r.init_pid
            ),
        );
    }
    let starts: Vec<(usize, i32)> = evs
        .iter()
        .filter_map(|(p, e)| match e {
            Event::Start { pid, .. } => Some((*p, *pid)),
            _ => None,
        })
        .collect();
    if starts.len() != 1 || starts[0].1 != r.init_pid {
        t.bad(
            Bad::Unexpected,
            format!("{id}: starts {starts:?}, not one with pid {}", r.init_pid),
        );
    }
    let exits_of = |exec: Option<&str>| -> Vec<(usize, ExitInfo)> {
        evs.iter()
            .filter_map(|(p, e)| match e {
                Event::Exit { exec_id, exit, .. } if exec_id.as_deref() == exec => {
                    Some((*p, *exit))
                }
                _ => None,
            })
            .collect()
    };
    let init_exits = exits_of(None);
    let init_exit_pos = init_exits.first().map(|(p, _)| *p);

    for task in &r.tasks {
        t.tasks += 1;
        let label = match (task.expect, task.waited) {
            (Expect::CodeOrKilled(_), Some(w)) if w.status == signaled(libc::SIGKILL) => {
                "racing exec killed"
            }
            (Expect::CodeOrKilled(_), _) => "racing exec exit",
            _ => task.label,
        };
        *t.by_label.entry(label).or_default() += 1;
        let name = format!(
            "{id}/{} ({:?} container; {}, {:?}, pid {})",
            task.exec_id.as_deref().unwrap_or("init"),
            r.kind,
            task.what,
            task.expect,
            task.pid
        );
        let started_at = match task.exec_id.as_deref() {
            None => {
                t.inits += 1;
                starts.first().map(|(p, _)| *p)
            }
            Some(e) => {
                t.execs += 1;
                let added =
                    pos(&|ev| matches!(ev, Event::ExecAdded { exec_id, .. } if exec_id == e));
                let started: Vec<(usize, i32)> = evs
                    .iter()
                    .filter_map(|(p, ev)| match ev {
                        Event::ExecStarted { exec_id, pid, .. } if exec_id == e => Some((*p, *pid)),
                        _ => None,
                    })
                    .collect();
                if added.len() != 1
                    || started.len() != 1
                    || added[0] > started[0].0
                    || started[0].1 != task.pid
                {
                    t.bad(
                        Bad::Unexpected,
                        format!("{name}: added at {added:?}, started at {started:?}"),
                    );
                }
                started.first().map(|(p, _)| *p)
            }
        };
        let exits = exits_of(task.exec_id.as_deref());
        let waited = task.waited.expect("every task was waited for");
        if !task.expect.allows(waited.status) || waited.pid != task.pid {
            t.bad(Bad::Wrong, format!("{name}: Tasks::wait said {waited:?}"));
        }
        if let Some(d) = task.deleted {
            if d != waited {
                t.bad(
                    Bad::Wrong,
                    format!("{name}: delete said {d:?}, wait {waited:?}"),
                );
            }
        }
        match exits.len() {
            0 => {
                t.bad(Bad::Lost, format!("{name}: no exit event"));
                continue;
            }
            1 => {}
            n => t.bad(
                Bad::Duplicated,
                format!("{name}: {n} exit events: {exits:?}"),
            ),
        }
        let (at, exit) = exits[0];
        if exit != waited {
            t.bad(
                Bad::Wrong,
                format!("{name}: exit event {exit:?}, Tasks::wait {waited:?}"),
            );
        }
        if started_at.is_none_or(|s| s > at) {
            t.bad(
                Bad::Misordered,
                format!("{name}: exit at {at}, start at {started_at:?}"),
            );
        }
        if task.exec_id.is_some() && init_exit_pos.is_none_or(|p| p < at) {
            t.bad(
                Bad::Misordered,
                format!("{name}: exit at {at}, the init's at {init_exit_pos:?}"),
            );
        }
    }

    for (e, why, registered) in &r.refused {
        t.refused += 1;
        let added = pos(&|ev| matches!(ev, Event::ExecAdded { exec_id, .. } if exec_id == e));
        let started = pos(&|ev| matches!(ev, Event::ExecStarted { exec_id, .. } if exec_id == e));
        let exits = exits_of(Some(e));
        if added.len() != usize::from(*registered) || !started.is_empty() || !exits.is_empty() {
            t.bad(
                Bad::Unexpected,
                format!(
                    "{id}/{e} refused ({why}) but added at {added:?}, started at {started:?}, \
                     exits {exits:?}"
                ),
            );
        }
    }

    // Events of no process of ours.
    let known = |e: &str| {
        r.tasks.iter().any(|t| t.exec_id.as_deref() == Some(e))
            || r.refused.iter().any(|(x, _, _)| x == e)
    };
    for (p, ev) in evs {
        let stray = match ev {
            Event::Create { .. } | Event::Start { .. } | Event::Delete { .. } => false,
            Event::ExecAdded { exec_id, .. } | Event::ExecStarted { exec_id, .. } => {
                !known(exec_id)
            }
            Event::Exit { exec_id, .. } => exec_id.as_deref().is_some_and(|e| !known(e)),
            _ => true,
        };
        if stray {
            t.bad(Bad::Unexpected, format!("{id}: event {p}: {ev:?}"));
        }
    }

    // Delete, once, last, with the init's exit.
    let deletes: Vec<(usize, ExitInfo)> = evs
        .iter()
        .filter_map(|(p, e)| match e {
            Event::Delete { exit, .. } => Some((*p, *exit)),
            _ => None,
        })
        .collect();
    let init_waited = r.tasks[0].waited;
    if deletes.len() != 1
        || Some(deletes[0].0) != last
        || init_exit_pos.is_none_or(|p| p > deletes[0].0)
    {
        t.bad(
            Bad::Misordered,
            format!("{id}: deletes {deletes:?}, the init's exit at {init_exit_pos:?}"),
        );
    }
    if deletes.first().map(|d| d.1) != init_waited || r.deleted != init_waited {
        t.bad(
            Bad::Wrong,
            format!(
                "{id}: delete event {deletes:?}, Tasks::delete {:?}, the init's {init_waited:?}",
                r.deleted
            ),
        );
    }
}
