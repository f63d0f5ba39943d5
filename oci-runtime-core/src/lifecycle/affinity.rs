//! The init's CPU affinity: set aside while it is set up, reset before it runs the program.
//!
//! **Set aside.** On a v1 or hybrid host the parent makes the cgroup right after the clone,
//! while the new init unshares its namespaces and mounts. The scheduler puts most forked
//! children on their parent's CPU (bpftrace on `sched_wakeup_new` here: 78 of 100), where
//! the init then waits, runnable, until the parent blocks (256 µs to 1 ms): the two would run
//! one after the other although another CPU is idle. [`pin_away`] keeps the init off the
//! parent's CPU; the init has not run yet, so the kernel moves it at once, without waiting.
//! (Moving the parent instead costs it a wait for the migration, about 0.19 ms here.)
//!
//! **Reset.** Before the init runs the program, [`reset`] gives it every CPU its cpuset
//! allows, whatever affinity it inherited (the parent undoes a pin right after `Go`; the
//! init resets itself before its credentials change), as runc (since 1.3) and crun do:
//! since Linux 6.2 the kernel keeps an affinity set with `sched_setaffinity` across cgroup
//! moves, so a runtime started with a narrow one (systemd's `CPUAffinity=`, `taskset`)
//! would otherwise pass it on to every container. An all-set mask is what the kernel
//! narrows to the cpuset.

/// Every CPU a `cpu_set_t` can name.
fn all() -> libc::cpu_set_t {
    // SAFETY: a cpu_set_t is plain bits: zeroed it is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: cpu is below CPU_SETSIZE, inside the set.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    set
}

fn set(pid: i32, set: &libc::cpu_set_t) -> bool {
    // SAFETY: a valid cpu_set_t and its size; sched_setaffinity only reads it.
    unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

/// Keeps `child` (cloned, not yet run) off the CPU the caller runs on; `false` where it may
/// run nowhere else (its cpuset, a single CPU) or the CPU can't be told. Undone by [`reset`].
pub(crate) fn pin_away(child: i32) -> bool {
    others().is_some_and(|others| set(child, &others))
}

/// As [`pin_away`], for a thread of ours (`pthread_t`) that can't have exited yet: the
/// caller must know it is still running (on an exited thread glibc uses tid 0, which would
/// pin the caller itself).
pub(crate) fn pin_thread_away(thread: libc::pthread_t) -> bool {
    others().is_some_and(|others| {
        // SAFETY: thread is a live thread of this process (see above); a valid cpu_set_t and
        // its size, only read.
        unsafe {
            libc::pthread_setaffinity_np(thread, std::mem::size_of::<libc::cpu_set_t>(), &others)
                == 0
        }
    })
}

/// Every CPU but the one the caller runs on.
fn others() -> Option<libc::cpu_set_t> {
    // SAFETY: no arguments.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    if cpu >= libc::CPU_SETSIZE as usize {
        return None;
    }
    let mut others = all();
    // SAFETY: cpu is below CPU_SETSIZE, inside the set.
    unsafe { libc::CPU_CLR(cpu, &mut others) };
    Some(others)
}

/// Lets `pid` (0: the caller) run on every CPU its cpuset allows. A failure (the process is
/// gone) is left to the caller's next step to find.
///
/// # Fragile child
/// The init calls it on itself before its credentials change: a stack set and one system
/// call.
pub(crate) fn reset(pid: i32) {
    set(pid, &all());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(pid: i32) -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().to_owned()
    }

    #[test]
    fn a_pinned_child_leaves_our_cpu_and_reset_gives_it_all_of_them() {
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let before = allowed(pid);
        let pinned = pin_away(pid);
        if online.trim() != "0" {
            assert!(pinned, "more than one CPU online: {online}");
            assert_ne!(allowed(pid), before, "pinned away from our CPU");
        }
        reset(pid);
        assert_eq!(allowed(pid), before, "every CPU again");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
