//! Linux control groups for the berth container runtime.
//!
//! This crate manages one container's cgroup on every kind of host:
//!
//! * **legacy** (cgroup v1 only), **hybrid** (v1 controllers plus a cgroup2 mount,
//!   usually `/sys/fs/cgroup/unified`) and **unified** (cgroup2 only) hosts, detected
//!   from `/proc/self/mountinfo` by [`Layout::detect`] (no fixed paths); a
//!   [`Layout::unified_at`] a custom mount point (a non-standard mount, or a fake
//!   tree in a temporary directory for tests); named v1 hierarchies without
//!   controllers (`name=systemd`) are recorded apart and joined too on legacy and
//!   hybrid hosts (runc joins `name=systemd` the same way);
//! * `linux.cgroupsPath` in its three forms ([`CgroupPath`]);
//! * every field of `linux.resources`, written to v1 files or converted to v2
//!   (the conversions and their formulas are in [`resources`]), device rules as v1
//!   `devices.allow`/`devices.deny` or as a cgroup v2 eBPF program ([`devices`]);
//! * freeze/thaw (v1 freezer, v2 `cgroup.freeze`), kill-all (v2 `cgroup.kill`),
//!   typed [`Stats`], OOM events ([`OomWatcher`]), and removal.
//!
//! The runtime creates a [`CgroupManager`] before the container's init runs and
//! puts the init in it, either with [`CgroupManager::add_process`] after the clone
//! or, on cgroup v2, with `clone3(CLONE_INTO_CGROUP)` and
//! [`CgroupManager::dir_fd`]. Nothing here runs in the fragile child.
//!
//! ```no_run
//! use berth_cgroups::{CgroupManager, CgroupPath, Layout};
//!
//! let resources: oci_spec::runtime::LinuxResources = serde_json::from_str(
//!     r#"{"memory": {"limit": 268435456}, "cpu": {"shares": 512}, "pids": {"limit": 64}}"#,
//! ).unwrap();
//! let layout = Layout::detect()?;
//! let path = CgroupPath::from_spec(Some("/berth/demo".as_ref()), "demo")?;
//! let (cg, warnings) = CgroupManager::create(&layout, &path, Some(&resources))?;
//! assert!(warnings.is_empty());
//! cg.add_process(std::process::id() as i32)?;
//! println!("{} bytes in use", cg.stats()?.memory.usage);
//! # Ok::<(), berth_cgroups::CgroupError>(())
//! ```

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod devices;
mod error;
mod events;
mod fsutil;
mod layout;
mod manager;
mod path;
pub mod resources;
mod stats;

pub use error::{CgroupError, Result};
pub use events::OomWatcher;
pub use layout::{CgroupMode, Hierarchy, Layout};
pub use manager::{CgroupManager, FREEZE_TIMEOUT, FreezerState, remove_unused};
pub use path::{CgroupPath, DEFAULT_PARENT};
pub use resources::Warning;
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, HugetlbStats, MemoryEvents, MemoryStats, PidsStats, Stats,
    hugepage_sizes,
};
