#!/usr/bin/env bash
# From an empty store to a running container, berthd against containerd 1.6, one run: a
# 3-layer Debian image (debootstrap --variant=minbase bookworm, split by umoci into /usr,
# the rest of the system, and a small /app) pushed with skopeo to a private Debian
# docker-registry on 127.0.0.1, then R times each (interleaved, every time from a fresh
# daemon with an empty root and state):
#   berthd:     berthctl pull REF; berthctl run -d --net host REF
#   containerd: ctr images pull --plain-http REF; ctr run -d --net-host REF ID
# and the medians of the pull, the run and the two together.
#
#   sudo benches/pull.sh [R]      (R timings per manager, 5 by default)
#
# Needs: debootstrap (and Debian's mirror, as apt is configured), umoci, skopeo,
# docker-registry, containerd, runc, jq, bc, protoc (to build). Everything made (daemons,
# the registry, pods, shims, containers, mounts, cgroups, the temporary directory) is
# removed on exit, also after a failure or ctrl-C.
set -euo pipefail
runs=${1:-5}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$top/target}/release
(cd "$top" && cargo build --release -q -p berth-examples --bin berthd \
    --bin containerd-shim-berth-v2 --bin berthctl)

# shellcheck source=lib.sh
. "$top/benches/lib.sh"
bench_work pull
ns=bench-pull-$$
cg_berthd=/bench-pull-berthd-$$
host_dirs=()
for d in /run/containerd/s /run/containerd/fifo /run/containerd/runc /run/containerd; do
    [ -e "$d" ] || host_dirs+=("$d")
done
registry="" ctrd="" berthd=""
mirror=$(awk '/^URIs:/{print $2; exit} /^deb /{print $2; exit}' /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

pids_with_arg() {
    local p
    for p in /proc/[0-9]*; do
        { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qxF -- "$1" && echo "${p#/proc/}"
    done
    return 0
}
umount_under() {
    local m
    for m in $(awk -v w="$1" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}
rm_cgroups() {
    local h
    for h in /sys/fs/cgroup/*/"$1" /sys/fs/cgroup/"$1"; do
        [ -d "$h" ] || continue
        find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        sleep 0.2
        find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

ctr() { command ctr -a "$work/containerd.sock" -n "$ns" "$@"; }
bctl() { "$bin/berthctl" -a "$work/berthd.sock" "$@"; }

# A fresh containerd (CRI off: ctr alone) on an empty root and state.
start_containerd() {
    rm -rf "$work/ctrd-root" "$work/ctrd-state"
    containerd --config "$work/containerd.toml" >>"$work/containerd.log" 2>&1 &
    ctrd=$!
    for _ in $(seq 300); do ctr version >/dev/null 2>&1 && return; sleep 0.05; done
    echo "containerd did not start" >&2
    return 1
}
stop_containerd() {
    local id
    if [ -n "$ctrd" ]; then
        for id in $(ctr task ls -q 2>/dev/null); do ctr task kill -s KILL "$id" >/dev/null 2>&1 || true; done
        for id in $(ctr task ls -q 2>/dev/null); do
            for _ in $(seq 50); do ctr task delete "$id" >/dev/null 2>&1 && break; sleep 0.1; done
        done
        for id in $(ctr container ls -q 2>/dev/null); do ctr container delete "$id" >/dev/null 2>&1 || true; done
        kill "$ctrd" 2>/dev/null || true
        wait "$ctrd" 2>/dev/null || true
        ctrd=""
    fi
    for id in $(pids_with_arg "$work/containerd.sock"); do kill -KILL "$id" 2>/dev/null || true; done
    rm_cgroups "$ns"
    umount_under "$work/ctrd-"
    rm -rf "/run/containerd/runc/$ns" "/run/containerd/fifo/$ns"
}
# A fresh berthd on an empty root and state.
start_berthd() {
    rm -rf "$work/berthd-root" "$work/berthd-state"
    mkdir -p "$work/berthd-root" "$work/berthd-state"
    "$bin/berthd" --root "$work/berthd-root" --state "$work/berthd-state" \
        --address "$work/berthd.sock" --shim "$bin/containerd-shim-berth-v2" \
        --cni-conf-dir "$work/cni" --cgroup-parent "$cg_berthd" >>"$work/berthd.log" 2>&1 &
    berthd=$!
    for _ in $(seq 300); do bctl version >/dev/null 2>&1 && return; sleep 0.05; done
    echo "berthd did not start" >&2
    return 1
}
stop_berthd() {
    local id
    if [ -n "$berthd" ]; then
        for id in $(bctl pods -o json 2>/dev/null | jq -r '.items[]?.id' 2>/dev/null); do
            timeout 20 "$bin/berthctl" -a "$work/berthd.sock" rm -f "$id" >/dev/null 2>&1 || true
        done
        kill "$berthd" 2>/dev/null || true
        wait "$berthd" 2>/dev/null || true
        berthd=""
    fi
    for id in $(pids_with_arg "$work/berthd.sock"); do kill -KILL "$id" 2>/dev/null || true; done
    rm_cgroups "${cg_berthd#/}"
    umount_under "$work/berthd-"
}

cleanup() {
    set +e
    stop_berthd
    stop_containerd
    [ -n "$registry" ] && kill "$registry" 2>/dev/null && wait "$registry" 2>/dev/null
    umount_under "$work"
    for h in "${host_dirs[@]}"; do rmdir "$h" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the image ----------------------------------------------------------------------------
echo "debootstrap --variant=minbase bookworm ($mirror) ..." >&2
debootstrap --variant=minbase bookworm "$work/debian" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
umount_under "$work/debian"
layout=$work/layout bundle=$work/bundle img=$work/layout:debian
umoci init --layout "$layout"
umoci new --image "$img"
umoci unpack --image "$img" "$bundle" >/dev/null
# Layer 1: /usr.
cp -a "$work/debian/usr" "$bundle/rootfs/"
umoci repack --refresh-bundle --image "$img" "$bundle" >/dev/null
# Layer 2: the rest of the system (/etc, /var, the /bin-style links, ...), without devices.
tar -C "$work/debian" --exclude=./usr --exclude='./dev/*' --exclude='./proc/*' \
    --exclude='./sys/*' -cf - . | tar -C "$bundle/rootfs" -xpf -
umoci repack --refresh-bundle --image "$img" "$bundle" >/dev/null
# Layer 3: the app.
mkdir -p "$bundle/rootfs/app"
printf '#!/bin/sh\necho app up\nexec sleep infinity\n' >"$bundle/rootfs/app/run.sh"
chmod 755 "$bundle/rootfs/app/run.sh"
umoci repack --refresh-bundle --image "$img" "$bundle" >/dev/null
umoci config --image "$img" --config.cmd /app/run.sh \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.workingdir /
rm -rf "$work/debian" "$bundle"
layers=$(jq -r '.manifests[0].digest' "$layout/index.json" | sed 's/sha256://' |
    xargs -I{} jq -r '.layers[].size' "$layout/blobs/sha256/{}" | awk '{printf "%s%.1f", s, $1/1048576; s=" + "} END{print " MiB (gzip)"}')

# --- the registry -------------------------------------------------------------------------
port=""
for p in $(seq $((20000 + $$ % 20000)) $((20050 + $$ % 20000))); do
    ss -ltnH "sport = :$p" | grep -q . || { port=$p; break; }
done
[ -n "$port" ] || { echo "no free port" >&2; exit 1; }
cat >"$work/registry.yml" <<EOT
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $work/registry-data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$port}
EOT
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
ref=127.0.0.1:$port/bench/debian:1
skopeo copy -q --dest-tls-verify=false "oci:$img" "docker://$ref"

cat >"$work/containerd.toml" <<EOT
version = 2
root = "$work/ctrd-root"
state = "$work/ctrd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/ctrd-opt"
EOT
mkdir -p "$work/cni"

now() { date +%s%N; }
# `ms A B`: B - A nanoseconds in milliseconds.
ms() { echo "($2 - $1) / 1000000" | bc; }
median() { sort -n | awk '{v[NR]=$1} END{print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
: >"$work/berthd.times"
: >"$work/containerd.times"
echo "$ref: 3 layers, $layers; $runs runs each, interleaved ..." >&2
for i in $(seq "$runs"); do
    start_berthd
    t0=$(now)
    bctl pull "$ref" >/dev/null
    t1=$(now)
    id=$(bctl run -d --net host --name "pull-$i" "$ref")
    t2=$(now)
    # berthctl's JSON is CRI's messages as serde writes them: state 1 is CONTAINER_RUNNING.
    [ "$(bctl ps -o json | jq -r --arg id "$id" '[.containers[]? | select(.id == $id) | .state] | .[0]')" = 1 ] ||
        { echo "berthd: container $id is not running" >&2; bctl ps -a >&2; tail -30 "$work/berthd.log" >&2; exit 1; }
    echo "$(ms "$t0" "$t1") $(ms "$t1" "$t2") $(ms "$t0" "$t2")" >>"$work/berthd.times"
    stop_berthd

    start_containerd
    t0=$(now)
    ctr images pull --plain-http "$ref" >/dev/null
    t1=$(now)
    ctr run -d --net-host "$ref" "pull-$i" >/dev/null
    t2=$(now)
    [ "$(ctr task ls | awk -v id="pull-$i" '$1 == id {print $3}')" = RUNNING ] ||
        { echo "containerd: task pull-$i is not running" >&2; ctr task ls >&2; exit 1; }
    echo "$(ms "$t0" "$t1") $(ms "$t1" "$t2") $(ms "$t0" "$t2")" >>"$work/containerd.times"
    stop_containerd
done

echo
echo "$ref (3 layers: $layers), empty store each time, $runs runs, medians (min-max of total)"
printf '%-11s %10s %10s %12s %14s\n' manager pull run "pull+run" "total range"
for m in containerd berthd; do
    f=$work/$m.times
    printf '%-11s %7s ms %7s ms %9s ms %6s-%s ms\n' "$m" \
        "$(cut -d' ' -f1 "$f" | median)" "$(cut -d' ' -f2 "$f" | median)" \
        "$(cut -d' ' -f3 "$f" | median)" "$(cut -d' ' -f3 "$f" | sort -n | head -1)" \
        "$(cut -d' ' -f3 "$f" | sort -n | tail -1)"
done
c=$(cut -d' ' -f3 "$work/containerd.times" | median)
b=$(cut -d' ' -f3 "$work/berthd.times" | median)
printf 'ratio containerd/berthd (pull+run medians): %.2fx\n' "$(echo "$c / $b" | bc -l)"
echo "berthd runs:     $(tr '\n' ';' <"$work/berthd.times")  (pull run total, ms)"
echo "containerd runs: $(tr '\n' ';' <"$work/containerd.times")"
