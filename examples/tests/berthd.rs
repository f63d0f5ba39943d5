//! berthd end to end through CRI, driven by a test-only CRI client (the `k8s-cri` crate's v1
//! API over berthd's unix socket), the way a kubelet drives it: images (an OCI archive
//! imported by PullImage, a pull from a local `docker-registry` with and without basic auth),
//! host-network and CNI pods (two pods reach each other over a bridge), containers with
//! their CRI log files, ExecSync, stats, stop, remove; `kill -9` of berthd with containers
//! running and exiting while it is down; bad input. After each test nothing is left: no
//! shim, mount, cgroup, netns, bundle or blob.
//!
//! Needs root, umoci, busybox-static, Debian's containernetworking-plugins, docker-registry,
//! skopeo and apache2-utils (htpasswd); without them a test prints `SKIP: ...` unless `CI`
//! is set.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clients::*;
use common::{TempDir, text, unique};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");
const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");
const IMAGE: &str = "localhost/busybox:1";

/// CRI clients on berthd's socket.
fn connect(
    rt: &tokio::runtime::Runtime,
    sock: &Path,
) -> (RuntimeServiceClient<Channel>, ImageServiceClient<Channel>) {
    let channel = cri_channel(rt, sock, Duration::from_secs(120));
    (
        RuntimeServiceClient::new(channel.clone()),
        ImageServiceClient::new(channel),
    )
}

/// A private berthd (root, state, socket, CNI config, logs in a temporary directory) and a
/// CRI client on its socket.
struct Berthd {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    rt: tokio::runtime::Runtime,
    sock: PathBuf,
    daemon: Option<Child>,
    cgroup_parent: String,
    image: Arc<BusyboxImage>,
    _host: HostDirs,
    dir: TempDir,
}

impl Berthd {
    fn new(test: &str, tools: &[&str]) -> Option<Berthd> {
        let mut all = vec!["umoci", "chroot", "tar"];
        all.extend_from_slice(tools);
        if !have(test, &all) {
            return None;
        }
        let image = busybox_image();
        let host = HostDirs::acquire();
        let dir = TempDir::new("berthd");
        for d in ["cni", "logs", "root", "state"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let sock = dir.join("berthd.sock");
        let (runtime, images) = connect(&rt, &sock);
        let mut b = Berthd {
            runtime,
            images,
            rt,
            sock,
            daemon: None,
            cgroup_parent: format!("/{}", unique("berthd-test")),
            image,
            _host: host,
            dir,
        };
        b.start();
        Some(b)
    }

    fn start(&mut self) {
        let d = &self.dir;
        let log =
            std::fs::File::create(d.join(format!("berthd-{}.log", unique("run")))).expect("log");
        let child = Command::new(BERTHD)
            .arg("--root")
            .arg(d.join("root"))
            .arg("--state")
            .arg(d.join("state"))
            .arg("--address")
            .arg(&self.sock)
            .arg("--shim")
            .arg(SHIM)
            .arg("--cni-conf-dir")
            .arg(d.join("cni"))
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.daemon = Some(child);
        let sock = self.sock.clone();
        wait_until("berthd's socket", 30, || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        // A new connection: the old one died with the old berthd.
        (self.runtime, self.images) = connect(&self.rt, &self.sock);
    }

    /// `kill -9` of berthd.
    fn kill9(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn call<T>(
        &self,
        f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        self.rt.block_on(f).map(|r| r.into_inner())
    }

    fn import_busybox(&mut self) -> String {
        let image = format!("oci-archive:{}:{IMAGE}", self.image.archive().display());
        self.pull(&image, None).expect("import busybox")
    }

    fn pull(
        &mut self,
        image: &str,
        auth: Option<cri::AuthConfig>,
    ) -> Result<String, tonic::Status> {
        let mut c = self.images.clone();
        let req = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth,
            sandbox_config: None,
        };
        self.call(c.pull_image(req)).map(|r| r.image_ref)
    }

    fn pod_config(&self, name: &str, host_net: bool) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: unique("uid"),
                namespace: "test".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.dir.join("logs").join(name).display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: if host_net { 2 } else { 0 },
                        pid: 1,
                        ipc: 0,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn run_pod(&mut self, config: &cri::PodSandboxConfig) -> Result<String, tonic::Status> {
        let mut c = self.runtime.clone();
        let req = Self::run_pod_request(config);
        self.call(c.run_pod_sandbox(req)).map(|r| r.pod_sandbox_id)
    }

    /// The RunPodSandboxRequest of [`Self::run_pod`].
    fn run_pod_request(config: &cri::PodSandboxConfig) -> cri::RunPodSandboxRequest {
        cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }
    }

    fn create(
        &mut self,
        pod: &str,
        pod_config: &cri::PodSandboxConfig,
        name: &str,
        cmd: &[&str],
    ) -> Result<String, tonic::Status> {
        let mut c = self.runtime.clone();
        let req = Self::create_request(pod, pod_config, name, cmd);
        self.call(c.create_container(req)).map(|r| r.container_id)
    }

    /// The CreateContainerRequest of [`Self::create`].
    fn create_request(
        pod: &str,
        pod_config: &cri::PodSandboxConfig,
        name: &str,
        cmd: &[&str],
    ) -> cri::CreateContainerRequest {
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}/0.log"),
            envs: vec![cri::KeyValue {
                key: "HELLO".into(),
                value: "world".into(),
            }],
            ..Default::default()
        };
        cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        }
    }

    fn start_ctr(&mut self, id: &str) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        self.call(c.start_container(cri::StartContainerRequest {
            container_id: id.into(),
        }))
        .map(drop)
    }

    fn status(&mut self, id: &str) -> cri::ContainerStatus {
        let mut c = self.runtime.clone();
        self.call(c.container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        }))
        .expect("ContainerStatus")
        .status
        .expect("a status")
    }

    fn pod_status(&mut self, id: &str) -> cri::PodSandboxStatus {
        let mut c = self.runtime.clone();
        self.call(c.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        }))
        .expect("PodSandboxStatus")
        .status
        .expect("a status")
    }

    fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, tonic::Status> {
        let mut c = self.runtime.clone();
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        self.call(c.exec_sync(req))
    }

    fn remove_pod(&mut self, id: &str) {
        let mut c = self.runtime.clone();
        self.call(c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        }))
        .expect("StopPodSandbox");
        self.call(c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        }))
        .expect("RemovePodSandbox");
    }

    fn wait_exited(&mut self, id: &str, secs: u64) -> cri::ContainerStatus {
        let t0 = Instant::now();
        loop {
            let s = self.status(id);
            if s.state == cri::ContainerState::ContainerExited as i32 {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "container {id} still {:?}",
                s.state
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The CRI log file's lines without their `<time> <stream> <tag> ` prefix.
    fn log_lines(path: &str) -> Vec<(String, String)> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut parts = l.splitn(4, ' ');
                let ts = parts.next().unwrap_or("");
                assert!(ts.ends_with('Z') && ts.contains('T'), "timestamp in {l:?}");
                let stream = parts.next().unwrap_or("").to_owned();
                let tag = parts.next().unwrap_or("");
                assert!(tag == "F" || tag == "P", "tag in {l:?}");
                (stream, parts.next().unwrap_or("").to_owned())
            })
            .collect()
    }

    /// The shims of this berthd (their `-address` is its socket; berthd itself is not one).
    fn shims(&self) -> Vec<i32> {
        let me = self.daemon.as_ref().map(|d| d.id() as i32);
        let mut v: Vec<i32> = pids_with_arg(std::ffi::OsStr::new(&self.sock.display().to_string()))
            .into_iter()
            .filter(|p| Some(*p) != me)
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.windows(5).any(|w| w == b"-shim"))
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        // Remove every pod through berthd (a failed test may have left some), then stop it.
        if self.daemon.is_some() {
            let mut c = self.runtime.clone();
            if let Ok(r) = self
                .rt
                .block_on(c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }))
            {
                for p in r.into_inner().items {
                    let _ = self
                        .rt
                        .block_on(c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                            pod_sandbox_id: p.id.clone(),
                        }));
                    let _ = self
                        .rt
                        .block_on(c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                            pod_sandbox_id: p.id,
                        }));
                }
            }
            if let Some(mut d) = self.daemon.take() {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
                let _ = d.wait();
            }
        }
        for pid in self.shims() {
            // SAFETY: plain kill(2) of a leftover shim of this test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        remove_cgroup_tree(self.cgroup_parent.trim_start_matches('/'));
        if std::thread::panicking() {
            for e in std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if e.file_name().to_string_lossy().starts_with("berthd-") {
                    eprintln!(
                        "--- {}:\n{}",
                        e.path().display(),
                        std::fs::read_to_string(e.path()).unwrap_or_default()
                    );
                }
            }
        }
    }
}

/// What a test leaves: mounts under the dir, cgroups, shims.
fn assert_clean(b: &Berthd) {
    wait_until("shims to exit", 10, || b.shims().is_empty());
    let mounts = mounts_under(b.dir.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    // berthd's --cgroup-parent too: it goes with the last pod.
    let rel = b.cgroup_parent.trim_start_matches('/');
    let left: Vec<PathBuf> = cgroup_hierarchies()
        .iter()
        .flat_map(|h| cgroup_tree(h, rel))
        .collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
    let state = b.dir.join("state");
    for d in ["containers", "pods"] {
        let n = std::fs::read_dir(state.join(d))
            .map(|r| r.count())
            .unwrap_or(0);
        assert_eq!(n, 0, "{d} left in the state dir");
    }
    let snaps = std::fs::read_dir(b.dir.join("root/snapshots"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(snaps, 0, "writable layers left");
}

#[test]
fn host_network_pod_life_cycle() {
    let Some(mut b) = Berthd::new("host_network_pod_life_cycle", &[]) else {
        return;
    };
    let mut rt = b.runtime.clone();
    let v = b
        .call(rt.version(cri::VersionRequest {
            version: String::new(),
        }))
        .expect("Version");
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("berthd", "v1")
    );
    let st = b
        .call(rt.status(cri::StatusRequest { verbose: false }))
        .expect("Status")
        .status
        .expect("status");
    let cond = |t: &str| {
        st.conditions
            .iter()
            .find(|c| c.r#type == t)
            .map(|c| c.status)
    };
    assert_eq!(cond("RuntimeReady"), Some(true));
    // No CNI config yet: the network is not ready, and says why.
    assert_eq!(cond("NetworkReady"), Some(false));

    let id = b.import_busybox();
    assert!(id.starts_with("sha256:"), "{id}");
    let mut im = b.images.clone();
    let list = b
        .call(im.list_images(cri::ListImagesRequest { filter: None }))
        .expect("ListImages")
        .images;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].repo_tags, vec![IMAGE.to_string()]);
    let fs = b
        .call(im.image_fs_info(cri::ImageFsInfoRequest {}))
        .expect("ImageFsInfo");
    assert!(
        fs.image_filesystems[0]
            .used_bytes
            .as_ref()
            .is_some_and(|u| u.value > 500_000),
        "{fs:?}"
    );

    let pc = b.pod_config("web", true);
    let pod = b.run_pod(&pc).expect("RunPodSandbox");
    assert_eq!(
        b.pod_status(&pod).state,
        cri::PodSandboxState::SandboxReady as i32
    );
    // The same name again: AlreadyExists, and nothing else made.
    let e = b.run_pod(&pc).unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");

    let c1 = b
        .create(
            &pod,
            &pc,
            "c1",
            &[
                "/bin/sh",
                "-c",
                "echo hello-from-berthd; echo $HELLO >&2; echo ok > /tmp/f; exec sleep 1000",
            ],
        )
        .expect("CreateContainer");
    assert_eq!(
        b.status(&c1).state,
        cri::ContainerState::ContainerCreated as i32
    );
    b.start_ctr(&c1).expect("StartContainer");
    let s = b.status(&c1);
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    assert!(s.started_at > 0);
    let log = s.log_path.clone();
    wait_until("the log lines", 10, || Berthd::log_lines(&log).len() >= 2);
    let mut lines = Berthd::log_lines(&log);
    lines.sort();
    assert_eq!(
        lines,
        vec![
            ("stderr".into(), "world".into()),
            ("stdout".into(), "hello-from-berthd".into())
        ]
    );

    let r = b
        .exec(
            &c1,
            &["/bin/sh", "-c", "cat /tmp/f; hostname; echo e >&2; exit 3"],
            10,
        )
        .expect("ExecSync");
    assert_eq!(r.exit_code, 3);
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(text(&r.stdout), format!("ok\n{host}\n"));
    assert_eq!(text(&r.stderr), "e\n");
    let t0 = Instant::now();
    let e = b.exec(&c1, &["sleep", "30"], 1).unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(15));

    let stats = b
        .call(rt.container_stats(cri::ContainerStatsRequest {
            container_id: c1.clone(),
        }))
        .expect("ContainerStats")
        .stats
        .expect("stats");
    assert!(
        stats
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .is_some_and(|w| w.value > 0),
        "{stats:?}"
    );
    assert!(
        stats
            .cpu
            .as_ref()
            .and_then(|m| m.usage_core_nano_seconds.as_ref())
            .is_some_and(|w| w.value > 0),
        "{stats:?}"
    );

    // A container that ends by itself: its real exit code.
    let c2 = b
        .create(&pod, &pc, "c2", &["/bin/sh", "-c", "exit 7"])
        .expect("create c2");
    b.start_ctr(&c2).expect("start c2");
    let s2 = b.wait_exited(&c2, 10);
    assert_eq!((s2.exit_code, s2.reason.as_str()), (7, "Error"));
    // One shim for the pod.
    assert_eq!(b.shims().len(), 1, "one shim per pod");

    // Stop with a timeout: sleep as the pid namespace's init ignores SIGTERM, so after the
    // timeout it is killed (exit 137).
    let mut rt2 = b.runtime.clone();
    let t0 = Instant::now();
    b.call(rt2.stop_container(cri::StopContainerRequest {
        container_id: c1.clone(),
        timeout: 1,
    }))
    .expect("StopContainer");
    assert!(t0.elapsed() >= Duration::from_secs(1));
    let s = b.status(&c1);
    assert_eq!(
        (s.state, s.exit_code),
        (cri::ContainerState::ContainerExited as i32, 137)
    );
    b.call(rt2.remove_container(cri::RemoveContainerRequest {
        container_id: c1.clone(),
    }))
    .expect("RemoveContainer");
    let e = b
        .call(rt2.container_status(cri::ContainerStatusRequest {
            container_id: c1.clone(),
            verbose: false,
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // Idempotent removal.
    b.call(rt2.remove_container(cri::RemoveContainerRequest { container_id: c1 }))
        .expect("RemoveContainer again");

    // The image is in use by c2: refused; after the pod, removed and its blobs collected.
    let e = b
        .call(im.remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    b.remove_pod(&pod);
    b.call(im.remove_image(cri::RemoveImageRequest {
        image: Some(cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
    }))
    .expect("RemoveImage");
    let blobs = std::fs::read_dir(b.dir.join("root/content/blobs/sha256"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "blobs left after RemoveImage");
    assert_clean(&b);
}

/// Runs the calls `f` makes of each item at once (on the test's one thread, all in flight
/// together), and returns their results in the items' order.
fn all_at_once<I, T, F>(
    b: &Berthd,
    items: Vec<I>,
    f: impl Fn(I) -> F,
) -> Vec<Result<T, tonic::Status>>
where
    F: Future<Output = Result<T, tonic::Status>> + 'static,
    T: 'static,
{
    let calls: Vec<_> = items.into_iter().map(f).collect();
    b.rt.block_on(async move {
        let set = tokio::task::LocalSet::new();
        let handles: Vec<_> = calls.into_iter().map(|c| set.spawn_local(c)).collect();
        set.run_until(async move {
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.expect("a call panicked"));
            }
            out
        })
        .await
    })
}

/// Calls in flight together, as a kubelet's pod workers make them: a name is given once
/// (the others hear who has it), different names are made at once, and the containers made
/// at once in one pod share its one shim.
#[test]
fn concurrent_calls_give_each_name_once() {
    let Some(mut b) = Berthd::new("concurrent_calls_give_each_name_once", &[]) else {
        return;
    };
    b.import_busybox();
    let pc = b.pod_config("race", true);
    let rt = b.runtime.clone();
    let run = |config: cri::PodSandboxConfig| {
        let mut c = rt.clone();
        let req = Berthd::run_pod_request(&config);
        async move {
            c.run_pod_sandbox(req)
                .await
                .map(|r| r.into_inner().pod_sandbox_id)
        }
    };
    let pods = all_at_once(&b, vec![pc.clone(); 4], run);
    let made: Vec<&String> = pods.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(made.len(), 1, "{pods:?}");
    let pod = made[0].clone();
    for e in pods.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
        assert!(e.message().contains(&pod), "{e:?}");
    }
    // Other pods at once: all made.
    let others: Vec<_> = (0..3)
        .map(|i| b.pod_config(&format!("other{i}"), true))
        .collect();
    let other_pods: Vec<String> = all_at_once(&b, others.clone(), run)
        .into_iter()
        .map(|r| r.expect("RunPodSandbox"))
        .collect();

    // Containers at once in the first pod, three of them asking for one name, and one in
    // each other pod.
    let create = |(pod, pc, name): (String, cri::PodSandboxConfig, &'static str)| {
        let mut c = rt.clone();
        let req = Berthd::create_request(&pod, &pc, name, &["sleep", "1000"]);
        async move {
            c.create_container(req)
                .await
                .map(|r| r.into_inner().container_id)
        }
    };
    let mut asks: Vec<_> = ["a", "b", "same", "c", "same", "same"]
        .into_iter()
        .map(|n| (pod.clone(), pc.clone(), n))
        .collect();
    asks.extend(
        other_pods
            .iter()
            .zip(&others)
            .map(|(p, c)| (p.clone(), c.clone(), "x")),
    );
    let created = all_at_once(&b, asks.clone(), create);
    let mut same = Vec::new();
    let mut ids = Vec::new();
    for ((_, _, name), r) in asks.iter().zip(&created) {
        match (name, r) {
            (&"same", r) => same.push(r.clone()),
            (_, Ok(id)) => ids.push(id.clone()),
            (n, Err(e)) => panic!("CreateContainer {n}: {e:?}"),
        }
    }
    let winner: Vec<String> = same.iter().filter_map(|r| r.clone().ok()).collect();
    assert_eq!(winner.len(), 1, "{same:?}");
    for e in same.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
        assert!(e.message().contains(&winner[0]), "{e:?}");
    }
    ids.extend(winner);
    assert_eq!(ids.len(), 7);
    let start = |id: String| {
        let mut c = rt.clone();
        async move {
            c.start_container(cri::StartContainerRequest { container_id: id })
                .await
                .map(drop)
        }
    };
    for r in all_at_once(&b, ids.clone(), start) {
        r.expect("StartContainer");
    }
    for id in &ids {
        assert_eq!(
            b.status(id).state,
            cri::ContainerState::ContainerRunning as i32,
            "{id}"
        );
    }
    // One shim per pod, however many creates raced in it (counted once the inits, clones of
    // their shim until they exec, have become `sleep`).
    assert_eq!(b.shims().len(), 4, "shims: {:?}", b.shims());
    b.remove_pod(&pod);
    for p in &other_pods {
        b.remove_pod(p);
    }
    assert_clean(&b);
}

#[test]
fn bad_requests_change_nothing() {
    let Some(mut b) = Berthd::new("bad_requests_change_nothing", &[]) else {
        return;
    };
    let mut rt = b.runtime.clone();
    let e = b
        .call(rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: None,
            runtime_handler: String::new(),
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let mut pc = b.pod_config("bad", true);
    pc.metadata.as_mut().unwrap().name.clear();
    assert_eq!(
        b.run_pod(&pc).unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    let pc = b.pod_config("p", true);
    let mut bad_handler = cri::RunPodSandboxRequest {
        config: Some(pc.clone()),
        runtime_handler: "nope".into(),
    };
    bad_handler.runtime_handler = "nope".into();
    assert_eq!(
        b.call(rt.run_pod_sandbox(bad_handler)).unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    // Unknown ids.
    assert_eq!(
        b.call(rt.start_container(cri::StartContainerRequest {
            container_id: "f00".into()
        }))
        .unwrap_err()
        .code(),
        tonic::Code::NotFound
    );
    let e = b
        .call(rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: "f00".into(),
            verbose: false,
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // An image that is not there, bad refs, an archive that is not one.
    let pod = b.run_pod(&pc).expect("RunPodSandbox");
    let e = b.create(&pod, &pc, "c", &["true"]).unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    for bad in [
        "",
        "UPPER/Case:tag",
        "a b",
        "docker-archive:/nonexistent.tar:x/y",
    ] {
        let e = b.pull(bad, None).unwrap_err();
        assert_ne!(e.code(), tonic::Code::Ok, "{bad}");
        assert!(!e.message().is_empty());
    }
    let junk = b.dir.join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").unwrap();
    assert!(
        b.pull(
            &format!("oci-archive:{}:localhost/x:1", junk.display()),
            None
        )
        .is_err()
    );
    // Unimplemented, never a wrong success.
    let e = b
        .call(rt.exec(cri::ExecRequest {
            container_id: "x".into(),
            cmd: vec!["true".into()],
            ..Default::default()
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    let mut im = b.images.clone();
    assert!(
        b.call(im.list_images(cri::ListImagesRequest { filter: None }))
            .unwrap()
            .images
            .is_empty()
    );
    let blobs = std::fs::read_dir(b.dir.join("root/content/blobs/sha256"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "a failed import left blobs");
    b.remove_pod(&pod);
    assert_clean(&b);
}

#[test]
fn kill_9_of_berthd_loses_nothing() {
    let Some(mut b) = Berthd::new("kill_9_of_berthd_loses_nothing", &[]) else {
        return;
    };
    b.import_busybox();
    let pc = b.pod_config("survivor", true);
    let pod = b.run_pod(&pc).expect("RunPodSandbox");
    let long = b
        .create(
            &pod,
            &pc,
            "long",
            &["/bin/sh", "-c", "echo before; sleep 1000"],
        )
        .expect("create");
    b.start_ctr(&long).expect("start");
    let soon = b
        .create(
            &pod,
            &pc,
            "soon",
            &["/bin/sh", "-c", "sleep 2; echo bye; exit 42"],
        )
        .expect("create");
    b.start_ctr(&soon).expect("start");
    let shims = b.shims();
    assert_eq!(shims.len(), 1);
    b.kill9();
    // While berthd is down: one container exits, the other keeps running.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(b.shims(), shims, "the shim outlives berthd");
    b.start();
    let s = b.status(&long);
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    let s = b.wait_exited(&soon, 10);
    assert_eq!((s.exit_code, s.reason.as_str()), (42, "Error"));
    let lines = Berthd::log_lines(&s.log_path);
    assert_eq!(
        lines,
        vec![("stdout".into(), "bye".into())],
        "the log written while berthd was down"
    );
    let r = b
        .exec(&long, &["echo", "still-here"], 10)
        .expect("exec after restart");
    assert_eq!(text(&r.stdout), "still-here\n");
    // Killed again in the middle of a create: the restart leaves no half-made container.
    b.kill9();
    b.start();
    let mut rt = b.runtime.clone();
    let n = b
        .call(rt.list_containers(cri::ListContainersRequest { filter: None }))
        .expect("List")
        .containers
        .len();
    assert_eq!(n, 2);
    b.remove_pod(&pod);
    assert_clean(&b);
}

/// The CNI config of a bridge network unique to this test.
fn cni_conflist(dir: &Path, bridge: &str, subnet: &str) {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "berthtest",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": dir.join("ipam").display().to_string()}},
            {"type": "loopback"}
        ]
    });
    std::fs::write(dir.join("cni/10-berthtest.conflist"), conf.to_string()).unwrap();
}

#[test]
fn cni_pods_reach_each_other() {
    let Some(mut b) = Berthd::new("cni_pods_reach_each_other", &["/usr/lib/cni/bridge", "ip"])
    else {
        return;
    };
    let bridge = format!("bbt{}", std::process::id() % 100000);
    struct Link(String);
    impl Drop for Link {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _link = Link(bridge.clone());
    let subnet = format!("10.91.{}.0/24", std::process::id() % 250);
    cni_conflist(b.dir.path(), &bridge, &subnet);
    let mut rt = b.runtime.clone();
    let st = b
        .call(rt.status(cri::StatusRequest { verbose: false }))
        .expect("Status")
        .status
        .expect("status");
    assert!(
        st.conditions
            .iter()
            .any(|c| c.r#type == "NetworkReady" && c.status),
        "{st:?}"
    );
    b.import_busybox();
    let mut ips = Vec::new();
    let mut ctrs = Vec::new();
    let mut pods = Vec::new();
    for name in ["a", "b"] {
        let pc = b.pod_config(name, false);
        let pod = b.run_pod(&pc).expect("RunPodSandbox");
        let ip = b.pod_status(&pod).network.expect("network").ip;
        assert!(
            ip.starts_with(&subnet[..subnet.len() - 4]),
            "{ip} in {subnet}"
        );
        let c = b
            .create(&pod, &pc, "c", &["sleep", "1000"])
            .expect("create");
        b.start_ctr(&c).expect("start");
        let r = b.exec(&c, &["hostname"], 10).expect("exec hostname");
        assert_eq!(text(&r.stdout), format!("{name}\n"), "the pod's hostname");
        ips.push(ip);
        ctrs.push(c);
        pods.push(pod);
    }
    assert_ne!(ips[0], ips[1]);
    let r = b
        .exec(&ctrs[0], &["ping", "-c", "1", "-W", "3", &ips[1]], 20)
        .expect("ping");
    assert_eq!(
        r.exit_code,
        0,
        "ping a -> b: {}{}",
        text(&r.stdout),
        text(&r.stderr)
    );
    let r = b
        .exec(&ctrs[1], &["ip", "-4", "addr", "show", "eth0"], 10)
        .expect("ip addr");
    assert!(text(&r.stdout).contains(&ips[1]), "{}", text(&r.stdout));
    for p in &pods {
        b.remove_pod(p);
    }
    // host-local released the addresses.
    let leases: Vec<_> = std::fs::read_dir(b.dir.join("ipam/berthtest"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with("10."))
                .collect()
        })
        .unwrap_or_default();
    assert!(leases.is_empty(), "leases left: {leases:?}");
    assert_clean(&b);
}

/// A local `docker-registry` on a free loopback port, with its own config and data dir.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let auth = htpasswd
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: berth\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        let data = dir.join(format!("registry-{port}"));
        let conf = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            data.display()
        );
        let cfg = dir.join(format!("registry-{port}.yml"));
        std::fs::write(&cfg, conf).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("registry-{port}.log"))).unwrap())
            .spawn()
            .expect("spawn docker-registry");
        wait_until("the registry", 20, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Registry { child, port }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pull_from_a_local_registry_with_and_without_auth() {
    let Some(mut b) = Berthd::new(
        "pull_from_a_local_registry",
        &["docker-registry", "skopeo", "htpasswd"],
    ) else {
        return;
    };
    let htpasswd = b.dir.join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "berth", "s3cret"])
        .output()
        .expect("htpasswd");
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let open = Registry::start(b.dir.path(), None);
    let locked = Registry::start(b.dir.path(), Some(&htpasswd));
    let archive = format!(
        "oci-archive:{}:{}",
        b.image.archive().display(),
        common::clients::REF
    );
    for (reg, creds) in [(&open, None), (&locked, Some("berth:s3cret"))] {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let o = cmd
            .arg(&archive)
            .arg(format!("docker://127.0.0.1:{}/busybox:1", reg.port))
            .output()
            .expect("skopeo");
        assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
    }
    let id = b
        .pull(&format!("127.0.0.1:{}/busybox:1", open.port), None)
        .expect("pull");
    // Without credentials, or with wrong ones: a clear error.
    let r = format!("127.0.0.1:{}/busybox:1", locked.port);
    let e = b.pull(&r, None).unwrap_err();
    assert!(!e.message().is_empty(), "{e:?}");
    let bad = cri::AuthConfig {
        username: "berth".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    assert!(b.pull(&r, Some(bad)).is_err());
    let good = cri::AuthConfig {
        username: "berth".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    let id2 = b.pull(&r, Some(good)).expect("pull with auth");
    assert_eq!(id, id2, "the same image");
    // The pulled image runs.
    let pc = b.pod_config("pulled", true);
    let pod = b.run_pod(&pc).expect("RunPodSandbox");
    let mut rt = b.runtime.clone();
    let config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: r.clone(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "100".into()],
        ..Default::default()
    };
    let c = b
        .call(rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(config),
            sandbox_config: Some(pc),
        }))
        .expect("create from the pulled image")
        .container_id;
    b.start_ctr(&c).expect("start");
    assert_eq!(
        text(&b.exec(&c, &["echo", "pulled-ok"], 10).expect("exec").stdout),
        "pulled-ok\n"
    );
    b.remove_pod(&pod);
    assert_clean(&b);
}

/// The names of the entries of a directory.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn kill_9_in_the_middle_of_create_stop_and_import() {
    let Some(mut b) = Berthd::new("kill_9_in_the_middle", &[]) else {
        return;
    };
    b.import_busybox();
    let pc = b.pod_config("crashy", true);
    let pod = b.run_pod(&pc).expect("RunPodSandbox");
    // CreateContainer cut at several points: afterwards every container berthd lists has its
    // bundle and writable layer, and nothing else is on disk.
    for (i, ms) in [0u64, 5, 15, 30, 60, 120].into_iter().enumerate() {
        let name = format!("c{i}");
        let mut rt = b.runtime.clone();
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.clone(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "1000".into()],
            ..Default::default()
        };
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(config),
            sandbox_config: Some(pc.clone()),
        };
        let daemon = b.daemon.as_mut().expect("berthd");
        b.rt.block_on(async {
            tokio::select! {
                _ = rt.create_container(req) => {},
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {},
            }
        });
        let _ = daemon.kill();
        let _ = daemon.wait();
        b.daemon = None;
        b.start();
        let mut rt = b.runtime.clone();
        let listed: Vec<String> = {
            let mut v: Vec<String> = b
                .call(rt.list_containers(cri::ListContainersRequest { filter: None }))
                .expect("List")
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            entries(&b.dir.join("state/containers")),
            listed,
            "bundles after a kill at {ms} ms"
        );
        assert_eq!(
            entries(&b.dir.join("root/snapshots")),
            listed,
            "writable layers after a kill at {ms} ms"
        );
        // The name is usable again or taken by the container that made it.
        match b.create(&pod, &pc, &name, &["sleep", "1000"]) {
            Ok(id) => assert!(!listed.contains(&id)),
            Err(e) => assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}"),
        }
    }
    // StopContainer cut while it waits out the timeout: the container is still there, and a
    // second stop finishes the job.
    let c = b
        .create(&pod, &pc, "stopme", &["sleep", "1000"])
        .expect("create");
    b.start_ctr(&c).expect("start");
    let mut rt = b.runtime.clone();
    let daemon = b.daemon.as_mut().expect("berthd");
    b.rt.block_on(async {
        tokio::select! {
            _ = rt.stop_container(cri::StopContainerRequest { container_id: c.clone(), timeout: 30 }) => panic!("stop returned before the kill"),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {},
        }
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    b.daemon = None;
    b.start();
    assert_eq!(
        b.status(&c).state,
        cri::ContainerState::ContainerRunning as i32
    );
    let mut rt = b.runtime.clone();
    b.call(rt.stop_container(cri::StopContainerRequest {
        container_id: c.clone(),
        timeout: 0,
    }))
    .expect("stop again");
    assert_eq!(b.status(&c).exit_code, 137);
    // An import cut short leaves no blob that no image names, and can be done again.
    let mut im = b.images.clone();
    b.call(im.remove_image(cri::RemoveImageRequest {
        image: Some(cri::ImageSpec {
            image: "localhost/other:1".into(),
            ..Default::default()
        }),
    }))
    .expect("RemoveImage of nothing");
    let before = entries(&b.dir.join("root/content/blobs/sha256"));
    for ms in [2u64, 10, 40] {
        let image = format!(
            "oci-archive:{}:localhost/other:{ms}",
            b.image.archive().display()
        );
        let mut im = b.images.clone();
        let daemon = b.daemon.as_mut().expect("berthd");
        let req = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image,
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        };
        b.rt.block_on(async {
            tokio::select! {
                _ = im.pull_image(req) => {},
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {},
            }
        });
        let _ = daemon.kill();
        let _ = daemon.wait();
        b.daemon = None;
        b.start();
        // The same image's blobs are shared with localhost/busybox:1: the set never grows.
        assert_eq!(entries(&b.dir.join("root/content/blobs/sha256")), before);
        let n = entries(&b.dir.join("root/content/ingest")).len();
        assert_eq!(n, 0, "ingest files left");
    }
    b.remove_pod(&pod);
    assert_clean(&b);
}

#[test]
fn log_rotation_resources_and_stats() {
    let Some(mut b) = Berthd::new("log_rotation_resources_and_stats", &[]) else {
        return;
    };
    b.import_busybox();
    let pc = b.pod_config("rot", true);
    let pod = b.run_pod(&pc).expect("RunPodSandbox");
    let c = b
        .create(
            &pod,
            &pc,
            "ticker",
            &[
                "/bin/sh",
                "-c",
                "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done",
            ],
        )
        .expect("create");
    b.start_ctr(&c).expect("start");
    let log = b.status(&c).log_path;
    wait_until("ticks", 10, || Berthd::log_lines(&log).len() >= 5);
    // The kubelet's rotation: rename, then ReopenContainerLog; no line lost or doubled.
    let old = format!("{log}.1");
    std::fs::rename(&log, &old).unwrap();
    let mut rt = b.runtime.clone();
    b.call(rt.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: c.clone(),
    }))
    .expect("ReopenContainerLog");
    wait_until("ticks in the new file", 10, || {
        Berthd::log_lines(&log).len() >= 5
    });
    let n = |l: &(String, String)| l.1.trim_start_matches("tick ").parse::<u64>().unwrap();
    let all: Vec<u64> = Berthd::log_lines(&old)
        .iter()
        .chain(Berthd::log_lines(&log).iter())
        .map(n)
        .collect();
    let expect: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(all, expect, "lines across the rotation");

    // UpdateContainerResources reaches the cgroup.
    let res = cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        cpu_shares: 512,
        ..Default::default()
    };
    b.call(
        rt.update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: c.clone(),
            linux: Some(res),
            ..Default::default()
        }),
    )
    .expect("UpdateContainerResources");
    let rel = format!("{}/{c}", b.cgroup_parent.trim_start_matches('/'));
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(&rel)
        .join("memory.limit_in_bytes");
    let v2 = Path::new("/sys/fs/cgroup").join(&rel).join("memory.max");
    let limit = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .expect("the container's memory limit");
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    let s = b.status(&c);
    assert_eq!(
        s.resources
            .and_then(|r| r.linux)
            .map(|l| l.memory_limit_in_bytes),
        Some(64 << 20)
    );

    // Stats of the pod and lists.
    let ps = b
        .call(rt.pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        }))
        .expect("PodSandboxStats")
        .stats
        .expect("stats");
    let lin = ps.linux.expect("linux stats");
    assert_eq!(lin.containers.len(), 1);
    assert!(
        lin.memory
            .and_then(|m| m.working_set_bytes)
            .is_some_and(|w| w.value > 0)
    );
    let all = b
        .call(rt.list_container_stats(cri::ListContainerStatsRequest { filter: None }))
        .expect("ListContainerStats")
        .stats;
    assert_eq!(all.len(), 1);
    let f = cri::PodSandboxFilter {
        state: Some(cri::PodSandboxStateValue {
            state: cri::PodSandboxState::SandboxNotready as i32,
        }),
        ..Default::default()
    };
    assert!(
        b.call(rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(f) }))
            .expect("List")
            .items
            .is_empty()
    );
    // Reopen of a container that is not running: FailedPrecondition.
    b.call(rt.stop_container(cri::StopContainerRequest {
        container_id: c.clone(),
        timeout: 0,
    }))
    .expect("stop");
    let e = b
        .call(rt.reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: c.clone(),
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    b.remove_pod(&pod);
    assert_clean(&b);
}
