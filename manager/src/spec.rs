//! A container's config.json from its CRI config, its image's config and its pod.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_image::{RootFiles, SpecOverrides, VolumeMode};
use k8s_cri::v1 as cri;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, Spec,
};

use crate::db::SandboxRecord;
use crate::error::{Error, Result};

/// The capabilities a CRI container gets by default (containerd's and Docker's set).
const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The annotations CRI puts on a container's config (the shim groups a pod by `sandbox-id`).
pub(crate) mod ann {
    pub const TYPE: &str = "io.kubernetes.cri.container-type";
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

/// CRI's NamespaceMode: POD = 0, CONTAINER = 1, NODE = 2, TARGET = 3.
pub(crate) const NS_POD: i32 = 0;
pub(crate) const NS_NODE: i32 = 2;
const NS_TARGET: i32 = 3;

/// The namespace options of a pod (defaults when absent: everything per pod, pid per container).
pub(crate) fn pod_ns(c: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or(cri::NamespaceOption {
            network: NS_POD,
            pid: 1,
            ipc: NS_POD,
            target_id: String::new(),
            userns_options: None,
        })
}

fn cap_of(name: &str) -> Result<Capability> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    serde_json::from_value(serde_json::Value::String(format!("CAP_{n}"))).map_err(|_| {
        Error::invalid(
            "linux.security_context.capabilities",
            format!("unknown capability {name:?}"),
        )
    })
}

/// The parts of the spec that come from the pod and the manager.
pub(crate) struct Context<'a> {
    pub id: &'a str,
    pub sandbox: &'a SandboxRecord,
    pub pod_dir: &'a Path,
    pub image_name: &'a str,
    /// The lowest oom_score_adj allowed (the manager's own: without CAP_SYS_RESOURCE a lower
    /// one fails in the runtime).
    pub min_oom_score_adj: i32,
}

/// Builds the spec.
pub(crate) fn container_spec(
    cx: &Context<'_>,
    c: &cri::ContainerConfig,
    image: &ImageConfiguration,
    files: &RootFiles,
) -> Result<Spec> {
    let empty = oci_spec::image::Config::default();
    let ic = image.config().as_ref().unwrap_or(&empty);
    // Command replaces the entrypoint, args the cmd (Kubernetes' rule).
    let args: Vec<String> = match (c.command.is_empty(), c.args.is_empty()) {
        (false, _) => c.command.iter().chain(&c.args).cloned().collect(),
        (true, false) => ic
            .entrypoint()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(c.args.iter().cloned())
            .collect(),
        (true, true) => ic
            .entrypoint()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(ic.cmd().clone().unwrap_or_default())
            .collect(),
    };
    if args.is_empty() {
        return Err(Error::invalid(
            "command",
            "neither the config nor the image has a command",
        ));
    }
    let lin = c.linux.clone().unwrap_or_default();
    let sec = lin.security_context.clone().unwrap_or_default();
    let user = match (&sec.run_as_user, sec.run_as_username.as_str()) {
        (_, name) if !name.is_empty() => Some(name.to_owned()),
        (Some(u), _) => Some(u.value.to_string()),
        _ => None,
    };
    let user = match (user, &sec.run_as_group) {
        (Some(u), Some(g)) => Some(format!("{u}:{}", g.value)),
        (None, Some(g)) => Some(format!(
            "{}:{}",
            ic.user().clone().unwrap_or_else(|| "0".into()),
            g.value
        )),
        (u, None) => u,
    };
    let mut mounts = Vec::new();
    for (i, m) in c.mounts.iter().enumerate() {
        if m.container_path.is_empty() || !m.container_path.starts_with('/') {
            return Err(Error::invalid(
                "mounts",
                format!(
                    "mounts[{i}].container_path {:?} is not absolute",
                    m.container_path
                ),
            ));
        }
        if !Path::new(&m.host_path).is_absolute() {
            return Err(Error::invalid(
                "mounts",
                format!("mounts[{i}].host_path {:?} is not absolute", m.host_path),
            ));
        }
        let mut opts = vec![
            "rbind".to_owned(),
            if m.readonly { "ro" } else { "rw" }.to_owned(),
        ];
        opts.push(
            match m.propagation {
                1 => "rslave",
                2 => "rshared",
                _ => "rprivate",
            }
            .to_owned(),
        );
        mounts.push(bind(&m.host_path, &m.container_path, opts));
    }
    // The pod's files, unless the container mounts its own.
    for f in ["hostname", "hosts", "resolv.conf"] {
        let dest = format!("/etc/{f}");
        if !c.mounts.iter().any(|m| m.container_path == dest) {
            let src = cx.pod_dir.join(f);
            if src.exists() {
                let ro = if sec.readonly_rootfs { "ro" } else { "rw" };
                mounts.push(bind(
                    &src.display().to_string(),
                    &dest,
                    vec!["rbind".into(), "rprivate".into(), ro.into()],
                ));
            }
        }
    }
    let env: Vec<String> = c
        .envs
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    let overrides = SpecOverrides::default()
        .args(Some(args))
        .env(env)
        .cwd(Some(c.working_dir.clone()).filter(|d| !d.is_empty()))
        .user(user)
        .mounts(mounts)
        .volumes(VolumeMode::Omit);
    let base = berth_runtime_core::spec::default_spec(false);
    let mut spec = berth_image::image_spec(image, base, files, &overrides)?;

    // Process.
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_terminal(Some(c.tty));
    if sec.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    let mut caps: Vec<Capability> = if sec.privileged {
        all_caps()
    } else {
        DEFAULT_CAPS.to_vec()
    };
    if let Some(cc) = &sec.capabilities {
        if cc
            .drop_capabilities
            .iter()
            .any(|d| d.eq_ignore_ascii_case("ALL"))
        {
            caps.clear();
        }
        for d in &cc.drop_capabilities {
            if !d.eq_ignore_ascii_case("ALL") {
                let d = cap_of(d)?;
                caps.retain(|x| *x != d);
            }
        }
        for a in &cc.add_capabilities {
            if a.eq_ignore_ascii_case("ALL") {
                caps = all_caps();
            } else {
                let a = cap_of(a)?;
                if !caps.contains(&a) {
                    caps.push(a);
                }
            }
        }
    }
    let set: oci_spec::runtime::Capabilities = caps.into_iter().collect();
    let mut lc = oci_spec::runtime::LinuxCapabilities::default();
    lc.set_bounding(Some(set.clone()));
    lc.set_effective(Some(set.clone()));
    lc.set_permitted(Some(set));
    lc.set_inheritable(None);
    lc.set_ambient(None);
    p.set_capabilities(Some(lc));
    let res = lin.resources.clone().unwrap_or_default();
    if res.oom_score_adj != 0 || cx.min_oom_score_adj > 0 {
        p.set_oom_score_adj(Some((res.oom_score_adj as i32).max(cx.min_oom_score_adj)));
    }
    spec.set_process(Some(p));

    // Root.
    if let Some(r) = spec.root().clone() {
        let mut r = r;
        r.set_readonly(Some(sec.readonly_rootfs));
        spec.set_root(Some(r));
    }
    // Joined namespaces have their own hostname.
    spec.set_hostname(None);

    // Linux.
    let mut linux = spec.linux().clone().unwrap_or_default();
    let pod = &cx.sandbox;
    let ns_opts = sec
        .namespace_options
        .clone()
        .unwrap_or_else(|| pod_ns(&pod.config));
    let mut nss = vec![ns(LinuxNamespaceType::Mount, None)];
    match ns_opts.pid {
        NS_NODE => {}
        NS_POD | NS_TARGET => {
            return Err(Error::Unimplemented(
                "a pid namespace shared by the pod or with a target container",
            ));
        }
        _ => nss.push(ns(LinuxNamespaceType::Pid, None)),
    }
    if let Some(p) = &pod.netns {
        nss.push(ns(LinuxNamespaceType::Network, Some(p)));
    }
    if let Some(p) = &pod.ipcns {
        nss.push(ns(LinuxNamespaceType::Ipc, Some(p)));
    }
    if let Some(p) = &pod.utsns {
        nss.push(ns(LinuxNamespaceType::Uts, Some(p)));
    }
    linux.set_namespaces(Some(nss));
    linux.set_cgroups_path(Some(PathBuf::from(format!(
        "{}/{}",
        pod.cgroup_parent, cx.id
    ))));
    linux.set_resources(Some(resources(&res, sec.privileged)?));
    let sysctls: HashMap<String, String> = pod
        .config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone().into_iter().collect())
        .unwrap_or_default();
    linux.set_sysctl(Some(sysctls).filter(|s| !s.is_empty()));
    if sec.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        if !sec.masked_paths.is_empty() {
            linux.set_masked_paths(Some(sec.masked_paths.clone()));
        }
        if !sec.readonly_paths.is_empty() {
            linux.set_readonly_paths(Some(sec.readonly_paths.clone()));
        }
    }
    let mut devices = Vec::new();
    for (i, d) in c.devices.iter().enumerate() {
        if !d.container_path.starts_with('/') {
            return Err(Error::invalid(
                "devices",
                format!(
                    "devices[{i}].container_path {:?} is not absolute",
                    d.container_path
                ),
            ));
        }
        devices.push(device(&d.host_path, &d.container_path, i)?);
    }
    if !devices.is_empty() {
        linux.set_devices(Some(devices));
    }
    spec.set_linux(Some(linux));
    if sec.privileged {
        // /sys read-write, as containerd gives a privileged container.
        if let Some(ms) = spec.mounts().clone() {
            let ms = ms
                .into_iter()
                .map(|mut m| {
                    if m.destination() == Path::new("/sys") {
                        let o: Vec<String> = m
                            .options()
                            .clone()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|o| o != "ro")
                            .collect();
                        m.set_options(Some(o));
                    }
                    m
                })
                .collect();
            spec.set_mounts(Some(ms));
        }
    }

    // Annotations.
    let mut a = spec.annotations().clone().unwrap_or_default();
    a.extend(c.annotations.clone());
    a.insert(ann::TYPE.into(), "container".into());
    a.insert(ann::SANDBOX_ID.into(), pod.id.clone());
    a.insert(
        ann::SANDBOX_NAME.into(),
        pod.config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
    );
    a.insert(
        ann::CONTAINER_NAME.into(),
        c.metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
    );
    a.insert(ann::IMAGE_NAME.into(), cx.image_name.to_owned());
    spec.set_annotations(Some(a));
    Ok(spec)
}

fn all_caps() -> Vec<Capability> {
    caps::all()
        .into_iter()
        .filter_map(|c| cap_of(&c.to_string()).ok())
        .collect()
}

fn ns(kind: LinuxNamespaceType, path: Option<&String>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(kind);
    n.set_path(path.map(PathBuf::from));
    n
}

fn bind(src: &str, dest: &str, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some("bind".into()));
    m.set_source(Some(PathBuf::from(src)));
    m.set_options(Some(options));
    m
}

fn device(host: &str, container: &str, i: usize) -> Result<oci_spec::runtime::LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::metadata(host)
        .map_err(|e| Error::invalid("devices", format!("devices[{i}].host_path {host}: {e}")))?;
    let ft = md.file_type();
    let typ = if ft.is_char_device() {
        oci_spec::runtime::LinuxDeviceType::C
    } else if ft.is_block_device() {
        oci_spec::runtime::LinuxDeviceType::B
    } else {
        return Err(Error::invalid(
            "devices",
            format!("devices[{i}].host_path {host} is not a device"),
        ));
    };
    let rdev = md.rdev();
    let mut d = oci_spec::runtime::LinuxDevice::default();
    d.set_path(PathBuf::from(container));
    d.set_typ(typ);
    d.set_major(libc::major(rdev) as i64);
    d.set_minor(libc::minor(rdev) as i64);
    d.set_file_mode(Some(md.mode() & 0o777));
    d.set_uid(Some(md.uid()));
    d.set_gid(Some(md.gid()));
    Ok(d)
}

/// CRI's resources as the OCI spec's (0 = not set).
pub(crate) fn resources(
    r: &cri::LinuxContainerResources,
    privileged: bool,
) -> Result<oci_spec::runtime::LinuxResources> {
    let mut cpu = LinuxCpuBuilder::default();
    if r.cpu_period > 0 {
        cpu = cpu.period(r.cpu_period as u64);
    }
    if r.cpu_quota > 0 {
        cpu = cpu.quota(r.cpu_quota);
    }
    if r.cpu_shares > 0 {
        cpu = cpu.shares(r.cpu_shares as u64);
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
    }
    let mut mem = LinuxMemoryBuilder::default();
    if r.memory_limit_in_bytes > 0 {
        mem = mem.limit(r.memory_limit_in_bytes);
    }
    if r.memory_swap_limit_in_bytes > 0 {
        mem = mem.swap(r.memory_swap_limit_in_bytes);
    }
    let bad = |e: oci_spec::OciSpecError| Error::invalid("linux.resources", e.to_string());
    let mut b = LinuxResourcesBuilder::default()
        .cpu(cpu.build().map_err(bad)?)
        .memory(mem.build().map_err(bad)?);
    if privileged {
        let mut all = LinuxDeviceCgroup::default();
        all.set_allow(true);
        all.set_access(Some("rwm".into()));
        b = b.devices(vec![all]);
    }
    if !r.unified.is_empty() {
        b = b.unified(r.unified.clone().into_iter().collect::<HashMap<_, _>>());
    }
    if !r.hugepage_limits.is_empty() {
        let mut v = Vec::new();
        for h in &r.hugepage_limits {
            let mut l = oci_spec::runtime::LinuxHugepageLimit::default();
            l.set_page_size(h.page_size.clone());
            l.set_limit(h.limit as i64);
            v.push(l);
        }
        b = b.hugepage_limits(v);
    }
    b.build().map_err(bad)
}
