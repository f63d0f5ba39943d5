#!/usr/bin/env bash
# berth's containerd shim against containerd's Go runc shim (with runc), in one run, on one
# private containerd 1.6: the time of `ctr run -d` for N `sleep` containers (one shim each),
# then the shims' memory summed from /proc/PID/smaps_rollup while the N run (idle, 3 s after
# the last start).
#
#   sudo benches/shim.sh [N]       (N containers per shim kind, 20 by default)
#
# Needs: containerd, runc, busybox-static (apt-get install -y containerd runc busybox-static)
# and a release build of the shim (cargo build --release -p berth-examples). The containers
# run from a plain busybox rootfs (`ctr run --rootfs`), so no image is involved. Everything
# the script makes (containerd's root and state, the containers, their cgroups, the shims'
# state under /run/containerd/berth/<namespace>) is removed on exit.
set -euo pipefail
n=${1:-20}
top=$(cd "$(dirname "$0")/.." && pwd)
shim=$top/target/release/containerd-shim-berth-v2
[ -x "$shim" ] || (cd "$top" && cargo build --release -q -p berth-examples)

# shellcheck source=lib.sh
. "$top/benches/lib.sh"
bench_work shim
ns=berth-bench-$$
rootfs=$work/rootfs
mkdir -p "$rootfs/bin" "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/tmp"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for a in sh sleep; do ln -s busybox "$rootfs/bin/$a"; done

cat >"$work/config.toml" <<EOF
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/c.sock"
[ttrpc]
  address = "$work/t.sock"
[debug]
  address = ""
[metrics]
  address = ""
EOF
containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
daemon=$!
ctr() { command ctr -a "$work/c.sock" -n "$ns" "$@"; }
cleanup() {
    for id in $(ctr task ls -q 2>/dev/null); do ctr task delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr container ls -q 2>/dev/null); do ctr container delete "$id" >/dev/null 2>&1 || true; done
    kill "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
    rm -rf "/run/containerd/berth/$ns"
    # The namespace's cgroup in every hierarchy, children first (a cgroup directory holds
    # its interface files too: only directories are removed). Never fails: under set -e a
    # failing step would end the clean-up before the temporary directory goes.
    local h
    for h in /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/"$ns"; do
        [ -d "$h" ] || continue
        find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done

# The pids of the shims serving this containerd whose executable is $1's.
shim_pids() {
    local exe=$1 p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$exe" ] || continue
        tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "$work/c.sock" && echo "${p#/proc/}"
    done
    return 0
}

# `measure NAME RUNTIME EXE [GROUP]`: starts N containers through RUNTIME (all in one shim
# with GROUP, as a pod's), prints the time per `ctr run -d` and the shims' memory per
# container, then removes the containers.
measure() {
    local name=$1 runtime=$2 exe=$3 group=() i start end rss=0 pss=0 anon=0 threads=0 pids
    [ -n "${4:-}" ] && group=(--annotation "io.containerd.runc.v2.group=$4")
    start=$(date +%s%N)
    for i in $(seq "$n"); do
        ctr run -d --runtime "$runtime" "${group[@]}" --rootfs "$rootfs" "$name-$i" \
            /bin/sleep 100000 >/dev/null
    done
    end=$(date +%s%N)
    # Idle, as a shim spends its life: berth's shim gives back the mappings of the code a
    # request ran a second after its last one (berth_shim_core::footprint).
    sleep 3
    pids=$(shim_pids "$exe")
    for p in $pids; do
        read -r r q a < <(awk '/^Rss:/{r=$2} /^Pss:/{p=$2} /^Anonymous:/{a=$2} END{print r, p, a}' \
            "/proc/$p/smaps_rollup")
        rss=$((rss + r)) pss=$((pss + q)) anon=$((anon + a))
        threads=$((threads + $(ls "/proc/$p/task" | wc -l)))
    done
    printf '%-10s %3d shims %4d threads | ctr run -d: %6.1f ms/container | per container: Rss %5.2f MiB  Pss %5.2f MiB  Anon %5.2f MiB\n' \
        "$name" "$(echo "$pids" | wc -w)" "$threads" \
        "$(echo "($end - $start) / 1000000 / $n" | bc -l)" \
        "$(echo "$rss / 1024 / $n" | bc -l)" "$(echo "$pss / 1024 / $n" | bc -l)" \
        "$(echo "$anon / 1024 / $n" | bc -l)"
    for i in $(seq "$n"); do
        ctr task kill -s KILL "$name-$i" >/dev/null 2>&1 || true
    done
    for i in $(seq "$n"); do
        for _ in $(seq 50); do ctr task delete "$name-$i" >/dev/null 2>&1 && break; sleep 0.1; done
        ctr container delete "$name-$i" >/dev/null 2>&1 || true
    done
}

go_shim=$(command -v containerd-shim-runc-v2)
echo "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}')"
echo "$n sleep containers, one shim each (as ctr run), then one shim for all (as a pod)"
measure go-runc io.containerd.runc.v2 "$(readlink -f "$go_shim")"
measure berth "$shim" "$(readlink -f "$shim")"
measure go-pod io.containerd.runc.v2 "$(readlink -f "$go_shim")" pod-go
measure berth-pod "$shim" "$(readlink -f "$shim")" pod-berth
