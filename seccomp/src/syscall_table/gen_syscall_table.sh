#!/bin/sh
# Regenerates oci-runtime-core/src/seccomp/syscall_table.rs (see the header it writes).
set -e
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
emit() {
  echo "pub(super) const $1: &[(&str, u32)] = &["
  sort -u -k1,1 | awk '{printf "    (\"%s\", %s),\n", $1, $2}'
  echo "];"
}
cat <<HDR
//! System call names to numbers, sorted by name (looked up by binary search).
//!
//! Generated, do not edit: \`sh oci-runtime-core/src/seccomp/gen_syscall_table.sh >
//! oci-runtime-core/src/seccomp/syscall_table.rs\` (Debian linux-libc-dev headers:
//! \`asm/unistd_64.h\` for x86_64, \`asm/unistd_32.h\` for i386, \`asm/unistd_x32.h\` for x32
//! (numbers with the x32 bit \`0x40000000\`), \`asm-generic/unistd.h\` through \`cpp\` with
//! arm64's \`__ARCH_WANT_*\` for aarch64; linux-libc-dev-armhf-cross's \`asm/unistd-eabi.h\` and
//! the ARM-private calls of \`asm/unistd.h\` for arm), plus the calls added by kernels newer
//! than the headers (451..=470, numbered alike on all of them, and \`uretprobe\` on x86_64 and
//! x32), listed in the script.

HDR
echo '#[cfg(target_arch = "x86_64")]'
x86 | emit X86_64
echo
echo '#[cfg(target_arch = "x86_64")]'
i386 | emit X86
echo
echo '#[cfg(target_arch = "x86_64")]'
x32 | emit X32
echo
echo '#[cfg(target_arch = "aarch64")]'
generic | emit AARCH64
echo
echo '#[cfg(target_arch = "aarch64")]'
arm | emit ARM
