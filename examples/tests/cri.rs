//! berth's shim (`containerd-shim-berth-v2`) under containerd 1.6's built-in CRI plugin, the
//! way a kubelet drives it, against containerd's Go runc shim on the same calls. A private
//! containerd with the CRI plugin on (root, state, sockets, runc's root and the pods' logs in
//! a temporary directory) has two runtime handlers: `runc` (`io.containerd.runc.v2`, the
//! default) and `berth` (`io.containerd.berth.v2`: the shim cargo built, on containerd's PATH). A
//! test-only CRI client (the `k8s-cri` crate's v1 API over the unix socket) runs one pod per
//! handler through the whole life cycle and what CRI reports must be equal:
//! Version, Status, RunPodSandbox (host network: no CNI), CreateContainer, StartContainer,
//! ContainerStatus, the container's CRI log file, ExecSync (exit code and output, and a
//! timeout), ContainerStats (which fields are there), StopContainer, RemoveContainer,
//! StopPodSandbox, RemovePodSandbox. Also: one shim per pod, the parent of the sandbox's and
//! the container's init; after the pod is gone no shim, cgroup, runtime state or mount is
//! left.
//!
//! Needs root and Debian's containerd (with runc and containerd-shim-runc-v2), umoci and
//! busybox-static, and protoc (protobuf-compiler) to build; without the tools the test prints
//! `SKIP: ...` unless `CI` is set. The images
//! are `common::clients`' busybox image and a variant of it whose command is `sleep`, the
//! pods' sandbox ("pause") image, both imported into the `k8s.io` namespace with `ctr`.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clients::*;
use common::{text, unique};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const BERTH_SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");
const GO_SHIM: &str = "containerd-shim-runc-v2";
/// CRI's containerd namespace.
const NS: &str = "k8s.io";
/// `ctr images import --base-name` names an archive's images `<base>:<ref name>`.
const BASE_NAME: &str = "localhost/berth";
const BUSYBOX_REF: &str = "localhost/berth:busybox";
/// The config's `sandbox_image`: the busybox image with `sleep` as its command.
const PAUSE_REF: &str = "localhost/berth:pause";
const PAUSE_TAG: &str = "pause";
/// Every CRI call's deadline.
const RPC_SECS: u64 = 60;
const SCRIPT: &str = "echo hello-from-cri; echo err >&2; sleep 1000";

/// A CRI runtime handler of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    /// containerd's Go shim with runc.
    Runc,
    /// berth's shim.
    Berth,
}

impl Handler {
    fn name(self) -> &'static str {
        match self {
            Handler::Runc => "runc",
            Handler::Berth => "berth",
        }
    }

    /// The shim's executable.
    fn shim(self) -> PathBuf {
        match self {
            Handler::Runc => find_tool(GO_SHIM).expect("checked by have()"),
            Handler::Berth => PathBuf::from(BERTH_SHIM),
        }
    }

    /// Where the shim keeps the runtime's state for container `id`.
    fn state_of(self, cri: &Cri, id: &str) -> PathBuf {
        match self {
            Handler::Runc => cri.dir.join("runc-root").join(NS).join(id),
            Handler::Berth => Path::new("/run/containerd/berth").join(NS).join(id),
        }
    }
}

/// A private containerd with the CRI plugin, and a CRI client on its socket.
struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    rt: tokio::runtime::Runtime,
    sock: PathBuf,
    daemon: Option<Child>,
    /// The pods' `linux.cgroup_parent` (cgroupfs: a container's cgroup is `<parent>/<id>`).
    cgroup_parent: String,
    /// The sandbox and container ids this test made.
    ids: RefCell<Vec<String>>,
    /// Whether berth's state root existed before (else removed at the end when empty).
    berth_root_existed: bool,
    image: Arc<BusyboxImage>,
    _host: HostDirs,
    dir: TempDir,
}

impl Cri {
    fn new(test: &str) -> Option<Cri> {
        let tools = [
            "containerd",
            "ctr",
            GO_SHIM,
            "runc",
            "umoci",
            "chroot",
            "tar",
        ];
        if !have(test, &tools) {
            return None;
        }
        let image = busybox_image();
        let host = HostDirs::acquire();
        let berth_root_existed = Path::new("/run/containerd/berth").exists();
        let dir = TempDir::new("cri");
        for d in ["cni", "logs"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        let sock = dir.join("c.sock");
        let p = |s: &str| dir.join(s).display().to_string();
        // containerd 1.6.20's CRI plugin reads a runtime's `runtime_path` but does not use it
        // (RunPodSandbox: "failed to resolve runtime path: runtime \"io.containerd.berth.v2\"
        // binary not installed"): the shim is found by name on containerd's PATH.
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        std::os::unix::fs::symlink(BERTH_SHIM, bin.join("containerd-shim-berth-v2"))
            .expect("symlink the shim");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path =
            std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(&path)))
                .expect("PATH");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  # No CAP_SYS_RESOURCE in this sandbox: the pause container's -998 would fail.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{runc_root}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth]
      runtime_type = "io.containerd.berth.v2"
"#,
            root = p("root"),
            state = p("state"),
            sock = sock.display(),
            opt = p("opt"),
            cni = p("cni"),
            runc_root = p("runc-root"),
        );
        std::fs::write(dir.join("config.toml"), config).expect("write config.toml");
        let daemon = spawn_containerd(dir.path(), Some(&path));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let channel = cri_channel(&rt, &sock, Duration::from_secs(RPC_SECS));
        let mut cri = Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            rt,
            sock,
            daemon: Some(daemon),
            cgroup_parent: format!("/{}", unique("berth-cri")),
            ids: RefCell::new(Vec::new()),
            berth_root_existed,
            image,
            _host: host,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(st))) = cri.daemon.as_mut().map(|c| c.try_wait()) {
                panic!("containerd exited ({st}): {}", cri.log());
            }
            let v = cri.within(2, cri.rs().version(cri::VersionRequest::default()));
            match v {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("CRI never answered: {e}; {}", cri.log()),
            }
        }
        let pause = cri.pause_archive();
        for (archive, name) in [(cri.image.archive(), BUSYBOX_REF), (pause, PAUSE_REF)] {
            let out = run(
                Command::new("ctr")
                    .arg("-a")
                    .arg(&cri.sock)
                    .args(["-n", NS, "images", "import", "--base-name", BASE_NAME])
                    .arg(&archive),
                cri.dir.path(),
                120,
            );
            assert_eq!(out.code, Some(0), "ctr images import {name}: {out:#?}");
            // CRI's image store follows containerd's image events: wait until it has it.
            wait_until(&format!("CRI to know {name}"), 30, || {
                let req = cri::ImageStatusRequest {
                    image: Some(image_spec(name)),
                    verbose: false,
                };
                cri.call("ImageStatus", cri.is().image_status(req))
                    .is_ok_and(|r| r.image.is_some())
            });
        }
        Some(cri)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn rs(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    fn is(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    /// Runs one CRI call to its answer, or a deadline-exceeded status after `secs`.
    fn within<T>(
        &self,
        secs: u64,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        self.rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(secs), call).await {
                Ok(r) => r.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {secs}s"
                ))),
            }
        })
    }

    /// A CRI call with the usual deadline; `what` names it in the error.
    fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        self.within(RPC_SECS, call)
            .map_err(|s| tonic::Status::new(s.code(), format!("{what}: {}", s.message())))
    }

    /// The sandbox image: the busybox layout copied, its command set to `sleep` for ever
    /// (CRI kills the sandbox with SIGKILL), tagged [`PAUSE_TAG`] alone, as an OCI archive.
    fn pause_archive(&self) -> PathBuf {
        let layout = self.dir.join("pause-layout");
        run(
            Command::new("cp")
                .arg("-a")
                .arg(self.image.layout())
                .arg(&layout),
            self.dir.path(),
            60,
        )
        .ok();
        let image = format!("{}:{REF}", layout.display());
        let umoci = |args: &[&str]| {
            run(Command::new("umoci").args(args), self.dir.path(), 60).ok();
        };
        umoci(&[
            "config",
            "--image",
            &image,
            "--tag",
            PAUSE_TAG,
            "--config.cmd",
            "/bin/sleep",
            "--config.cmd",
            "2147483647",
        ]);
        umoci(&["rm", "--image", &image]);
        let archive = self.dir.join("pause.tar");
        run(
            Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&archive)
                .arg("."),
            self.dir.path(),
            60,
        )
        .ok();
        archive
    }

    /// The pids of the shims serving this containerd (their command line holds our socket)
    /// that run `exe`.
    fn shim_pids(&self, exe: &Path) -> Vec<i32> {
        let want = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
        pids_with_arg(self.sock.as_os_str())
            .into_iter()
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| {
                    // A binary rebuilt under a running shim reads "<path> (deleted)".
                    let p = p.to_string_lossy();
                    Path::new(p.trim_end_matches(" (deleted)")) == want
                })
            })
            .collect()
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        // The pods through CRI (their containers go with them), then whatever is left:
        // processes in the pods' cgroups, shims, the daemon, the runtimes' state.
        if self.daemon.is_some() {
            let req = cri::ListPodSandboxRequest::default();
            if let Ok(pods) = self.within(20, self.rs().list_pod_sandbox(req)) {
                for pod in pods.items {
                    let id = pod.id;
                    let stop = cri::StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    };
                    let _ = self.within(20, self.rs().stop_pod_sandbox(stop));
                    let remove = cri::RemovePodSandboxRequest { pod_sandbox_id: id };
                    let _ = self.within(20, self.rs().remove_pod_sandbox(remove));
                }
            }
        }
        remove_cgroup_tree(&self.cgroup_parent);
        for id in self.ids.borrow().iter() {
            remove_cgroup_tree(&format!("{NS}/{id}"));
        }
        for pid in pids_with_arg(self.sock.as_os_str()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        // berth's shim keeps its runtime state under /run/containerd/berth/<namespace>.
        let berth = Path::new("/run/containerd/berth");
        for id in self.ids.borrow().iter() {
            let _ = std::fs::remove_dir_all(berth.join(NS).join(id));
        }
        let _ = std::fs::remove_dir(berth.join(NS));
        if !self.berth_root_existed {
            let _ = std::fs::remove_dir(berth);
        }
    }
}

fn image_spec(name: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: name.to_owned(),
        ..Default::default()
    }
}

/// The `pid` in the `info` JSON of a verbose status.
fn info_pid(info: &std::collections::HashMap<String, String>) -> i32 {
    let json: serde_json::Value = serde_json::from_str(info.get("info").map_or("", String::as_str))
        .unwrap_or_else(|e| panic!("verbose info {info:?}: {e}"));
    json["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no pid in {json}"))
}

fn ppid(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// `/proc/<pid>/cgroup`, sorted, with `ids` replaced by their names.
fn cgroups_of(pid: i32, ids: &[(&str, &str)]) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            ids.iter()
                .fold(l.to_owned(), |l, (id, name)| l.replace(id, name))
        })
        .collect();
    lines.sort();
    lines
}

/// The container's CRI log: its lines without their timestamps (`stdout F text`), sorted
/// (the two streams are copied independently).
fn log_lines(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_owned()))
        .collect()
}

/// Which fields of CRI's container stats are there, and whether the usages are non-zero.
fn stats_shape(s: &cri::ContainerStats) -> Vec<(&'static str, bool)> {
    let some = |v: Option<cri::UInt64Value>| v.is_some();
    let nonzero = |v: Option<cri::UInt64Value>| v.is_some_and(|v| v.value > 0);
    let cpu = s.cpu;
    let mem = s.memory;
    vec![
        ("attributes", s.attributes.is_some()),
        ("cpu", cpu.is_some()),
        (
            "cpu.usage_core_nano_seconds > 0",
            nonzero(cpu.and_then(|c| c.usage_core_nano_seconds)),
        ),
        (
            "cpu.usage_nano_cores",
            some(cpu.and_then(|c| c.usage_nano_cores)),
        ),
        ("memory", mem.is_some()),
        (
            "memory.working_set_bytes",
            some(mem.and_then(|m| m.working_set_bytes)),
        ),
        (
            "memory.available_bytes",
            some(mem.and_then(|m| m.available_bytes)),
        ),
        (
            "memory.usage_bytes > 0",
            nonzero(mem.and_then(|m| m.usage_bytes)),
        ),
        ("memory.rss_bytes", some(mem.and_then(|m| m.rss_bytes))),
        ("memory.page_faults", some(mem.and_then(|m| m.page_faults))),
        (
            "memory.major_page_faults",
            some(mem.and_then(|m| m.major_page_faults)),
        ),
        ("writable_layer", s.writable_layer.is_some()),
    ]
}

/// Polls `f` for up to `secs`; whether it became true.
fn settles(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state_name(s: i32) -> &'static str {
    cri::ContainerState::try_from(s).map_or("?", |s| s.as_str_name())
}

fn pod_state_name(s: i32) -> &'static str {
    cri::PodSandboxState::try_from(s).map_or("?", |s| s.as_str_name())
}

/// A status' gRPC code and message.
fn failure<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (tonic::Code, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

/// What one pod's life cycle showed through CRI and on the host.
#[derive(Debug, PartialEq)]
struct Seen {
    version: (String, String, String, String),
    conditions: Vec<(String, bool)>,
    /// PodSandboxStatus after RunPodSandbox: state, the handler asked for.
    sandbox: (&'static str, bool),
    /// ContainerStatus after CreateContainer: state, reason, exit code.
    created: (&'static str, String, i32),
    /// ContainerStatus after StartContainer: state, reason, exit code, name, image, log path
    /// (relative to the pod's log directory).
    running: (&'static str, String, i32, String, String, String),
    logs: BTreeSet<String>,
    /// ExecSync: stdout, stderr, exit code.
    exec: (String, String, i32),
    /// ExecSync past its timeout: code, message, back within 10 s, how many of its processes
    /// are left.
    exec_timeout: (tonic::Code, String, bool, String),
    stats: Vec<(&'static str, bool)>,
    /// Shims of this handler for the running pod, whether the sandbox's and the container's
    /// init are its children.
    shims: (usize, bool, bool),
    /// The sandbox's and the container's cgroups (ids replaced).
    cgroups: (Vec<String>, Vec<String>),
    /// While they run: whether the runtime has state for both, the mounts under the test's
    /// directory (ids replaced).
    on_host: (bool, Vec<String>),
    /// StopContainer with a 2 s timeout: took 2 s to 10 s; then state, reason, exit code.
    stop: (bool, &'static str, String, i32),
    /// After RemoveContainer: ContainerStatus' code, whether ListContainers still has it.
    removed: (tonic::Code, bool),
    /// PodSandboxStatus after StopPodSandbox.
    sandbox_stopped: &'static str,
    /// After RemovePodSandbox: PodSandboxStatus' code, listed, no shim of this handler, no
    /// cgroup of the pod, no runtime state, no mount under the test's directory.
    sandbox_removed: (tonic::Code, bool, bool, bool, bool, bool),
}

impl Seen {
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Version", format!("{:?}", self.version)),
            ("Status conditions", format!("{:?}", self.conditions)),
            ("sandbox status", format!("{:?}", self.sandbox)),
            ("created", format!("{:?}", self.created)),
            ("running", format!("{:?}", self.running)),
            ("log", format!("{:?}", self.logs)),
            ("ExecSync", format!("{:?}", self.exec)),
            ("ExecSync timeout", format!("{:?}", self.exec_timeout)),
            ("ContainerStats", format!("{:?}", self.stats)),
            ("shims, parents", format!("{:?}", self.shims)),
            ("cgroups", format!("{:?}", self.cgroups)),
            ("state, mounts", format!("{:?}", self.on_host)),
            ("StopContainer", format!("{:?}", self.stop)),
            ("removed", format!("{:?}", self.removed)),
            ("sandbox stopped", self.sandbox_stopped.to_string()),
            ("sandbox removed", format!("{:?}", self.sandbox_removed)),
        ]
    }
}

/// One pod with one container through its whole life with handler `h`.
fn pod_life_cycle(cri: &Cri, h: Handler) -> Seen {
    let v = cri
        .call(
            "Version",
            cri.rs().version(cri::VersionRequest {
                version: "v1".into(),
            }),
        )
        .expect("Version");
    let version = (
        v.version,
        v.runtime_name,
        v.runtime_version,
        v.runtime_api_version,
    );
    let status = cri
        .call(
            "Status",
            cri.rs().status(cri::StatusRequest { verbose: false }),
        )
        .expect("Status");
    let conditions = status
        .status
        .map(|s| {
            s.conditions
                .into_iter()
                .map(|c| (c.r#type, c.status))
                .collect()
        })
        .unwrap_or_default();

    let name = unique(&format!("pod-{}", h.name()));
    let log_dir = cri.dir.join("logs").join(&name);
    std::fs::create_dir_all(&log_dir).expect("mkdir log dir");
    // As a kubelet asks for a hostNetwork pod: network and UTS of the node, IPC of the pod,
    // a pid namespace per container.
    let namespaces = cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    };
    let pod = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            uid: unique("uid"),
            namespace: "berth-cri".into(),
            attempt: 0,
        }),
        log_directory: log_dir.display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cri.cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sid = cri
        .call(
            "RunPodSandbox",
            cri.rs().run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: h.name().into(),
            }),
        )
        .unwrap_or_else(|e| panic!("RunPodSandbox with {}: {e}; {}", h.name(), cri.log()))
        .pod_sandbox_id;
    cri.ids.borrow_mut().push(sid.clone());
    let pod_status = |verbose| {
        cri.call(
            "PodSandboxStatus",
            cri.rs().pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sid.clone(),
                verbose,
            }),
        )
    };
    let ps = pod_status(true).expect("PodSandboxStatus");
    let st = ps.status.clone().expect("a sandbox status");
    let sandbox = (pod_state_name(st.state), st.runtime_handler == h.name());
    let sandbox_pid = info_pid(&ps.info);

    let config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c1".into(),
            attempt: 0,
        }),
        image: Some(image_spec(BUSYBOX_REF)),
        command: ["/bin/sh", "-c", SCRIPT].map(String::from).to_vec(),
        log_path: "c1.log".into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cid = cri
        .call(
            "CreateContainer",
            cri.rs().create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sid.clone(),
                config: Some(config),
                sandbox_config: Some(pod),
            }),
        )
        .unwrap_or_else(|e| panic!("CreateContainer with {}: {e}; {}", h.name(), cri.log()))
        .container_id;
    cri.ids.borrow_mut().push(cid.clone());
    let status = |verbose| {
        cri.call(
            "ContainerStatus",
            cri.rs().container_status(cri::ContainerStatusRequest {
                container_id: cid.clone(),
                verbose,
            }),
        )
    };
    let s = status(false)
        .expect("ContainerStatus")
        .status
        .expect("status");
    let created = (state_name(s.state), s.reason, s.exit_code);

    cri.call(
        "StartContainer",
        cri.rs().start_container(cri::StartContainerRequest {
            container_id: cid.clone(),
        }),
    )
    .unwrap_or_else(|e| panic!("StartContainer with {}: {e}; {}", h.name(), cri.log()));
    let r = status(true).expect("ContainerStatus");
    let container_pid = info_pid(&r.info);
    let s = r.status.expect("status");
    let log_path = Path::new(&s.log_path)
        .strip_prefix(&log_dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| s.log_path.clone());
    let running = (
        state_name(s.state),
        s.reason,
        s.exit_code,
        s.metadata.map(|m| m.name).unwrap_or_default(),
        s.image.map(|i| i.image).unwrap_or_default(),
        log_path,
    );

    let log = log_dir.join("c1.log");
    let want_logs = ["stdout F hello-from-cri", "stderr F err"];
    // Not asserted here: compared (and checked) below.
    let _ = settles(10, || {
        let l = log_lines(&log);
        want_logs.iter().all(|w| l.contains(*w))
    });
    let logs = log_lines(&log);

    let e = cri
        .call(
            "ExecSync",
            cri.rs().exec_sync(cri::ExecSyncRequest {
                container_id: cid.clone(),
                cmd: ["/bin/sh", "-c", "echo exec-ok; exit 3"]
                    .map(String::from)
                    .to_vec(),
                timeout: 30,
            }),
        )
        .expect("ExecSync");
    let exec = (text(&e.stdout), text(&e.stderr), e.exit_code);
    let t0 = Instant::now();
    let (code, message) = failure(cri.call(
        "ExecSync",
        cri.rs().exec_sync(cri::ExecSyncRequest {
            container_id: cid.clone(),
            cmd: ["/bin/sleep", "10"].map(String::from).to_vec(),
            timeout: 1,
        }),
    ));
    let back = t0.elapsed() < Duration::from_secs(10);
    // The timed-out process was killed: no `sleep 10` left in the container.
    let e = cri
        .call(
            "ExecSync",
            cri.rs().exec_sync(cri::ExecSyncRequest {
                container_id: cid.clone(),
                cmd: ["/bin/sh", "-c", "ps -o args | grep -c 'sleep 10$'"]
                    .map(String::from)
                    .to_vec(),
                timeout: 30,
            }),
        )
        .expect("ExecSync ps");
    let exec_timeout = (code, message, back, text(&e.stdout));

    let stats = cri
        .call(
            "ContainerStats",
            cri.rs().container_stats(cri::ContainerStatsRequest {
                container_id: cid.clone(),
            }),
        )
        .expect("ContainerStats")
        .stats
        .expect("stats");
    let stats = stats_shape(&stats);

    let pids = cri.shim_pids(&h.shim());
    let parent = |pid| ppid(pid).is_some_and(|pp| pids == [pp]);
    let shims = (pids.len(), parent(sandbox_pid), parent(container_pid));
    let ids = [
        (cid.as_str(), "<container>"),
        (sid.as_str(), "<sandbox>"),
        (cri.cgroup_parent.as_str(), "<parent>"),
    ];
    let cgroups = (
        cgroups_of(sandbox_pid, &ids),
        cgroups_of(container_pid, &ids),
    );
    let state = [&sid, &cid].iter().all(|id| h.state_of(cri, id).is_dir());
    let mut mounts: Vec<String> = mounts_under(cri.dir.path())
        .iter()
        .map(|m| {
            let rel = m.strip_prefix(cri.dir.path()).unwrap_or(m);
            ids.iter().fold(rel.display().to_string(), |m, (id, name)| {
                m.replace(id, name)
            })
        })
        .collect();
    mounts.sort();
    let on_host = (state, mounts);

    let t0 = Instant::now();
    cri.call(
        "StopContainer",
        cri.rs().stop_container(cri::StopContainerRequest {
            container_id: cid.clone(),
            timeout: 2,
        }),
    )
    .expect("StopContainer");
    let took = t0.elapsed();
    let s = status(false)
        .expect("ContainerStatus")
        .status
        .expect("status");
    let stop = (
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        state_name(s.state),
        s.reason,
        s.exit_code,
    );

    cri.call(
        "RemoveContainer",
        cri.rs().remove_container(cri::RemoveContainerRequest {
            container_id: cid.clone(),
        }),
    )
    .expect("RemoveContainer");
    let listed = cri
        .call(
            "ListContainers",
            cri.rs()
                .list_containers(cri::ListContainersRequest::default()),
        )
        .expect("ListContainers")
        .containers
        .iter()
        .any(|c| c.id == cid);
    let removed = (failure(status(false)).0, listed);

    cri.call(
        "StopPodSandbox",
        cri.rs().stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sid.clone(),
        }),
    )
    .expect("StopPodSandbox");
    let st = pod_status(false).expect("PodSandboxStatus");
    let sandbox_stopped = pod_state_name(st.status.map_or(-1, |s| s.state));
    cri.call(
        "RemovePodSandbox",
        cri.rs().remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sid.clone(),
        }),
    )
    .expect("RemovePodSandbox");
    let listed = cri
        .call(
            "ListPodSandbox",
            cri.rs()
                .list_pod_sandbox(cri::ListPodSandboxRequest::default()),
        )
        .expect("ListPodSandbox")
        .items
        .iter()
        .any(|p| p.id == sid);
    let no_shim = settles(10, || cri.shim_pids(&h.shim()).is_empty());
    let no_cgroup = settles(5, || {
        [&sid, &cid]
            .iter()
            .all(|id| !cgroup_exists(&format!("{}/{id}", cri.cgroup_parent)))
    });
    let no_state = [&sid, &cid].iter().all(|id| !h.state_of(cri, id).exists());
    let no_mount = mounts_under(cri.dir.path()).is_empty();
    let sandbox_removed = (
        failure(pod_status(false)).0,
        listed,
        no_shim,
        no_cgroup,
        no_state,
        no_mount,
    );

    Seen {
        version,
        conditions,
        sandbox,
        created,
        running,
        logs,
        exec,
        exec_timeout,
        stats,
        shims,
        cgroups,
        on_host,
        stop,
        removed,
        sandbox_stopped,
        sandbox_removed,
    }
}

#[test]
fn cri_pod_life_cycle_with_berth_shim_equals_go_shim() {
    let Some(cri) = Cri::new("cri_pod_life_cycle_with_berth_shim_equals_go_shim") else {
        return;
    };
    let t0 = Instant::now();
    let runc = pod_life_cycle(&cri, Handler::Runc);
    let t1 = Instant::now();
    let berth = pod_life_cycle(&cri, Handler::Berth);
    println!(
        "CRI pod life cycle (runc {:.1?}, berth {:.1?}):",
        t1 - t0,
        t1.elapsed()
    );
    for ((what, want), (_, got)) in runc.rows().into_iter().zip(berth.rows()) {
        let mark = if want == got { " " } else { "≠" };
        println!("{mark} {what}:\n    runc:  {want}\n    berth: {got}");
    }
    assert_eq!(
        berth,
        runc,
        "berth's shim (left) differs from the Go shim (right); containerd's log:\n{}",
        cri.log()
    );
    // What the pod was meant to do (both did the same).
    let s = &runc;
    assert!(
        s.conditions.contains(&("RuntimeReady".to_string(), true)),
        "{s:?}"
    );
    assert_eq!(s.sandbox, ("SANDBOX_READY", true));
    assert_eq!(s.created.0, "CONTAINER_CREATED");
    assert_eq!(s.running.0, "CONTAINER_RUNNING");
    assert_eq!(s.running.5, "c1.log");
    let want_logs: BTreeSet<String> = ["stdout F hello-from-cri", "stderr F err"]
        .map(String::from)
        .into();
    assert_eq!(s.logs, want_logs);
    assert_eq!(s.exec, ("exec-ok\n".to_string(), String::new(), 3));
    assert!(s.exec_timeout.2, "ExecSync's timeout was not kept: {s:?}");
    assert_eq!(
        s.exec_timeout.3, "0\n",
        "the timed-out exec was left running"
    );
    assert!(
        s.stats.iter().all(|(_, present)| *present),
        "ContainerStats lacks: {:?}",
        s.stats
    );
    // All the pod's processes under one shim.
    assert_eq!(s.shims, (1, true, true));
    assert!(s.on_host.0, "no runtime state while the pod ran: {s:?}");
    let rootfs = |id| format!("state/io.containerd.runtime.v2.task/{NS}/{id}/rootfs");
    for m in [rootfs("<sandbox>"), rootfs("<container>")] {
        assert!(s.on_host.1.contains(&m), "{m} not mounted: {s:?}");
    }
    assert!(
        s.stop.0,
        "StopContainer did not take its 2 s timeout: {s:?}"
    );
    assert_eq!(s.stop.1, "CONTAINER_EXITED");
    assert!([137, 143].contains(&s.stop.3), "{s:?}");
    assert_eq!(s.removed, (tonic::Code::NotFound, false));
    assert_eq!(s.sandbox_stopped, "SANDBOX_NOTREADY");
    assert_eq!(
        s.sandbox_removed,
        (tonic::Code::NotFound, false, true, true, true, true)
    );
}
