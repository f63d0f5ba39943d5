#!/usr/bin/env bash
# Where the time of one `berth run` of /bin/true goes: kernel tracepoints of a few system calls
# (bpftrace), timestamped from berth's own execve, over RUNS runs; prints the median time of
# each phase boundary. strace and perf trace slow every system call down (a 5.6 ms run takes 16
# to 48 ms under them); these probes fire only on the calls they name.
#
#   sudo benches/phases.sh [RUNS]
#
# Needs: bpftrace, busybox-static, python3 and a release build of berth
# (apt-get install -y bpftrace busybox-static; cargo build --release -p berth-examples).
# Same bundle as compare.sh: busybox, `berth spec`, terminal off, /bin/true.
set -euo pipefail
runs=${1:-30}
top=$(cd "$(dirname "$0")/.." && pwd)
berth=$top/target/release/berth
[ -x "$berth" ] || (cd "$top" && cargo build --release -q -p berth-examples)
command -v bpftrace >/dev/null || { echo "phases.sh: apt-get install -y bpftrace" >&2; exit 2; }

# shellcheck source=lib.sh
. "$top/benches/lib.sh"
need_tracefs
bench_work phases
true_bundle "$work" "$berth"

# Every event as "<name> <microseconds since berth's execve> <pid>" (for clone, the child's pid);
# "berth-exit" ends a run.
cat >"$work/phases.bt" <<'BT'
tracepoint:syscalls:sys_enter_execve /str(args->filename) == str($1)/ { @t0 = nsecs; @run = 1; }
tracepoint:syscalls:sys_enter_mkdir, tracepoint:syscalls:sys_enter_mkdirat /@run/ { printf("mkdir %d %d\n", (nsecs - @t0) / 1000, pid); }
tracepoint:syscalls:sys_enter_memfd_create /@run/ { printf("memfd %d\n", (nsecs - @t0) / 1000); }
tracepoint:syscalls:sys_enter_execve /str(args->filename) == str($1)/ { printf("start 0 %d\n", pid); }
tracepoint:syscalls:sys_exit_clone3, tracepoint:syscalls:sys_exit_clone /@run && comm == "berth" && args->ret > 0/ { printf("clone %d %d\n", (nsecs - @t0) / 1000, args->ret); }
tracepoint:syscalls:sys_enter_pivot_root /@run/ { printf("pivot_root %d %d\n", (nsecs - @t0) / 1000, pid); }
tracepoint:syscalls:sys_enter_execveat /@run/ { printf("execveat %d\n", (nsecs - @t0) / 1000); }
tracepoint:syscalls:sys_enter_execve /@run && str(args->filename) == "/bin/true"/ { printf("exec-true %d\n", (nsecs - @t0) / 1000); }
tracepoint:syscalls:sys_enter_exit_group /@run && comm == "true"/ { printf("true-exit %d\n", (nsecs - @t0) / 1000); }
tracepoint:syscalls:sys_exit_wait4, tracepoint:syscalls:sys_exit_waitid /@run/ { printf("reaped %d\n", (nsecs - @t0) / 1000); }
tracepoint:syscalls:sys_enter_rmdir /@run/ { printf("rmdir %d\n", (nsecs - @t0) / 1000); }
tracepoint:syscalls:sys_exit_rmdir /@run/ { printf("rmdir-done %d\n", (nsecs - @t0) / 1000); }
tracepoint:syscalls:sys_enter_exit_group /@run && comm == "berth"/ { printf("berth-exit %d\n", (nsecs - @t0) / 1000); @run = 0; }
BT
bpftrace "$work/phases.bt" "$berth" >"$work/events" 2>"$work/bpftrace.err" &
tracer=$!
for _ in $(seq 1 50); do grep -q . "$work/events" 2>/dev/null && break; sleep 0.2; done
sleep 3 # bpftrace prints "Attaching N probes..." before the probes are live
cd "$work/bundle"
for i in $(seq 1 $((runs + 2))); do "$berth" --root "$work/root" run "p$i"; done
sleep 1
kill -INT "$tracer"
wait "$tracer" 2>/dev/null || true
tracer=""

python3 - "$work/events" <<'PY'
import statistics, sys
runs, cur = [], []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) in (2, 3) and all(x.isdigit() for x in f[1:]):
        cur.append((f[0], int(f[1]), int(f[2]) if len(f) == 3 else 0))
        if f[0] == "berth-exit":
            runs.append(cur)
            cur = []
runs = runs[2:]  # warm-up
def points(r):
    first = lambda k: next(v for n, v, _ in r if n == k)
    last = lambda k: [v for n, v, _ in r if n == k][-1]
    berth = next(p for n, _, p in r if n == "start")
    # The init's clone (not the network namespace's thread): the one whose child pivots.
    pivoter = next(p for n, _, p in r if n == "pivot_root")
    clone = next(v for n, v, p in r if n == "clone" and p == pivoter)
    mine = [v for n, v, p in r if n == "mkdir" and p == berth]
    init = [v for n, v, p in r if n == "mkdir" and p != berth]
    return [
        ("berth started, config read (first mkdir: state dir)", mine[0]),
        ("exe guard memfd", first("memfd")),
        ("clone of the init", clone),
        ("cgroup directories made (berth's last mkdir)", mine[-1]),
        ("init's first mkdir (mount points)", init[0] if init else clone),
        ("pivot_root", first("pivot_root")),
        ("exe guard execveat", first("execveat")),
        ("execve /bin/true", first("exec-true")),
        ("/bin/true exit_group", first("true-exit")),
        ("init reaped", last("reaped")),
        ("cgroups removed (last rmdir)", last("rmdir-done")),
        ("berth exit_group", last("berth-exit")),
    ]
table = [points(r) for r in runs]
print(f"median of {len(table)} runs, ms since berth's execve (and since the line before):")
prev = 0.0
for i, (name, _) in enumerate(table[0]):
    m = statistics.median(t[i][1] for t in table) / 1000
    print(f"  {m:6.2f}  (+{m - prev:5.2f})  {name}")
    prev = m
PY
