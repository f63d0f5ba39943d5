//! Pod sandboxes: namespaces pinned without a process, the pod network, the pod's files.

use std::path::Path;

use berth_namespaces::NamespaceKind;
use k8s_cri::v1 as cri;

use crate::db::{ContainerState, SandboxRecord, SandboxState};
use crate::error::{Error, Result};
use crate::spec::{NS_NODE, pod_ns};
use crate::{Manager, locked, mkdir, new_id, now_ns};

/// The interface CRI asks CNI for.
const IFNAME: &str = "eth0";

fn write(p: &Path, text: &str) -> Result<()> {
    std::fs::write(p, text).map_err(|e| Error::io("write", p, e))
}

/// Removes undo actions as a sandbox's creation goes; runs the rest on failure.
struct Undo<'a> {
    m: &'a Manager,
    id: String,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.m.discard_pod_dir(&self.id);
        }
    }
}

impl Manager {
    /// RunPodSandbox.
    pub fn run_pod(&self, config: cri::PodSandboxConfig, handler: &str) -> Result<String> {
        if !handler.is_empty() && handler != "berth" && handler != "runc" {
            return Err(Error::invalid(
                "runtime_handler",
                format!("unknown runtime handler {handler:?} (berthd has \"berth\")"),
            ));
        }
        let md = config
            .metadata
            .as_ref()
            .ok_or_else(|| Error::invalid("config.metadata", "missing"))?;
        for (f, v) in [
            ("config.metadata.name", &md.name),
            ("config.metadata.namespace", &md.namespace),
            ("config.metadata.uid", &md.uid),
        ] {
            if v.is_empty() {
                return Err(Error::invalid(f, "empty"));
            }
        }
        let name = format!("{}_{}_{}_{}", md.name, md.namespace, md.uid, md.attempt);
        let nso = pod_ns(&config);
        let cgroup_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| self.cfg.cgroup_parent.clone());
        if !cgroup_parent.starts_with('/') || cgroup_parent.contains("..") {
            return Err(Error::invalid(
                "config.linux.cgroup_parent",
                format!("{cgroup_parent:?} is not an absolute cgroupfs path"),
            ));
        }
        let id = new_id()?;
        let _name = self.names.hold("sandbox", &name, &id, || {
            let all = self.db.sandboxes()?;
            Ok(all.into_iter().find(|s| s.name == name).map(|s| s.id))
        })?;
        let dir = self.pod_dir(&id);
        mkdir(&dir, 0o711)?;
        let mut undo = Undo {
            m: self,
            id: id.clone(),
            armed: true,
        };
        let host_net = nso.network == NS_NODE;
        let hostname = if config.hostname.is_empty() {
            md.name.clone()
        } else {
            config.hostname.clone()
        };
        // The pod's /etc files.
        let hn = if host_net {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        } else {
            hostname.clone()
        };
        write(&dir.join("hostname"), &format!("{hn}\n"))?;
        write(
            &dir.join("hosts"),
            &format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}",
                if host_net {
                    String::new()
                } else {
                    format!("127.0.1.1\t{hn}\n")
                }
            ),
        )?;
        let resolv = match &config.dns_config {
            Some(d) if !d.servers.is_empty() || !d.searches.is_empty() || !d.options.is_empty() => {
                let mut s = String::new();
                if !d.searches.is_empty() {
                    s += &format!("search {}\n", d.searches.join(" "));
                }
                for n in &d.servers {
                    s += &format!("nameserver {n}\n");
                }
                if !d.options.is_empty() {
                    s += &format!("options {}\n", d.options.join(" "));
                }
                s
            }
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        write(&dir.join("resolv.conf"), &resolv)?;
        // Namespaces.
        let mut kinds = Vec::new();
        if !host_net {
            kinds.push(NamespaceKind::Network);
            kinds.push(NamespaceKind::Uts);
        }
        if nso.ipc != NS_NODE {
            kinds.push(NamespaceKind::Ipc);
        }
        let pinned = berth_namespaces::pin(
            &dir.join("ns"),
            &kinds,
            (!host_net).then_some(hostname.as_str()),
        )?;
        let path_of = |k| pinned.path(k).map(|p: &Path| p.display().to_string());
        let netns = path_of(NamespaceKind::Network);
        let mut ips = Vec::new();
        if let Some(ns) = &netns {
            let args = vec![
                ("IgnoreUnknown".to_owned(), "1".to_owned()),
                ("K8S_POD_NAMESPACE".to_owned(), md.namespace.clone()),
                ("K8S_POD_NAME".to_owned(), md.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".to_owned(), id.clone()),
                ("K8S_POD_UID".to_owned(), md.uid.clone()),
            ];
            let ports: Vec<serde_json::Value> = config
                .port_mappings
                .iter()
                .filter(|p| p.host_port > 0)
                .map(|p| {
                    serde_json::json!({
                        "hostPort": p.host_port, "containerPort": p.container_port,
                        "protocol": match p.protocol { 1 => "udp", 2 => "sctp", _ => "tcp" },
                        "hostIP": p.host_ip,
                    })
                })
                .collect();
            let rc = serde_json::json!({ "portMappings": ports });
            let r = self.cni.setup(&id, Path::new(ns), IFNAME, &args, rc)?;
            ips = r
                .ip_of(IFNAME)
                .into_iter()
                .map(|ip| ip.to_string())
                .collect();
            if ips.is_empty() {
                let _ = self.cni.teardown(&id, Some(Path::new(ns)), IFNAME);
                return Err(Error::FailedPrecondition(format!(
                    "the CNI result has no IP on {IFNAME}"
                )));
            }
        }
        let rec = SandboxRecord {
            id: id.clone(),
            name,
            config,
            runtime_handler: handler.to_owned(),
            state: SandboxState::Ready,
            created_at: now_ns(),
            netns,
            ipcns: path_of(NamespaceKind::Ipc),
            utsns: path_of(NamespaceKind::Uts),
            ips,
            cgroup_parent,
        };
        self.db.put_sandbox(&rec)?;
        undo.armed = false;
        Ok(id)
    }

    /// The sandbox of an id or unique id prefix.
    pub fn sandbox(&self, id: &str) -> Result<SandboxRecord> {
        if id.is_empty() {
            return Err(Error::invalid("pod_sandbox_id", "empty"));
        }
        if let Some(s) = self.db.sandbox(id)? {
            return Ok(s);
        }
        let mut found: Vec<SandboxRecord> = self
            .db
            .sandboxes()?
            .into_iter()
            .filter(|s| s.id.starts_with(id))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(Error::not_found("sandbox", id)),
            _ => Err(Error::invalid(
                "pod_sandbox_id",
                format!("{id:?} is ambiguous"),
            )),
        }
    }

    /// Every sandbox.
    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        self.db.sandboxes()
    }

    /// StopPodSandbox: its containers killed, its network torn down. Idempotent.
    pub fn stop_pod(&self, id: &str) -> Result<()> {
        let sb = match self.sandbox(id) {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        for c in self
            .db
            .containers()?
            .into_iter()
            .filter(|c| c.sandbox_id == sb.id)
        {
            if matches!(c.state, ContainerState::Running | ContainerState::Created) {
                self.stop_container(&c.id, 0)?;
            }
        }
        locked(&self.locks, &sb.id, || {
            let Some(mut sb) = self.db.sandbox(&sb.id)? else {
                return Ok(());
            };
            if sb.state == SandboxState::NotReady {
                return Ok(());
            }
            if let Some(ns) = &sb.netns {
                self.cni.teardown(&sb.id, Some(Path::new(ns)), IFNAME)?;
            }
            sb.state = SandboxState::NotReady;
            self.db.put_sandbox(&sb)
        })
    }

    /// RemovePodSandbox: stops it, removes its containers, its namespaces and files.
    /// Idempotent.
    pub fn remove_pod(&self, id: &str) -> Result<()> {
        let sb = match self.sandbox(id) {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod(&sb.id)?;
        for c in self
            .db
            .containers()?
            .into_iter()
            .filter(|c| c.sandbox_id == sb.id)
        {
            self.remove_container(&c.id)?;
        }
        locked(&self.locks, &sb.id, || {
            if let Some(s) = self.shims.forget(&sb.id) {
                s.shutdown();
            }
            self.discard_pod_dir(&sb.id);
            self.db.remove_sandbox(&sb.id).map(drop)
        })?;
        if sb.cgroup_parent == self.cfg.cgroup_parent {
            // berthd's own parent (made by the runtime with the first container in it) goes
            // with the last one; a parent the pod config named is its owner's. Best effort:
            // the pod is gone, and a busy parent (other pods' containers) is left anyway.
            if let Ok(layout) = berth_runtime_core::berth_cgroups::Layout::detect() {
                let _ = berth_runtime_core::berth_cgroups::remove_unused(
                    &layout,
                    Path::new(&sb.cgroup_parent),
                );
            }
        }
        Ok(())
    }

    /// Removes a pod's network, namespaces and directory (what a failed or interrupted
    /// RunPodSandbox, or a removal, leaves).
    pub(crate) fn discard_pod_dir(&self, id: &str) {
        let dir = self.pod_dir(id);
        let net = dir.join("ns").join("net");
        let _ = self
            .cni
            .teardown(id, net.exists().then_some(net.as_path()), IFNAME);
        let _ = berth_namespaces::unpin(&dir.join("ns"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
