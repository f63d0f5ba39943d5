#!/bin/sh
# Regenerates the system call tables of berth-seccomp, one file per architecture beside this
# script: x86_64.rs, x86.rs, x32.rs, aarch64.rs, arm.rs (see the header each gets).
# Run from anywhere: sh seccomp/src/syscall_table/gen_syscall_table.sh
# Needs Debian's linux-libc-dev (x86_64, i386, x32, aarch64 through asm-generic) and
# linux-libc-dev-armhf-cross (arm).
set -e
dir=$(cd "$(dirname "$0")" && pwd)
export LC_ALL=C
defs='-D__BITS_PER_LONG=64 -D__ARCH_WANT_RENAMEAT -D__ARCH_WANT_NEW_STAT -D__ARCH_WANT_SET_GET_RLIMIT -D__ARCH_WANT_SYS_CLONE3 -D__ARCH_WANT_MEMFD_SECRET'
newer='cachestat 451
fchmodat2 452
map_shadow_stack 453
futex_wake 454
futex_wait 455
futex_requeue 456
statmount 457
listmount 458
lsm_get_self_attr 459
lsm_set_self_attr 460
lsm_list_modules 461
mseal 462
setxattrat 463
getxattrat 464
listxattrat 465
removexattrat 466
open_tree_attr 467
file_getattr 468
file_setattr 469
listns 470'
asm=/usr/include/x86_64-linux-gnu/asm
# The armhf headers come from Debian's linux-libc-dev-armhf-cross.
arm_asm=/usr/arm-linux-gnueabihf/include/asm
x86() {
  awk '/^#define __NR_/ {sub("__NR_", "", $2); print $2, $3}' $asm/unistd_64.h
  echo 'uretprobe 335'
  echo "$newer"
}
i386() {
  awk '/^#define __NR_/ {sub("__NR_", "", $2); print $2, $3}' $asm/unistd_32.h
  echo "$newer"
}
# x32: "(__X32_SYSCALL_BIT + N)", the bit (0x40000000) included in the number.
x32() {
  { awk '/^#define __NR_/ {sub("__NR_", "", $2); sub("\\)", "", $5); print $2, $5}' $asm/unistd_x32.h
    echo 'uretprobe 335'
    echo "$newer"
  } | awk '{print $1, $2 + 1073741824}'
}
# arm EABI: "(__NR_SYSCALL_BASE + N)" with a base of 0, and the ARM-private calls at
# 0x0f0000 + N (asm/unistd.h).
arm() {
  awk '/^#define __NR_/ {sub("__NR_", "", $2); sub("\\)", "", $5); print $2, $5}' $arm_asm/unistd-eabi.h
  awk '/^#define __NR_arm_sync_file_range / {sub("\\)", "", $5); print "sync_file_range2", $5}' \
    $arm_asm/unistd-eabi.h
  awk '/^#define __ARM_NR_[a-z]/ {sub("__ARM_NR_", "", $2); sub("\\)", "", $3);
    sub("\\(__ARM_NR_BASE\\+", "", $3); print $2, $3 + 983040}' $arm_asm/unistd.h
  echo "$newer"
}
generic() {
  names=$(printf '#include <asm-generic/unistd.h>\n' | cpp -dM $defs - |
    awk '/^#define __NR_[a-z]/ {print $2}' | sed 's/^__NR_//' |
    grep -v -e '^syscalls$' -e '^arch_specific_syscall$')
  { printf '#include <asm-generic/unistd.h>\n'
    for n in $names; do printf 'SYS %s __NR_%s\n' "$n" "$n"; done
  } | cpp -P $defs - | awk '$1 == "SYS" {print $2, $3}'
  echo "$newer"
}
# emit FILE CONST ARCH SOURCE: the sorted table of stdin as $dir/FILE.
emit() {
  {
    echo "//! $3: system call names to numbers."
    echo "//!"
    echo "//! Generated, do not edit: \`sh seccomp/src/syscall_table/gen_syscall_table.sh\` writes"
    echo "//! every file of \`seccomp/src/syscall_table/\` but \`mod.rs\`."
    echo "//!"
    echo "//! Source: $4,"
    echo "//! plus the calls added by kernels newer than the headers (listed in the script)."
    echo
    echo "/// $3: (name, number), sorted by name."
    echo "pub(crate) const $2: &[(&str, u32)] = &["
    sort -u -k1,1 | awk '{printf "    (\"%s\", %s),\n", $1, $2}'
    echo "];"
  } >"$dir/$1.rs"
}
x86 | emit x86_64 X86_64 x86_64 "Debian linux-libc-dev's \`asm/unistd_64.h\` (and \`uretprobe\`)"
i386 | emit x86 X86 "i386 (\`SCMP_ARCH_X86\`)" "Debian linux-libc-dev's \`asm/unistd_32.h\`"
x32 | emit x32 X32 "x32 (\`SCMP_ARCH_X32\`, numbers with the x32 bit \`0x40000000\`)" \
  "Debian linux-libc-dev's \`asm/unistd_x32.h\` (and \`uretprobe\`)"
generic | emit aarch64 AARCH64 aarch64 \
  "Debian linux-libc-dev's \`asm-generic/unistd.h\` through \`cpp\` with arm64's \`__ARCH_WANT_*\`"
arm | emit arm ARM "arm EABI (\`SCMP_ARCH_ARM\`)" \
  "linux-libc-dev-armhf-cross's \`asm/unistd-eabi.h\` and the ARM-private calls of \`asm/unistd.h\`"
