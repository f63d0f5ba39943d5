#!/usr/bin/env bash
# berthd against containerd 1.6 (its CRI plugin, the Go runc shim, runc), in one run, driven
# by one CRI client (cri-pods): N host-network pods of one `sleep 3600` busybox container
# each, started (RunPodSandbox + CreateContainer + StartContainer), then the managers'
# memory with the N running, then the N removed (StopPodSandbox + RemovePodSandbox).
#
#   sudo benches/cri_pods.sh [N [P]]
#
# N pods per manager (100 by default); P of them in flight at a time (1 by default: one pod
# after another; the kubelet starts pods concurrently, one worker per pod).
#
# Needs: containerd, runc, umoci, busybox-static, protoc (protobuf-compiler, to build) and
# jq, bc. Builds the release binaries (berthd, its shim, berthctl, cri-pods) into
# $CARGO_TARGET_DIR (or target/). Each manager gets its own temporary root, state, socket
# and a cgroup parent of its own; everything made (pods, shims, daemons, mounts, cgroups,
# the temporary directory) is removed on exit, also after a failure or ctrl-C.
set -euo pipefail
n=${1:-100}
par=${2:-1}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$top/target}/release
(cd "$top" && cargo build --release -q -p berth-examples --bin berthd \
    --bin containerd-shim-berth-v2 --bin berthctl &&
    cargo build --release -q -p berth-benches --bin cri-pods)

# shellcheck source=lib.sh
. "$top/benches/lib.sh"
bench_work cri-pods
cg_ctrd=/cri-pods-containerd-$$
cg_berthd=/cri-pods-berthd-$$
# Host directories containerd makes even with root and state elsewhere: the ones missing
# now are removed (when empty) at the end.
host_dirs=()
for d in /run/containerd/s /run/containerd/fifo /run/containerd/runc /run/containerd; do
    [ -e "$d" ] || host_dirs+=("$d")
done
ctrd="" berthd=""

# The pids whose command line has the argument $1 (a socket), but not $2.
pids_with_arg() {
    local p
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = "${2:-}" ] && continue
        { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qxF -- "$1" && echo "${p#/proc/}"
    done
    return 0
}

# Never fails (under set -e a failing step would end the clean-up early).
cleanup() {
    set +e
    local sock pid h m cg
    # Pods left by a failed run, through the manager that made them.
    for sock in "$work/containerd.sock" "$work/berthd.sock"; do
        [ -S "$sock" ] || continue
        for pid in $("$bin/berthctl" -a "$sock" pods -o json 2>/dev/null | jq -r '.items[]?.id' 2>/dev/null); do
            timeout 20 "$bin/berthctl" -a "$sock" rm -f "$pid" >/dev/null 2>&1
        done
    done
    for pid in $ctrd $berthd; do kill "$pid" 2>/dev/null; done
    for pid in $ctrd $berthd; do wait "$pid" 2>/dev/null; done
    # Shims (and their containers' processes) still there.
    for sock in "$work/containerd.sock" "$work/berthd.sock"; do
        for pid in $(pids_with_arg "$sock"); do kill -KILL "$pid" 2>/dev/null; done
    done
    for cg in "$cg_ctrd" "$cg_berthd"; do
        for h in /sys/fs/cgroup/*"$cg" /sys/fs/cgroup"$cg"; do
            [ -d "$h" ] || continue
            # Processes left in them first, then the directories, children first.
            find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
            sleep 0.2
            find "$h" -depth -type d -exec rmdir {} + 2>/dev/null
        done
    done
    # Mounts under the work directory, deepest first.
    for m in $(awk -v w="$work" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null
    done
    for h in "${host_dirs[@]}"; do rmdir "$h" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The busybox image (umoci, from busybox-static), as an OCI archive, and the same with
# `sleep` as its command: containerd's sandbox ("pause") image.
mkimage() {
    local layout=$work/layout bundle=$work/bundle r
    umoci init --layout "$layout"
    umoci new --image "$layout:busybox"
    umoci unpack --image "$layout:busybox" "$bundle" >/dev/null
    r=$bundle/rootfs
    mkdir -p "$r/bin" "$r/dev" "$r/etc" "$r/proc" "$r/root" "$r/sys" "$r/tmp"
    cp "$(command -v busybox)" "$r/bin/busybox"
    chroot "$r" /bin/busybox --install -s /bin
    echo 'root:x:0:0:root:/root:/bin/sh' >"$r/etc/passwd"
    echo 'root:x:0:' >"$r/etc/group"
    umoci repack --refresh-bundle --image "$layout:busybox" "$bundle" >/dev/null
    umoci config --image "$layout:busybox" --config.cmd /bin/sh \
        --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin --config.workingdir /
    tar -C "$layout" -cf "$work/busybox.tar" .
    umoci config --image "$layout:busybox" --tag pause \
        --config.cmd /bin/sleep --config.cmd 2147483647
    umoci rm --image "$layout:busybox"
    tar -C "$layout" -cf "$work/pause.tar" .
}
mkimage
mkdir -p "$work/cni" "$work/logs" "$work/berthd-root" "$work/berthd-state"

# `row NAME JSON`: a table row's numbers: name, start total, per pod median and p90, remove
# total, manager Rss, shims, their Rss, pods started.
row() {
    jq -r --arg m "$1" '[$m, .start_total_ms, .start_per_pod_ms.median, .start_per_pod_ms.p90,
        .remove_total_ms, .manager_rss_kib, .shims, .shims_rss_kib, .started] | @tsv' "$2"
}

# --- containerd 1.6 + CRI + Go runc shim + runc -----------------------------------------
cat >"$work/containerd.toml" <<EOT
version = 2
root = "$work/ctrd-root"
state = "$work/ctrd-state"
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
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/bench:pause"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$work/runc-root"
EOT
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
ctrd=$!
for _ in $(seq 300); do ctr -a "$work/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
for img in busybox pause; do
    ctr -a "$work/containerd.sock" -n k8s.io images import --base-name localhost/bench \
        "$work/$img.tar" >/dev/null
done
# CRI's image store follows containerd's events: wait until CRI knows both.
for _ in $(seq 100); do
    [ "$("$bin/berthctl" -a "$work/containerd.sock" images -o json 2>/dev/null |
        jq '[.images[]?.repo_tags[]?] | map(select(. == "localhost/bench:busybox" or . == "localhost/bench:pause")) | length')" = 2 ] && break
    sleep 0.1
done

echo "containerd $(containerd --version | awk '{print $3}') (runc $(runc --version | awk 'NR==1{print $3}')): $n pods ..." >&2
"$bin/cri-pods" --address "$work/containerd.sock" --image localhost/bench:busybox --count "$n" \
    --parallel "$par" --handler runc --host-network --pid "$ctrd" --cgroup-parent "$cg_ctrd" \
    --log-dir "$work/logs/containerd" >"$work/containerd.json" ||
    { echo "cri-pods against containerd failed; its log:" >&2; tail -50 "$work/containerd.log" >&2; exit 1; }
kill "$ctrd"
wait "$ctrd" 2>/dev/null || true
ctrd=""

# --- berthd + berth's shim -------------------------------------------------------------
"$bin/berthd" --root "$work/berthd-root" --state "$work/berthd-state" \
    --address "$work/berthd.sock" --shim "$bin/containerd-shim-berth-v2" \
    --cni-conf-dir "$work/cni" --cgroup-parent "$cg_berthd" >"$work/berthd.log" 2>&1 &
berthd=$!
for _ in $(seq 300); do "$bin/berthctl" -a "$work/berthd.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
"$bin/berthctl" -a "$work/berthd.sock" pull "oci-archive:$work/busybox.tar:localhost/bench:busybox" >/dev/null

echo "berthd $("$bin/berthd" --version | awk '{print $2}'): $n pods ..." >&2
"$bin/cri-pods" --address "$work/berthd.sock" --image localhost/bench:busybox --count "$n" \
    --parallel "$par" --host-network --pid "$berthd" --cgroup-parent "$cg_berthd" \
    --log-dir "$work/logs/berthd" >"$work/berthd.json" ||
    { echo "cri-pods against berthd failed; its log:" >&2; tail -50 "$work/berthd.log" >&2; exit 1; }

# --- the table --------------------------------------------------------------------------
echo
if [ "$par" = 1 ]; then how="one after another"; else how="$par in flight at a time"; fi
echo "$n host-network pods, one 'sleep 3600' container each, one CRI client, $how"
printf '%-11s %13s %14s %10s %13s %14s %18s\n' manager "start total" "per pod med" "p90" \
    "remove total" "manager Rss" "shims (Rss sum)"
read -r _ cs cm cp cr crss csh cshr _ < <(row containerd "$work/containerd.json")
read -r _ bs bm bp br brss bsh bshr _ < <(row berthd "$work/berthd.json")
line() {
    printf '%-11s %10.0f ms %11.1f ms %7.1f ms %10.0f ms %10.1f MiB %4d (%6.1f MiB)\n' \
        "$1" "$2" "$3" "$4" "$5" "$(echo "$6 / 1024" | bc -l)" "$7" "$(echo "$8 / 1024" | bc -l)"
}
line containerd "$cs" "$cm" "$cp" "$cr" "$crss" "$csh" "$cshr"
line berthd "$bs" "$bm" "$bp" "$br" "$brss" "$bsh" "$bshr"
printf '%-11s %12.2fx %13.2fx %9.2fx %12.2fx %12.2fx %13.2fx\n' "ratio c/b" \
    "$(echo "$cs / $bs" | bc -l)" "$(echo "$cm / $bm" | bc -l)" "$(echo "$cp / $bp" | bc -l)" \
    "$(echo "$cr / $br" | bc -l)" "$(echo "$crss / $brss" | bc -l)" "$(echo "$cshr / $bshr" | bc -l)"
echo
echo "per call medians (ms): RunPodSandbox / CreateContainer / StartContainer; remove per pod"
for m in containerd berthd; do
    jq -r --arg m "$m" '"\($m): \(.run_pod_sandbox_ms.median) / \(.create_container_ms.median) / \(.start_container_ms.median); \(.remove_per_pod_ms.median)"' "$work/$m.json"
done
if [ -n "${CRI_PODS_JSON:-}" ]; then
    jq -s '{containerd: .[0], berthd: .[1]}' "$work/containerd.json" "$work/berthd.json" >"$CRI_PODS_JSON"
fi
