#!/usr/bin/env bash
# Where `berth run` of /bin/true waits: an off-CPU profile over RUNS runs (bpftrace on
# sched_switch), kernel stacks of berth's own process ("parent") and of the container's init
# before it execs ("init"), in microseconds per run, largest first. The waits on the sync
# socket and on poll are the two sides waiting for each other; the rest (an RCU grace
# period under cgroup_procs_write, a discard, a migration) is where the kernel holds a run up.
#
#   sudo benches/offcpu.sh [RUNS] [BERTH]
#
# Needs: bpftrace, busybox-static, python3 and a release build of berth
# (apt-get install -y bpftrace busybox-static; cargo build --release -p berth-examples).
# Same bundle as compare.sh, in a private mount namespace without the cgroup2 mount.
set -euo pipefail
runs=${1:-100}
top=$(cd "$(dirname "$0")/.." && pwd)
berth=${2:-$top/target/release/berth}
[ -x "$berth" ] || (cd "$top" && cargo build --release -q -p berth-examples)
command -v bpftrace >/dev/null || { echo "offcpu.sh: apt-get install -y bpftrace" >&2; exit 2; }
comm=$(basename "$berth" | cut -c1-15)

# shellcheck source=lib.sh
. "$top/benches/lib.sh"
need_tracefs
bench_work offcpu
true_bundle "$work" "$berth"

# A process that exec'd berth is a parent; one that became berth by a clone is an init.
cat >"$work/off.bt" <<BT
tracepoint:sched:sched_process_exec /comm == "$comm"/ { @parent[pid] = 1; }
tracepoint:sched:sched_switch /args->prev_comm == "$comm"/ {
    @since[args->prev_pid] = nsecs; @stack[args->prev_pid] = kstack(7);
}
tracepoint:sched:sched_switch /@since[args->next_pid]/ {
    @off[@parent[args->next_pid] ? "parent" : "init", @stack[args->next_pid]] =
        sum((nsecs - @since[args->next_pid]) / 1000);
    delete(@since[args->next_pid]); delete(@stack[args->next_pid]);
}
BT
bpftrace "$work/off.bt" >"$work/out" 2>"$work/bpftrace.err" &
tracer=$!
for _ in $(seq 1 50); do grep -q Attaching "$work/out" 2>/dev/null && break; sleep 0.2; done
sleep 3 # the probes are live a moment after "Attaching"
unshare -m sh -c "
  mount --make-rprivate /
  umount /sys/fs/cgroup/unified 2>/dev/null || true
  cd '$work/bundle'
  for i in \$(seq 1 $runs); do '$berth' --root '$work/root' run o\$i; done
"
sleep 1
kill -INT "$tracer"
wait "$tracer" 2>/dev/null || true
tracer=""

python3 - "$work/out" "$runs" <<'PY'
import re, sys
text, runs = open(sys.argv[1]).read(), int(sys.argv[2])
rows = re.findall(r'@off\[(\w+), \n(.*?)\]: (\d+)', text, re.S)
rows.sort(key=lambda r: -int(r[2]))
print(f"off-CPU time of berth run, us per run (mean of {runs}), kernel stack (innermost first)")
for who, stack, us in rows[:16]:
    frames = [f.strip().split('+')[0] for f in stack.strip().split('\n')][2:7]
    print(f"{who:6} {int(us) / runs:7.0f}  {' < '.join(frames)}")
PY
