#!/usr/bin/env bash
# Side-by-side spawn latency of berth, crun and runc with hyperfine: `run` of /bin/true in the
# default `spec` config of each runtime (terminal off), on one busybox bundle, in one run.
#
#   sudo benches/compare.sh [RUNS]
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

work=$(mktemp -d /tmp/berth-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/dev" \
  "$work/bundle/rootfs/sys" "$work/bundle/rootfs/tmp"
cp "$(command -v busybox)" "$work/bundle/rootfs/bin/busybox"
ln -s busybox "$work/bundle/rootfs/bin/true"
(cd "$work/bundle" && "$berth" spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(p, "w"), indent=2)
PY

unshare -m sh -c "
  mount --make-rprivate /
  umount /sys/fs/cgroup/unified 2>/dev/null || true
  cd '$work/bundle'
  hyperfine -N --warmup 20 --runs $runs --export-json '$work/result.json' \
    -n berth \"$berth --root $work/berth run b1\" \
    -n crun \"crun --root $work/crun run b2\" \
    -n crun-no-cgroup \"crun --cgroup-manager=disabled --root $work/crun run b3\" \
    -n runc \"runc --root $work/runc run b4\"
"
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b = r["berth"]["median"]
for name, x in r.items():
    print(f"{name:16} median {x['median']*1000:7.2f} ms   ratio to berth {x['median']/b:5.2f}")
PY
