//! `cri-pods`: N pods of one container each, started then removed one after another through
//! a CRI v1 socket by this one client, with the time of each phase and the manager's (and
//! its shims') memory while all N run. The same calls against any CRI server (berthd,
//! containerd's CRI plugin) make the numbers comparable; `benches/cri_pods.sh` runs it
//! against both.
//!
//! ```text
//! cri-pods --address SOCK --image REF --count N [--handler H] [--host-network]
//!          [--pid MANAGER_PID] [--cgroup-parent /PATH] [--log-dir DIR] [--settle SECS]
//!          [--command "sleep 3600"] [--parallel P]
//! ```
//!
//! For each pod: RunPodSandbox, CreateContainer, StartContainer (the start phase, timed as a
//! whole and per pod); then, after `--settle` seconds (3 by default: an idle shim gives
//! memory back), the VmRSS of `--pid` and the summed VmRSS of its shims (the processes whose
//! command line names `--address` and whose name has "shim" in it); then for each pod
//! StopPodSandbox and RemovePodSandbox (the removal phase, timed). The result is one JSON
//! object on stdout; milliseconds throughout, KiB for memory. A failed call ends the start
//! phase: the pods made so far are still removed and the exit status is 1.
//!
//! `--parallel P` (1 by default: one pod after another) keeps P pods in flight, as the
//! kubelet does with its pod workers: each of P workers takes the next pod and makes it
//! (its three calls in order), and the removal runs P at a time the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const USAGE: &str = "usage: cri-pods --address SOCK --image REF --count N [--handler H] \
[--host-network] [--pid PID] [--cgroup-parent /PATH] [--log-dir DIR] [--settle SECS] \
[--command CMD] [--parallel P]";
/// Every call's deadline.
const RPC: Duration = Duration::from_secs(120);

/// The command line.
#[derive(Clone)]
struct Args {
    address: PathBuf,
    image: String,
    count: usize,
    handler: String,
    host_network: bool,
    pid: Option<i32>,
    cgroup_parent: String,
    log_dir: PathBuf,
    settle: f64,
    command: Vec<String>,
    parallel: usize,
}

fn parse(args: Vec<String>) -> Result<Args, String> {
    let mut address = None;
    let mut image = None;
    let mut count = None;
    let mut handler = String::new();
    let mut host_network = false;
    let mut pid = None;
    let mut cgroup_parent = format!("/cri-pods-{}", std::process::id());
    let mut log_dir = std::env::temp_dir().join(format!("cri-pods-{}", std::process::id()));
    let mut settle = 3.0;
    let mut command = vec!["sleep".to_owned(), "3600".to_owned()];
    let mut parallel = 1;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--host-network" {
            host_network = true;
            continue;
        }
        if a == "-h" || a == "--help" {
            return Err(USAGE.to_owned());
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))?;
        let num = |what: &str| format!("{a} {v:?}: not {what}");
        match a.as_str() {
            "--address" => address = Some(PathBuf::from(&v)),
            "--image" => image = Some(v),
            "--count" => count = Some(v.parse::<usize>().map_err(|_| num("a count"))?),
            "--handler" => handler = v,
            "--pid" => pid = Some(v.parse::<i32>().map_err(|_| num("a pid"))?),
            "--cgroup-parent" => {
                if !v.starts_with('/') {
                    return Err(format!("{a} {v:?}: not an absolute cgroup path"));
                }
                cgroup_parent = v;
            }
            "--log-dir" => log_dir = PathBuf::from(v),
            "--settle" => {
                settle = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| num("a number of seconds"))?
            }
            "--command" => command = v.split_whitespace().map(String::from).collect(),
            "--parallel" => {
                parallel = v
                    .parse::<usize>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| num("a count above 0"))?
            }
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    match (address, image, count) {
        (Some(address), Some(image), Some(count)) if count > 0 && !command.is_empty() => Ok(Args {
            address,
            image,
            count,
            handler,
            host_network,
            pid,
            cgroup_parent,
            log_dir,
            settle,
            command,
            parallel,
        }),
        _ => Err(format!(
            "--address, --image and a --count above 0 are needed\n{USAGE}"
        )),
    }
}

fn main() {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cri-pods: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cri-pods: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    std::process::exit(rt.block_on(bench(&args)));
}

/// A lazy channel to the unix socket `path`.
fn channel(path: &Path) -> Result<Channel, String> {
    let path = path.to_path_buf();
    Ok(tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_timeout(Duration::from_secs(5))
        .timeout(RPC)
        .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        })))
}

/// One pod's timings, milliseconds.
#[derive(Default, Clone, Copy)]
struct PodTimes {
    run: f64,
    create: f64,
    start: f64,
}

async fn bench(a: &Args) -> i32 {
    let mut rs = match channel(&a.address) {
        Ok(c) => RuntimeServiceClient::new(c),
        Err(e) => {
            eprintln!("cri-pods: {e}");
            return 1;
        }
    };
    let version = match rs.version(cri::VersionRequest::default()).await {
        Ok(v) => v.into_inner(),
        Err(e) => {
            eprintln!("cri-pods: Version on {}: {e}", a.address.display());
            return 1;
        }
    };
    let tag = std::process::id();
    let a = Arc::new(a.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..a.parallel.min(a.count) {
        let (mut rs, a, next, failed) = (rs.clone(), a.clone(), next.clone(), failed.clone());
        workers.spawn(async move {
            let mut made = Worker::default();
            while !failed.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= a.count {
                    break;
                }
                let name = format!("bench-{tag}-{i}");
                match start_pod(&mut rs, &a, &name, &mut made.pods).await {
                    Ok(t) => made.times.push(t),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        made.error = Some(format!("pod {i}: {e}"));
                    }
                }
            }
            made
        });
    }
    let mut pods: Vec<String> = Vec::with_capacity(a.count);
    let mut times: Vec<PodTimes> = Vec::with_capacity(a.count);
    let mut failed = None;
    while let Some(w) = workers.join_next().await {
        match w {
            Ok(w) => {
                pods.extend(w.pods);
                times.extend(w.times);
                failed = failed.or(w.error);
            }
            Err(e) => failed = failed.or(Some(format!("a worker: {e}"))),
        }
    }
    let start_total = ms(t0.elapsed());
    if failed.is_none() && a.settle > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    }
    let manager_rss = a.pid.and_then(rss_kib);
    let shims = shim_pids(&a.address, a.pid);
    let shims_rss: u64 = shims.iter().filter_map(|p| rss_kib(*p)).sum();

    let mut remove_failures = Vec::new();
    let mut remove_each = Vec::with_capacity(pods.len());
    let queue = Arc::new(std::sync::Mutex::new(pods.clone()));
    let t1 = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..a.parallel.min(pods.len()) {
        let (mut rs, queue) = (rs.clone(), queue.clone());
        workers.spawn(async move {
            let mut done = (Vec::new(), Vec::new());
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(id) = next else { break };
                let t = Instant::now();
                if let Err(e) = remove_pod(&mut rs, &id).await {
                    done.1.push(format!("{id}: {}", e.message()));
                }
                done.0.push(ms(t.elapsed()));
            }
            done
        });
    }
    while let Some(w) = workers.join_next().await {
        match w {
            Ok((each, errors)) => {
                remove_each.extend(each);
                remove_failures.extend(errors);
            }
            Err(e) => remove_failures.push(format!("a worker: {e}")),
        }
    }
    let remove_total = ms(t1.elapsed());
    let _ = std::fs::remove_dir_all(&a.log_dir);

    let per_pod: Vec<f64> = times.iter().map(|t| t.run + t.create + t.start).collect();
    let field = |f: fn(&PodTimes) -> f64| times.iter().map(f).collect::<Vec<f64>>();
    let out = serde_json::json!({
        "runtime": format!("{} {}", version.runtime_name, version.runtime_version),
        "handler": a.handler,
        "host_network": a.host_network,
        "count": a.count,
        "parallel": a.parallel,
        "started": times.len(),
        "start_total_ms": start_total,
        "start_per_pod_ms": stats(&per_pod),
        "run_pod_sandbox_ms": stats(&field(|t| t.run)),
        "create_container_ms": stats(&field(|t| t.create)),
        "start_container_ms": stats(&field(|t| t.start)),
        "remove_total_ms": remove_total,
        "remove_per_pod_ms": stats(&remove_each),
        "manager_rss_kib": manager_rss,
        "shims": shims.len(),
        "shims_rss_kib": shims_rss,
        "error": failed,
        "remove_errors": remove_failures,
    });
    println!("{out}");
    if failed.is_some() || !remove_failures.is_empty() {
        if let Some(e) = &failed {
            eprintln!("cri-pods: {e}");
        }
        for e in &remove_failures {
            eprintln!("cri-pods: remove {e}");
        }
        return 1;
    }
    0
}

/// What one worker made: pods (ids, made or half made), their timings, the error that
/// stopped it.
#[derive(Default)]
struct Worker {
    pods: Vec<String>,
    times: Vec<PodTimes>,
    error: Option<String>,
}

/// StopPodSandbox then RemovePodSandbox of `id`.
async fn remove_pod(rs: &mut RuntimeServiceClient<Channel>, id: &str) -> Result<(), tonic::Status> {
    let stop = cri::StopPodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    };
    rs.stop_pod_sandbox(stop).await?;
    let remove = cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    };
    rs.remove_pod_sandbox(remove).await.map(drop)
}

/// RunPodSandbox, CreateContainer, StartContainer of pod `name`; its id goes to `pods` as
/// soon as it exists.
async fn start_pod(
    rs: &mut RuntimeServiceClient<Channel>,
    a: &Args,
    name: &str,
    pods: &mut Vec<String>,
) -> Result<PodTimes, String> {
    let mode = |m: cri::NamespaceMode| m as i32;
    let namespaces = cri::NamespaceOption {
        network: mode(if a.host_network {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        }),
        pid: mode(cri::NamespaceMode::Container),
        ipc: mode(cri::NamespaceMode::Pod),
        ..Default::default()
    };
    let log_dir = a.log_dir.join(name);
    std::fs::create_dir_all(&log_dir).map_err(|e| format!("mkdir {}: {e}", log_dir.display()))?;
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: "cri-pods".into(),
            attempt: 0,
        }),
        // No hostname: a host-network pod has the node's UTS namespace, where runc refuses
        // to set one ("unable to set hostname without a private UTS namespace").
        log_directory: log_dir.display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: a.cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut t = PodTimes::default();
    let t0 = Instant::now();
    let sid = rs
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: a.handler.clone(),
        })
        .await
        .map_err(|e| format!("RunPodSandbox: {}", e.message()))?
        .into_inner()
        .pod_sandbox_id;
    t.run = ms(t0.elapsed());
    pods.push(sid.clone());
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: a.image.clone(),
            ..Default::default()
        }),
        command: a.command.clone(),
        log_path: "c.log".into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t1 = Instant::now();
    let cid = rs
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sid,
            config: Some(container),
            sandbox_config: Some(config),
        })
        .await
        .map_err(|e| format!("CreateContainer: {}", e.message()))?
        .into_inner()
        .container_id;
    t.create = ms(t1.elapsed());
    let t2 = Instant::now();
    rs.start_container(cri::StartContainerRequest { container_id: cid })
        .await
        .map_err(|e| format!("StartContainer: {}", e.message()))?;
    t.start = ms(t2.elapsed());
    Ok(t)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Median, p90, min, max of `v` (nulls when empty).
fn stats(v: &[f64]) -> serde_json::Value {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len().max(1)) - 1;
        s.get(i).copied()
    };
    let median = match s.len() {
        0 => None,
        n if n % 2 == 1 => Some(s[n / 2]),
        n => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    };
    serde_json::json!({
        "median": median,
        "p90": at(0.9),
        "min": s.first(),
        "max": s.last(),
    })
}

/// `VmRSS` of `/proc/<pid>/status`, KiB.
fn rss_kib(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The manager's shims: processes (not `manager`) whose command line has `address` as an
/// argument and whose executable's name has "shim" in it.
fn shim_pids(address: &Path, manager: Option<i32>) -> Vec<i32> {
    let want = address.as_os_str().as_encoded_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| Some(*p) != manager)
        .filter(|p| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{p}/cmdline")) else {
                return false;
            };
            let mut args = cmdline.split(|b| *b == 0);
            let is_shim = args.next().is_some_and(|exe| {
                exe.rsplit(|b| *b == b'/')
                    .next()
                    .is_some_and(|n| n.windows(4).any(|w| w == b"shim"))
            });
            is_shim && cmdline.split(|b| *b == 0).any(|a| a == want)
        })
        .collect();
    pids.sort_unstable();
    pids
}
