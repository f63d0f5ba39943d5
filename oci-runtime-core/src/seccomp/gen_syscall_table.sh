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
x86() {
  awk '/^#define __NR_/ {sub("__NR_", "", $2); print $2, $3}' /usr/include/x86_64-linux-gnu/asm/unistd_64.h
  echo 'uretprobe 335'
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
//! \`asm/unistd_64.h\` for x86_64, \`asm-generic/unistd.h\` through \`cpp\` with arm64's
//! \`__ARCH_WANT_*\` for aarch64), plus the calls added by kernels newer than the headers
//! (451..=470, numbered alike on both, and x86_64's \`uretprobe\`), listed in the script.

HDR
echo '#[cfg(target_arch = "x86_64")]'
x86 | emit X86_64
echo
echo '#[cfg(target_arch = "aarch64")]'
generic | emit AARCH64
