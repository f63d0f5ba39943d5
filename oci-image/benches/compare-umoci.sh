#!/usr/bin/env bash
# Compares `berth image unpack` with `umoci unpack` on a large multi-layer image: a Debian
# bookworm minbase (debootstrap --variant=minbase) split into three layers with umoci repack
# (usr; the rest of the tree; etc + var with /usr/share/doc and /usr/share/man deleted, so
# the top layer carries whiteouts). Checks that both give the identical tree, then times
# both with hyperfine and prints the medians and the ratio.
#
# Needs root and the Debian packages umoci, hyperfine, debootstrap and python3 (installed
# here with apt-get if missing). Usage:
#   oci-image/benches/compare-umoci.sh [WORKDIR]      (default /var/tmp/berth-compare)
# The minbase tree and the image are kept in WORKDIR between runs. The unpacked trees go to
# $OUT_DIR (default WORKDIR/out: the disk; OUT_DIR=/dev/shm/... measures on a tmpfs, where
# the unpackers' own costs show instead of the disk's). RUNS sets hyperfine's run count.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${1:-/var/tmp/berth-compare}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$work"

need=()
for tool in umoci hyperfine debootstrap python3; do
    command -v "$tool" >/dev/null || need+=("$tool")
done
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release -p berth-examples --manifest-path "$repo/Cargo.toml" >&2
berth="$repo/target/release/berth"

minbase="$work/minbase"
if [[ ! -e "$work/minbase.done" ]]; then
    rm -rf "$minbase"
    echo "debootstrap --variant=minbase bookworm ..." >&2
    debootstrap --variant=minbase bookworm "$minbase" "$mirror" >"$work/debootstrap.log" 2>&1
    touch "$work/minbase.done"
fi

layout="$work/layout"
if [[ ! -e "$work/layout.done" ]]; then
    rm -rf "$layout" "$work/build"
    umoci init --layout "$layout"
    umoci new --image "$layout:minbase"
    umoci unpack --image "$layout:minbase" "$work/build" >/dev/null
    r="$work/build/rootfs"
    # Layer 1: /usr.
    cp -a "$minbase/usr" "$r/"
    umoci repack --refresh-bundle --image "$layout:minbase" "$work/build"
    # Layer 2: everything but /usr, /etc and /var.
    for d in "$minbase"/* ; do
        case "$(basename "$d")" in usr|etc|var) ;; *) cp -a "$d" "$r/" ;; esac
    done
    umoci repack --refresh-bundle --image "$layout:minbase" "$work/build"
    # Layer 3: /etc and /var, and deletions in /usr (whiteouts).
    cp -a "$minbase/etc" "$minbase/var" "$r/"
    rm -rf "$r/usr/share/doc" "$r/usr/share/man"
    umoci repack --refresh-bundle --image "$layout:minbase" "$work/build"
    umoci config --image "$layout:minbase" --config.cmd /bin/bash --config.workingdir /root \
        --config.env LANG=C.UTF-8
    rm -rf "$work/build"
    touch "$work/layout.done"
fi
du -sh "$layout/blobs" | sed 's/^/image blobs: /' >&2

out="${OUT_DIR:-$work/out}"
rm -rf "$out"
mkdir -p "$out"

# Identical output first.
umoci unpack --image "$layout:minbase" "$out/umoci" >/dev/null
"$berth" image unpack --ref minbase "$layout" "$out/berth"
python3 - "$out/umoci/rootfs" "$out/berth/rootfs" <<'EOF'
import hashlib, os, stat, sys

def tree(root):
    out, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        names = dirnames + filenames
        if dirpath == root:
            names = names + [""]
        for n in names:
            p = os.path.join(dirpath, n) if n else root
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            rec = [kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)]
            if stat.S_ISREG(kind):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                rec += [st.st_size, h.hexdigest()]
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(kind):
                rec.append(os.readlink(p))
            elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
                rec.append(st.st_rdev)
            try:
                xs = sorted(os.listxattr(p, follow_symlinks=False))
                rec.append([(x, os.getxattr(p, x, follow_symlinks=False)) for x in xs])
            except OSError:
                rec.append(None)
            out[rel] = rec
    groups = sorted(sorted(g) for g in inodes.values() if len(g) > 1)
    return out, groups

a, ga = tree(sys.argv[1])
b, gb = tree(sys.argv[2])
bad = [p for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]
for p in bad[:20]:
    print("differs:", p, a.get(p), b.get(p), file=sys.stderr)
if ga != gb:
    print("hardlink groups differ", file=sys.stderr)
if bad or ga != gb:
    sys.exit(1)
print(f"identical trees: {len(a)} entries, {len(ga)} hardlink groups", file=sys.stderr)
EOF

# Then the timing. Each run unpacks into a directory of its own and nothing is deleted
# until the end: deleting the previous run's tree just before the next one makes ext4's
# inode allocator skip thousands of just-freed inodes (recently_deleted()), which then
# dominates whatever is measured. The shell's $(date) runs once per run.
mkdir -p "$out/runs"
hyperfine --warmup 1 --runs "${RUNS:-10}" --export-json "$work/hyperfine.json" \
    -n "umoci unpack" "umoci unpack --image $layout:minbase $out/runs/u.\$(date +%s%N) >/dev/null" \
    -n "berth image unpack" "$berth image unpack --ref minbase $layout $out/runs/b.\$(date +%s%N)" >&2
rm -rf "$out"

python3 - "$work/hyperfine.json" <<'EOF'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
u, b = r["umoci unpack"], r["berth image unpack"]
print(f"median umoci unpack: {u:.3f} s")
print(f"median berth image unpack: {b:.3f} s")
print(f"berth is {u / b:.2f}x faster")
EOF
