//! Containers: a bundle and a writable layer each, run by their pod's shim.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

use crate::db::{ContainerRecord, ContainerState, SandboxState};
use crate::error::{Error, Result};
use crate::shim::{self, Exit, Shim, TaskStatus};
use crate::spec::{self, Context};
use crate::{Manager, locked, mkdir, new_id, now_ns};

/// The output ExecSync keeps of each stream (as the kubelet: 16 MiB).
const EXEC_OUTPUT_MAX: usize = 16 << 20;

/// What ExecSync returns.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// The exit code.
    pub exit_code: i32,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
}

/// The exit status as CRI's exit code (128 + signal for a signal).
fn code(status: u32) -> i32 {
    status as i32
}

impl Manager {
    /// The container of an id or unique id prefix.
    pub fn container(&self, id: &str) -> Result<ContainerRecord> {
        if id.is_empty() {
            return Err(Error::invalid("container_id", "empty"));
        }
        if let Some(c) = self.db.container(id)? {
            return Ok(c);
        }
        let mut found: Vec<ContainerRecord> = self
            .db
            .containers()?
            .into_iter()
            .filter(|c| c.id.starts_with(id))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(Error::not_found("container", id)),
            _ => Err(Error::invalid(
                "container_id",
                format!("{id:?} is ambiguous"),
            )),
        }
    }

    /// Every container.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        self.db.containers()
    }

    fn shim_of(&self, c: &ContainerRecord) -> Result<Shim> {
        self.shims.of_bundle(&c.sandbox_id, Path::new(&c.bundle))
    }

    /// CreateContainer.
    pub fn create_container(
        &self,
        pod_id: &str,
        config: cri::ContainerConfig,
        _pod_config: Option<cri::PodSandboxConfig>,
    ) -> Result<String> {
        let sb = self.sandbox(pod_id)?;
        if sb.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "sandbox {} is not ready",
                sb.id
            )));
        }
        let md = config
            .metadata
            .as_ref()
            .ok_or_else(|| Error::invalid("config.metadata", "missing"))?;
        if md.name.is_empty() {
            return Err(Error::invalid("config.metadata.name", "empty"));
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(Error::invalid("config.image.image", "empty"));
        }
        let name = format!("{}_{}_{}", md.name, sb.name, md.attempt);
        let img = self.find_image(&image_name)?;
        let (image, resolved) = self.content.resolve(
            &berth_image::Digest::parse(&img.top, "image")?,
            &berth_image::Platform::host(),
        )?;
        let lowers = self.layers.prepare(&image, &resolved)?;
        let files = root_files(&lowers);
        let log_path = match (sb.config.log_directory.as_str(), config.log_path.as_str()) {
            (_, "") | ("", _) => String::new(),
            (d, p) => Path::new(d).join(p).display().to_string(),
        };
        if !log_path.is_empty()
            && let Some(parent) = Path::new(&log_path).parent()
        {
            mkdir(parent, 0o755)?;
        }
        let id = new_id()?;
        let _name = self.names.hold("container", &name, &id, || {
            let all = self.db.containers()?;
            Ok(all.into_iter().find(|c| c.name == name).map(|c| c.id))
        })?;
        let bundle = self.bundle_of(&id);
        let snap = self.snapshot_of(&id);
        let r = (|| -> Result<ContainerRecord> {
            let cx = Context {
                id: &id,
                sandbox: &sb,
                pod_dir: &self.pod_dir(&sb.id),
                image_name: &image_name,
                min_oom_score_adj: self.min_oom_score_adj,
            };
            let spec = spec::container_spec(&cx, &config, &resolved.config, &files)?;
            mkdir(&bundle.join("rootfs"), 0o711)?;
            mkdir(&snap.join("upper"), 0o755)?;
            mkdir(&snap.join("work"), 0o700)?;
            let text = serde_json::to_vec_pretty(&spec)
                .map_err(|e| Error::shim("encode config.json", e))?;
            let cfg = bundle.join("config.json");
            std::fs::write(&cfg, text).map_err(|e| Error::io("write", &cfg, e))?;
            let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
            let opts = vec![
                format!("lowerdir={}", lower.join(":")),
                format!("upperdir={}", snap.join("upper").display()),
                format!("workdir={}", snap.join("work").display()),
            ];
            let out = if log_path.is_empty() {
                String::new()
            } else {
                format!("crilog://{log_path}")
            };
            // One shim per pod. The shim's start hands a second start the running shim's
            // address (its socket is taken); the lock spares racing creates those execs.
            let shim = locked(&self.locks, &format!("shim/{}", sb.id), || {
                self.shims.for_container(&sb.id, &id, &bundle)
            })?;
            let pid = shim.create(&shim::CreateRequest {
                id: id.clone(),
                bundle: bundle.clone(),
                rootfs: vec![("overlay".into(), "overlay".into(), opts)],
                stdout: out.clone(),
                stderr: out,
            })?;
            Ok(ContainerRecord {
                id: id.clone(),
                sandbox_id: sb.id.clone(),
                name,
                config,
                image_ref: image_name.clone(),
                image_id: img.id.clone(),
                state: ContainerState::Created,
                pid,
                created_at: now_ns(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                log_path,
                bundle: bundle.display().to_string(),
            })
        })();
        let rec = match r {
            Ok(rec) => rec,
            Err(e) => {
                self.discard_container(&id, Some(&sb.id));
                return Err(e);
            }
        };
        if let Err(e) = self.db.put_container(&rec) {
            self.discard_container(&id, Some(&sb.id));
            return Err(e);
        }
        Ok(id)
    }

    /// StartContainer.
    pub fn start_container(&self, id: &str) -> Result<()> {
        let c = self.container(id)?;
        locked(&self.locks, &c.id, || {
            let mut c = self.container(&c.id)?;
            if c.state != ContainerState::Created {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is not in the created state",
                    c.id
                )));
            }
            let shim = self.shim_of(&c)?;
            match shim.start(&c.id, "") {
                Ok(pid) => {
                    c.pid = pid;
                    c.started_at = now_ns();
                    // The exit may have been recorded already by the event.
                    if let Some(now) = self.db.container(&c.id)? {
                        if now.state == ContainerState::Exited {
                            c.state = ContainerState::Exited;
                            c.finished_at = now.finished_at;
                            c.exit_code = now.exit_code;
                            c.reason = now.reason;
                        } else {
                            c.state = ContainerState::Running;
                        }
                    }
                    self.db.put_container(&c)
                }
                Err(e) => {
                    c.state = ContainerState::Exited;
                    c.finished_at = now_ns();
                    c.exit_code = 128;
                    c.reason = "StartError".into();
                    c.message = e.to_string();
                    self.db.put_container(&c)?;
                    Err(e)
                }
            }
        })
    }

    /// Records an exit the shim reported (an event, a wait, or a restart's reconciliation).
    pub(crate) fn record_exit(&self, id: &str, exit: Exit) -> Result<()> {
        locked(&self.locks, id, || self.record_exit_locked(id, exit))
    }

    fn record_exit_locked(&self, id: &str, exit: Exit) -> Result<()> {
        let Some(mut c) = self.db.container(id)? else {
            return Ok(());
        };
        if c.state == ContainerState::Exited {
            return Ok(());
        }
        let oom = self
            .oom
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        c.state = ContainerState::Exited;
        c.exit_code = code(exit.status);
        c.finished_at = if exit.at > 0 { exit.at } else { now_ns() };
        if c.started_at == 0 {
            c.started_at = c.finished_at;
        }
        c.reason = if oom {
            "OOMKilled".into()
        } else if exit.status == 0 {
            "Completed".into()
        } else {
            "Error".into()
        };
        self.db.put_container(&c)
    }

    /// Notes an OOM kill reported by a shim (the exit follows).
    pub(crate) fn record_oom(&self, id: &str) {
        self.oom
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned());
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout` seconds. Idempotent.
    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let c = self.container(id)?;
        if !matches!(c.state, ContainerState::Running | ContainerState::Created) {
            return Ok(());
        }
        let shim = self.shim_of(&c)?;
        let signal = stop_signal(&c);
        let exited = if timeout > 0 && c.state == ContainerState::Running {
            match shim.kill(&c.id, "", signal, false) {
                Ok(()) => shim
                    .wait(&c.id, "", Duration::from_secs(timeout as u64))
                    .ok(),
                Err(e) if shim::is_not_found(&e) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let exit = match exited {
            Some(e) => e,
            None => {
                match shim.kill(&c.id, "", libc::SIGKILL as u32, true) {
                    Ok(()) => {}
                    Err(e) if shim::is_not_found(&e) => {}
                    // Already stopped: the shim refuses to signal it.
                    Err(e)
                        if e.to_string().contains("FAILED_PRECONDITION")
                            || e.to_string().contains("not running") => {}
                    Err(e) => return Err(e),
                }
                shim.wait(&c.id, "", Duration::from_secs(30))?
            }
        };
        self.record_exit(&c.id, exit)
    }

    /// RemoveContainer: killed if running, its task deleted, bundle and writable layer
    /// removed. Idempotent.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let c = match self.container(id) {
            Ok(c) => c,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if matches!(c.state, ContainerState::Running | ContainerState::Created) {
            self.stop_container(&c.id, 0)?;
        }
        locked(&self.locks, &c.id, || {
            self.discard_container(&c.id, Some(&c.sandbox_id));
            self.db.remove_container(&c.id)?;
            let left = self
                .db
                .containers()?
                .iter()
                .any(|o| o.sandbox_id == c.sandbox_id);
            if !left && let Some(s) = self.shims.forget(&c.sandbox_id) {
                s.shutdown();
            }
            Ok(())
        })
    }

    /// Removes a container's task, bundle and writable layer, whatever state they are in.
    pub(crate) fn discard_container(&self, id: &str, pod: Option<&str>) {
        let bundle = self.bundle_of(id);
        let deleted = pod
            .and_then(|p| self.shims.of_bundle(p, &bundle).ok())
            .or_else(|| {
                std::fs::read_to_string(bundle.join("address"))
                    .ok()
                    .and_then(|a| Shim::connect(a.trim()).ok())
            })
            .map(|s| {
                let _ = s.kill(id, "", libc::SIGKILL as u32, true);
                let _ = s.wait(id, "", Duration::from_secs(10));
                match s.delete(id, "") {
                    Ok(_) => true,
                    Err(e) => shim::is_not_found(&e),
                }
            })
            .unwrap_or(false);
        if !deleted && bundle.exists() {
            self.shims.cleanup(id, &bundle);
        }
        let rootfs = bundle.join("rootfs");
        let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&bundle);
        let _ = std::fs::remove_dir_all(self.snapshot_of(id));
    }

    /// A restarted manager's view of a container: its shim's, or how it ended.
    pub(crate) fn reconcile_container(&self, c: &ContainerRecord) -> Result<()> {
        if !matches!(c.state, ContainerState::Running | ContainerState::Created) {
            return Ok(());
        }
        let bundle = PathBuf::from(&c.bundle);
        match self.shim_of(c).and_then(|s| s.state(&c.id, "")) {
            Ok(st) => match st.status {
                TaskStatus::Stopped => self.record_exit(
                    &c.id,
                    Exit {
                        status: st.exit_status,
                        at: st.exited_at,
                    },
                ),
                TaskStatus::Running | TaskStatus::Paused if c.state == ContainerState::Created => {
                    let mut c = c.clone();
                    c.state = ContainerState::Running;
                    c.pid = st.pid;
                    if c.started_at == 0 {
                        c.started_at = now_ns();
                    }
                    self.db.put_container(&c)
                }
                _ => Ok(()),
            },
            Err(_) => {
                // The shim is gone: its delete action kills what is left and tells the exit
                // it saved when it reaped the init (a berth shim), else 128 + SIGKILL.
                self.shims.forget(&c.sandbox_id);
                match self.shims.cleanup(&c.id, &bundle) {
                    Some(e) => self.record_exit(&c.id, e),
                    None => {
                        let mut c = c.clone();
                        c.state = ContainerState::Exited;
                        c.exit_code = 255;
                        c.reason = "Unknown".into();
                        c.message = "the container's shim is gone".into();
                        c.finished_at = now_ns();
                        self.db.put_container(&c)
                    }
                }
            }
        }
        .map(|_| ())
    }

    /// ExecSync: runs a command in the container and returns its output.
    pub fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: i64) -> Result<ExecOutput> {
        if cmd.is_empty() {
            return Err(Error::invalid("cmd", "empty"));
        }
        let c = self.container(id)?;
        if c.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        let shim = self.shim_of(&c)?;
        let spec_path = Path::new(&c.bundle).join("config.json");
        let text = std::fs::read(&spec_path).map_err(|e| Error::io("read", &spec_path, e))?;
        let spec: oci_spec::runtime::Spec =
            serde_json::from_slice(&text).map_err(|e| Error::shim("read config.json", e))?;
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(cmd));
        p.set_terminal(Some(false));
        let exec_id = new_id()?[..16].to_owned();
        let dir = self.cfg.state.join("exec");
        let out = dir.join(format!("{exec_id}.out"));
        let err = dir.join(format!("{exec_id}.err"));
        let _fifos = Fifos(vec![out.clone(), err.clone()]);
        for f in [&out, &err] {
            nix::unistd::mkfifo(f.as_path(), nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| Error::io("mkfifo", f, e.into()))?;
        }
        // Our read ends first (non-blocking open), so the shim's open for writing succeeds.
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(p)
                .map_err(|e| Error::io("open", p, e))
        };
        let (ro, re) = (open(&out)?, open(&err)?);
        shim.exec(
            &c.id,
            &exec_id,
            &p,
            &out.display().to_string(),
            &err.display().to_string(),
        )?;
        let readers = [ro, re].map(|f| {
            std::thread::spawn(move || {
                // Blocking reads from here on.
                use std::os::fd::AsRawFd;
                let fd = f.as_raw_fd();
                // SAFETY: F_SETFL on a descriptor we own.
                unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
                let mut buf = Vec::new();
                let _ = (&f).take(EXEC_OUTPUT_MAX as u64).read_to_end(&mut buf);
                buf
            })
        });
        let started = shim.start(&c.id, &exec_id);
        if let Err(e) = started {
            let _ = shim.delete(&c.id, &exec_id);
            return Err(e);
        }
        let deadline = if timeout > 0 {
            Duration::from_secs(timeout as u64)
        } else {
            Duration::from_secs(3600 * 24)
        };
        let t0 = Instant::now();
        let exit = match shim.wait(&c.id, &exec_id, deadline) {
            Ok(e) => e,
            Err(_) if t0.elapsed() >= deadline => {
                let _ = shim.kill(&c.id, &exec_id, libc::SIGKILL as u32, false);
                let _ = shim.wait(&c.id, &exec_id, Duration::from_secs(10));
                let _ = shim.delete(&c.id, &exec_id);
                return Err(Error::Timeout(format!(
                    "command timed out after {timeout}s"
                )));
            }
            Err(e) => return Err(e),
        };
        let _ = shim.delete(&c.id, &exec_id);
        let [o, e] = readers.map(|h| h.join().unwrap_or_default());
        Ok(ExecOutput {
            exit_code: code(exit.status),
            stdout: o,
            stderr: e,
        })
    }

    /// UpdateContainerResources.
    pub fn update_container(&self, id: &str, r: &cri::LinuxContainerResources) -> Result<()> {
        let c = self.container(id)?;
        let res = spec::resources(r, false)?;
        locked(&self.locks, &c.id, || {
            if matches!(c.state, ContainerState::Running | ContainerState::Created) {
                self.shim_of(&c)?.update(&c.id, &res)?;
            }
            let mut c = self.container(&c.id)?;
            let lin = c.config.linux.get_or_insert_with(Default::default);
            lin.resources = Some(r.clone());
            self.db.put_container(&c)
        })
    }

    /// ReopenContainerLog.
    pub fn reopen_log(&self, id: &str) -> Result<()> {
        let c = self.container(id)?;
        if c.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        if c.log_path.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "container {} has no log file",
                c.id
            )));
        }
        self.shim_of(&c)?.reopen_log(&c.id)
    }

    /// Cgroup statistics of a running container: (cpu ns, memory working set, memory usage).
    pub fn container_stats(&self, c: &ContainerRecord) -> Result<Option<(u64, u64, u64)>> {
        if c.state != ContainerState::Running {
            return Ok(None);
        }
        let any = self.shim_of(c)?.stats(&c.id)?;
        Ok(Some(decode_metrics(&any)?))
    }
}

/// The (cpu ns, working set, usage) of a shim's metrics Any (cgroup v1 or v2).
fn decode_metrics(
    any: &containerd_shim_protos::protobuf::well_known_types::any::Any,
) -> Result<(u64, u64, u64)> {
    use containerd_shim_protos::protobuf::Message;
    if any.type_url.ends_with("cgroups.v2.Metrics") {
        let m = containerd_shim_protos::cgroups_v2::metrics::Metrics::parse_from_bytes(&any.value)
            .map_err(|e| Error::shim("decode metrics", e))?;
        let cpu = m.cpu.as_ref().map(|c| c.usage_usec * 1000).unwrap_or(0);
        let (usage, inactive) = m
            .memory
            .as_ref()
            .map(|mm| (mm.usage, mm.inactive_file))
            .unwrap_or((0, 0));
        return Ok((cpu, usage.saturating_sub(inactive), usage));
    }
    let m = containerd_shim_protos::cgroups::metrics::Metrics::parse_from_bytes(&any.value)
        .map_err(|e| Error::shim("decode metrics", e))?;
    let cpu = m
        .cpu
        .as_ref()
        .and_then(|c| c.usage.as_ref())
        .map(|u| u.total)
        .unwrap_or(0);
    let (usage, inactive) = m
        .memory
        .as_ref()
        .map(|mm| {
            (
                mm.usage.as_ref().map(|u| u.usage).unwrap_or(0),
                mm.total_inactive_file,
            )
        })
        .unwrap_or((0, 0));
    Ok((cpu, usage.saturating_sub(inactive), usage))
}

/// Removes the exec fifos when dropped.
struct Fifos(Vec<PathBuf>);

impl Drop for Fifos {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The signal that stops a container: its image's StopSignal annotation, else SIGTERM.
fn stop_signal(c: &ContainerRecord) -> u32 {
    let text = std::fs::read(Path::new(&c.bundle).join("config.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    v["annotations"]["org.opencontainers.image.stopSignal"]
        .as_str()
        .and_then(|s| berth_runtime_core::parse_signal(s).ok())
        .map(|s| s as u32)
        .unwrap_or(libc::SIGTERM as u32)
}

/// The image's /etc/passwd and /etc/group: from the topmost layer that has them.
fn root_files(lowers: &[PathBuf]) -> berth_image::RootFiles {
    let mut files = berth_image::RootFiles::default();
    for l in lowers {
        if files.passwd.is_none() {
            files.passwd = std::fs::read(l.join("etc/passwd")).ok();
        }
        if files.group.is_none() {
            files.group = std::fs::read(l.join("etc/group")).ok();
        }
    }
    files
}
