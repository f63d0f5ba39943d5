//! An init killed the moment it exists, while `Tasks::create` is still finishing: its exit
//! must be kept (state, wait, delete) and reported after the container's Create event.
//!
//! A killer thread polls each bundle's `init.pid` (written by the runtime during create) and
//! SIGKILLs the pid as soon as it appears, so the exit lands inside `create` on many of the
//! runs. A plain `main` (harness = false): `Monitor::start` must come before any thread.

#[path = "common/bundle.rs"]
mod bundle;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_runtime_core::Runtime;
use berth_shim_core::monitor::Monitor;
use berth_shim_core::task::{CreateTask, Event, Tasks};

use bundle::Namespaces;

const CREATES: usize = 400;

fn main() {
    let monitor = Monitor::start().expect("start the exit monitor");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"early_init_exit_is_kept".contains(&f)) {
        println!("\ntest result: ok. 0 passed; 0 failed; 1 filtered out");
        return;
    }
    let pid = std::process::id();
    let base = std::env::temp_dir().join(format!("berth-test-create-race-{pid}"));
    let parent = format!("berth-test-create-race-{pid}");
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let ev = Arc::clone(&events);
    let tasks = Tasks::new(Runtime::new(base.join("state")), monitor, move |e| {
        ev.lock().unwrap_or_else(|p| p.into_inner()).push(e)
    });
    let result = catch_unwind(AssertUnwindSafe(|| {
        early_init_exit_is_kept(&tasks, &events, &base, &parent)
    }));
    let cgroups = bundle::remove_cgroups(&parent);
    bundle::unmount_under(&base);
    let mounts = bundle::mounts_under(&base);
    let _ = std::fs::remove_dir_all(&base);
    if !cgroups.is_empty() || !mounts.is_empty() {
        println!("left behind: cgroups {cgroups:?}, mounts {mounts:?}");
    }
    match result.map(|()| cgroups.is_empty() && mounts.is_empty()) {
        Ok(true) => {
            println!("test early_init_exit_is_kept ... ok\n\ntest result: ok. 1 passed; 0 failed")
        }
        _ => {
            println!(
                "test early_init_exit_is_kept ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed"
            );
            std::process::exit(101);
        }
    }
}

fn early_init_exit_is_kept(
    tasks: &Tasks,
    events: &Mutex<Vec<Event>>,
    base: &std::path::Path,
    parent: &str,
) {
    std::fs::create_dir_all(base).expect("create the temp dir");
    let rootfs = base.join("rootfs");
    bundle::busybox_rootfs(&rootfs);
    let ns = Namespaces {
        pid: true,
        net: false,
    };
    let mut bad = Vec::new();
    let (mut created_n, mut failed, mut early) = (0, Vec::new(), 0);
    for i in 0..CREATES {
        let id = format!("r{i}");
        let bundle_dir = base.join(&id);
        let spec = bundle::config(&rootfs, &["sleep", "3600"], &format!("/{parent}/{id}"), ns);
        bundle::write_bundle(&bundle_dir, &spec);
        let done = Arc::new(AtomicBool::new(false));
        let killer = {
            let (done, pid_file) = (Arc::clone(&done), bundle_dir.join("init.pid"));
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if let Some(pid) = std::fs::read_to_string(&pid_file)
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                    {
                        // SAFETY: kill(2) on the pid the runtime just wrote for its init.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        return;
                    }
                    std::thread::yield_now();
                }
            })
        };
        let created = tasks.create(CreateTask::new(&id, &bundle_dir));
        let returned = std::time::SystemTime::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            match tasks.state(&id, None) {
                Ok(s) if s.exit.is_some() => break s.exit,
                Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                _ => break None,
            }
        };
        done.store(true, Ordering::SeqCst);
        let _ = killer.join();
        // The pid file is the runtime's last step: the kill can't make create fail.
        if let Err(e) = created {
            failed.push((id, e.to_string()));
            continue;
        }
        created_n += 1;
        // The path under test: the init died before create returned.
        if exit.is_some_and(|e| e.at < returned) {
            early += 1;
        }
        let kinds: Vec<&'static str> = events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|e| match e {
                Event::Create { id: e, .. } if *e == id => Some("create"),
                Event::Exit { id: e, .. } if *e == id => Some("exit"),
                _ => None,
            })
            .collect();
        let deleted = tasks.delete(&id, None);
        if exit.map(|e| e.status) != Some(137) || kinds != ["create", "exit"] || deleted.is_err() {
            bad.push((id, exit, kinds, deleted.err().map(|e| e.to_string())));
        }
    }
    println!(
        "{CREATES} creates ({created_n} made, {early} inits dead before create returned), \
         init SIGKILLed as it appeared: {} wrong",
        bad.len()
    );
    assert!(failed.is_empty(), "creates failed: {failed:?}");
    assert!(bad.is_empty(), "lost or misordered early exits: {bad:?}");
    assert!(
        early > 0,
        "no init died inside create: the race was not exercised"
    );
    assert!(tasks.is_empty());
    let state: Vec<_> = std::fs::read_dir(base.join("state"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(state.is_empty(), "runtime state left: {state:?}");
    let children = bundle::children();
    assert!(children.is_empty(), "children left: {children:?}");
}
