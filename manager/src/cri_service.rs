//! CRI v1 over gRPC on a unix socket: the kubelet's (or berthctl's) view of the manager.
//!
//! Every call runs the manager's blocking work on tokio's blocking pool; errors become gRPC
//! statuses with the manager's message ([`crate::Error::code`]). Calls berthd does not
//! implement (streaming Exec, Attach, PortForward, checkpoints, container events, metrics
//! descriptors) answer `Unimplemented`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tonic::{Request, Response, Status};

use crate::Manager;
use crate::db::{ContainerRecord, ContainerState, SandboxRecord, SandboxState};
use crate::error::{Error, Result};

/// The CRI version berthd speaks.
const CRI_VERSION: &str = "v1";

#[derive(Clone)]
struct Cri {
    m: Arc<Manager>,
}

/// Runs blocking manager work off the async threads.
async fn blocking<T: Send + 'static>(
    m: &Arc<Manager>,
    f: impl FnOnce(&Manager) -> Result<T> + Send + 'static,
) -> Result<T, Status> {
    let m = Arc::clone(m);
    tokio::task::spawn_blocking(move || f(&m))
        .await
        .map_err(|e| Status::internal(format!("worker: {e}")))?
        .map_err(Status::from)
}

fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pod_state(s: SandboxState) -> i32 {
    match s {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady as i32,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

fn ctr_state(s: ContainerState) -> i32 {
    match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated as i32,
        ContainerState::Running => cri::ContainerState::ContainerRunning as i32,
        ContainerState::Exited => cri::ContainerState::ContainerExited as i32,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown as i32,
    }
}

fn pod_of(s: &SandboxRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: s.id.clone(),
        metadata: s.config.metadata.clone(),
        state: pod_state(s.state),
        created_at: s.created_at,
        labels: s.config.labels.clone(),
        annotations: s.config.annotations.clone(),
        runtime_handler: s.runtime_handler.clone(),
    }
}

fn ctr_of(c: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.sandbox_id.clone(),
        metadata: c.config.metadata.clone(),
        image: c.config.image.clone(),
        image_ref: c.image_id.clone(),
        state: ctr_state(c.state),
        created_at: c.created_at,
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        ..Default::default()
    }
}

fn ctr_status(c: &ContainerRecord) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        state: ctr_state(c.state),
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: c.config.image.clone(),
        image_ref: c.image_id.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        mounts: c.config.mounts.clone(),
        log_path: c.log_path.clone(),
        resources: c
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                ..Default::default()
            }),
        ..Default::default()
    }
}

fn stats_of(m: &Manager, c: &ContainerRecord) -> cri::ContainerStats {
    let now = crate::now_ns();
    let s = m.container_stats(c).ok().flatten();
    let attrs = cri::ContainerAttributes {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
    };
    let snap = std::path::Path::new(&m.config().root)
        .join("snapshots")
        .join(&c.id)
        .join("upper");
    let (wb, wi) = crate::images::du(&snap);
    cri::ContainerStats {
        attributes: Some(attrs),
        cpu: s.map(|(cpu, _, _)| cri::CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: Some(cri::UInt64Value { value: cpu }),
            usage_nano_cores: None,
        }),
        memory: s.map(|(_, ws, usage)| cri::MemoryUsage {
            timestamp: now,
            working_set_bytes: Some(cri::UInt64Value { value: ws }),
            usage_bytes: Some(cri::UInt64Value { value: usage }),
            ..Default::default()
        }),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: now,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: snap.display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value { value: wb }),
            inodes_used: Some(cri::UInt64Value { value: wi }),
        }),
        ..Default::default()
    }
}

fn pod_stats(m: &Manager, s: &SandboxRecord) -> Result<cri::PodSandboxStats> {
    let cs: Vec<cri::ContainerStats> = m
        .containers()?
        .iter()
        .filter(|c| c.sandbox_id == s.id)
        .map(|c| stats_of(m, c))
        .collect();
    let now = crate::now_ns();
    let cpu: u64 = cs
        .iter()
        .filter_map(|c| {
            c.cpu
                .as_ref()?
                .usage_core_nano_seconds
                .as_ref()
                .map(|v| v.value)
        })
        .sum();
    let ws: u64 = cs
        .iter()
        .filter_map(|c| {
            c.memory
                .as_ref()?
                .working_set_bytes
                .as_ref()
                .map(|v| v.value)
        })
        .sum();
    Ok(cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: s.id.clone(),
            metadata: s.config.metadata.clone(),
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cri::CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: Some(cri::UInt64Value { value: cpu }),
                usage_nano_cores: None,
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: now,
                working_set_bytes: Some(cri::UInt64Value { value: ws }),
                ..Default::default()
            }),
            containers: cs,
            ..Default::default()
        }),
        windows: None,
    })
}

fn unimplemented<T>(what: &'static str) -> Result<Response<T>, Status> {
    Err(Status::from(Error::Unimplemented(what)))
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(
        &self,
        _: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "berthd".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_VERSION.into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("invalid config: missing"))?;
        let id = blocking(&self.m, move |m| m.run_pod(config, &r.runtime_handler)).await?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        blocking(&self.m, move |m| m.stop_pod(&id)).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        blocking(&self.m, move |m| m.remove_pod(&id)).await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let r = r.into_inner();
        let s = blocking(&self.m, move |m| m.sandbox(&r.pod_sandbox_id)).await?;
        let nso = crate::spec::pod_ns(&s.config);
        let network = s.ips.first().map(|ip| cri::PodSandboxNetworkStatus {
            ip: ip.clone(),
            additional_ips: s.ips[1..]
                .iter()
                .map(|i| cri::PodIp { ip: i.clone() })
                .collect(),
        });
        let status = cri::PodSandboxStatus {
            id: s.id.clone(),
            metadata: s.config.metadata.clone(),
            state: pod_state(s.state),
            created_at: s.created_at,
            network,
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace { options: Some(nso) }),
            }),
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
            runtime_handler: s.runtime_handler.clone(),
        };
        let mut info = HashMap::new();
        if r.verbose {
            let v = serde_json::json!({"netns": s.netns, "ipcns": s.ipcns, "utsns": s.utsns, "cgroupParent": s.cgroup_parent, "config": s.config});
            info.insert("info".to_owned(), v.to_string());
        }
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(status),
            info,
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        let all = blocking(&self.m, |m| m.sandboxes()).await?;
        let items = all
            .iter()
            .filter(|s| f.id.is_empty() || s.id.starts_with(&f.id))
            .filter(|s| {
                f.state
                    .as_ref()
                    .is_none_or(|st| st.state == pod_state(s.state))
            })
            .filter(|s| labels_match(&s.config.labels, &f.label_selector))
            .map(pod_of)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("invalid config: missing"))?;
        let id = blocking(&self.m, move |m| {
            m.create_container(&r.pod_sandbox_id, config, r.sandbox_config)
        })
        .await?;
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let id = r.into_inner().container_id;
        blocking(&self.m, move |m| m.start_container(&id)).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let r = r.into_inner();
        blocking(&self.m, move |m| {
            match m.stop_container(&r.container_id, r.timeout) {
                Err(Error::NotFound { .. }) => Ok(()),
                other => other,
            }
        })
        .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let id = r.into_inner().container_id;
        blocking(&self.m, move |m| m.remove_container(&id)).await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        let all = blocking(&self.m, |m| m.containers()).await?;
        let containers = all
            .iter()
            .filter(|c| f.id.is_empty() || c.id.starts_with(&f.id))
            .filter(|c| f.pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(&f.pod_sandbox_id))
            .filter(|c| {
                f.state
                    .as_ref()
                    .is_none_or(|st| st.state == ctr_state(c.state))
            })
            .filter(|c| labels_match(&c.config.labels, &f.label_selector))
            .map(ctr_of)
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let r = r.into_inner();
        let c = blocking(&self.m, move |m| m.container(&r.container_id)).await?;
        let mut info = HashMap::new();
        if r.verbose {
            let v = serde_json::json!({"pid": c.pid, "sandboxID": c.sandbox_id, "bundle": c.bundle, "config": c.config});
            info.insert("info".to_owned(), v.to_string());
        }
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(ctr_status(&c)),
            info,
        }))
    }

    async fn update_container_resources(
        &self,
        r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let r = r.into_inner();
        let res = r
            .linux
            .ok_or_else(|| Status::invalid_argument("invalid linux: missing"))?;
        blocking(&self.m, move |m| m.update_container(&r.container_id, &res)).await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let id = r.into_inner().container_id;
        blocking(&self.m, move |m| m.reopen_log(&id)).await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        r: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let r = r.into_inner();
        let o = blocking(&self.m, move |m| {
            m.exec_sync(&r.container_id, r.cmd, r.timeout)
        })
        .await?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: o.stdout,
            stderr: o.stderr,
            exit_code: o.exit_code,
        }))
    }

    async fn exec(
        &self,
        _: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        unimplemented("streaming Exec")
    }

    async fn attach(
        &self,
        _: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        unimplemented("Attach")
    }

    async fn port_forward(
        &self,
        _: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        unimplemented("PortForward")
    }

    async fn container_stats(
        &self,
        r: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let id = r.into_inner().container_id;
        let s = blocking(&self.m, move |m| {
            let c = m.container(&id)?;
            Ok(stats_of(m, &c))
        })
        .await?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(s),
        }))
    }

    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        let stats = blocking(&self.m, move |m| {
            Ok(m.containers()?
                .iter()
                .filter(|c| f.id.is_empty() || c.id.starts_with(&f.id))
                .filter(|c| {
                    f.pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(&f.pod_sandbox_id)
                })
                .filter(|c| labels_match(&c.config.labels, &f.label_selector))
                .map(|c| stats_of(m, c))
                .collect())
        })
        .await?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        let s = blocking(&self.m, move |m| {
            let s = m.sandbox(&id)?;
            pod_stats(m, &s)
        })
        .await?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(s),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        let stats = blocking(&self.m, move |m| {
            m.sandboxes()?
                .iter()
                .filter(|s| f.id.is_empty() || s.id.starts_with(&f.id))
                .filter(|s| labels_match(&s.config.labels, &f.label_selector))
                .map(|s| pod_stats(m, s))
                .collect()
        })
        .await?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        _: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        // The pod CIDR is the CNI config's business here (as containerd without a template).
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(
        &self,
        r: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let verbose = r.into_inner().verbose;
        let net = blocking(&self.m, |m| Ok(m.network_ready())).await?;
        let runtime = cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            ..Default::default()
        };
        let network = match net {
            Ok(()) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                ..Default::default()
            },
            Err(e) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: e,
            },
        };
        let mut info = HashMap::new();
        if verbose {
            let c = self.m.config();
            info.insert(
                "config".to_owned(),
                serde_json::json!({"root": c.root, "state": c.state, "shim": c.shim, "cniConfDir": c.cni_conf_dir, "cniBinDirs": c.cni_bin_dirs}).to_string(),
            );
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime, network],
            }),
            info,
            ..Default::default()
        }))
    }

    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        unimplemented("CheckpointContainer")
    }

    type GetContainerEventsStream =
        tokio_stream::wrappers::ReceiverStream<Result<cri::ContainerEventResponse, Status>>;

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        unimplemented("GetContainerEvents")
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        unimplemented("ListMetricDescriptors")
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        unimplemented("ListPodSandboxMetrics")
    }

    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        r: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let f = r
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .unwrap_or_default();
        let images = blocking(&self.m, move |m| {
            let mut seen = std::collections::BTreeMap::new();
            let want = if f.is_empty() {
                None
            } else {
                Some(m.find_image(&f).map(|i| i.id).unwrap_or_default())
            };
            for r in m.images()? {
                if want.as_ref().is_some_and(|w| *w != r.id) {
                    continue;
                }
                seen.entry(r.id.clone()).or_insert_with(|| m.image_of(&r));
            }
            Ok(seen.into_values().collect())
        })
        .await?;
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let r = r.into_inner();
        let spec = r.image.map(|i| i.image).unwrap_or_default();
        let img = blocking(&self.m, move |m| match m.find_image(&spec) {
            Ok(i) => Ok(Some(m.image_of(&i))),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
        Ok(Response::new(cri::ImageStatusResponse {
            image: img,
            info: HashMap::new(),
        }))
    }

    async fn pull_image(
        &self,
        r: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let r = r.into_inner();
        let image = r.image.map(|i| i.image).unwrap_or_default();
        let auth = r.auth;
        let id = blocking(&self.m, move |m| m.pull(&image, auth.as_ref())).await?;
        Ok(Response::new(cri::PullImageResponse { image_ref: id }))
    }

    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let spec = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        blocking(&self.m, move |m| m.remove_image(&spec)).await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let root = self.m.config().root.clone();
        let (bytes, inodes) = blocking(&self.m, |m| m.image_fs_usage()).await?;
        let fs = cri::FilesystemUsage {
            timestamp: crate::now_ns(),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: root.display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![fs.clone()],
            container_filesystems: vec![fs],
        }))
    }
}

/// Serves CRI on a unix socket (created mode 0600; a stale socket is replaced) until the
/// process is told to stop (SIGTERM or SIGINT); removes the socket then.
pub async fn serve(manager: Arc<Manager>, socket: &Path) -> Result<()> {
    if let Some(dir) = socket.parent() {
        crate::mkdir(dir, 0o711)?;
    }
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => {
            return Err(Error::FailedPrecondition(format!(
                "{}: another manager is listening there",
                socket.display()
            )));
        }
        Err(_) => {
            let _ = std::fs::remove_file(socket);
        }
    }
    let listener =
        tokio::net::UnixListener::bind(socket).map_err(|e| Error::io("bind", socket, e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod", socket, e))?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let svc = Cri { m: manager };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut rx2 = rx.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
        let _ = tx.send(true);
    });
    let mut rx1 = rx;
    let shutdown = async move {
        let _ = rx1.wait_for(|v| *v).await;
    };
    let server = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(svc.clone()).max_decoding_message_size(16 << 20))
        .add_service(ImageServiceServer::new(svc).max_decoding_message_size(16 << 20))
        .serve_with_incoming_shutdown(incoming, shutdown);
    // Graceful: requests in flight get 3 s after the signal; clients that keep their
    // connection open do not hold the manager.
    let r = tokio::select! {
        r = server => r.map_err(|e| Error::FailedPrecondition(format!("serve {}: {e}", socket.display()))),
        _ = async { let _ = rx2.wait_for(|v| *v).await; tokio::time::sleep(std::time::Duration::from_secs(3)).await } => Ok(()),
    };
    let _ = std::fs::remove_file(socket);
    r
}
