//! The eight Linux namespace types and their kernel names and flags.

use std::fmt;

use oci_spec::runtime::LinuxNamespaceType;

/// One Linux namespace type.
///
/// ```
/// use berth_namespaces::NamespaceKind;
/// use oci_spec::runtime::LinuxNamespaceType;
///
/// let k = NamespaceKind::from(LinuxNamespaceType::Network);
/// assert_eq!(k, NamespaceKind::Network);
/// assert_eq!(k.proc_name(), "net");
/// assert_eq!(k.clone_flag(), libc::CLONE_NEWNET);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamespaceKind {
    /// User namespace (`CLONE_NEWUSER`, `/proc/<pid>/ns/user`).
    User,
    /// Mount namespace (`CLONE_NEWNS`, `/proc/<pid>/ns/mnt`).
    Mount,
    /// PID namespace (`CLONE_NEWPID`, `/proc/<pid>/ns/pid`).
    Pid,
    /// UTS namespace: hostname and domain name (`CLONE_NEWUTS`, `/proc/<pid>/ns/uts`).
    Uts,
    /// System V IPC and POSIX message queue namespace (`CLONE_NEWIPC`, `/proc/<pid>/ns/ipc`).
    Ipc,
    /// Network namespace (`CLONE_NEWNET`, `/proc/<pid>/ns/net`).
    Network,
    /// Cgroup namespace (`CLONE_NEWCGROUP`, `/proc/<pid>/ns/cgroup`).
    Cgroup,
    /// Time namespace: monotonic and boottime offsets (`CLONE_NEWTIME`, `/proc/<pid>/ns/time`).
    Time,
}

impl NamespaceKind {
    /// Every kind, in the order [`NamespacePlan::join_all`](crate::NamespacePlan::join_all)
    /// enters namespaces given by path: the user namespace first (it grants the
    /// capabilities needed to enter namespaces it owns), then ipc, uts, net, pid,
    /// mnt (which changes the root and working directory), cgroup and time.
    pub const ALL: [NamespaceKind; 8] = [
        NamespaceKind::User,
        NamespaceKind::Ipc,
        NamespaceKind::Uts,
        NamespaceKind::Network,
        NamespaceKind::Pid,
        NamespaceKind::Mount,
        NamespaceKind::Cgroup,
        NamespaceKind::Time,
    ];

    /// The `CLONE_NEW*` flag of this kind, as used by `clone(2)`, `unshare(2)` and `setns(2)`.
    pub const fn clone_flag(self) -> libc::c_int {
        match self {
            NamespaceKind::User => libc::CLONE_NEWUSER,
            NamespaceKind::Mount => libc::CLONE_NEWNS,
            NamespaceKind::Pid => libc::CLONE_NEWPID,
            NamespaceKind::Uts => libc::CLONE_NEWUTS,
            NamespaceKind::Ipc => libc::CLONE_NEWIPC,
            NamespaceKind::Network => libc::CLONE_NEWNET,
            NamespaceKind::Cgroup => libc::CLONE_NEWCGROUP,
            NamespaceKind::Time => libc::CLONE_NEWTIME,
        }
    }

    /// The file name of this kind under `/proc/<pid>/ns/` (the OCI configuration
    /// spells two kinds differently: `mount` for `mnt` and `network` for `net`).
    pub const fn proc_name(self) -> &'static str {
        match self {
            NamespaceKind::User => "user",
            NamespaceKind::Mount => "mnt",
            NamespaceKind::Pid => "pid",
            NamespaceKind::Uts => "uts",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Network => "net",
            NamespaceKind::Cgroup => "cgroup",
            NamespaceKind::Time => "time",
        }
    }

    /// The name of this kind in `config.json`'s `linux.namespaces[].type` (`mount` and
    /// `network` where `/proc` says `mnt` and `net`).
    ///
    /// ```
    /// use berth_namespaces::NamespaceKind;
    /// assert_eq!(NamespaceKind::Network.config_name(), "network");
    /// ```
    pub const fn config_name(self) -> &'static str {
        match self {
            NamespaceKind::Mount => "mount",
            NamespaceKind::Network => "network",
            other => other.proc_name(),
        }
    }

    /// The kind whose `CLONE_NEW*` flag is exactly `flag` (what `ioctl(NS_GET_NSTYPE)`
    /// returns), or `None`.
    pub const fn from_clone_flag(flag: libc::c_int) -> Option<Self> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i].clone_flag() == flag {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// The flag's C name, e.g. `"CLONE_NEWNET"`.
    pub(crate) const fn flag_name(self) -> &'static str {
        match self {
            NamespaceKind::User => "CLONE_NEWUSER",
            NamespaceKind::Mount => "CLONE_NEWNS",
            NamespaceKind::Pid => "CLONE_NEWPID",
            NamespaceKind::Uts => "CLONE_NEWUTS",
            NamespaceKind::Ipc => "CLONE_NEWIPC",
            NamespaceKind::Network => "CLONE_NEWNET",
            NamespaceKind::Cgroup => "CLONE_NEWCGROUP",
            NamespaceKind::Time => "CLONE_NEWTIME",
        }
    }

    /// A stable non-zero code for the wire format of [`ChildError`](crate::ChildError).
    pub(crate) const fn code(self) -> u8 {
        match self {
            NamespaceKind::User => 1,
            NamespaceKind::Mount => 2,
            NamespaceKind::Pid => 3,
            NamespaceKind::Uts => 4,
            NamespaceKind::Ipc => 5,
            NamespaceKind::Network => 6,
            NamespaceKind::Cgroup => 7,
            NamespaceKind::Time => 8,
        }
    }

    /// Inverse of [`code`](Self::code).
    pub(crate) const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(NamespaceKind::User),
            2 => Some(NamespaceKind::Mount),
            3 => Some(NamespaceKind::Pid),
            4 => Some(NamespaceKind::Uts),
            5 => Some(NamespaceKind::Ipc),
            6 => Some(NamespaceKind::Network),
            7 => Some(NamespaceKind::Cgroup),
            8 => Some(NamespaceKind::Time),
            _ => None,
        }
    }
}

impl From<LinuxNamespaceType> for NamespaceKind {
    fn from(t: LinuxNamespaceType) -> Self {
        match t {
            LinuxNamespaceType::User => NamespaceKind::User,
            LinuxNamespaceType::Mount => NamespaceKind::Mount,
            LinuxNamespaceType::Pid => NamespaceKind::Pid,
            LinuxNamespaceType::Uts => NamespaceKind::Uts,
            LinuxNamespaceType::Ipc => NamespaceKind::Ipc,
            LinuxNamespaceType::Network => NamespaceKind::Network,
            LinuxNamespaceType::Cgroup => NamespaceKind::Cgroup,
            LinuxNamespaceType::Time => NamespaceKind::Time,
        }
    }
}

impl fmt::Display for NamespaceKind {
    /// Writes [`proc_name`](Self::proc_name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.proc_name())
    }
}

/// Names a set of `CLONE_NEW*` flags, e.g. `"CLONE_NEWNS|CLONE_NEWPID"`, in
/// [`NamespaceKind::ALL`] order (parent side: allocates).
pub(crate) fn flags_name(flags: libc::c_int) -> String {
    let mut out = String::new();
    for k in NamespaceKind::ALL {
        if flags & k.clone_flag() != 0 {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(k.flag_name());
        }
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}
