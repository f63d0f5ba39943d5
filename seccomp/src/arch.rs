//! The architectures whose system calls a process on this host can make: the native one,
//! always filtered, and the foreign ones, filtered when the profile lists them.

use oci_spec::runtime::Arch;

use crate::syscall_table::Table;

/// x32 system calls are x86_64 calls with this bit set in the number.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// An architecture other than the native one whose system calls a process on this host can
/// make.
#[derive(Debug)]
pub(crate) struct Foreign {
    pub(crate) arch: Arch,
    /// `seccomp_data.arch` of its calls (x32's is x86_64's: told apart by the number).
    pub(crate) audit: u32,
    /// Its system call numbers, sorted by name.
    pub(crate) table: Table,
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod native {
    use super::Foreign;
    use crate::syscall_table::{self, Table};
    use oci_spec::runtime::Arch;

    pub(crate) const AUDIT_ARCH: u32 = 0xc000_003e;
    pub(crate) const ARCH: Arch = Arch::ScmpArchX86_64;
    pub(crate) const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
    pub(crate) const TABLE: Table = syscall_table::X86_64;
    pub(crate) const HAS_X32: bool = true;
    pub(crate) const FOREIGN: &[Foreign] = &[
        Foreign {
            arch: Arch::ScmpArchX86,
            audit: 0x4000_0003,
            table: syscall_table::X86,
        },
        Foreign {
            arch: Arch::ScmpArchX32,
            audit: AUDIT_ARCH,
            table: syscall_table::X32,
        },
    ];
}

#[cfg(target_arch = "aarch64")]
pub(crate) mod native {
    use super::Foreign;
    use crate::syscall_table::{self, Table};
    use oci_spec::runtime::Arch;

    pub(crate) const AUDIT_ARCH: u32 = 0xc000_00b7;
    pub(crate) const ARCH: Arch = Arch::ScmpArchAarch64;
    pub(crate) const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;
    pub(crate) const TABLE: Table = syscall_table::AARCH64;
    pub(crate) const HAS_X32: bool = false;
    pub(crate) const FOREIGN: &[Foreign] = &[Foreign {
        arch: Arch::ScmpArchArm,
        audit: 0x4000_0028,
        table: syscall_table::ARM,
    }];
}

/// Every architecture filtered by its own numbers on this host: the native one first.
pub fn host_architectures() -> Vec<Arch> {
    std::iter::once(native::ARCH)
        .chain(native::FOREIGN.iter().map(|f| f.arch))
        .collect()
}

/// How wide the arguments the kernel hands a filter are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    /// The native architecture: all 64 bits count.
    Bits64,
    /// A 32-bit architecture (i386, x32, arm): only the low 32 bits count.
    Bits32,
}
