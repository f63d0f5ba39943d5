#!/usr/bin/env bash
# Side-by-side spawn latency of berth, crun and runc with hyperfine: `run` of /bin/true in the
# default `spec` config of each runtime (terminal off), on one busybox bundle, in one run.
# With gcc, also `floor` (benches/floor.c): the same system calls with no runtime around them,
# the floor every runtime stands on.
#
#   sudo benches/compare.sh [RUNS]      (RUNS per command and pass)
#
# Needs: hyperfine, crun, runc, busybox-static (apt-get install -y hyperfine crun runc
# busybox-static) and a release build of berth (cargo build --release -p berth-examples).
# crun 1.8 refuses hybrid cgroup hosts, so everything runs inside one private mount namespace
# in which the cgroup2 mount at /sys/fs/cgroup/unified is unmounted (the host's is untouched).
set -euo pipefail
runs=${1:-300}
top=$(cd "$(dirname "$0")/.." && pwd)
berth=$top/target/release/berth
[ -x "$berth" ] || (cd "$top" && cargo build --release -q -p berth-examples)

# shellcheck source=lib.sh
. "$top/benches/lib.sh"
bench_work compare
true_bundle "$work" "$berth"
floor=()
if command -v gcc >/dev/null; then
    gcc -O2 -o "$work/floor" "$top/benches/floor.c"
    floor=(-n floor "$work/floor $work/floor-state f1 $work/bundle/rootfs")
fi

# Two passes, the second in reverse order, pooled: on this VM whatever runs later in a pass
# is slower (its ext4 has no journal, so each new inode's allocation scans the inodes deleted
# in the last minutes, which every run before made more of), by up to 5%.
cmds=(-n berth "$berth --root $work/berth run b1"
    -n crun "crun --root $work/crun run b2"
    -n crun-no-cgroup "crun --cgroup-manager=disabled --root $work/crun run b3"
    -n runc "runc --root $work/runc run b4"
    "${floor[@]}")
reversed=()
for ((i = ${#cmds[@]} - 3; i >= 0; i -= 3)); do reversed+=("${cmds[@]:i:3}"); done
for pass in 1 2; do
    if [ "$pass" = 1 ]; then set -- "${cmds[@]}"; else set -- "${reversed[@]}"; fi
    unshare -m sh -c '
      mount --make-rprivate /
      umount /sys/fs/cgroup/unified 2>/dev/null || true
      cd "$0"
      exec hyperfine -N --warmup 20 "$@"
    ' "$work/bundle" --runs "$runs" --export-json "$work/result$pass.json" "$@"
done
# floor's parent cgroup (berth keeps its /berth, as Docker keeps /docker; floor's goes).
rmdir /sys/fs/cgroup/*/berth-floor 2>/dev/null || true
python3 - "$work/result1.json" "$work/result2.json" <<'PY'
import json, statistics, sys
times = {}
for f in sys.argv[1:]:
    for x in json.load(open(f))["results"]:
        times.setdefault(x["command"], []).extend(x["times"])
med = {k: statistics.median(v) for k, v in times.items()}
b, c = med["berth"], med["crun"]
print(f"medians of {len(times['berth'])} runs each (two passes, opposite orders):")
for name, m in med.items():
    print(f"{name:16} median {m*1000:7.2f} ms   ratio to berth {m/b:5.2f}   to crun {m/c:5.2f}")
PY
