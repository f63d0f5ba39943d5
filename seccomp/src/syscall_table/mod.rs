//! System call numbers by name, one generated table per architecture (see
//! `gen_syscall_table.sh` beside them), each sorted by name.
//!
//! Only the tables of the architectures a process on the build's target can use are compiled
//! in: x86_64, i386 and x32 on x86_64; aarch64 and arm on aarch64.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
mod arm;
#[cfg(target_arch = "x86_64")]
mod x32;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub(crate) use {aarch64::AARCH64, arm::ARM};
#[cfg(target_arch = "x86_64")]
pub(crate) use {x32::X32, x86::X86, x86_64::X86_64};

/// One architecture's table: (name, number), sorted by name.
pub(crate) type Table = &'static [(&'static str, u32)];

/// The kernel's number for `name` in `table`.
pub(crate) fn lookup(table: Table, name: &str) -> Option<u32> {
    entry(table, name).map(|(_, nr)| nr)
}

/// The table's own copy of `name` (a `'static` name for the front end's groups) and its number.
pub(crate) fn entry(table: Table, name: &str) -> Option<(&'static str, u32)> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .and_then(|i| table.get(i))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::native;

    #[test]
    fn tables_are_sorted_and_right() {
        for table in std::iter::once(native::TABLE).chain(native::FOREIGN.iter().map(|f| f.table)) {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
            assert_eq!(lookup(table, "no_such_call"), None);
        }
        for (name, nr) in [
            ("getpid", libc::SYS_getpid),
            ("getpriority", libc::SYS_getpriority),
            ("openat", libc::SYS_openat),
            ("clone3", libc::SYS_clone3),
        ] {
            assert_eq!(
                lookup(native::TABLE, name).map(i64::from),
                Some(nr),
                "{name}"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn foreign_tables_are_right() {
        let x86 = |name| lookup(X86, name);
        let x32 = |name| lookup(X32, name);
        // asm/unistd_32.h
        assert_eq!(x86("getpid"), Some(20));
        assert_eq!(x86("getppid"), Some(64));
        assert_eq!(x86("uname"), Some(122));
        assert_eq!(x86("fcntl64"), Some(221));
        assert_eq!(x86("cachestat"), Some(451));
        assert_eq!(x86("arch_prctl"), Some(384));
        // x32: x86_64's numbers with the x32 bit, but its own from 512 on.
        let bit = |nr: libc::c_long| Some(crate::arch::X32_SYSCALL_BIT | nr as u32);
        assert_eq!(x32("getpid"), bit(libc::SYS_getpid));
        assert_eq!(x32("getppid"), bit(libc::SYS_getppid));
        assert_eq!(x32("ioctl"), bit(514));
        assert_eq!(x32("execve"), bit(520));
        assert_eq!(x32("cachestat"), bit(451));
        assert_eq!(x32("fcntl64"), None);
    }
}
