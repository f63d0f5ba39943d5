//! Parsing of OCI mount `options` into `mount(2)` flags, propagation changes,
//! recursive mount attributes and filesystem data.

use libc::c_ulong;

use crate::sys::{
    MOUNT_ATTR_ATIME_MASK, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_RELATIME, MOUNT_ATTR_STRICTATIME,
};

/// Mount options of one OCI mount, split by how they are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `mount(2)` flags (without `MS_BIND`/`MS_REC`, see [`MountOptions::bind`]).
    pub flags: c_ulong,
    /// `Some(recursive)` if `bind` or `rbind` was given.
    pub bind: Option<bool>,
    /// Propagation changes (`MS_SHARED`, `MS_SLAVE|MS_REC`, ...) applied one by
    /// one with separate `mount(2)` calls after the mount, in option order.
    pub propagation: Vec<c_ulong>,
    /// Recursive attributes (`rro`, `rnosuid`, ...) applied with
    /// `mount_setattr(2)` + `AT_RECURSIVE`: bits to set.
    pub rec_attr_set: u64,
    /// Recursive attributes: bits to clear.
    pub rec_attr_clr: u64,
    /// `tmpcopyup` was given.
    pub tmpcopyup: bool,
    /// Everything else: filesystem-specific data, in order.
    pub data: Vec<String>,
}

impl MountOptions {
    /// The data options joined with `,` (what `mount(2)` receives), or
    /// `None` if there are none.
    pub fn data_string(&self) -> Option<String> {
        if self.data.is_empty() {
            None
        } else {
            Some(self.data.join(","))
        }
    }

    /// Whether recursive attributes were requested.
    pub fn has_rec_attr(&self) -> bool {
        self.rec_attr_set != 0 || self.rec_attr_clr != 0
    }
}

/// Why an option cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The offending option.
    pub option: String,
    /// Explanation.
    pub reason: &'static str,
}

enum Action {
    Set(c_ulong),
    Clear(c_ulong),
    Bind(bool),
    Propagation(c_ulong),
    RecAttr { set: u64, clr: u64 },
    CopyUp,
    Ignore,
}

/// Whether `opt` is a recursive attribute (`rro`, `rnosuid`, ...: [`MountOptions::rec_attr_set`]).
pub(crate) fn is_rec_attr(opt: &str) -> bool {
    matches!(action(opt), Some(Action::RecAttr { .. }))
}

fn action(opt: &str) -> Option<Action> {
    use Action::*;
    Some(match opt {
        "defaults" => Ignore,
        "ro" => Set(libc::MS_RDONLY),
        "rw" => Clear(libc::MS_RDONLY),
        "suid" => Clear(libc::MS_NOSUID),
        "nosuid" => Set(libc::MS_NOSUID),
        "dev" => Clear(libc::MS_NODEV),
        "nodev" => Set(libc::MS_NODEV),
        "exec" => Clear(libc::MS_NOEXEC),
        "noexec" => Set(libc::MS_NOEXEC),
        "sync" => Set(libc::MS_SYNCHRONOUS),
        "async" => Clear(libc::MS_SYNCHRONOUS),
        "dirsync" => Set(libc::MS_DIRSYNC),
        "remount" => Set(libc::MS_REMOUNT),
        "mand" => Set(libc::MS_MANDLOCK),
        "nomand" => Clear(libc::MS_MANDLOCK),
        "atime" => Clear(libc::MS_NOATIME),
        "noatime" => Set(libc::MS_NOATIME),
        "diratime" => Clear(libc::MS_NODIRATIME),
        "nodiratime" => Set(libc::MS_NODIRATIME),
        "relatime" => Set(libc::MS_RELATIME),
        "norelatime" => Clear(libc::MS_RELATIME),
        "strictatime" => Set(libc::MS_STRICTATIME),
        "nostrictatime" => Clear(libc::MS_STRICTATIME),
        "lazytime" => Set(libc::MS_LAZYTIME),
        "nolazytime" => Clear(libc::MS_LAZYTIME),
        "symfollow" => Clear(libc::MS_NOSYMFOLLOW),
        "nosymfollow" => Set(libc::MS_NOSYMFOLLOW),
        "bind" => Bind(false),
        "rbind" => Bind(true),
        "private" => Propagation(libc::MS_PRIVATE),
        "rprivate" => Propagation(libc::MS_PRIVATE | libc::MS_REC),
        "shared" => Propagation(libc::MS_SHARED),
        "rshared" => Propagation(libc::MS_SHARED | libc::MS_REC),
        "slave" => Propagation(libc::MS_SLAVE),
        "rslave" => Propagation(libc::MS_SLAVE | libc::MS_REC),
        "unbindable" => Propagation(libc::MS_UNBINDABLE),
        "runbindable" => Propagation(libc::MS_UNBINDABLE | libc::MS_REC),
        "tmpcopyup" => CopyUp,
        "rro" => RecAttr {
            set: MOUNT_ATTR_RDONLY,
            clr: 0,
        },
        "rrw" => RecAttr {
            set: 0,
            clr: MOUNT_ATTR_RDONLY,
        },
        "rnosuid" => RecAttr {
            set: MOUNT_ATTR_NOSUID,
            clr: 0,
        },
        "rsuid" => RecAttr {
            set: 0,
            clr: MOUNT_ATTR_NOSUID,
        },
        "rnodev" => RecAttr {
            set: MOUNT_ATTR_NODEV,
            clr: 0,
        },
        "rdev" => RecAttr {
            set: 0,
            clr: MOUNT_ATTR_NODEV,
        },
        "rnoexec" => RecAttr {
            set: MOUNT_ATTR_NOEXEC,
            clr: 0,
        },
        "rexec" => RecAttr {
            set: 0,
            clr: MOUNT_ATTR_NOEXEC,
        },
        "rnodiratime" => RecAttr {
            set: MOUNT_ATTR_NODIRATIME,
            clr: 0,
        },
        "rdiratime" => RecAttr {
            set: 0,
            clr: MOUNT_ATTR_NODIRATIME,
        },
        "rrelatime" => RecAttr {
            set: MOUNT_ATTR_RELATIME,
            clr: MOUNT_ATTR_ATIME_MASK,
        },
        "rnorelatime" => RecAttr { set: 0, clr: 0 },
        "rnoatime" => RecAttr {
            set: MOUNT_ATTR_NOATIME,
            clr: MOUNT_ATTR_ATIME_MASK,
        },
        "ratime" => RecAttr { set: 0, clr: 0 },
        "rstrictatime" => RecAttr {
            set: MOUNT_ATTR_STRICTATIME,
            clr: MOUNT_ATTR_ATIME_MASK,
        },
        "rnostrictatime" => RecAttr { set: 0, clr: 0 },
        "rnosymfollow" => RecAttr {
            set: MOUNT_ATTR_NOSYMFOLLOW,
            clr: 0,
        },
        "rsymfollow" => RecAttr {
            set: 0,
            clr: MOUNT_ATTR_NOSYMFOLLOW,
        },
        _ => return None,
    })
}

/// Options that are runtime options (not filesystem data) but that this
/// crate cannot honour.
fn unsupported(opt: &str) -> Option<&'static str> {
    match opt {
        "idmap" | "ridmap" => Some("id-mapped mounts are not supported"),
        _ => None,
    }
}

/// Every mount option name [`parse_mount_options`] understands (as opposed to fs data such as
/// `size=64k`), for a runtime's `features` document.
pub const SUPPORTED_MOUNT_OPTIONS: &[&str] = &[
    "defaults",
    "ro",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "sync",
    "async",
    "dirsync",
    "remount",
    "mand",
    "nomand",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "symfollow",
    "nosymfollow",
    "bind",
    "rbind",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
    "tmpcopyup",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
];

/// Parse OCI mount options.
///
/// Known runtime options become flags / propagation / recursive attributes;
/// `idmap`/`ridmap` are rejected; anything else is filesystem data.
///
/// ```
/// let o = berth_rootfs::parse_mount_options(&["nosuid", "rbind", "ro", "rslave"]).unwrap();
/// assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_RDONLY);
/// assert_eq!(o.bind, Some(true));
/// assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
/// let o = berth_rootfs::parse_mount_options(&["size=64k", "mode=1777"]).unwrap();
/// assert_eq!(o.data_string().as_deref(), Some("size=64k,mode=1777"));
/// ```
pub fn parse_mount_options<S: AsRef<str>>(options: &[S]) -> Result<MountOptions, OptionError> {
    let mut out = MountOptions::default();
    for opt in options {
        let opt = opt.as_ref();
        if let Some(reason) = unsupported(opt) {
            return Err(OptionError {
                option: opt.to_string(),
                reason,
            });
        }
        if opt.contains('\0') {
            return Err(OptionError {
                option: opt.escape_debug().to_string(),
                reason: "contains a NUL byte",
            });
        }
        match action(opt) {
            Some(Action::Set(f)) => out.flags |= f,
            Some(Action::Clear(f)) => out.flags &= !f,
            Some(Action::Bind(rec)) => {
                let prev = out.bind.unwrap_or(false);
                out.bind = Some(prev || rec);
            }
            Some(Action::Propagation(p)) => out.propagation.push(p),
            Some(Action::RecAttr { set, clr }) => {
                // A later option overrides an earlier one for the same bits.
                out.rec_attr_set &= !(set | clr);
                out.rec_attr_clr &= !(set | clr);
                out.rec_attr_set |= set;
                out.rec_attr_clr |= clr;
                if opt == "ratime" || opt == "rnorelatime" || opt == "rnostrictatime" {
                    // These only undo the atime choice; the kernel default
                    // (relatime) applies.
                    out.rec_attr_set &= !MOUNT_ATTR_ATIME_MASK;
                    out.rec_attr_clr |= MOUNT_ATTR_ATIME_MASK;
                }
            }
            Some(Action::CopyUp) => out.tmpcopyup = true,
            Some(Action::Ignore) => {}
            None => {
                if !opt.is_empty() {
                    out.data.push(opt.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// Parse `linux.rootfsPropagation`.
pub(crate) fn parse_propagation(value: &str) -> Option<c_ulong> {
    Some(match value {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("ro", libc::MS_RDONLY)]
    #[case("nosuid", libc::MS_NOSUID)]
    #[case("nodev", libc::MS_NODEV)]
    #[case("noexec", libc::MS_NOEXEC)]
    #[case("sync", libc::MS_SYNCHRONOUS)]
    #[case("dirsync", libc::MS_DIRSYNC)]
    #[case("remount", libc::MS_REMOUNT)]
    #[case("mand", libc::MS_MANDLOCK)]
    #[case("noatime", libc::MS_NOATIME)]
    #[case("nodiratime", libc::MS_NODIRATIME)]
    #[case("relatime", libc::MS_RELATIME)]
    #[case("strictatime", libc::MS_STRICTATIME)]
    #[case("lazytime", libc::MS_LAZYTIME)]
    #[case("nosymfollow", libc::MS_NOSYMFOLLOW)]
    fn setting_options(#[case] opt: &str, #[case] flag: c_ulong) {
        let o = parse_mount_options(&[opt]).unwrap();
        assert_eq!(o.flags, flag, "{opt}");
        assert!(o.data.is_empty());
    }

    #[rstest]
    #[case("ro", "rw", libc::MS_RDONLY)]
    #[case("nosuid", "suid", libc::MS_NOSUID)]
    #[case("nodev", "dev", libc::MS_NODEV)]
    #[case("noexec", "exec", libc::MS_NOEXEC)]
    #[case("sync", "async", libc::MS_SYNCHRONOUS)]
    #[case("mand", "nomand", libc::MS_MANDLOCK)]
    #[case("noatime", "atime", libc::MS_NOATIME)]
    #[case("nodiratime", "diratime", libc::MS_NODIRATIME)]
    #[case("relatime", "norelatime", libc::MS_RELATIME)]
    #[case("strictatime", "nostrictatime", libc::MS_STRICTATIME)]
    #[case("lazytime", "nolazytime", libc::MS_LAZYTIME)]
    #[case("nosymfollow", "symfollow", libc::MS_NOSYMFOLLOW)]
    fn later_option_wins(#[case] set: &str, #[case] clear: &str, #[case] flag: c_ulong) {
        assert_eq!(parse_mount_options(&[set, clear]).unwrap().flags, 0);
        assert_eq!(parse_mount_options(&[clear, set]).unwrap().flags, flag);
    }

    #[rstest]
    #[case("private", libc::MS_PRIVATE)]
    #[case("rprivate", libc::MS_PRIVATE | libc::MS_REC)]
    #[case("shared", libc::MS_SHARED)]
    #[case("rshared", libc::MS_SHARED | libc::MS_REC)]
    #[case("slave", libc::MS_SLAVE)]
    #[case("rslave", libc::MS_SLAVE | libc::MS_REC)]
    #[case("unbindable", libc::MS_UNBINDABLE)]
    #[case("runbindable", libc::MS_UNBINDABLE | libc::MS_REC)]
    fn propagation_options(#[case] opt: &str, #[case] flag: c_ulong) {
        let o = parse_mount_options(&[opt]).unwrap();
        assert_eq!(o.flags, 0);
        assert_eq!(o.propagation, vec![flag]);
        assert_eq!(parse_propagation(opt), Some(flag));
    }

    #[test]
    fn propagation_keeps_order() {
        let o = parse_mount_options(&["rshared", "unbindable"]).unwrap();
        assert_eq!(
            o.propagation,
            vec![libc::MS_SHARED | libc::MS_REC, libc::MS_UNBINDABLE]
        );
        assert_eq!(parse_propagation("recursive"), None);
        assert_eq!(parse_propagation(""), None);
    }

    #[test]
    fn bind_and_rbind() {
        assert_eq!(parse_mount_options(&["bind"]).unwrap().bind, Some(false));
        assert_eq!(parse_mount_options(&["rbind"]).unwrap().bind, Some(true));
        assert_eq!(
            parse_mount_options(&["rbind", "bind"]).unwrap().bind,
            Some(true)
        );
        assert_eq!(parse_mount_options::<&str>(&[]).unwrap().bind, None);
    }

    #[test]
    fn unknown_options_are_data_in_order() {
        let o = parse_mount_options(&[
            "nosuid",
            "size=65536k",
            "defaults",
            "mode=755",
            "",
            "noexec",
        ])
        .unwrap();
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NOEXEC);
        assert_eq!(o.data, vec!["size=65536k", "mode=755"]);
        assert_eq!(o.data_string().as_deref(), Some("size=65536k,mode=755"));
        assert_eq!(parse_mount_options(&["ro"]).unwrap().data_string(), None);
    }

    #[test]
    fn tmpcopyup_is_an_extension_not_data() {
        let o = parse_mount_options(&["tmpcopyup", "mode=1777"]).unwrap();
        assert!(o.tmpcopyup);
        assert_eq!(o.data, vec!["mode=1777"]);
    }

    #[test]
    fn idmap_is_rejected() {
        for opt in ["idmap", "ridmap"] {
            let e = parse_mount_options(&["rbind", opt]).unwrap_err();
            assert_eq!(e.option, opt);
            assert!(e.reason.contains("id-mapped"));
        }
    }

    #[test]
    fn nul_is_rejected() {
        let e = parse_mount_options(&["size=1\0k"]).unwrap_err();
        assert!(e.reason.contains("NUL"));
    }

    #[test]
    fn recursive_attributes() {
        let o = parse_mount_options(&["rbind", "rro", "rnosuid", "rnoexec"]).unwrap();
        assert_eq!(o.flags, 0);
        assert_eq!(
            o.rec_attr_set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC
        );
        assert_eq!(o.rec_attr_clr, 0);
        assert!(o.has_rec_attr());

        let o = parse_mount_options(&["rro", "rrw"]).unwrap();
        assert_eq!(o.rec_attr_set, 0);
        assert_eq!(o.rec_attr_clr, MOUNT_ATTR_RDONLY);

        let o = parse_mount_options(&["rnoatime"]).unwrap();
        assert_eq!(o.rec_attr_set, MOUNT_ATTR_NOATIME);
        assert_eq!(o.rec_attr_clr, MOUNT_ATTR_ATIME_MASK);
        let o = parse_mount_options(&["rnoatime", "ratime"]).unwrap();
        assert_eq!(o.rec_attr_set, 0);
        assert_eq!(o.rec_attr_clr, MOUNT_ATTR_ATIME_MASK);
        assert!(!parse_mount_options(&["ro"]).unwrap().has_rec_attr());
    }

    #[test]
    fn every_supported_option_is_a_flag_not_data() {
        for name in SUPPORTED_MOUNT_OPTIONS {
            let parsed = parse_mount_options(&[*name]).expect(name);
            assert_eq!(parsed.data_string(), None, "{name} was taken as fs data");
        }
    }
}
