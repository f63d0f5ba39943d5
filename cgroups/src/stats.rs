//! Typed statistics read from a container's cgroup.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Result;
use crate::fsutil::{parse_flat_keyed, read_opt, read_u64_opt};

/// Everything [`crate::CgroupManager::stats`] reads. Counters of a controller the
/// host does not offer stay 0 / empty. Times are in nanoseconds, sizes in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// Memory usage, limits and OOM events.
    pub memory: MemoryStats,
    /// Number of tasks.
    pub pids: PidsStats,
    /// Block I/O per device.
    pub blkio: BlkioStats,
    /// Huge pages per page size (`"2MB"`, `"1GB"`).
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

/// CPU statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CpuStats {
    /// Total CPU time consumed.
    pub usage_total_ns: u64,
    /// Time in user mode.
    pub usage_user_ns: u64,
    /// Time in kernel mode.
    pub usage_kernel_ns: u64,
    /// Per-CPU time (v1 `cpuacct.usage_percpu`; empty on v2).
    pub per_cpu_ns: Vec<u64>,
    /// Number of enforcement periods.
    pub periods: u64,
    /// Periods in which the group was throttled.
    pub throttled_periods: u64,
    /// Total time throttled.
    pub throttled_time_ns: u64,
}

/// Memory statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    /// Current usage (`memory.usage_in_bytes` / `memory.current`).
    pub usage: u64,
    /// Peak usage (`memory.max_usage_in_bytes` / `memory.peak`).
    pub max_usage: u64,
    /// Limit (`u64::MAX` when unlimited).
    pub limit: u64,
    /// Times the limit was hit (v1 `memory.failcnt`; v2 the `max` count of `memory.events`).
    pub failcnt: u64,
    /// Swap in use (v1: memsw usage minus memory usage).
    pub swap_usage: u64,
    /// Swap limit as the cgroup shows it (v1: memory+swap; v2: swap only).
    pub swap_limit: u64,
    /// Kernel memory in use.
    pub kernel_usage: u64,
    /// Page cache.
    pub cache: u64,
    /// OOM events.
    pub events: MemoryEvents,
    /// The raw `memory.stat` counters.
    pub raw: BTreeMap<String, u64>,
}

/// OOM counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryEvents {
    /// Times the cgroup hit its limit and the OOM path ran (v2 `oom`; v1: OOM
    /// notifications counted by an [`crate::OomWatcher`], else `under_oom`).
    pub oom: u64,
    /// Processes killed by the OOM killer (`oom_kill`).
    pub oom_kill: u64,
}

/// Task counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PidsStats {
    /// Tasks in the cgroup.
    pub current: u64,
    /// `pids.max` (`u64::MAX` for `max`).
    pub limit: u64,
}

/// Block I/O statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlkioStats {
    /// Bytes transferred, per device and operation.
    pub service_bytes: Vec<BlkioEntry>,
    /// Operations, per device and operation.
    pub serviced: Vec<BlkioEntry>,
}

/// One block I/O counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlkioEntry {
    /// Device major.
    pub major: u64,
    /// Device minor.
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard` or `Total`.
    pub op: String,
    /// The counter.
    pub value: u64,
}

/// Huge page statistics for one page size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HugetlbStats {
    /// Bytes in use.
    pub usage: u64,
    /// Peak (v1 only; 0 on v2).
    pub max_usage: u64,
    /// Allocation failures at the limit.
    pub failcnt: u64,
}

fn num(v: Option<u64>) -> u64 {
    v.unwrap_or(0)
}

pub(crate) fn cpu_v1(cpu: Option<&Path>, cpuacct: Option<&Path>, s: &mut CpuStats) -> Result<()> {
    if let Some(d) = cpuacct {
        s.usage_total_ns = num(read_u64_opt(d, "cpuacct.usage")?);
        s.usage_user_ns = num(read_u64_opt(d, "cpuacct.usage_user")?);
        s.usage_kernel_ns = num(read_u64_opt(d, "cpuacct.usage_sys")?);
        if let Some(t) = read_opt(d, "cpuacct.usage_percpu")? {
            s.per_cpu_ns = t
                .split_whitespace()
                .map(|v| crate::fsutil::parse_u64(d, "cpuacct.usage_percpu", v))
                .collect::<Result<_>>()?;
        }
    }
    if let Some(d) = cpu {
        if let Some(t) = read_opt(d, "cpu.stat")? {
            for (k, v) in parse_flat_keyed(d, "cpu.stat", &t)? {
                match k.as_str() {
                    "nr_periods" => s.periods = v,
                    "nr_throttled" => s.throttled_periods = v,
                    "throttled_time" => s.throttled_time_ns = v,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn cpu_v2(d: &Path, s: &mut CpuStats) -> Result<()> {
    if let Some(t) = read_opt(d, "cpu.stat")? {
        for (k, v) in parse_flat_keyed(d, "cpu.stat", &t)? {
            let ns = v.saturating_mul(1000);
            match k.as_str() {
                "usage_usec" => s.usage_total_ns = ns,
                "user_usec" => s.usage_user_ns = ns,
                "system_usec" => s.usage_kernel_ns = ns,
                "nr_periods" => s.periods = v,
                "nr_throttled" => s.throttled_periods = v,
                "throttled_usec" => s.throttled_time_ns = ns,
                _ => {}
            }
        }
    }
    Ok(())
}

fn raw_stat(d: &Path, m: &mut MemoryStats) -> Result<()> {
    if let Some(t) = read_opt(d, "memory.stat")? {
        m.raw = parse_flat_keyed(d, "memory.stat", &t)?
            .into_iter()
            .collect();
    }
    Ok(())
}

pub(crate) fn memory_v1(d: &Path, m: &mut MemoryStats) -> Result<()> {
    m.usage = num(read_u64_opt(d, "memory.usage_in_bytes")?);
    m.max_usage = num(read_u64_opt(d, "memory.max_usage_in_bytes")?);
    m.limit = num(read_u64_opt(d, "memory.limit_in_bytes")?);
    m.failcnt = num(read_u64_opt(d, "memory.failcnt")?);
    let memsw = num(read_u64_opt(d, "memory.memsw.usage_in_bytes")?);
    m.swap_usage = memsw.saturating_sub(m.usage);
    m.swap_limit = num(read_u64_opt(d, "memory.memsw.limit_in_bytes")?);
    m.kernel_usage = num(read_u64_opt(d, "memory.kmem.usage_in_bytes")?);
    raw_stat(d, m)?;
    m.cache = m
        .raw
        .get("total_cache")
        .or_else(|| m.raw.get("cache"))
        .copied()
        .unwrap_or(0);
    m.events = oom_control_v1(d)?;
    Ok(())
}

/// `oom_kill` and `under_oom` from v1 `memory.oom_control`.
pub(crate) fn oom_control_v1(d: &Path) -> Result<MemoryEvents> {
    let mut e = MemoryEvents::default();
    if let Some(t) = read_opt(d, "memory.oom_control")? {
        for (k, v) in parse_flat_keyed(d, "memory.oom_control", &t)? {
            match k.as_str() {
                "oom_kill" => e.oom_kill = v,
                "under_oom" => e.oom = v,
                _ => {}
            }
        }
    }
    Ok(e)
}

/// `oom`, `oom_kill` (and `max`, returned second) from v2 `memory.events`.
pub(crate) fn memory_events_v2(d: &Path) -> Result<(MemoryEvents, u64)> {
    let mut e = MemoryEvents::default();
    let mut max = 0;
    if let Some(t) = read_opt(d, "memory.events")? {
        for (k, v) in parse_flat_keyed(d, "memory.events", &t)? {
            match k.as_str() {
                "oom" => e.oom = v,
                "oom_kill" => e.oom_kill = v,
                "max" => max = v,
                _ => {}
            }
        }
    }
    Ok((e, max))
}

pub(crate) fn memory_v2(d: &Path, m: &mut MemoryStats) -> Result<()> {
    m.usage = num(read_u64_opt(d, "memory.current")?);
    m.max_usage = num(read_u64_opt(d, "memory.peak")?);
    m.limit = read_u64_opt(d, "memory.max")?.unwrap_or(u64::MAX);
    m.swap_usage = num(read_u64_opt(d, "memory.swap.current")?);
    m.swap_limit = read_u64_opt(d, "memory.swap.max")?.unwrap_or(u64::MAX);
    raw_stat(d, m)?;
    m.kernel_usage = m.raw.get("kernel").copied().unwrap_or(0);
    m.cache = m.raw.get("file").copied().unwrap_or(0);
    let (events, max) = memory_events_v2(d)?;
    m.events = events;
    m.failcnt = max;
    Ok(())
}

pub(crate) fn pids(d: &Path, p: &mut PidsStats) -> Result<()> {
    p.current = num(read_u64_opt(d, "pids.current")?);
    p.limit = read_u64_opt(d, "pids.max")?.unwrap_or(u64::MAX);
    Ok(())
}

fn parse_dev(d: &Path, file: &str, s: &str) -> Result<(u64, u64)> {
    let bad = || crate::error::CgroupError::Content {
        path: d.join(file),
        content: s.to_string(),
    };
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

fn blkio_v1_file(d: &Path, file: &str) -> Result<Vec<BlkioEntry>> {
    let mut out = Vec::new();
    if let Some(t) = read_opt(d, file)? {
        for line in t.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [dev, op, v] = f[..] {
                let (major, minor) = parse_dev(d, file, dev)?;
                out.push(BlkioEntry {
                    major,
                    minor,
                    op: op.to_string(),
                    value: crate::fsutil::parse_u64(d, file, v)?,
                });
            }
        }
    }
    Ok(out)
}

pub(crate) fn blkio_v1(d: &Path, b: &mut BlkioStats) -> Result<()> {
    b.service_bytes = blkio_v1_file(d, "blkio.throttle.io_service_bytes_recursive")?;
    b.serviced = blkio_v1_file(d, "blkio.throttle.io_serviced_recursive")?;
    Ok(())
}

pub(crate) fn io_v2(d: &Path, b: &mut BlkioStats) -> Result<()> {
    let Some(t) = read_opt(d, "io.stat")? else {
        return Ok(());
    };
    for line in t.lines() {
        let mut it = line.split_whitespace();
        let Some(dev) = it.next() else { continue };
        let (major, minor) = parse_dev(d, "io.stat", dev)?;
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let value = crate::fsutil::parse_u64(d, "io.stat", v)?;
            let (list, op) = match k {
                "rbytes" => (&mut b.service_bytes, "Read"),
                "wbytes" => (&mut b.service_bytes, "Write"),
                "dbytes" => (&mut b.service_bytes, "Discard"),
                "rios" => (&mut b.serviced, "Read"),
                "wios" => (&mut b.serviced, "Write"),
                "dios" => (&mut b.serviced, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    Ok(())
}

/// The huge page sizes of the host in cgroup notation (`2MB`, `1GB`).
pub fn hugepage_sizes() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(size_name(kb))
        })
        .collect();
    v.sort();
    v
}

/// `2048` (kB) -> `2MB`.
pub(crate) fn size_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb % (1 << 20) == 0 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb % (1 << 10) == 0 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

pub(crate) fn hugetlb(d: &Path, v2: bool, out: &mut BTreeMap<String, HugetlbStats>) -> Result<()> {
    for size in hugepage_sizes() {
        let mut h = HugetlbStats::default();
        if v2 {
            let Some(cur) = read_u64_opt(d, &format!("hugetlb.{size}.current"))? else {
                continue;
            };
            h.usage = cur;
            let f = format!("hugetlb.{size}.events");
            if let Some(t) = read_opt(d, &f)? {
                h.failcnt = parse_flat_keyed(d, &f, &t)?
                    .into_iter()
                    .find(|(k, _)| k == "max")
                    .map_or(0, |(_, v)| v);
            }
        } else {
            let Some(u) = read_u64_opt(d, &format!("hugetlb.{size}.usage_in_bytes"))? else {
                continue;
            };
            h.usage = u;
            h.max_usage = num(read_u64_opt(
                d,
                &format!("hugetlb.{size}.max_usage_in_bytes"),
            )?);
            h.failcnt = num(read_u64_opt(d, &format!("hugetlb.{size}.failcnt"))?);
        }
        out.insert(size, h);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_names() {
        assert_eq!(size_name(2048), "2MB");
        assert_eq!(size_name(1048576), "1GB");
        assert_eq!(size_name(64), "64KB");
    }
}
