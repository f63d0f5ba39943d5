#!/bin/sh
# Regenerates the embedded exe-guard stubs (stub-<arch>.bin) from stub-<arch>.S.
# Needs binutils (`as`, `objcopy`) and, for aarch64, binutils-aarch64-linux-gnu.
# Usage: sh regen.sh [out-dir]   (default: next to this script)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
build() { # arch as-prefix
	"${2}as" -o "$tmp/$1.o" "$here/stub-$1.S"
	"${2}objcopy" -O binary -j .text "$tmp/$1.o" "$out/stub-$1.bin"
}
build x86_64 "${X86_64_PREFIX-}"
if command -v aarch64-linux-gnu-as >/dev/null 2>&1; then
	build aarch64 aarch64-linux-gnu-
else
	echo "aarch64-linux-gnu-as not found: stub-aarch64.bin not regenerated" >&2
fi
