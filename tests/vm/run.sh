#!/usr/bin/env bash
# The VM lane: boots Debian's kernel under qemu once per cgroup layout (pure v2, pure v1, and
# this development VM's hybrid layout) and runs the suites of tests/vm/suites inside.
#
#   tests/vm/run.sh [--layout v2|v1|hybrid]... [--kernel /boot/vmlinuz-X] [--filter TEXT]
#                   [--timeout SECONDS] [--script FILE]
#
# --script runs FILE (a shell script) in each layout after the suites, as a suite of its
# own: a way to look at a layout by hand (its output is in results.log like the rest).
#
# Needs (Debian): qemu-system-x86, linux-image-amd64, busybox-static, cpio; crun is put in
# the image when installed. Runs as root (the tests inside run as root, the image keeps
# ownership). The output of each boot is in target/vm/<layout>/{console,results}.log; the
# script prints the results, and exits non-zero when a suite failed, a boot produced no
# result, or a layout timed out.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

layouts=()
kernel=""
filter=""
script=""
timeout=1800
while [ $# -gt 0 ]; do
    case "$1" in
    --layout) layouts+=("$2"); shift 2 ;;
    --kernel) kernel="$2"; shift 2 ;;
    --filter) filter="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --script) script="$2"; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ ${#layouts[@]} -gt 0 ] || layouts=(v2 v1 hybrid)
for l in "${layouts[@]}"; do
    case "$l" in v2 | v1 | hybrid) ;; *) echo "run.sh: unknown layout $l" >&2; exit 2 ;; esac
done

for tool in qemu-system-x86_64 cpio busybox objcopy; do
    command -v "$tool" >/dev/null || {
        echo "run.sh: $tool is missing (apt-get install qemu-system-x86 cpio busybox-static binutils)" >&2
        exit 2
    }
done
if [ -z "$kernel" ]; then
    kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$kernel" ] || { echo "run.sh: no /boot/vmlinuz-* (apt-get install linux-image-amd64)" >&2; exit 2; }
fi
kver=${kernel##*/vmlinuz-}
moddir=/lib/modules/$kver
[ -d "$moddir" ] || { echo "run.sh: $moddir is missing for $kernel" >&2; exit 2; }

out=$repo/target/vm
root=$out/root
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/lib,usr/lib64,etc/berth-vm,root,tmp,opt}
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"

# --- The binaries: every test binary of the workspace, and the berth binary its tests run.
echo "run.sh: building the test binaries" >&2
cargo test --workspace --no-run --message-format=json 2>"$out/build.log" >"$out/artifacts.json" || {
    cat "$out/build.log" >&2
    echo "run.sh: cargo could not build the test binaries" >&2
    exit 2
}
# src_path and executable of each artifact, one "src exe" per line, src relative to the repo.
sed -n 's/.*"target":{[^}]*"src_path":"\([^"]*\)"[^}]*}.*"executable":"\([^"]*\)".*/\1 \2/p' \
    "$out/artifacts.json" | sed "s|^$repo/||" >"$out/executables"
exe_of() { awk -v s="$1" '$1 == s { print $2; exit }' "$out/executables"; }

elfs=()
# Copies an executable to the same absolute path inside the image (tests find the berth
# binary and their fixtures by the paths cargo compiled into them), without debug info.
put_exe() {
    mkdir -p "$root$(dirname "$1")"
    objcopy --strip-debug "$1" "$root$1"
    elfs+=("$1")
}
put_file() {
    mkdir -p "$root$(dirname "$1")"
    cp -L --preserve=mode "$1" "$root$1"
}

: >"$root/etc/berth-vm/suites"
while read -r where src args; do
    case "$where" in '' | '#'*) continue ;; esac
    exe=$(exe_of "$src")
    [ -n "$exe" ] || { echo "run.sh: no test binary for $src" >&2; exit 2; }
    [ -e "$root$exe" ] || put_exe "$exe"
    echo "$where $src $exe $args" >>"$root/etc/berth-vm/suites"
done <"$here/suites"
if [ -n "$script" ]; then
    install -D -m 0755 "$script" "$root/opt/berth-vm/script"
    echo "all script /opt/berth-vm/script" >>"$root/etc/berth-vm/suites"
fi
berth=$(awk '$1 == "examples/src/bin/berth/main.rs" && $2 !~ /deps/ { print $2; exit }' "$out/executables")
[ -n "$berth" ] || { echo "run.sh: cargo built no berth binary" >&2; exit 2; }
[ -e "$root$berth" ] || put_exe "$berth"
mkdir -p "$root/usr/local/bin"
ln -sf "$berth" "$root/usr/local/bin/berth"
# Host tools the suites compare with or drive, when installed: the runtimes (crun is compared
# with on pure v2), umoci (the CLI's image tests), procps' ps (`berth ps` passes ps(1) options
# busybox's ps lacks), util-linux's losetup (--find --show), unshare (--cgroup,
# --propagation), nsenter and setpriv, which busybox's applets lack or lack options of.
# examples/tests/rootless.rs makes users with shadow's tools and maps subordinate ids with the
# setuid newuidmap/newgidmap; the files those tools read and write are made below. Each goes
# to its host path (/usr/bin, /usr/sbin: ahead of busybox's /bin in PATH).
for tool in crun runc umoci ps losetup unshare nsenter setpriv useradd userdel usermod \
    newuidmap newgidmap; do
    command -v "$tool" >/dev/null || continue
    t=$(readlink -f "$(command -v "$tool")")
    case "$t" in */busybox) continue ;; esac
    put_file "$t"
    elfs+=("$t")
done

cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$here/init" "$root/init"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'root:*:20000:0:99999:7:::\nnobody:*:20000:0:99999:7:::\n' >"$root/etc/shadow"
printf 'root:*::\ntty:*::\nnogroup:*::\n' >"$root/etc/gshadow"
chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
: >"$root/etc/subuid"
: >"$root/etc/subgid"
[ -e /etc/login.defs ] && cp /etc/login.defs "$root/etc/login.defs"

# --- Shared libraries of every ELF, at the paths the loader looks for them.
for e in "${elfs[@]}"; do
    ldd "$e" | awk '/=> \// { print $3 } /^[ \t]*\// { print $1 }'
done | sort -u | while read -r lib; do
    real_dir=$(readlink -f "$(dirname "$lib")")
    mkdir -p "$root$real_dir"
    cp -L "$lib" "$root$real_dir/$(basename "$lib")"
done

# --- Kernel modules with their dependencies, in load order.
: >"$root/etc/berth-vm/modules"
loaded=" "
load_mod() {
    local rel deps d
    rel=$(awk -F: -v m="/$1.ko" 'index($1, m) && substr($1, length($1) - length(m) + 1) == m { print $1; exit }' "$moddir/modules.dep")
    [ -n "$rel" ] || { echo "run.sh: module $1 is not in $moddir" >&2; exit 2; }
    case "$loaded" in *" $rel "*) return ;; esac
    deps=$(awk -F: -v m="$rel" '$1 == m { print $2 }' "$moddir/modules.dep")
    for d in $deps; do
        d=${d##*/}
        load_mod "${d%.ko}"
    done
    loaded="$loaded$rel "
    mkdir -p "$root/lib/modules/$(dirname "$rel")"
    cp "$moddir/$rel" "$root/lib/modules/$rel"
    echo "$rel" >>"$root/etc/berth-vm/modules"
}
# virtio disk (io controller tests), BFQ (io.bfq.weight), loop devices (blkio on a loop
# device), overlayfs (image rootfs), veth, fuse (/dev/fuse: the device tests' host device
# beyond the defaults).
for m in virtio_pci virtio_blk bfq loop overlay veth fuse; do load_mod "$m"; done

echo "run.sh: packing the image" >&2
(cd "$root" && find . | cpio -o -H newc --quiet) >"$out/initramfs.cpio"
echo "run.sh: image $(du -h "$out/initramfs.cpio" | cut -f1), kernel $kernel" >&2

# --- One boot per layout.
status=0
summary=""
for layout in "${layouts[@]}"; do
    d=$out/$layout
    rm -rf "$d"
    mkdir -p "$d"
    truncate -s 256M "$d/disk.img"
    extra=""
    [ "$layout" = v2 ] && extra="cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
    cmdline="console=ttyS0 panic=-1 loglevel=4 hugepagesz=2M hugepages=32 $extra berth.layout=$layout"
    [ -n "$filter" ] && cmdline="$cmdline berth.filter=$filter"
    echo "run.sh: booting $layout ($cmdline)" >&2
    start=$(date +%s)
    set +e
    timeout --foreground "$timeout" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 3072 \
        -kernel "$kernel" -initrd "$out/initramfs.cpio" -append "$cmdline" \
        -drive "file=$d/disk.img,if=virtio,format=raw,cache=unsafe" \
        -display none -monitor none -no-reboot -nic none \
        -serial "file:$d/console.log" -serial "file:$d/results.log"
    rc=$?
    set -e
    secs=$(($(date +%s) - start))
    cat "$d/results.log"
    # The serial console ends lines with CR LF.
    result=$(grep -a '^BERTH-VM-RESULT' "$d/results.log" | tail -n 1 | tr -d '\r' || true)
    if [ $rc -eq 124 ]; then
        summary="$summary$layout: timed out after ${secs}s"$'\n'
        status=1
    elif [ -z "$result" ]; then
        summary="$summary$layout: no result (qemu exit $rc, ${secs}s); see $d/console.log"$'\n'
        tail -n 30 "$d/console.log" >&2
        status=1
    else
        summary="$summary$layout: $result (${secs}s)"$'\n'
        case "$result" in *" failed=0") ;; *) status=1 ;; esac
        case "$result" in *" suites=0 "*) status=1 ;; esac
    fi
done
printf '\n%s' "$summary"
exit $status
