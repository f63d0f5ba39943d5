//! `pause`, `resume`, `update`, `ps` and `events`: the commands on a container's cgroup.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_runtime_core::berth_cgroups::Stats;
use berth_runtime_core::oci_spec::runtime::LinuxResources;
use berth_runtime_core::validate::ConfigError;
use berth_runtime_core::{Error as RuntimeError, Status};
use serde_json::{Map, Value, json};

use super::{Ctx, one_id, print};
use crate::args::{Flag, Parsed};
use crate::error::CliError;

/// The flags of `update`, as runc 1.1 has them.
pub(crate) const UPDATE_FLAGS: &[Flag] = &[
    Flag::value(
        &["resources", "r"],
        "FILE",
        "JSON of linux.resources to apply, from FILE or '-' for stdin (the other flags are \
         then ignored)",
    ),
    Flag::value(
        &["blkio-weight"],
        "N",
        "per cgroup block I/O weight, from 10 to 1000",
    ),
    Flag::value(
        &["cpu-period"],
        "USECS",
        "CPU CFS period for hardcapping; 0 for the system default",
    ),
    Flag::value(
        &["cpu-quota"],
        "USECS",
        "CPU CFS hardcap: allowed cpu time in a period",
    ),
    Flag::value(
        &["cpu-share"],
        "N",
        "CPU shares (relative weight vs. other containers)",
    ),
    Flag::value(
        &["cpu-rt-period"],
        "USECS",
        "CPU realtime period; 0 for the system default",
    ),
    Flag::value(
        &["cpu-rt-runtime"],
        "USECS",
        "CPU realtime hardcap: allowed cpu time in a period",
    ),
    Flag::value(&["cpuset-cpus"], "LIST", "CPU(s) to use"),
    Flag::value(&["cpuset-mems"], "LIST", "memory node(s) to use"),
    Flag::value(
        &["memory"],
        "BYTES",
        "memory limit (in bytes, or with a unit: 64m, 1g)",
    ),
    Flag::value(
        &["memory-reservation"],
        "BYTES",
        "memory reservation or soft limit",
    ),
    Flag::value(
        &["memory-swap"],
        "BYTES",
        "total memory usage (memory + swap); -1 for unlimited swap",
    ),
    Flag::value(
        &["pids-limit"],
        "N",
        "maximum number of pids in the container",
    ),
    Flag::value(
        &["l3-cache-schema"],
        "SCHEMA",
        "Intel RDT/CAT L3 cache schema (not supported by berth)",
    ),
    Flag::value(
        &["mem-bw-schema"],
        "SCHEMA",
        "Intel RDT/MBA memory bandwidth schema (not supported by berth)",
    ),
];

/// The flags of `ps`.
pub(crate) const PS_FLAGS: &[Flag] = &[Flag::value(
    &["format", "f"],
    "FORMAT",
    "table or json (default: table)",
)];

/// The flags of `events`.
pub(crate) const EVENTS_FLAGS: &[Flag] = &[
    Flag::value(
        &["interval"],
        "DURATION",
        "the stats collection interval (default: 5s)",
    ),
    Flag::boolean(&["stats"], "display the container's stats then exit"),
];

/// `berth pause ID`
pub(crate) fn pause(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let id = one_id("pause", p)?;
    ctx.runtime.pause(id)?;
    Ok(0)
}

/// `berth resume ID`
pub(crate) fn resume(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let id = one_id("resume", p)?;
    ctx.runtime.resume(id)?;
    Ok(0)
}

/// `berth update ID`
pub(crate) fn update(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let id = one_id("update", p)?;
    let resources = update_resources(p)?;
    ctx.log.debug(|| format!("update {id:?}: {resources:?}"));
    for w in ctx.runtime.update(id, &resources)? {
        ctx.log.warn(&w);
    }
    Ok(0)
}

/// The resources `update` applies: `--resources` JSON, else the individual flags.
pub(crate) fn update_resources(p: &Parsed) -> Result<LinuxResources, CliError> {
    if let Some(src) = p.value("resources") {
        let (text, name) = if src == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::io("read", "<stdin>", e))?;
            (s, "<stdin>".to_string())
        } else {
            let path = PathBuf::from(src);
            let s = std::fs::read_to_string(&path).map_err(|e| CliError::io("read", &path, e))?;
            (s, src.to_string())
        };
        return serde_json::from_str(&text).map_err(|e| {
            CliError::Config(ConfigError::new(
                format!("--resources {name}"),
                format!("is not valid linux.resources JSON: {e}"),
            ))
        });
    }
    const RDT: [&str; 2] = ["l3-cache-schema", "mem-bw-schema"];
    for flag in RDT {
        if let Some(v) = p.value(flag) {
            return Err(CliError::InvalidValue {
                flag,
                value: v.to_string(),
                expected: "nothing: Intel RDT is not supported by berth",
            });
        }
    }
    let mut memory = Map::new();
    let mut cpu = Map::new();
    let mut r = Map::new();
    let bytes = |flag: &'static str| -> Result<Option<i64>, CliError> {
        p.value(flag)
            .map(|v| {
                if v == "-1" {
                    return Ok(-1);
                }
                ram_in_bytes(v).ok_or_else(|| CliError::InvalidValue {
                    flag,
                    value: v.to_string(),
                    expected: "a size in bytes, optionally with a unit (b, k, m, g, t, p)",
                })
            })
            .transpose()
    };
    for (flag, key) in [
        ("memory", "limit"),
        ("memory-reservation", "reservation"),
        ("memory-swap", "swap"),
    ] {
        if let Some(v) = bytes(flag)? {
            memory.insert(key.into(), json!(v));
        }
    }
    fn num<T: std::str::FromStr + serde::Serialize>(
        p: &Parsed,
        flag: &'static str,
        expected: &'static str,
    ) -> Result<Option<Value>, CliError> {
        p.value(flag)
            .map(|v| {
                v.parse::<T>()
                    .map(|n| json!(n))
                    .map_err(|_| CliError::InvalidValue {
                        flag,
                        value: v.to_string(),
                        expected,
                    })
            })
            .transpose()
    }
    const U: &str = "a non-negative integer";
    const I: &str = "an integer";
    for (key, v) in [
        ("shares", num::<u64>(p, "cpu-share", U)?),
        ("period", num::<u64>(p, "cpu-period", U)?),
        ("quota", num::<i64>(p, "cpu-quota", I)?),
        ("realtimePeriod", num::<u64>(p, "cpu-rt-period", U)?),
        ("realtimeRuntime", num::<i64>(p, "cpu-rt-runtime", I)?),
    ] {
        if let Some(v) = v {
            cpu.insert(key.into(), v);
        }
    }
    for (flag, key) in [("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")] {
        if let Some(v) = p.value(flag) {
            cpu.insert(key.into(), json!(v));
        }
    }
    if !memory.is_empty() {
        r.insert("memory".into(), Value::Object(memory));
    }
    if !cpu.is_empty() {
        r.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(v) = num::<i64>(p, "pids-limit", I)? {
        r.insert("pids".into(), json!({ "limit": v }));
    }
    if let Some(v) = num::<u16>(p, "blkio-weight", "an integer from 10 to 1000")? {
        r.insert("blockIO".into(), json!({ "weight": v }));
    }
    serde_json::from_value(Value::Object(r))
        .map_err(|e| CliError::Config(ConfigError::new("update flags", e.to_string())))
}

/// A size as docker's `RAMInBytes` reads it: a decimal number and an optional unit
/// (`b`, `k`, `m`, `g`, `t`, `p`, any case, optionally followed by `b`), powers of 1024.
pub fn ram_in_bytes(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix('b')
        .filter(|u| !u.is_empty())
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" | "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 0.0 && v < i64::MAX as f64).then_some(v as i64)
}

/// `berth ps [--format F] ID [PS OPTIONS]`: as with runc, everything after the id goes to
/// ps(1) (after an optional `--`, which runc would pass on too and ps reject).
pub(crate) fn ps(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let Some((id, ps_args)) = p.positionals.split_first() else {
        return Err(CliError::ArgCount {
            command: "ps",
            expected: "the container id (and optional ps options)",
            got: 0,
        });
    };
    let format = p.value("format").unwrap_or("table");
    if format != "table" && format != "json" {
        return Err(CliError::InvalidValue {
            flag: "format",
            value: format.to_string(),
            expected: "table or json",
        });
    }
    let ps_args = ps_args.strip_prefix(&["--".to_string()]).unwrap_or(ps_args);
    let pids = ctx.runtime.ps(id)?;
    if format == "json" {
        // runc prints `null` for none (a stopped container), a Go nil slice.
        let s = if pids.is_empty() {
            "null".to_string()
        } else {
            serde_json::to_string(&pids).map_err(|source| CliError::Json {
                what: "the pids",
                source,
            })?
        };
        return print(&format!("{s}\n")).map(|()| 0);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| CliError::io("run", "ps", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(CliError::io(
            "run",
            format!("ps {}", args.join(" ")),
            std::io::Error::other(format!("{}: {}{}", out.status, text, err.trim())),
        ));
    }
    print(&filter_ps(&text, &pids).map_err(|reason| {
        CliError::io(
            "parse output of",
            format!("ps {}", args.join(" ")),
            std::io::Error::other(reason),
        )
    })?)?;
    Ok(0)
}

/// The header of `ps` output and the rows whose PID column is one of `pids`, as runc prints
/// them.
pub fn filter_ps(text: &str, pids: &[i32]) -> Result<String, String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let idx = header
        .split_whitespace()
        .position(|f| f == "PID")
        .ok_or_else(|| "couldn't find PID field in ps output".to_string())?;
    let mut out = format!("{header}\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let pid = line
            .split_whitespace()
            .nth(idx)
            .and_then(|f| f.parse::<i32>().ok())
            .ok_or_else(|| format!("unexpected pid field in ps line {line:?}"))?;
        if pids.contains(&pid) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// A Go duration (`5s`, `100ms`, `1m30s`, `1.5h`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * secs;
        rest = &rest[u_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// An object with its fields in the given order (runc's, which Go keeps), skipping `None`s;
/// each value is already JSON.
fn obj(fields: &[(&str, Option<String>)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{}:{v}", Value::from(*k))))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// A number, or `None` for zero (Go's `omitempty`).
fn nz(v: u64) -> Option<String> {
    (v != 0).then(|| v.to_string())
}

fn always(v: u64) -> Option<String> {
    Some(v.to_string())
}

/// runc's `types.Stats` JSON, fields in runc's order, left out where runc's `omitempty` drops
/// zeros. An unlimited limit (`max`) is reported as 0, as runc does.
pub fn stats_json(s: &Stats) -> String {
    let entry = |limit: u64, usage: u64, max: u64, failcnt: u64| {
        Some(obj(&[
            ("limit", always(limit)),
            ("usage", nz(usage)),
            ("max", nz(max)),
            ("failcnt", always(failcnt)),
        ]))
    };
    let c = &s.cpu;
    let cpu = obj(&[
        (
            "usage",
            Some(obj(&[
                ("total", nz(c.usage_total_ns)),
                (
                    "percpu",
                    (!c.per_cpu_ns.is_empty()).then(|| json!(c.per_cpu_ns).to_string()),
                ),
                ("kernel", always(c.usage_kernel_ns)),
                ("user", always(c.usage_user_ns)),
            ])),
        ),
        (
            "throttling",
            Some(obj(&[
                ("periods", nz(c.periods)),
                ("throttledPeriods", nz(c.throttled_periods)),
                ("throttledTime", nz(c.throttled_time_ns)),
            ])),
        ),
    ]);
    let m = &s.memory;
    let memory = obj(&[
        ("cache", nz(m.cache)),
        ("usage", entry(m.limit, m.usage, m.max_usage, m.failcnt)),
        ("swap", entry(m.swap_limit, m.swap_usage, 0, 0)),
        ("kernel", entry(0, m.kernel_usage, 0, 0)),
        ("kernelTCP", entry(0, 0, 0, 0)),
        ("raw", (!m.raw.is_empty()).then(|| json!(m.raw).to_string())),
    ]);
    let limit = if s.pids.limit == u64::MAX {
        0
    } else {
        s.pids.limit
    };
    let pids = obj(&[("current", nz(s.pids.current)), ("limit", nz(limit))]);
    let blk = |list: &[berth_runtime_core::berth_cgroups::BlkioEntry]| {
        (!list.is_empty()).then(|| {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    obj(&[
                        ("major", nz(e.major)),
                        ("minor", nz(e.minor)),
                        (
                            "op",
                            (!e.op.is_empty()).then(|| Value::from(e.op.as_str()).to_string()),
                        ),
                        ("value", nz(e.value)),
                    ])
                })
                .collect();
            format!("[{}]", items.join(","))
        })
    };
    let blkio = obj(&[
        ("ioServiceBytesRecursive", blk(&s.blkio.service_bytes)),
        ("ioServicedRecursive", blk(&s.blkio.serviced)),
    ]);
    let hugetlb: Vec<(&str, Option<String>)> = s
        .hugetlb
        .iter()
        .map(|(size, h)| {
            (
                size.as_str(),
                Some(obj(&[
                    ("usage", nz(h.usage)),
                    ("max", nz(h.max_usage)),
                    ("failcnt", always(h.failcnt)),
                ])),
            )
        })
        .collect();
    obj(&[
        ("cpu", Some(cpu)),
        ("cpuset", Some("{}".into())),
        ("memory", Some(memory)),
        ("pids", Some(pids)),
        ("blkio", Some(blkio)),
        ("hugetlb", Some(obj(&hugetlb))),
        ("intel_rdt", Some("{}".into())),
        ("network_interfaces", Some("null".into())),
    ])
}

/// One event line: `{"type":...,"id":...[,"data":...]}` (runc's field order).
fn event_line(typ: &str, id: &str, data: Option<String>) -> String {
    obj(&[
        ("type", Some(Value::from(typ).to_string())),
        ("id", Some(Value::from(id).to_string())),
        ("data", data),
    ])
}

fn emit(event: &str) -> Result<(), CliError> {
    print(&format!("{event}\n"))
}

/// `berth events ID`
pub(crate) fn events(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let id = one_id("events", p)?;
    let interval =
        match p.value("interval") {
            None => Duration::from_secs(5),
            Some(v) => parse_duration(v).filter(|d| !d.is_zero()).ok_or_else(|| {
                CliError::InvalidValue {
                    flag: "interval",
                    value: v.to_string(),
                    expected: "a positive duration such as 5s, 500ms or 1m",
                }
            })?,
        };
    let stats_event = |s: &Stats| event_line("stats", id, Some(stats_json(s)));
    if p.flag("stats") {
        let s = ctx.runtime.stats(id)?;
        emit(&stats_event(&s))?;
        return Ok(0);
    }
    let stopped = || {
        matches!(
            ctx.runtime.state(id).map(|s| s.status),
            Ok(Status::Stopped) | Err(RuntimeError::NotFound { .. })
        )
    };
    let mut watcher = ctx.runtime.oom_watcher(id)?;
    let oom = event_line("oom", id, None);
    let mut next = Instant::now() + interval;
    loop {
        let left = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(200));
        match watcher.wait(left) {
            Ok(Some(_)) => emit(&oom)?,
            Ok(None) => {}
            Err(e) => {
                if stopped() {
                    return Ok(0);
                }
                return Err(RuntimeError::from(e).into());
            }
        }
        if stopped() {
            // An OOM kill that stopped the container is reported before we go.
            if let Ok(Some(_)) = watcher.wait(Duration::ZERO) {
                emit(&oom)?;
            }
            return Ok(0);
        }
        if Instant::now() >= next {
            match ctx.runtime.stats(id) {
                Ok(s) => emit(&stats_event(&s))?,
                Err(e) => ctx.log.warn(&e.to_string()),
            }
            next += interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Mode, parse};

    fn parsed(flags: &[Flag], v: &[&str]) -> Parsed {
        let args: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        parse(flags, &args, Mode::Interspersed).unwrap()
    }

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_in_bytes("1G"), Some(1 << 30));
        assert_eq!(ram_in_bytes("1.5k"), Some(1536));
        assert_eq!(ram_in_bytes("100"), Some(100));
        assert_eq!(ram_in_bytes("10mb"), Some(10 << 20));
        assert_eq!(ram_in_bytes("x"), None);
        assert_eq!(ram_in_bytes("5q"), None);
        assert_eq!(ram_in_bytes(""), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn update_flags_become_resources() {
        let p = parsed(
            UPDATE_FLAGS,
            &[
                "id",
                "--memory",
                "64m",
                "--memory-swap=-1",
                "--cpu-share",
                "512",
                "--cpu-quota",
                "-1",
                "--cpuset-cpus",
                "0",
                "--pids-limit",
                "10",
                "--blkio-weight",
                "300",
            ],
        );
        let r = update_resources(&p).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["memory"]["limit"], 64 << 20);
        assert_eq!(v["memory"]["swap"], -1);
        assert_eq!(v["cpu"]["shares"], 512);
        assert_eq!(v["cpu"]["quota"], -1);
        assert_eq!(v["cpu"]["cpus"], "0");
        assert_eq!(v["pids"]["limit"], 10);
        assert_eq!(v["blockIO"]["weight"], 300);
        let e = update_resources(&parsed(UPDATE_FLAGS, &["id", "--cpu-share", "x"])).unwrap_err();
        assert!(e.to_string().contains("--cpu-share"), "{e}");
        let e = update_resources(&parsed(UPDATE_FLAGS, &["id", "--memory", "lots"])).unwrap_err();
        assert!(e.to_string().contains("lots"), "{e}");
    }

    #[test]
    fn ps_rows_are_filtered_by_pid() {
        let text = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 init\n\
                    root 42 1 0 10:00 ? 00:00:00 sleep 1\n";
        assert_eq!(
            filter_ps(text, &[42]).unwrap(),
            "UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 10:00 ? 00:00:00 sleep 1\n"
        );
        assert!(filter_ps("A B\n1 2\n", &[1]).is_err());
    }

    #[test]
    fn stats_json_has_runc_shape() {
        let mut s = Stats::default();
        s.memory.limit = 100;
        s.memory.usage = 10;
        s.pids.current = 2;
        let v: Value = serde_json::from_str(&stats_json(&s)).unwrap();
        assert_eq!(v["memory"]["usage"]["limit"], 100);
        assert_eq!(v["memory"]["usage"]["usage"], 10);
        assert_eq!(v["pids"]["current"], 2);
        assert!(v["pids"].get("limit").is_none());
        assert_eq!(v["cpu"]["usage"]["kernel"], 0);
        s.pids.limit = u64::MAX;
        let v: Value = serde_json::from_str(&stats_json(&s)).unwrap();
        assert!(v["pids"].get("limit").is_none());
        assert_eq!(
            event_line("oom", "a\"b", None),
            r#"{"type":"oom","id":"a\"b"}"#
        );
        assert!(
            event_line("stats", "x", Some(stats_json(&s)))
                .starts_with(r#"{"type":"stats","id":"x","data":{"cpu":{"usage":{"#)
        );
    }
}
