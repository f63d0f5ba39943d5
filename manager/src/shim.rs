//! Shims: started per pod with the shim v2 `start` action, spoken to over ttrpc (task API
//! v2), their events received on the manager's own ttrpc socket.
//!
//! A pod's first container starts its shim (the shim groups a pod's containers by the
//! `io.kubernetes.cri.sandbox-id` annotation of their config); later containers and a
//! restarted manager find the shim from the `address` file the `start` action writes in the
//! bundle. Any shim v2 binary works (berth's, or containerd's runc shim).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use containerd_shim_protos::TaskClient;
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::protobuf::well_known_types::any::Any;

use crate::error::{Error, Result};

/// How long a task call may take (create and start run the runtime; stop waits elsewhere).
const CALL: Duration = Duration::from_secs(30);

/// What the manager knows of a task's process, from the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// The process' pid (0 before create).
    pub pid: u32,
    /// `created`, `running`, `stopped`, `paused`.
    pub status: TaskStatus,
    /// Its exit status once stopped.
    pub exit_status: u32,
    /// Nanoseconds since the epoch of the exit (0 if running).
    pub exited_at: i64,
}

/// A task's status as the shim reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Stopped,
    /// Frozen.
    Paused,
    /// Anything else.
    Unknown,
}

/// The exit of a task's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit status (128 + signal for a signal).
    pub status: u32,
    /// Nanoseconds since the epoch.
    pub at: i64,
}

fn ctx(t: Duration) -> ttrpc::context::Context {
    ttrpc::context::with_timeout(t.as_nanos() as i64)
}

fn ts_nanos(
    t: &MessageField<containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp>,
) -> i64 {
    t.as_ref()
        .map(|t| {
            t.seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.nanos))
        })
        .unwrap_or(0)
}

/// Is this ttrpc error a NotFound status?
pub fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Shim { reason, .. } if reason.contains("NOT_FOUND") || reason.contains("not found"))
}

/// A JSON value in a protobuf Any, as containerd sends OCI types.
fn json_any(type_url: &str, v: &impl serde::Serialize) -> Result<Any> {
    let mut a = Any::new();
    a.type_url = type_url.to_owned();
    a.value = serde_json::to_vec(v).map_err(|e| Error::shim("encode", e))?;
    Ok(a)
}

/// A connection to one pod's shim.
#[derive(Clone)]
pub struct Shim {
    client: TaskClient,
    /// `unix:///run/containerd/s/<hash>`.
    pub address: String,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim")
            .field("address", &self.address)
            .finish()
    }
}

fn call<T>(what: &str, id: &str, r: ttrpc::Result<T>) -> Result<T> {
    r.map_err(|e| Error::shim(format!("{what} {id}"), e))
}

/// The shim's create request, the parts the manager sets.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Container id.
    pub id: String,
    /// Bundle directory (config.json inside).
    pub bundle: PathBuf,
    /// Root file system mounts: (type, source, options).
    pub rootfs: Vec<(String, String, Vec<String>)>,
    /// stdio targets as the shim understands them.
    pub stdout: String,
    /// See `stdout`.
    pub stderr: String,
}

impl Shim {
    /// Connects to a shim's socket address (`unix://path`).
    pub fn connect(address: &str) -> Result<Shim> {
        let client = ttrpc::Client::connect(address)
            .map_err(|e| Error::shim(format!("connect {address}"), e))?;
        Ok(Shim {
            client: TaskClient::new(client),
            address: address.to_owned(),
        })
    }

    /// Creates the task of a container.
    pub fn create(&self, r: &CreateRequest) -> Result<u32> {
        let mut req = api::CreateTaskRequest::new();
        req.id = r.id.clone();
        req.bundle = r.bundle.display().to_string();
        req.stdout = r.stdout.clone();
        req.stderr = r.stderr.clone();
        req.rootfs = r
            .rootfs
            .iter()
            .map(|(t, s, o)| {
                let mut m = containerd_shim_protos::types::mount::Mount::new();
                m.type_ = t.clone();
                m.source = s.clone();
                m.options = o.clone();
                m
            })
            .collect();
        Ok(call("create", &r.id, self.client.create(ctx(CALL), &req))?.pid)
    }

    /// Starts a task (`exec_id` empty: its init).
    pub fn start(&self, id: &str, exec_id: &str) -> Result<u32> {
        let mut req = api::StartRequest::new();
        req.id = id.to_owned();
        req.exec_id = exec_id.to_owned();
        Ok(call("start", id, self.client.start(ctx(CALL), &req))?.pid)
    }

    /// Signals a task's process (`all`: every process of the container).
    pub fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let mut req = api::KillRequest::new();
        req.id = id.to_owned();
        req.exec_id = exec_id.to_owned();
        req.signal = signal;
        req.all = all;
        call("kill", id, self.client.kill(ctx(CALL), &req)).map(drop)
    }

    /// Waits up to `timeout` for a process to exit.
    pub fn wait(&self, id: &str, exec_id: &str, timeout: Duration) -> Result<Exit> {
        let mut req = api::WaitRequest::new();
        req.id = id.to_owned();
        req.exec_id = exec_id.to_owned();
        let r = call("wait", id, self.client.wait(ctx(timeout), &req))?;
        Ok(Exit {
            status: r.exit_status,
            at: ts_nanos(&r.exited_at),
        })
    }

    /// A process' state.
    pub fn state(&self, id: &str, exec_id: &str) -> Result<TaskState> {
        let mut req = api::StateRequest::new();
        req.id = id.to_owned();
        req.exec_id = exec_id.to_owned();
        let r = call("state", id, self.client.state(ctx(CALL), &req))?;
        use containerd_shim_protos::types::task::Status as S;
        let status = match r.status.enum_value() {
            Ok(S::CREATED) => TaskStatus::Created,
            Ok(S::RUNNING) => TaskStatus::Running,
            Ok(S::STOPPED) => TaskStatus::Stopped,
            Ok(S::PAUSED) | Ok(S::PAUSING) => TaskStatus::Paused,
            _ => TaskStatus::Unknown,
        };
        Ok(TaskState {
            pid: r.pid,
            status,
            exit_status: r.exit_status,
            exited_at: ts_nanos(&r.exited_at),
        })
    }

    /// Deletes a task (its init, or an exec), returning how it ended.
    pub fn delete(&self, id: &str, exec_id: &str) -> Result<Exit> {
        let mut req = api::DeleteRequest::new();
        req.id = id.to_owned();
        req.exec_id = exec_id.to_owned();
        let r = call("delete", id, self.client.delete(ctx(CALL), &req))?;
        Ok(Exit {
            status: r.exit_status,
            at: ts_nanos(&r.exited_at),
        })
    }

    /// Adds an exec process to a container.
    pub fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdout: &str,
        stderr: &str,
    ) -> Result<()> {
        let mut req = api::ExecProcessRequest::new();
        req.id = id.to_owned();
        req.exec_id = exec_id.to_owned();
        req.stdout = stdout.to_owned();
        req.stderr = stderr.to_owned();
        req.spec = MessageField::some(json_any(
            "types.containerd.io/opencontainers/runtime-spec/1/Process",
            process,
        )?);
        call("exec", id, self.client.exec(ctx(CALL), &req)).map(drop)
    }

    /// Updates a container's resources.
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let mut req = api::UpdateTaskRequest::new();
        req.id = id.to_owned();
        req.resources = MessageField::some(json_any(
            "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
            resources,
        )?);
        call("update", id, self.client.update(ctx(CALL), &req)).map(drop)
    }

    /// Asks the shim to reopen a container's CRI log file (berth's extension of Update).
    pub fn reopen_log(&self, id: &str) -> Result<()> {
        let mut req = api::UpdateTaskRequest::new();
        req.id = id.to_owned();
        req.annotations
            .insert("io.berth.reopen-log".to_owned(), "1".to_owned());
        call("reopen log", id, self.client.update(ctx(CALL), &req)).map(drop)
    }

    /// A container's cgroup statistics, as the shim encodes them (v1 or v2 metrics).
    pub fn stats(&self, id: &str) -> Result<Any> {
        let mut req = api::StatsRequest::new();
        req.id = id.to_owned();
        let r = call("stats", id, self.client.stats(ctx(CALL), &req))?;
        r.stats
            .into_option()
            .ok_or_else(|| Error::shim(format!("stats {id}"), "no metrics"))
    }

    /// Asks the shim to exit if it has no task left.
    pub fn shutdown(&self) {
        let req = api::ShutdownRequest::new();
        let _ = self.client.shutdown(ctx(Duration::from_secs(2)), &req);
    }
}

/// Starts and finds shims.
#[derive(Debug)]
pub struct Shims {
    binary: PathBuf,
    namespace: String,
    /// The manager's address as the shim hashes it into its socket name.
    address: String,
    /// The manager's events socket (TTRPC_ADDRESS).
    events: String,
    by_pod: Mutex<HashMap<String, Shim>>,
}

impl Shims {
    /// Shims of `binary`, in `namespace`, for a manager at `address` whose event service
    /// listens at `events`.
    pub fn new(binary: PathBuf, namespace: &str, address: &str, events: &str) -> Shims {
        Shims {
            binary,
            namespace: namespace.to_owned(),
            address: address.to_owned(),
            events: events.to_owned(),
            by_pod: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shim>> {
        self.by_pod.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pod's shim, starting one (for container `id`, bundle `bundle`) if none runs.
    pub fn for_container(&self, pod: &str, id: &str, bundle: &Path) -> Result<Shim> {
        if let Some(s) = self.cache().get(pod).cloned() {
            // The start action also links this bundle to the shim (its `address` file).
            std::fs::write(bundle.join("address"), &s.address)
                .map_err(|e| Error::io("write", bundle.join("address"), e))?;
            return Ok(s);
        }
        let mut child = Command::new(&self.binary)
            .args([
                "-namespace",
                &self.namespace,
                "-id",
                id,
                "-address",
                &self.address,
                "-publish-binary",
                "/bin/false",
                "start",
            ])
            .current_dir(bundle)
            .env("TTRPC_ADDRESS", &self.events)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("spawn shim", &self.binary, e))?;
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = child
            .wait()
            .map_err(|e| Error::io("wait for shim start", &self.binary, e))?;
        if !status.success() {
            return Err(Error::shim(
                format!("start for {id}"),
                format!("{status}: {}", err.trim()),
            ));
        }
        let address = out.trim().to_owned();
        let shim = Shim::connect(&address)?;
        self.cache().insert(pod.to_owned(), shim.clone());
        Ok(shim)
    }

    /// The shim serving a container's bundle (from its `address` file), if it answers.
    pub fn of_bundle(&self, pod: &str, bundle: &Path) -> Result<Shim> {
        if let Some(s) = self.cache().get(pod).cloned() {
            return Ok(s);
        }
        let p = bundle.join("address");
        let address = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
        let shim = Shim::connect(address.trim())?;
        self.cache().insert(pod.to_owned(), shim.clone());
        Ok(shim)
    }

    /// Forgets a pod's shim (after its last container went, or it died).
    pub fn forget(&self, pod: &str) -> Option<Shim> {
        self.cache().remove(pod)
    }

    /// Runs the shim's `delete` action for a container whose shim is gone: it kills what
    /// is left, unmounts the rootfs and prints how the container ended.
    pub fn cleanup(&self, id: &str, bundle: &Path) -> Option<Exit> {
        use containerd_shim_protos::protobuf::Message;
        let out = Command::new(&self.binary)
            .args([
                "-namespace",
                &self.namespace,
                "-id",
                id,
                "-address",
                &self.address,
                "-bundle",
                &bundle.display().to_string(),
                "delete",
            ])
            .current_dir(if bundle.is_dir() {
                bundle
            } else {
                Path::new("/")
            })
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let r = api::DeleteResponse::parse_from_bytes(&out.stdout).ok()?;
        Some(Exit {
            status: r.exit_status,
            at: ts_nanos(&r.exited_at),
        })
    }
}
