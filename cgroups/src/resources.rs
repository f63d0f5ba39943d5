//! Applying `linux.resources` to a cgroup: v1 files, v2 files and the v1 -> v2
//! conversions.
//!
//! # Where each field goes
//!
//! A field is written to the hierarchy its controller lives in: a v1 hierarchy when
//! one has the controller mounted, else the cgroup2 hierarchy when its root offers
//! the controller (on a hybrid host that is how `hugetlb` is reached). A field whose
//! controller is nowhere gives [`CgroupError::ControllerUnavailable`].
//!
//! | field | v1 file | v2 file and conversion |
//! |---|---|---|
//! | `cpu.shares` | `cpu.shares` | `cpu.weight` = `1 + ((shares - 2) * 9999) / 262142`, shares clamped to 2..=262144 |
//! | `cpu.quota`, `cpu.period` | `cpu.cfs_period_us` then `cpu.cfs_quota_us`, the quota first if the kernel refuses the period (a parent's limit) | `cpu.max` = `"<quota> <period>"`, quota <= 0 is `max`; a missing half keeps the current value |
//! | `cpu.burst` | `cpu.cfs_burst_us`, ordered against the quota as on v2 | `cpu.max.burst` (same microseconds), before `cpu.max` if the current quota allows it, else after (the kernel keeps burst <= quota at every step) |
//! | `cpu.realtimeRuntime`, `cpu.realtimePeriod` | `cpu.rt_runtime_us`, `cpu.rt_period_us` | rejected: cgroup v2 has no real-time groups |
//! | `cpu.cpus`, `cpu.mems` | `cpuset.cpus`, `cpuset.mems` | same names |
//! | `cpu.idle` | `cpu.idle`, 0 before the shares and 1 after them (the kernel refuses shares for an idle group) | `cpu.idle`, 0 before `cpu.weight` and 1 after it |
//! | `memory.limit` | `memory.limit_in_bytes`; -1 without a swap limit lifts `memory.memsw.limit_in_bytes` too (as runc) | `memory.max` (-1 is `max`) |
//! | `memory.reservation` | `memory.soft_limit_in_bytes` | `memory.low` (-1 is `max`) |
//! | `memory.swap` (memory + swap) | `memory.memsw.limit_in_bytes`, written before or after the limit so that memory <= memory+swap holds at every step (0 means "not set") | `memory.swap.max` = `swap - limit` (swap -1 is `max`; 0 means "not set"; a limit of -1 without a swap limit lifts it too, as on v1) |
//! | `memory.swappiness` | `memory.swappiness` | warning: no per-cgroup swappiness on v2 |
//! | `memory.disableOOMKiller` | `memory.oom_control` | warning when true: v2 cannot disable the OOM killer |
//! | `memory.kernel`, `memory.kernelTCP` | `memory.kmem.limit_in_bytes`, `memory.kmem.tcp.limit_in_bytes`; warning where the kernel dropped or ignores them | warning: v2 accounts kernel memory in `memory.max` |
//! | `memory.useHierarchy` | `memory.use_hierarchy` | warning when false: v2 is always hierarchical |
//! | `memory.checkBeforeUpdate` | on update, refuse a limit below `memory.usage_in_bytes` | the same with `memory.current` |
//! | `pids.limit` | `pids.max` (< 0 is `max`, 0 means "not set") | `pids.max` |
//! | `blockIO.weight` | `blkio.weight`, else `blkio.bfq.weight`; an error where the kernel has neither (no CFQ or BFQ) | `io.bfq.weight` (same 1..1000 scale) where present, else `io.weight` = `1 + ((weight - 10) * 9999) / 990`, as runc and crun |
//! | `blockIO.leafWeight` (+ per device) | `blkio.leaf_weight[_device]`; warning where the kernel dropped it (no CFQ) | warning: no leaf weights on v2 |
//! | `blockIO.weightDevice` | `blkio.weight_device` / `blkio.bfq.weight_device`: `"maj:min weight"` (an error without either, as for `weight`) | `io.bfq.weight` `"maj:min weight"` where the device's scheduler is BFQ (or unknown), else `io.weight` (converted as above); a device with neither is an error naming it |
//! | `blockIO.throttle*Device` | `blkio.throttle.{read,write}_{bps,iops}_device`: `"maj:min rate"` | `io.max`: `"maj:min rbps=rate"` (`wbps`, `riops`, `wiops`), rate 0 is `max` |
//! | `hugepageLimits` | `hugetlb.<size>.limit_in_bytes` (+ `.rsvd.limit_in_bytes` where present) | `hugetlb.<size>.max` (+ `hugetlb.<size>.rsvd.max` where present) |
//! | `network.classID` | `net_cls.classid` | unavailable (no net_cls on v2) |
//! | `network.priorities` | `net_prio.ifpriomap`: `"<ifname> <prio>"` | unavailable |
//! | `rdma` | `rdma.max`: `"<dev> hca_handle=<n> hca_object=<n>"` (missing is `max`), written first; a device the kernel does not know (ENODEV) is an error naming it | the same |
//! | `devices` | `devices.deny` `a`, then the rules | an eBPF program, see [`crate::devices`] |
//! | `unified` | only keys of controllers bound to cgroup2 (hybrid) | written as given after validation |
//!
//! Zero values that mean "not set" (Docker sends them) are dropped first, as runc does:
//! see [`zeros_unset`].
//!
//! On cgroup v2 the controllers a write needs are first enabled (`+name` in
//! `cgroup.subtree_control`) in every ancestor below the mount point.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::devices::{self, DeviceRule};
use crate::error::{CgroupError, Result};
use crate::fsutil;
use crate::layout::Location;
use crate::manager::{self, CgroupManager};

/// A field that was accepted but could not be applied as such on this host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The `linux.resources` field (dotted path).
    pub field: String,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux.resources.{}: {}", self.field, self.message)
    }
}

/// Converts v1 `cpu.shares` (2..=262144, default 1024) to v2 `cpu.weight` (1..=10000).
///
/// `weight = 1 + ((shares - 2) * 9999) / 262142`, so 2 -> 1, 1024 -> 39, 262144 -> 10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// Converts a v1 blkio weight (10..=1000) to v2 `io.weight` (1..=10000).
///
/// `io.weight = 1 + ((weight - 10) * 9999) / 990`, so 10 -> 1, 500 -> 4950, 1000 -> 10000.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// Converts the OCI (v1) swap limit, which counts memory + swap, to v2
/// `memory.swap.max`, which counts swap only: `swap - limit`.
///
/// `swap == -1` gives `max`; `swap == 0` gives `None` (not set). A swap limit without a
/// memory limit, or below it, cannot be converted.
pub fn swap_to_v2(limit: Option<i64>, swap: i64) -> std::result::Result<Option<String>, String> {
    match swap {
        -1 => Ok(Some("max".into())),
        0 => Ok(None),
        s if s < -1 => Err("must be -1 or a positive number of bytes".into()),
        s => match limit {
            Some(l) if l > 0 => {
                if s < l {
                    Err(format!("memory+swap limit is below the memory limit {l}"))
                } else {
                    Ok(Some((s - l).to_string()))
                }
            }
            _ => Err("a swap limit needs a memory limit on cgroup v2".into()),
        },
    }
}

/// `r` without the values that mean "not set", as runc 1.1 reads them (Docker fills
/// `linux.resources` with them): 0 for `cpu.shares`, `cpu.quota`, `cpu.period`,
/// `cpu.realtimeRuntime`, `cpu.realtimePeriod`, `memory.limit`, `memory.reservation`,
/// `memory.swap`, `memory.kernel`, `memory.kernelTCP`, `pids.limit`, `blockIO.weight`,
/// `blockIO.leafWeight` and `network.classID` (and the weights of
/// `blockIO.weightDevice`, skipped where they are written);
/// an empty `cpu.cpus` or `cpu.mems`; `memory.swappiness` 2^64 - 1 (Go's `uint64(-1)`).
///
/// ```
/// let r: oci_spec::runtime::LinuxResources = serde_json::from_str(
///     r#"{"blockIO": {"weight": 0}, "pids": {"limit": 0}, "cpu": {"shares": 512, "quota": 0}}"#,
/// ).unwrap();
/// let r = berth_cgroups::resources::zeros_unset(&r);
/// assert_eq!(r.block_io().as_ref().unwrap().weight(), None);
/// assert!(r.pids().is_none());
/// let cpu = r.cpu().as_ref().unwrap();
/// assert_eq!((cpu.shares(), cpu.quota()), (Some(512), None));
/// ```
pub fn zeros_unset(r: &LinuxResources) -> LinuxResources {
    fn nz<T: Default + PartialEq>(v: Option<T>) -> Option<T> {
        v.filter(|v| *v != T::default())
    }
    let mut r = r.clone();
    if let Some(c) = r.cpu_mut() {
        c.set_shares(nz(c.shares()));
        c.set_quota(nz(c.quota()));
        c.set_period(nz(c.period()));
        c.set_realtime_runtime(nz(c.realtime_runtime()));
        c.set_realtime_period(nz(c.realtime_period()));
        c.set_cpus(nz(c.cpus().clone()));
        c.set_mems(nz(c.mems().clone()));
    }
    if let Some(m) = r.memory_mut() {
        m.set_limit(nz(m.limit()));
        m.set_reservation(nz(m.reservation()));
        m.set_swap(nz(m.swap()));
        m.set_kernel(nz(m.kernel()));
        m.set_kernel_tcp(nz(m.kernel_tcp()));
        m.set_swappiness(m.swappiness().filter(|s| *s != u64::MAX));
    }
    if r.pids().is_some_and(|p| p.limit() == 0) {
        r.set_pids(None);
    }
    if let Some(b) = r.block_io_mut() {
        b.set_weight(nz(b.weight()));
        b.set_leaf_weight(nz(b.leaf_weight()));
    }
    if let Some(n) = r.network_mut() {
        n.set_class_id(nz(n.class_id()));
    }
    r
}

/// One step of applying resources.
#[derive(Debug)]
enum Op {
    Write {
        at: Location,
        file: String,
        value: String,
    },
    MemoryV1 {
        at: Location,
        limit: Option<i64>,
        swap: Option<i64>,
    },
    KernelMemV1 {
        at: Location,
        field: &'static str,
        file: &'static str,
        value: i64,
    },
    CpuMaxV2 {
        quota: Option<i64>,
        period: Option<u64>,
        burst: Option<u64>,
    },
    CpuBandwidthV1 {
        at: Location,
        period: Option<u64>,
        quota: Option<i64>,
        burst: Option<u64>,
    },
    CheckUsage {
        at: Location,
        file: &'static str,
        limit: i64,
    },
    DevicesV1 {
        at: Location,
        rules: Vec<DeviceRule>,
    },
    /// Block I/O weights on cgroup v2: `io.bfq.weight` and/or `io.weight`, per device
    /// by the device's scheduler, `(index in weightDevice, "maj:min", weight)`.
    IoWeightV2 {
        weight: Option<u16>,
        devices: Vec<(usize, String, u16)>,
    },
    /// Written only if the file exists once the controllers are enabled.
    WriteIfPresent {
        at: Location,
        file: String,
        value: String,
    },
    /// A line of `rdma.max`; the kernel knows the device or refuses it (ENODEV).
    Rdma {
        at: Location,
        field: String,
        value: String,
    },
    DevicesBpf {
        rules: Vec<DeviceRule>,
    },
}

fn v2_num(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

fn invalid(
    field: impl Into<String>,
    value: impl ToString,
    reason: impl Into<String>,
) -> CgroupError {
    CgroupError::InvalidValue {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

struct Planner<'a> {
    m: &'a CgroupManager,
    update: bool,
    ops: Vec<Op>,
    warnings: Vec<Warning>,
}

impl Planner<'_> {
    fn loc(&self, controller: &str, field: &str) -> Result<Location> {
        let loc = self.m.layout.locate(controller);
        match loc {
            Some(l) if self.m.dir(l).is_some() => Ok(l),
            _ => Err(CgroupError::ControllerUnavailable {
                field: field.into(),
                controller: controller.into(),
            }),
        }
    }

    fn dir(&self, at: Location) -> &Path {
        // `loc` only returns locations that have a directory.
        self.m.dir(at).unwrap_or(Path::new("/nonexistent"))
    }

    fn warn(&mut self, field: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            field: field.into(),
            message: message.into(),
        });
    }

    fn write(&mut self, at: Location, file: impl Into<String>, value: impl ToString) {
        self.ops.push(Op::Write {
            at,
            file: file.into(),
            value: value.to_string(),
        });
    }

    fn cpu(&mut self, r: &LinuxResources) -> Result<()> {
        let Some(cpu) = r.cpu() else { return Ok(()) };
        let needs_cpu = cpu.shares().is_some()
            || cpu.quota().is_some()
            || cpu.period().is_some()
            || cpu.burst().is_some()
            || cpu.realtime_runtime().is_some()
            || cpu.realtime_period().is_some()
            || cpu.idle().is_some();
        if needs_cpu {
            let at = self.loc("cpu", "cpu")?;
            // The kernel refuses a weight (shares) for an idle group (EINVAL): leaving
            // idle goes first, entering it last.
            let idle_first = cpu.idle() == Some(0);
            if idle_first {
                self.write(at, "cpu.idle", 0);
            }
            if let Location::V1(_) = at {
                if let Some(v) = cpu.shares() {
                    self.write(at, "cpu.shares", v);
                }
                if cpu.period().is_some() || cpu.quota().is_some() || cpu.burst().is_some() {
                    self.ops.push(Op::CpuBandwidthV1 {
                        at,
                        period: cpu.period(),
                        quota: cpu.quota().map(|v| if v <= 0 { -1 } else { v }),
                        burst: cpu.burst(),
                    });
                }
                if let Some(v) = cpu.realtime_period() {
                    self.write(at, "cpu.rt_period_us", v);
                }
                if let Some(v) = cpu.realtime_runtime() {
                    self.write(at, "cpu.rt_runtime_us", v);
                }
                if let Some(v) = cpu.idle().filter(|_| !idle_first) {
                    self.write(at, "cpu.idle", v);
                }
            } else {
                if let Some(v) = cpu.shares() {
                    self.write(at, "cpu.weight", shares_to_weight(v));
                }
                if cpu.quota().is_some() || cpu.period().is_some() || cpu.burst().is_some() {
                    if cpu.period() == Some(0) {
                        return Err(invalid("cpu.period", 0, "must be positive"));
                    }
                    self.ops.push(Op::CpuMaxV2 {
                        quota: cpu.quota(),
                        period: cpu.period(),
                        burst: cpu.burst(),
                    });
                }
                if let Some(v) = cpu.realtime_runtime() {
                    return Err(invalid(
                        "cpu.realtimeRuntime",
                        v,
                        "cgroup v2 has no real-time scheduling groups",
                    ));
                }
                if let Some(v) = cpu.realtime_period() {
                    return Err(invalid(
                        "cpu.realtimePeriod",
                        v,
                        "cgroup v2 has no real-time scheduling groups",
                    ));
                }
                if let Some(v) = cpu.idle().filter(|_| !idle_first) {
                    self.write(at, "cpu.idle", v);
                }
            }
        }
        if let Some(v) = cpu.cpus() {
            let at = self.loc("cpuset", "cpu.cpus")?;
            self.write(at, "cpuset.cpus", v);
        }
        if let Some(v) = cpu.mems() {
            let at = self.loc("cpuset", "cpu.mems")?;
            self.write(at, "cpuset.mems", v);
        }
        Ok(())
    }

    fn memory(&mut self, r: &LinuxResources) -> Result<()> {
        let Some(mem) = r.memory() else { return Ok(()) };
        let at = self.loc("memory", "memory")?;
        for (name, v) in [
            ("memory.limit", mem.limit()),
            ("memory.reservation", mem.reservation()),
            ("memory.swap", mem.swap()),
        ] {
            if let Some(v) = v {
                if v < -1 {
                    return Err(invalid(name, v, "must be -1 or a number of bytes"));
                }
            }
        }
        if let Some(s) = mem.swappiness() {
            if s > 100 {
                return Err(invalid("memory.swappiness", s, "must be 0..=100"));
            }
        }
        let check = self.update && mem.check_before_update() == Some(true);
        if let Location::V1(_) = at {
            if let (Some(l), true) = (mem.limit(), check) {
                self.ops.push(Op::CheckUsage {
                    at,
                    file: "memory.usage_in_bytes",
                    limit: l,
                });
            }
            if mem.limit().is_some() || mem.swap().is_some() {
                // No memory limit and no swap limit given: no memory+swap limit either
                // (as runc; memory.memsw.limit_in_bytes may not stay below the limit).
                let swap = match (mem.limit(), mem.swap()) {
                    (Some(-1), None | Some(0)) => Some(-1),
                    (_, s) => s,
                };
                self.ops.push(Op::MemoryV1 {
                    at,
                    limit: mem.limit(),
                    swap,
                });
            }
            if let Some(v) = mem.reservation() {
                self.write(at, "memory.soft_limit_in_bytes", v);
            }
            if let Some(v) = mem.kernel() {
                self.ops.push(Op::KernelMemV1 {
                    at,
                    field: "memory.kernel",
                    file: "memory.kmem.limit_in_bytes",
                    value: v,
                });
            }
            if let Some(v) = mem.kernel_tcp() {
                self.ops.push(Op::KernelMemV1 {
                    at,
                    field: "memory.kernelTCP",
                    file: "memory.kmem.tcp.limit_in_bytes",
                    value: v,
                });
            }
            if let Some(v) = mem.swappiness() {
                self.write(at, "memory.swappiness", v);
            }
            if let Some(v) = mem.disable_oom_killer() {
                self.write(at, "memory.oom_control", u8::from(v));
            }
            if let Some(v) = mem.use_hierarchy() {
                self.write(at, "memory.use_hierarchy", u8::from(v));
            }
        } else {
            if let (Some(l), true) = (mem.limit(), check) {
                self.ops.push(Op::CheckUsage {
                    at,
                    file: "memory.current",
                    limit: l,
                });
            }
            if let Some(s) = mem.swap() {
                let limit = match mem.limit() {
                    Some(l) => Some(l),
                    // An update of the swap alone: convert against the current limit.
                    None => fsutil::read_opt(self.dir(at), "memory.max")?
                        .and_then(|t| t.trim().parse::<i64>().ok()),
                };
                match swap_to_v2(limit, s) {
                    Ok(Some(v)) => {
                        // memory.max first: the swap value was computed against it.
                        if let Some(l) = mem.limit() {
                            self.write(at, "memory.max", v2_num(l));
                        }
                        self.write(at, "memory.swap.max", v);
                    }
                    Ok(None) => {
                        if let Some(l) = mem.limit() {
                            self.write(at, "memory.max", v2_num(l));
                        }
                    }
                    Err(reason) => return Err(invalid("memory.swap", s, reason)),
                }
            } else if let Some(l) = mem.limit() {
                self.write(at, "memory.max", v2_num(l));
                if l == -1 {
                    // No limit and no swap limit given: no swap limit either, as on v1
                    // (and as runc). The file is missing without swap accounting.
                    self.ops.push(Op::WriteIfPresent {
                        at,
                        file: "memory.swap.max".into(),
                        value: "max".into(),
                    });
                }
            }
            if let Some(v) = mem.reservation() {
                self.write(at, "memory.low", v2_num(v));
            }
            if mem.kernel().is_some() {
                self.warn(
                    "memory.kernel",
                    "ignored: cgroup v2 has no separate kernel memory limit (memory.max covers it)",
                );
            }
            if mem.kernel_tcp().is_some() {
                self.warn(
                    "memory.kernelTCP",
                    "ignored: cgroup v2 has no separate TCP buffer limit (memory.max covers it)",
                );
            }
            if mem.swappiness().is_some() {
                self.warn(
                    "memory.swappiness",
                    "ignored: cgroup v2 has no per-cgroup swappiness",
                );
            }
            if mem.disable_oom_killer() == Some(true) {
                self.warn(
                    "memory.disableOOMKiller",
                    "ignored: cgroup v2 cannot disable the OOM killer",
                );
            }
            if mem.use_hierarchy() == Some(false) {
                self.warn(
                    "memory.useHierarchy",
                    "ignored: cgroup v2 is always hierarchical",
                );
            }
        }
        Ok(())
    }

    fn pids(&mut self, r: &LinuxResources) -> Result<()> {
        // A limit of 0 was made "not set" by `zeros_unset`.
        let Some(p) = r.pids() else { return Ok(()) };
        let at = self.loc("pids", "pids.limit")?;
        let l = p.limit();
        self.write(
            at,
            "pids.max",
            if l > 0 { l.to_string() } else { "max".into() },
        );
        Ok(())
    }

    fn block_io(&mut self, r: &LinuxResources) -> Result<()> {
        let Some(b) = r.block_io() else { return Ok(()) };
        let throttles = [
            (
                "blockIO.throttleReadBpsDevice",
                b.throttle_read_bps_device(),
                "read_bps",
                "rbps",
            ),
            (
                "blockIO.throttleWriteBpsDevice",
                b.throttle_write_bps_device(),
                "write_bps",
                "wbps",
            ),
            (
                "blockIO.throttleReadIOPSDevice",
                b.throttle_read_iops_device(),
                "read_iops",
                "riops",
            ),
            (
                "blockIO.throttleWriteIOPSDevice",
                b.throttle_write_iops_device(),
                "write_iops",
                "wiops",
            ),
        ];
        let any = b.weight().is_some()
            || b.leaf_weight().is_some()
            || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
            || throttles
                .iter()
                .any(|t| t.1.as_ref().is_some_and(|v| !v.is_empty()));
        if !any {
            return Ok(());
        }
        let v1_ctl = self.m.layout.locate("blkio");
        let at = match v1_ctl {
            Some(l @ Location::V1(_)) => l,
            _ => self.loc("io", "blockIO")?,
        };
        let dir = self.dir(at).to_path_buf();
        let dev = |maj: i64, min: i64, field: &str| -> Result<String> {
            if maj < 0 || min < 0 {
                return Err(invalid(
                    field,
                    format!("{maj}:{min}"),
                    "device numbers must be >= 0",
                ));
            }
            Ok(format!("{maj}:{min}"))
        };
        if let Location::V1(_) = at {
            // CFQ (gone since Linux 5.0) gave blkio.weight, BFQ gives blkio.bfq.weight; a
            // kernel with neither scheduler has no proportional weights at all, and a weight
            // is refused (runc fails on the missing file too) rather than dropped.
            let weight_files = if fsutil::exists(&dir, "blkio.weight") {
                Some(("blkio.weight", "blkio.weight_device"))
            } else if fsutil::exists(&dir, "blkio.bfq.weight") {
                Some(("blkio.bfq.weight", "blkio.bfq.weight_device"))
            } else {
                None
            };
            let weight_files = |field: &str, w: u16| {
                weight_files.ok_or_else(|| {
                    invalid(
                        field,
                        w,
                        "this kernel has neither blkio.weight nor blkio.bfq.weight \
                         (no CFQ or BFQ I/O scheduler)",
                    )
                })
            };
            if let Some(w) = b.weight() {
                let (wfile, _) = weight_files("blockIO.weight", w)?;
                self.write(at, wfile, w);
            }
            let leaf = fsutil::exists(&dir, "blkio.leaf_weight");
            if let Some(w) = b.leaf_weight() {
                if leaf {
                    self.write(at, "blkio.leaf_weight", w);
                } else {
                    self.warn(
                        "blockIO.leafWeight",
                        format!("ignored: this kernel has no blkio.leaf_weight (value {w})"),
                    );
                }
            }
            for (i, wd) in b.weight_device().iter().flatten().enumerate() {
                let d = dev(
                    wd.major(),
                    wd.minor(),
                    &format!("blockIO.weightDevice[{i}]"),
                )?;
                if let Some(w) = wd.weight().filter(|w| *w != 0) {
                    let (_, wdfile) = weight_files(&format!("blockIO.weightDevice[{i}]"), w)?;
                    self.write(at, wdfile, format!("{d} {w}"));
                }
                if let Some(w) = wd.leaf_weight().filter(|w| *w != 0) {
                    if leaf {
                        self.write(at, "blkio.leaf_weight_device", format!("{d} {w}"));
                    } else {
                        self.warn(
                            &format!("blockIO.weightDevice[{i}].leafWeight"),
                            format!(
                                "ignored: this kernel has no blkio.leaf_weight_device (value {w})"
                            ),
                        );
                    }
                }
            }
            for (field, list, name, _) in &throttles {
                for (i, t) in list.iter().flatten().enumerate() {
                    let d = dev(t.major(), t.minor(), &format!("{field}[{i}]"))?;
                    self.write(
                        at,
                        format!("blkio.throttle.{name}_device"),
                        format!("{d} {}", t.rate()),
                    );
                }
            }
        } else {
            // Which weight files exist is known once the io controller is enabled in the
            // parent: the choice is made when the plan runs.
            let mut devices = Vec::new();
            if let Some(w) = b.leaf_weight() {
                self.warn(
                    "blockIO.leafWeight",
                    format!("ignored: cgroup v2 has no leaf weights (value {w})"),
                );
            }
            for (i, wd) in b.weight_device().iter().flatten().enumerate() {
                let d = dev(
                    wd.major(),
                    wd.minor(),
                    &format!("blockIO.weightDevice[{i}]"),
                )?;
                if let Some(w) = wd.weight().filter(|w| *w != 0) {
                    devices.push((i, d, w));
                }
                if wd.leaf_weight().is_some_and(|w| w != 0) {
                    self.warn(
                        &format!("blockIO.weightDevice[{i}].leafWeight"),
                        "ignored: cgroup v2 has no leaf weights",
                    );
                }
            }
            if b.weight().is_some() || !devices.is_empty() {
                self.ops.push(Op::IoWeightV2 {
                    weight: b.weight(),
                    devices,
                });
            }
            for (field, list, _, key) in &throttles {
                for (i, t) in list.iter().flatten().enumerate() {
                    let d = dev(t.major(), t.minor(), &format!("{field}[{i}]"))?;
                    let rate = if t.rate() == 0 {
                        "max".to_string()
                    } else {
                        t.rate().to_string()
                    };
                    self.write(at, "io.max", format!("{d} {key}={rate}"));
                }
            }
        }
        Ok(())
    }

    fn hugepages(&mut self, r: &LinuxResources) -> Result<()> {
        for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
            let field = format!("hugepageLimits[{i}]");
            let size = h.page_size();
            let digits = size.trim_end_matches(['K', 'M', 'G', 'B']);
            let unit = &size[digits.len()..];
            if digits.is_empty()
                || !digits.bytes().all(|c| c.is_ascii_digit())
                || !matches!(unit, "KB" | "MB" | "GB")
            {
                return Err(invalid(
                    format!("{field}.pageSize"),
                    size,
                    "expected a size such as 2MB or 1GB",
                ));
            }
            let at = self.loc("hugetlb", &field)?;
            let dir = self.dir(at).to_path_buf();
            let v1 = matches!(at, Location::V1(_));
            let (file, rsvd) = if v1 {
                (
                    format!("hugetlb.{size}.limit_in_bytes"),
                    format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                )
            } else {
                (
                    format!("hugetlb.{size}.max"),
                    format!("hugetlb.{size}.rsvd.max"),
                )
            };
            // The cgroup file appears only once the hugetlb controller is enabled (on v2 that
            // happens when this plan is applied): the kernel's own list of page sizes decides.
            let kb: u64 = digits.parse::<u64>().unwrap_or(0)
                * match unit {
                    "KB" => 1,
                    "MB" => 1024,
                    _ => 1024 * 1024,
                };
            let host_has = Path::new("/sys/kernel/mm/hugepages")
                .join(format!("hugepages-{kb}kB"))
                .is_dir();
            if !host_has && !fsutil::exists(&dir, &file) {
                return Err(invalid(
                    format!("{field}.pageSize"),
                    size,
                    format!(
                        "this host has no {} huge pages ({} is missing)",
                        size,
                        dir.join(&file).display()
                    ),
                ));
            }
            let value = if v1 {
                h.limit().max(-1).to_string()
            } else {
                v2_num(h.limit())
            };
            self.write(at, file, &value);
            // On v2 the file appears only once hugetlb is enabled in the parent.
            self.ops.push(Op::WriteIfPresent {
                at,
                file: rsvd,
                value,
            });
        }
        Ok(())
    }

    fn network(&mut self, r: &LinuxResources) -> Result<()> {
        let Some(n) = r.network() else { return Ok(()) };
        if let Some(id) = n.class_id() {
            let at = self.loc("net_cls", "network.classID")?;
            self.write(at, "net_cls.classid", id);
        }
        for (i, p) in n.priorities().iter().flatten().enumerate() {
            let at = self.loc("net_prio", "network.priorities")?;
            let name = p.name();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(invalid(
                    format!("network.priorities[{i}].name"),
                    name,
                    "not an interface name",
                ));
            }
            self.write(at, "net_prio.ifpriomap", format!("{name} {}", p.priority()));
        }
        Ok(())
    }

    fn rdma(&mut self, r: &LinuxResources) -> Result<()> {
        let Some(map) = r.rdma() else { return Ok(()) };
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for dev in keys {
            let field = format!("rdma.{dev}");
            if dev.is_empty() || dev.contains(char::is_whitespace) {
                return Err(invalid(&field, dev, "not an RDMA device name"));
            }
            let at = self.loc("rdma", &field)?;
            let l = &map[dev];
            let n = |v: Option<u32>| v.map_or_else(|| "max".to_string(), |v| v.to_string());
            self.ops.push(Op::Rdma {
                at,
                field,
                value: format!(
                    "{dev} hca_handle={} hca_object={}",
                    n(l.hca_handles()),
                    n(l.hca_objects())
                ),
            });
        }
        Ok(())
    }

    fn devices(&mut self, r: &LinuxResources) -> Result<()> {
        let Some(list) = r.devices() else {
            return Ok(());
        };
        let rules = list
            .iter()
            .enumerate()
            .map(|(i, d)| DeviceRule::from_spec(i, d))
            // A deny rule of no access (runc ignores the characters it doesn't know)
            // denies nothing.
            .filter(|r| !matches!(r, Ok(r) if !r.allow && r.access == 0))
            .collect::<Result<Vec<_>>>()?;
        match self.m.layout.locate("devices") {
            Some(at @ Location::V1(_)) => self.ops.push(Op::DevicesV1 { at, rules }),
            _ if self.m.v2_dir().is_some() => self.ops.push(Op::DevicesBpf { rules }),
            _ => {
                return Err(CgroupError::ControllerUnavailable {
                    field: "devices".into(),
                    controller: "devices".into(),
                });
            }
        }
        Ok(())
    }

    fn unified(&mut self, r: &LinuxResources) -> Result<()> {
        let Some(map) = r.unified() else {
            return Ok(());
        };
        if map.is_empty() {
            return Ok(());
        }
        let Some((dir, _)) = self.m.v2_dir() else {
            return Err(CgroupError::ControllerUnavailable {
                field: "unified".into(),
                controller: "cgroup2".into(),
            });
        };
        let dir = dir.to_path_buf();
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for key in keys {
            let value = &map[key];
            let field = format!("unified.{key}");
            let Some((ctl, rest)) = key.split_once('.') else {
                return Err(invalid(&field, value, "key must be <controller>.<file>"));
            };
            // Controller names are lowercase; file names may not be (hugetlb.2MB.max).
            let ok_chars = ctl.bytes().all(|c| c.is_ascii_lowercase() || c == b'_')
                && rest
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
            if !ok_chars || rest.is_empty() || ctl.is_empty() {
                return Err(invalid(
                    &field,
                    value,
                    "key must be <controller>.<file>: a lowercase controller, a file of letters, digits, _ and .",
                ));
            }
            if matches!(
                key.as_str(),
                "cgroup.procs"
                    | "cgroup.threads"
                    | "cgroup.kill"
                    | "cgroup.subtree_control"
                    | "cgroup.freeze"
            ) {
                return Err(invalid(
                    &field,
                    value,
                    "managed by the runtime, not settable through unified",
                ));
            }
            if ctl != "cgroup" && self.m.layout.locate(ctl) != Some(Location::V2) {
                return Err(CgroupError::ControllerUnavailable {
                    field,
                    controller: ctl.into(),
                });
            }
            if value.contains('\n') {
                return Err(invalid(&field, value, "a value is a single line"));
            }
            if ctl == "cgroup" && !fsutil::exists(&dir, key) {
                return Err(invalid(
                    &field,
                    value,
                    format!("{} does not exist", dir.join(key).display()),
                ));
            }
            self.write(Location::V2, key.as_str(), value);
        }
        Ok(())
    }
}

/// The I/O scheduler of block device `dev` (`maj:min`), from sysfs: `bfq`,
/// `mq-deadline`, `none`...; `None` if sysfs does not show it.
fn device_scheduler(dev: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/sys/dev/block/{dev}/queue/scheduler")).ok()?;
    text.split_whitespace()
        .find_map(|s| s.strip_prefix('[')?.strip_suffix(']'))
        .map(str::to_string)
}

impl CgroupManager {
    /// Applies every field set in `resources` (fields left out are not touched) and
    /// returns warnings for the fields that this host accepts but cannot enforce (see
    /// the [module docs](crate::resources) for each field's file and conversion).
    ///
    /// Everything is validated before the first write: a value that cannot be
    /// expressed on this host fails without changing the cgroup. A value the kernel
    /// rejects fails with [`CgroupError::Write`] naming the file and the value.
    ///
    /// ```no_run
    /// # let cg: berth_cgroups::CgroupManager = unimplemented!();
    /// let r: oci_spec::runtime::LinuxResources =
    ///     serde_json::from_str(r#"{"memory": {"limit": 67108864}, "pids": {"limit": 32}}"#).unwrap();
    /// cg.apply(&r)?;
    /// # Ok::<(), berth_cgroups::CgroupError>(())
    /// ```
    pub fn apply(&self, resources: &LinuxResources) -> Result<Vec<Warning>> {
        self.apply_inner(resources, false)
    }

    /// Like [`Self::apply`] for a running container; also honours
    /// `memory.checkBeforeUpdate` (a new limit below the current usage is refused).
    ///
    /// Validation happens before any write, as for `apply`; a value the kernel
    /// rejects midway leaves the fields written before it applied.
    pub fn update(&self, resources: &LinuxResources) -> Result<Vec<Warning>> {
        self.apply_inner(resources, true)
    }

    fn apply_inner(&self, r: &LinuxResources, update: bool) -> Result<Vec<Warning>> {
        let r = &zeros_unset(r);
        let mut p = Planner {
            m: self,
            update,
            ops: Vec::new(),
            warnings: Vec::new(),
        };
        // RDMA first: the kernel alone knows its devices, and one it does not know fails
        // before anything else is written.
        p.rdma(r)?;
        p.cpu(r)?;
        p.memory(r)?;
        p.pids(r)?;
        p.block_io(r)?;
        p.hugepages(r)?;
        p.network(r)?;
        p.devices(r)?;
        p.unified(r)?;
        let Planner {
            ops, mut warnings, ..
        } = p;
        self.enable_v2_controllers(&ops)?;
        for op in ops {
            self.run(op, &mut warnings)?;
        }
        Ok(warnings)
    }

    fn enable_v2_controllers(&self, ops: &[Op]) -> Result<()> {
        let mut needed = BTreeSet::new();
        for op in ops {
            match op {
                Op::Write {
                    at: Location::V2,
                    file,
                    ..
                } => {
                    if let Some((c, _)) = file.split_once('.') {
                        if c != "cgroup" {
                            needed.insert(c.to_string());
                        }
                    }
                }
                Op::Rdma {
                    at: Location::V2, ..
                } => {
                    needed.insert("rdma".to_string());
                }
                Op::IoWeightV2 { .. } => {
                    needed.insert("io".to_string());
                }
                Op::WriteIfPresent {
                    at: Location::V2,
                    file,
                    ..
                } => {
                    if let Some((c, _)) = file.split_once('.') {
                        needed.insert(c.to_string());
                    }
                }
                Op::CpuMaxV2 { .. } => {
                    needed.insert("cpu".to_string());
                }
                Op::CheckUsage {
                    at: Location::V2, ..
                } => {
                    needed.insert("memory".to_string());
                }
                _ => {}
            }
        }
        let needed: Vec<&str> = needed.iter().map(String::as_str).collect();
        self.enable_controllers(&needed)
    }

    /// Enables cgroup v2 `controllers` for this cgroup: `+name` in the
    /// `cgroup.subtree_control` of every ancestor below the mount point that lacks it.
    ///
    /// [`Self::apply`] does this for the controllers its writes need; a runtime that
    /// wants, say, memory statistics of a container without a memory limit on a
    /// unified host calls it after [`Self::create`]. Does nothing without cgroup2.
    pub fn enable_controllers(&self, controllers: &[&str]) -> Result<()> {
        if controllers.is_empty() {
            return Ok(());
        }
        if let Some(h) = self.layout.unified.as_ref() {
            if let Some(c) = controllers.iter().find(|c| !h.has(c)) {
                return Err(CgroupError::ControllerUnavailable {
                    field: "(enable_controllers)".into(),
                    controller: (*c).to_string(),
                });
            }
        }
        let (Some(h), Some((leaf, _))) = (self.layout.unified.as_ref(), self.v2_dir()) else {
            return Ok(());
        };
        for dir in manager::controlling_ancestors(h, leaf) {
            let add = manager::not_enabled(dir, controllers.iter().copied())?;
            if !add.is_empty() {
                fsutil::write(dir, "cgroup.subtree_control", &add.join(" "))?;
            }
        }
        Ok(())
    }

    /// v1 `cpu.cfs_period_us` and `cpu.cfs_quota_us`, in the order the kernel accepts.
    fn cpu_bandwidth_v1(&self, d: &Path, period: Option<u64>, quota: Option<i64>) -> Result<()> {
        let (pfile, qfile) = ("cpu.cfs_period_us", "cpu.cfs_quota_us");
        let Some(p) = period else {
            return quota.map_or(Ok(()), |q| fsutil::write(d, qfile, &q.to_string()));
        };
        // Under a parent with a quota the kernel refuses a step whose
        // quota/period ratio exceeds the parent's: the old quota over the new
        // period (a shorter period first) may, the new quota over the old period
        // (a longer period first) too. Period first; if refused, quota first.
        match fsutil::write(d, pfile, &p.to_string()) {
            Ok(()) => quota.map_or(Ok(()), |q| fsutil::write(d, qfile, &q.to_string())),
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
            {
                let q = quota.unwrap_or(-1);
                fsutil::write(d, qfile, &q.to_string())?;
                fsutil::write(d, pfile, &p.to_string())
            }
            Err(e) => Err(e),
        }
    }

    fn run(&self, op: Op, warnings: &mut Vec<Warning>) -> Result<()> {
        let dir = |at: Location| {
            self.dir(at)
                .ok_or_else(|| CgroupError::ControllerUnavailable {
                    field: "(internal)".into(),
                    controller: format!("{at:?}"),
                })
        };
        match op {
            Op::Write { at, file, value } => fsutil::write(dir(at)?, &file, &value),
            Op::MemoryV1 { at, limit, swap } => {
                let d = dir(at)?;
                let memsw = "memory.memsw.limit_in_bytes";
                match (limit, swap) {
                    (Some(l), Some(s)) if s != 0 => {
                        // Memory must stay <= memory+swap at every step.
                        let cur_memsw = fsutil::read_u64(d, memsw)?;
                        let l_big = if l < 0 { u64::MAX } else { l as u64 };
                        if l_big > cur_memsw {
                            fsutil::write(d, memsw, &s.to_string())?;
                            fsutil::write(d, "memory.limit_in_bytes", &l.to_string())
                        } else {
                            fsutil::write(d, "memory.limit_in_bytes", &l.to_string())?;
                            fsutil::write(d, memsw, &s.to_string())
                        }
                    }
                    (Some(l), _) => fsutil::write(d, "memory.limit_in_bytes", &l.to_string()),
                    (None, Some(s)) if s != 0 => fsutil::write(d, memsw, &s.to_string()),
                    _ => Ok(()),
                }
            }
            Op::KernelMemV1 {
                at,
                field,
                file,
                value,
            } => {
                let d = dir(at)?;
                if !fsutil::exists(d, file) {
                    warnings.push(Warning {
                        field: field.into(),
                        message: format!("ignored: this kernel has no {file}"),
                    });
                    return Ok(());
                }
                match fsutil::write(d, file, &value.to_string()) {
                    Ok(()) => {}
                    Err(CgroupError::Write { source, .. })
                        if source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
                    {
                        warnings.push(Warning {
                            field: field.into(),
                            message: format!("ignored: this kernel no longer supports {file}"),
                        });
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
                let back = fsutil::read_u64(d, file)?;
                let page = 4096u64;
                let applied = if value < 0 {
                    back >= i64::MAX as u64 - page
                } else {
                    back == (value as u64) / page * page || back == value as u64
                };
                if !applied {
                    warnings.push(Warning {
                        field: field.into(),
                        message: format!("ignored by this kernel: {file} still reads {back} after writing {value}"),
                    });
                }
                Ok(())
            }
            Op::CpuBandwidthV1 {
                at,
                period,
                quota,
                burst,
            } => {
                let d = dir(at)?;
                let qfile = "cpu.cfs_quota_us";
                let write_burst = || match burst {
                    Some(b) => fsutil::write(d, "cpu.cfs_burst_us", &b.to_string()),
                    None => Ok(()),
                };
                // The kernel keeps burst <= quota at every step (EINVAL): the burst goes
                // first when the current quota (-1: none) allows it, else last.
                let burst_first = match burst {
                    Some(b) if period.is_some() || quota.is_some() => {
                        let cur = fsutil::read(d, qfile)?;
                        let cur = cur.trim();
                        cur == "-1" || cur.parse::<u64>().is_ok_and(|q| b <= q)
                    }
                    Some(_) => true,
                    None => false,
                };
                if burst_first {
                    write_burst()?;
                }
                self.cpu_bandwidth_v1(d, period, quota)?;
                if burst_first { Ok(()) } else { write_burst() }
            }
            Op::CpuMaxV2 {
                quota,
                period,
                burst,
            } => {
                let (d, _) = self
                    .v2_dir()
                    .ok_or_else(|| CgroupError::ControllerUnavailable {
                        field: "cpu".into(),
                        controller: "cpu".into(),
                    })?;
                let write_burst = || match burst {
                    Some(b) => fsutil::write(d, "cpu.max.burst", &b.to_string()),
                    None => Ok(()),
                };
                if quota.is_none() && period.is_none() {
                    return write_burst();
                }
                let cur = fsutil::read(d, "cpu.max")?;
                let mut it = cur.split_whitespace();
                let cur_quota = it.next().unwrap_or("max").to_string();
                let cur_period = it.next().unwrap_or("100000").to_string();
                // The kernel refuses a burst above the quota (EINVAL) at every step: the
                // burst goes first when the current quota allows it (lowering both), else
                // after the new quota (raising both).
                let burst_first = burst.is_some_and(|b| {
                    cur_quota == "max" || cur_quota.parse::<u64>().is_ok_and(|q| b <= q)
                });
                if burst_first {
                    write_burst()?;
                }
                let q = match quota {
                    Some(q) if q > 0 => q.to_string(),
                    Some(_) => "max".to_string(),
                    None => cur_quota,
                };
                let p = period.map_or(cur_period, |p| p.to_string());
                fsutil::write(d, "cpu.max", &format!("{q} {p}"))?;
                if burst_first { Ok(()) } else { write_burst() }
            }
            Op::CheckUsage { at, file, limit } => {
                let d = dir(at)?;
                let usage = fsutil::read_u64(d, file)?;
                if limit >= 0 && usage > limit as u64 {
                    return Err(CgroupError::MemoryBelowUsage {
                        limit,
                        usage,
                        path: d.join(file),
                    });
                }
                Ok(())
            }
            Op::WriteIfPresent { at, file, value } => {
                let d = dir(at)?;
                if fsutil::exists(d, &file) {
                    fsutil::write(d, &file, &value)
                } else {
                    Ok(())
                }
            }
            Op::IoWeightV2 { weight, devices } => {
                let d = dir(Location::V2)?;
                let bfq = fsutil::exists(d, "io.bfq.weight");
                if let Some(w) = weight {
                    // The default weight, as runc and crun write it: BFQ's (unconverted)
                    // where the kernel has BFQ, else io cost control's (converted).
                    if bfq {
                        fsutil::write(d, "io.bfq.weight", &w.to_string())?;
                    } else {
                        fsutil::write(d, "io.weight", &blkio_weight_to_io_weight(w).to_string())?;
                    }
                }
                for (i, dev, w) in devices {
                    // BFQ's file where the disk uses BFQ (or is unknown here), else io cost
                    // control's (which needs io.cost.qos enabled for the disk).
                    let by_bfq = bfq && device_scheduler(&dev).is_none_or(|s| s == "bfq");
                    let (file, value) = if by_bfq {
                        ("io.bfq.weight", format!("{dev} {w}"))
                    } else {
                        (
                            "io.weight",
                            format!("{dev} {}", blkio_weight_to_io_weight(w)),
                        )
                    };
                    match fsutil::write(d, file, &value) {
                        Err(CgroupError::Write { path, source, .. })
                            if source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
                        {
                            return Err(invalid(
                                format!("blockIO.weightDevice[{i}]"),
                                value,
                                format!(
                                    "device {dev} has no weight-based I/O control: neither BFQ \
                                     schedules it nor is io cost control (io.cost.qos) enabled \
                                     for it ({} refused it: {source})",
                                    path.display()
                                ),
                            ));
                        }
                        r => r?,
                    }
                }
                Ok(())
            }
            Op::Rdma { at, field, value } => match fsutil::write(dir(at)?, "rdma.max", &value) {
                Err(CgroupError::Write { path, source, .. })
                    if source.raw_os_error() == Some(libc::ENODEV) =>
                {
                    let dev = field.trim_start_matches("rdma.").to_string();
                    Err(invalid(
                        field,
                        value,
                        format!(
                            "no RDMA device {dev:?} on this host ({} refused it: {source})",
                            path.display()
                        ),
                    ))
                }
                r => r,
            },
            Op::DevicesV1 { at, rules } => {
                // Each file opened once, a rule per write, in the rules' order.
                let d = dir(at)?;
                let mut deny = fsutil::Writer::open(d, "devices.deny")?;
                deny.write("a")?;
                let mut allow = None;
                for r in rules {
                    if r.allow {
                        let w = match &mut allow {
                            Some(w) => w,
                            None => allow.insert(fsutil::Writer::open(d, "devices.allow")?),
                        };
                        w.write(&r.v1_line())?;
                    } else {
                        deny.write(&r.v1_line())?;
                    }
                }
                Ok(())
            }
            Op::DevicesBpf { rules } => {
                let (d, fd) = self
                    .v2_dir()
                    .ok_or_else(|| CgroupError::ControllerUnavailable {
                        field: "devices".into(),
                        controller: "devices".into(),
                    })?;
                match devices::attach_rules(fd, d, &rules) {
                    // As runc's rootless mode: an unprivileged runtime may not load eBPF
                    // programs, and its container can't make device nodes either.
                    Err(CgroupError::Syscall {
                        syscall, source, ..
                    }) if source.raw_os_error() == Some(libc::EPERM) && unprivileged_caller() => {
                        warnings.push(Warning {
                            field: "devices".into(),
                            message: format!(
                                "not enforced: {syscall} is refused to an unprivileged runtime ({source})"
                            ),
                        });
                        Ok(())
                    }
                    r => r,
                }
            }
        }
    }
}

/// Whether the calling process is not root of the initial user namespace (a rootless
/// runtime): its euid is not 0, or its user namespace maps less than every id.
fn unprivileged_caller() -> bool {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return true;
    }
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(swap_to_v2(Some(100), 300), Ok(Some("200".into())));
        assert_eq!(swap_to_v2(Some(100), -1), Ok(Some("max".into())));
        assert_eq!(swap_to_v2(Some(100), 0), Ok(None));
        assert!(swap_to_v2(Some(300), 100).is_err());
        assert!(swap_to_v2(None, 100).is_err());
        assert!(swap_to_v2(Some(-1), 100).is_err());
    }
}
