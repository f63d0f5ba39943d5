# Sourced by the bench scripts (compare.sh, phases.sh, offcpu.sh).

# `bench_work NAME`: sets $work to a new temporary directory and $tracer to "", and removes
# the directory on exit after stopping the background tracer whose pid is in $tracer.
bench_work() {
    work=$(mktemp -d "/tmp/berth-$1.XXXXXX")
    tracer=""
    trap '[ -n "$tracer" ] && kill -INT "$tracer" 2>/dev/null; rm -rf "$work"' EXIT
}

# `true_bundle DIR BERTH` makes DIR/bundle: a busybox rootfs with `berth spec`'s default
# config running /bin/true without a terminal.
true_bundle() {
    local dir=$1 berth=$2
    mkdir -p "$dir/bundle/rootfs/bin" "$dir/bundle/rootfs/proc" "$dir/bundle/rootfs/dev" \
        "$dir/bundle/rootfs/sys" "$dir/bundle/rootfs/tmp"
    cp "$(command -v busybox)" "$dir/bundle/rootfs/bin/busybox"
    ln -s busybox "$dir/bundle/rootfs/bin/true"
    (cd "$dir/bundle" && "$berth" spec)
    sed -i -e 's/"terminal": true/"terminal": false/' -e 's|"sh"$|"/bin/true"|' \
        "$dir/bundle/config.json"
}

# `need_tracefs`: bpftrace's tracepoints live in tracefs, which a freshly booted machine may
# not have mounted (bpftrace then says "tracepoint not found"): mount it where it goes.
need_tracefs() {
    [ -d /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing
}
