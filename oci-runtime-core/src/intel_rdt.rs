//! `linux.intelRdt`: Intel RDT (and AMD PQoS) cache and memory-bandwidth allocation through
//! the resctrl file system (kernel `Documentation/arch/x86/resctrl.rst`).
//!
//! resctrl is a tree of groups: the mount root is the default group, every directory made in
//! it is a control group (a CLOS) with a `schemata` file (one line per resource, such as
//! `L3:0=7f0;1=1f` or `MB:0=20;1=70`) and a `tasks` file (writing a pid moves that task into
//! the group). Each control group has `mon_groups/`, where directories are monitoring groups
//! (an RMID) whose `tasks` put a task in both the monitoring group and its control group.
//!
//! The runtime spec's rules, as applied here:
//! - the group is `closID`, or the container id when `closID` is not set;
//! - the lines of `l3CacheSchema` (without its `MB:` lines when `memBwSchema` is set) and the
//!   `memBwSchema` line are written first, then every line of `schemata`;
//! - a `closID` group that already exists is used as it is, after checking that the
//!   `l3CacheSchema`/`memBwSchema` values match its `schemata` file; with no schema at all, a
//!   `closID` group must already exist;
//! - `enableMonitoring` (or the deprecated `enableCMT`/`enableMBM`) makes a monitoring group
//!   named after the container in the control group's `mon_groups/`.
//!
//! Only a group this runtime created is removed at delete ([`RdtGroup::remove`]): a
//! pre-existing `closID` is shared configuration and stays.
//!
//! The resctrl root is a parameter ([`IntelRdt::prepare_at`]), so this module is tested on a
//! fake tree of plain files; the development VM has no RDT, so the kernel path is untested
//! there.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::sys::statfs::FsType;
use oci_spec::runtime::LinuxIntelRdt;
use serde::{Deserialize, Serialize};

use crate::config::validate::ConfigError;
use crate::error::Error;

/// Where resctrl is mounted.
pub(crate) const RESCTRL_ROOT: &str = "/sys/fs/resctrl";

/// Names the kernel uses in the resctrl root and in every control group.
const RESERVED: &[&str] = &[
    "info",
    "mon_groups",
    "mon_data",
    "tasks",
    "cpus",
    "cpus_list",
];

/// `linux.intelRdt` checked against the host and turned into the lines to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IntelRdt {
    root: PathBuf,
    /// The control group's directory name (`closID` or the container id).
    group: String,
    /// `closID` was given: the group may be shared and pre-existing.
    clos_id: bool,
    /// The `l3CacheSchema`/`memBwSchema` lines (compared with an existing group).
    schema_lines: Vec<String>,
    /// The `schemata` lines, written after `schema_lines`.
    schemata_lines: Vec<String>,
    /// Name of the monitoring group to make (the container id), if monitoring is enabled.
    mon_group: Option<String>,
    /// The root is a mounted resctrl (else a fake tree, whose files are created on write).
    kernel: bool,
}

/// What [`IntelRdt::apply`] set up: keep it (it serializes into the container's state) to
/// undo it at delete with [`RdtGroup::remove`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RdtGroup {
    /// The control group's directory.
    pub path: PathBuf,
    /// We made the control group (else it was a pre-existing `closID`, left alone).
    pub created: bool,
    /// The monitoring group we made, if any.
    pub mon_group: Option<PathBuf>,
}

/// Whether resctrl is mounted at `/sys/fs/resctrl` (the features document's `intelRdt`).
pub(crate) fn available() -> bool {
    is_resctrl(Path::new(RESCTRL_ROOT))
}

/// Whether the kernel's resctrl file system is mounted at `root`.
fn is_resctrl(root: &Path) -> bool {
    nix::sys::statfs::statfs(root)
        .is_ok_and(|s| s.filesystem_type() == FsType(libc::RDTGROUP_SUPER_MAGIC))
}

impl IntelRdt {
    /// Validates `linux.intelRdt` against the resctrl mounted at `/sys/fs/resctrl`; `id` is
    /// the container id.
    ///
    /// # Errors
    /// A [`ConfigError`] when resctrl is not mounted (no RDT on the host), or a field is
    /// invalid: a `closID` that is not a plain directory name, a `memBwSchema` that does not
    /// start with `MB:`, a schema with a NUL byte or a newline where a single line is expected.
    pub(crate) fn prepare(rdt: &LinuxIntelRdt, id: &str) -> Result<Self, ConfigError> {
        Self::prepare_at(Path::new(RESCTRL_ROOT), rdt, id)
    }

    /// As [`IntelRdt::prepare`] with resctrl at `root` (a fake tree in tests: a directory with a
    /// `tasks` file and an `info/` directory counts as a resctrl root).
    pub(crate) fn prepare_at(
        root: &Path,
        rdt: &LinuxIntelRdt,
        id: &str,
    ) -> Result<Self, ConfigError> {
        let kernel = is_resctrl(root);
        let looks_like_resctrl = root.join("tasks").is_file() && root.join("info").is_dir();
        if !kernel && !looks_like_resctrl {
            return Err(ConfigError::new(
                "linux.intelRdt",
                format!(
                    "resctrl is not mounted at {} (no Intel RDT on this host)",
                    root.display()
                ),
            ));
        }
        let (group, clos_id) = match rdt.clos_id().as_deref() {
            Some(c) => {
                if c.is_empty()
                    || c == "."
                    || c == ".."
                    || c.contains(['/', '\0', '\n'])
                    || RESERVED.contains(&c)
                {
                    return Err(ConfigError::new(
                        "linux.intelRdt.closID",
                        format!("{c:?} is not a valid resctrl group name"),
                    ));
                }
                (c.to_owned(), true)
            }
            None => (id.to_owned(), false),
        };
        let mem_bw = match rdt.mem_bw_schema().as_deref().filter(|s| !s.is_empty()) {
            Some(mb) => {
                let mb = mb.trim();
                if !mb.starts_with("MB:") || mb.contains(['\n', '\0']) {
                    return Err(ConfigError::new(
                        "linux.intelRdt.memBwSchema",
                        format!("must be one line starting with \"MB:\", not {mb:?}"),
                    ));
                }
                Some(mb.to_owned())
            }
            None => None,
        };
        let mut schema_lines = Vec::new();
        if let Some(l3) = rdt.l3_cache_schema().as_deref() {
            if l3.contains('\0') {
                return Err(ConfigError::new(
                    "linux.intelRdt.l3CacheSchema",
                    "contains a NUL byte",
                ));
            }
            schema_lines.extend(
                lines(l3)
                    .filter(|l| !(mem_bw.is_some() && l.starts_with("MB:")))
                    .map(str::to_owned),
            );
        }
        schema_lines.extend(mem_bw);
        let mut schemata_lines = Vec::new();
        for (i, s) in rdt.schemata().iter().flatten().enumerate() {
            if s.contains('\0') {
                return Err(ConfigError::new(
                    format!("linux.intelRdt.schemata[{i}]"),
                    "contains a NUL byte",
                ));
            }
            schemata_lines.extend(lines(s).map(str::to_owned));
        }
        #[allow(deprecated)]
        let monitoring = rdt.enable_monitoring().unwrap_or(false)
            || rdt.enable_cmt().unwrap_or(false)
            || rdt.enable_mbm().unwrap_or(false);
        Ok(IntelRdt {
            root: root.to_owned(),
            group,
            clos_id,
            schema_lines,
            schemata_lines,
            mon_group: monitoring.then(|| id.to_owned()),
            kernel,
        })
    }

    /// The control group's directory.
    pub(crate) fn group_path(&self) -> PathBuf {
        self.root.join(&self.group)
    }

    /// Puts `pid` (the container init, right after the clone) into the control group (and the
    /// monitoring group), creating and configuring them as the spec's rules say. On failure
    /// nothing this call created is left.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file that could not be made or written (with the kernel's
    /// `info/last_cmd_status` for a rejected schemata line), [`Error::Config`] when an
    /// existing `closID` group's schemata differ from the config or a `closID` without schemas
    /// does not exist.
    pub(crate) fn apply(&self, pid: libc::pid_t) -> Result<RdtGroup, Error> {
        let path = self.group_path();
        let has_schemas = !self.schema_lines.is_empty() || !self.schemata_lines.is_empty();
        let created = if path.is_dir() {
            false
        } else if self.clos_id && !has_schemas {
            return Err(Error::Config(ConfigError::new(
                "linux.intelRdt.closID",
                format!(
                    "names no existing resctrl group ({} does not exist) and no schema is given to create it",
                    path.display()
                ),
            )));
        } else {
            match fs::create_dir(&path) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(Error::io("create resctrl group", &path, e)),
            }
        };
        let mut group = RdtGroup {
            path,
            created,
            mon_group: None,
        };
        match self.fill(&mut group, pid) {
            Ok(()) => Ok(group),
            Err(e) => {
                let _ = group.remove();
                Err(e)
            }
        }
    }

    fn fill(&self, group: &mut RdtGroup, pid: libc::pid_t) -> Result<(), Error> {
        if !group.created && self.clos_id && !self.schema_lines.is_empty() {
            let file = group.path.join("schemata");
            let current = fs::read_to_string(&file).map_err(|e| Error::io("read", &file, e))?;
            if let Some(line) = self
                .schema_lines
                .iter()
                .find(|l| !schema_present(&current, l))
            {
                return Err(Error::Config(ConfigError::new(
                    "linux.intelRdt",
                    format!(
                        "schema {line:?} does not match the existing resctrl group {} (its schemata: {:?})",
                        group.path.display(),
                        current.trim()
                    ),
                )));
            }
        } else {
            for line in &self.schema_lines {
                self.write_line(&group.path.join("schemata"), line)?;
            }
        }
        for line in &self.schemata_lines {
            self.write_line(&group.path.join("schemata"), line)?;
        }
        let tasks_dir = match &self.mon_group {
            Some(name) => {
                let mon_groups = group.path.join("mon_groups");
                if self.kernel && !mon_groups.is_dir() {
                    return Err(Error::io(
                        "create resctrl monitoring group in",
                        &mon_groups,
                        io::Error::new(
                            io::ErrorKind::Unsupported,
                            "resctrl monitoring (CMT/MBM) is not available on this host",
                        ),
                    ));
                }
                let dir = mon_groups.join(name);
                if !self.kernel {
                    fs::create_dir_all(&mon_groups)
                        .map_err(|e| Error::io("create", &mon_groups, e))?;
                }
                fs::create_dir(&dir)
                    .map_err(|e| Error::io("create resctrl monitoring group", &dir, e))?;
                group.mon_group = Some(dir.clone());
                dir
            }
            None => group.path.clone(),
        };
        self.write_line(&tasks_dir.join("tasks"), &pid.to_string())
    }

    /// Writes one line to a resctrl file; a rejected line is reported with the kernel's
    /// explanation from `info/last_cmd_status`.
    fn write_line(&self, file: &Path, line: &str) -> Result<(), Error> {
        let r = fs::OpenOptions::new()
            .append(true)
            .create(!self.kernel)
            .open(file)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        r.map_err(|e| {
            let status = fs::read_to_string(self.root.join("info/last_cmd_status"))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty() && s != "ok");
            let e = match status {
                Some(s) => io::Error::new(e.kind(), format!("{e} ({line:?}: {s})")),
                None => io::Error::new(e.kind(), format!("{e} ({line:?})")),
            };
            Error::io("write", file, e)
        })
    }
}

impl RdtGroup {
    /// Removes what [`IntelRdt::apply`] made: the monitoring group, and the control group if
    /// it created it. Tasks still in a removed group go back to its parent (the kernel does
    /// that). Already-removed groups are not an error.
    ///
    /// # Errors
    /// [`Error::Io`] naming the group that could not be removed.
    pub(crate) fn remove(&self) -> Result<(), Error> {
        let rmdir = |p: &Path| match fs::remove_dir(p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove resctrl group", p, e)),
        };
        if let Some(m) = &self.mon_group {
            rmdir(m)?;
        }
        if self.created {
            rmdir(&self.path)?;
        }
        Ok(())
    }
}

/// The non-empty, trimmed lines of a schema value.
fn lines(s: &str) -> impl Iterator<Item = &str> {
    s.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// A schema line as (resource, [(domain, normalized value)]). The kernel pads resource names
/// with spaces and bitmasks with zeros when it prints `schemata`.
fn parse_schema(line: &str) -> Option<(String, Vec<(String, String)>)> {
    let (res, domains) = line.trim().split_once(':')?;
    let mut out = Vec::new();
    for d in domains.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let (id, v) = d.split_once('=')?;
        let v = v.trim().to_ascii_lowercase();
        let v = v.trim_start_matches('0');
        out.push((
            id.trim().to_owned(),
            if v.is_empty() { "0".into() } else { v.into() },
        ));
    }
    Some((res.trim().to_owned(), out))
}

/// Whether every domain of `line` has the same value in the `schemata` text `current`.
fn schema_present(current: &str, line: &str) -> bool {
    let Some((res, want)) = parse_schema(line) else {
        return false;
    };
    let Some((_, have)) = current
        .lines()
        .filter_map(parse_schema)
        .find(|(r, _)| *r == res)
    else {
        return false;
    };
    want.iter().all(|w| have.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIntelRdtBuilder;

    /// A fake resctrl root (plain files) removed on drop.
    struct FakeResctrl(crate::test_support::TempDir);

    impl FakeResctrl {
        fn new() -> Self {
            let p = crate::test_support::TempDir::new("resctrl");
            fs::create_dir_all(p.join("info")).expect("mkdir fake resctrl");
            fs::write(p.join("tasks"), "").expect("tasks");
            fs::write(
                p.join("schemata"),
                "    L3:0=7ff;1=7ff\n    MB:0=100;1=100\n",
            )
            .expect("schemata");
            FakeResctrl(p)
        }
        fn path(&self) -> &Path {
            self.0.path()
        }
        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.0.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
        }
    }

    fn rdt() -> LinuxIntelRdtBuilder {
        LinuxIntelRdtBuilder::default()
    }

    #[test]
    fn no_resctrl_on_this_host_is_a_clear_error() {
        let e = IntelRdt::prepare(&rdt().build().unwrap(), "c1").expect_err("no resctrl");
        assert_eq!(e.field, "linux.intelRdt");
        assert_eq!(
            e.reason,
            "resctrl is not mounted at /sys/fs/resctrl (no Intel RDT on this host)"
        );
        // An empty directory (an unmounted mount point) is not resctrl either.
        let dir = FakeResctrl::new();
        fs::remove_file(dir.path().join("tasks")).unwrap();
        assert!(IntelRdt::prepare_at(dir.path(), &rdt().build().unwrap(), "c1").is_err());
    }

    #[test]
    fn group_named_after_the_container_is_created_filled_and_removed() {
        let fake = FakeResctrl::new();
        let cfg = rdt()
            .l3_cache_schema("L3:0=f0;1=1f\nMB:0=90")
            .mem_bw_schema("MB:0=20;1=70")
            .schemata(vec!["L2:0=f;1=f".to_string()])
            .build()
            .unwrap();
        let plan = IntelRdt::prepare_at(fake.path(), &cfg, "ctr").expect("prepare");
        let g = plan.apply(4242).expect("apply");
        assert_eq!(g.path, fake.path().join("ctr"));
        assert!(g.created);
        // l3 without its MB line, then memBwSchema, then schemata, in that order.
        assert_eq!(
            fake.read("ctr/schemata"),
            "L3:0=f0;1=1f\nMB:0=20;1=70\nL2:0=f;1=f\n"
        );
        assert_eq!(fake.read("ctr/tasks"), "4242\n");
        assert_eq!(fake.read("tasks"), "", "the root group is untouched");
        // The state round-trips through JSON, and remove undoes it.
        let g: RdtGroup = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        // (A real resctrl group has no files of its own to delete; the fake's are plain.)
        fs::remove_file(g.path.join("schemata")).unwrap();
        fs::remove_file(g.path.join("tasks")).unwrap();
        g.remove().expect("remove");
        assert!(!fake.path().join("ctr").exists());
        g.remove().expect("remove twice");
    }

    #[test]
    fn existing_clos_id_is_joined_checked_and_kept() {
        let fake = FakeResctrl::new();
        fs::create_dir(fake.path().join("gold")).unwrap();
        // As the kernel prints it: padded names and zero-padded masks.
        fs::write(
            fake.path().join("gold/schemata"),
            "    L3:0=0f0;1=01f\n    MB:0= 20;1= 70\n",
        )
        .unwrap();
        fs::write(fake.path().join("gold/tasks"), "").unwrap();
        let cfg = rdt()
            .clos_id("gold")
            .l3_cache_schema("L3:0=f0;1=1f")
            .mem_bw_schema("MB:0=20;1=70")
            .build()
            .unwrap();
        let plan = IntelRdt::prepare_at(fake.path(), &cfg, "ctr").expect("prepare");
        let g = plan.apply(7).expect("apply");
        assert!(!g.created);
        assert_eq!(fake.read("gold/tasks"), "7\n");
        assert!(
            fake.read("gold/schemata").starts_with("    L3:0=0f0"),
            "not rewritten"
        );
        g.remove().expect("remove");
        assert!(
            fake.path().join("gold").is_dir(),
            "a pre-existing closID stays"
        );

        // A mismatch is an error naming the line, and changes nothing.
        let cfg = rdt()
            .clos_id("gold")
            .l3_cache_schema("L3:0=ff;1=1f")
            .build()
            .unwrap();
        let plan = IntelRdt::prepare_at(fake.path(), &cfg, "ctr2").expect("prepare");
        let e = plan.apply(8).expect_err("mismatch").to_string();
        assert!(
            e.contains("L3:0=ff;1=1f") && e.contains("does not match"),
            "{e}"
        );
        assert_eq!(fake.read("gold/tasks"), "7\n");
        assert!(fake.path().join("gold").is_dir());
    }

    #[test]
    fn clos_id_without_schemas_must_exist() {
        let fake = FakeResctrl::new();
        let cfg = rdt().clos_id("missing").build().unwrap();
        let plan = IntelRdt::prepare_at(fake.path(), &cfg, "ctr").expect("prepare");
        let e = plan.apply(1).expect_err("missing group").to_string();
        assert!(
            e.contains("linux.intelRdt.closID") && e.contains("missing"),
            "{e}"
        );
        assert!(!fake.path().join("missing").exists(), "not created");
    }

    #[test]
    fn monitoring_makes_a_mon_group_for_the_container() {
        let fake = FakeResctrl::new();
        let cfg = rdt()
            .clos_id("silver")
            .schemata(vec!["L3:0=3".to_string()])
            .enable_monitoring(true)
            .build()
            .unwrap();
        let plan = IntelRdt::prepare_at(fake.path(), &cfg, "ctr").expect("prepare");
        let g = plan.apply(99).expect("apply");
        assert!(g.created);
        assert_eq!(g.mon_group, Some(fake.path().join("silver/mon_groups/ctr")));
        assert_eq!(fake.read("silver/mon_groups/ctr/tasks"), "99\n");
        fs::remove_file(fake.path().join("silver/mon_groups/ctr/tasks")).unwrap();
        fs::remove_file(fake.path().join("silver/schemata")).unwrap();
        // The fake's own mon_groups/ dir keeps the control group from going at first (the
        // kernel's would not); the monitoring group goes, and a second remove finishes.
        let e = g.remove().expect_err("fake mon_groups dir").to_string();
        assert!(e.contains("silver"), "{e}");
        assert!(!fake.path().join("silver/mon_groups/ctr").exists());
        fs::remove_dir(fake.path().join("silver/mon_groups")).unwrap();
        g.remove().expect("remove again");
        assert!(!fake.path().join("silver").exists());
    }

    #[test]
    fn rejected_line_is_reported_with_the_kernel_status_and_the_task_stays_out() {
        let fake = FakeResctrl::new();
        fs::create_dir_all(fake.path().join("bronze/schemata")).unwrap();
        fs::write(fake.path().join("bronze/tasks"), "").unwrap();
        fs::write(
            fake.path().join("info/last_cmd_status"),
            "Invalid domain 9\n",
        )
        .unwrap();
        let cfg = rdt()
            .clos_id("bronze")
            .schemata(vec!["L3:9=3".to_string()])
            .build()
            .unwrap();
        let plan = IntelRdt::prepare_at(fake.path(), &cfg, "ctr").expect("prepare");
        let e = plan
            .apply(5)
            .expect_err("schemata is a directory")
            .to_string();
        assert!(e.contains("bronze/schemata"), "{e}");
        assert!(
            e.contains("Invalid domain 9") && e.contains("L3:9=3"),
            "{e}"
        );
        assert_eq!(fake.read("bronze/tasks"), "", "the task was not added");
        assert!(
            fake.path().join("bronze").is_dir(),
            "a pre-existing closID stays"
        );
    }

    #[test]
    fn invalid_fields_are_rejected() {
        let fake = FakeResctrl::new();
        for (cfg, field) in [
            (
                rdt().clos_id("a/b").build().unwrap(),
                "linux.intelRdt.closID",
            ),
            (
                rdt().clos_id("..").build().unwrap(),
                "linux.intelRdt.closID",
            ),
            (
                rdt().clos_id("info").build().unwrap(),
                "linux.intelRdt.closID",
            ),
            (rdt().clos_id("").build().unwrap(), "linux.intelRdt.closID"),
            (
                rdt().mem_bw_schema("L3:0=1").build().unwrap(),
                "linux.intelRdt.memBwSchema",
            ),
            (
                rdt().mem_bw_schema("MB:0=1\nMB:1=2").build().unwrap(),
                "linux.intelRdt.memBwSchema",
            ),
            (
                rdt().l3_cache_schema("L3:0=\u{0}").build().unwrap(),
                "linux.intelRdt.l3CacheSchema",
            ),
            (
                rdt()
                    .schemata(vec!["x".into(), "a\0".into()])
                    .build()
                    .unwrap(),
                "linux.intelRdt.schemata[1]",
            ),
        ] {
            let e = IntelRdt::prepare_at(fake.path(), &cfg, "c").expect_err("invalid");
            assert_eq!(e.field, field, "{cfg:?}: {e}");
        }
    }

    #[test]
    fn monitoring_flags_as_config_json_spells_them() {
        let fake = FakeResctrl::new();
        for json in [
            r#"{"enableMonitoring": true}"#,
            // oci-spec 0.10 reads the deprecated flags as `enableCmt`/`enableMbm`, not the
            // spec's `enableCMT`/`enableMBM` (those are dropped as unknown fields before this
            // module sees the config).
            r#"{"enableCmt": true}"#,
            r#"{"enableMbm": true}"#,
        ] {
            let cfg: LinuxIntelRdt = serde_json::from_str(json).expect("parse");
            let plan = IntelRdt::prepare_at(fake.path(), &cfg, "c").expect("prepare");
            assert_eq!(plan.mon_group.as_deref(), Some("c"), "{json}");
        }
        let cfg: LinuxIntelRdt = serde_json::from_str(r#"{"enableMonitoring": false}"#).unwrap();
        let plan = IntelRdt::prepare_at(fake.path(), &cfg, "c").expect("prepare");
        assert_eq!(plan.mon_group, None);
    }

    #[test]
    fn schema_comparison_tolerates_kernel_formatting() {
        let cur = "    L3:0=00f0;1=001f\n    MB:0= 20;1=100\n";
        assert!(schema_present(cur, "L3:0=f0;1=1f"));
        assert!(schema_present(cur, "L3:1=1F"));
        assert!(schema_present(cur, "MB:0=20"));
        assert!(!schema_present(cur, "MB:0=30"));
        assert!(!schema_present(cur, "L2:0=f"));
        assert!(!schema_present(cur, "garbage"));
    }
}
