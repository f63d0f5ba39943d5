//! `create` from many threads at once while other threads hammer the allocator and stdio:
//! the fragile-child code between clone and exec must never need a lock another thread may
//! have held at the moment of the clone. A deadlock shows up as a hang: a watchdog aborts the
//! whole test process after 120 s (this test has a binary of its own for that reason).

mod common;
mod support;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Bundle;
use support::*;

const THREADS: usize = 8;
const PER_THREAD: usize = 5;
const WATCHDOG: Duration = Duration::from_secs(120);

#[test]
fn parallel_creates_under_allocator_pressure() {
    let done = Arc::new(AtomicBool::new(false));
    {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::SeqCst) {
                if start.elapsed() > WATCHDOG {
                    eprintln!("concurrency test: no progress after {WATCHDOG:?}: deadlock, aborting");
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }

    // One bundle per worker; each container of a worker rewrites config.json before create.
    let bundles: Vec<Bundle> = (0..THREADS).map(|_| Bundle::new()).collect();
    let h = Harness::new();

    let stop = AtomicBool::new(false);
    let results = std::thread::scope(|s| {
        // Allocator hammer: many sizes, so several arenas and size classes are busy.
        for t in 0..2 {
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
                    let s = format!("{i}-{size}");
                    std::hint::black_box(s);
                    i = i.wrapping_add(1);
                }
            });
        }
        // Stdio hammer: holds the stderr lock often.
        {
            let stop = &stop;
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut e = std::io::stderr().lock();
                    let _ = e.write_all(b"");
                    n = n.wrapping_add(1);
                    drop(e);
                }
                std::hint::black_box(n);
            });
        }
        let workers: Vec<_> = bundles
            .into_iter()
            .enumerate()
            .map(|(t, mut bundle)| {
                let h = &h;
                s.spawn(move || {
                    let mut codes = Vec::new();
                    for k in 0..PER_THREAD {
                        let n = 1 + t * PER_THREAD + k;
                        sh(&mut bundle, &format!("exit {n}"));
                        let id = h.id(&format!("par{t}"));
                        let c = h.create(&id, &bundle).unwrap_or_else(|e| panic!("create {id}: {e}"));
                        h.rt.start(&id).unwrap_or_else(|e| panic!("start {id}: {e}"));
                        let code = h.wait(&c);
                        h.rt.delete(&id, false).unwrap_or_else(|e| panic!("delete {id}: {e}"));
                        codes.push((n, code));
                    }
                    codes
                })
            })
            .collect();
        // Join every worker before stopping the hammers, even if one panicked.
        let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        stop.store(true, Ordering::Relaxed);
        results
    });
    let results: Vec<Vec<(usize, i32)>> = results
        .into_iter()
        .enumerate()
        .map(|(t, r)| r.unwrap_or_else(|_| panic!("worker {t} failed (see its panic above)")))
        .collect();

    let all: Vec<(usize, i32)> = results.into_iter().flatten().collect();
    assert_eq!(all.len(), THREADS * PER_THREAD);
    for (want, got) in &all {
        assert_eq!(*got as usize, *want, "container `exit {want}` exited {got}");
    }
    assert!(h.leftover_state().is_empty(), "state left: {:?}", h.leftover_state());
    drop(h);
    done.store(true, Ordering::SeqCst);
}
