//! What each command does over CRI.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

use crate::cli::{Cmd, Global, Output, RunOpts};
use crate::client::{Client, within};
use crate::error::CtlError;
use crate::logs::{LogFile, Stream};
use crate::progress::Progress;
use crate::resolve::{Candidate, Kind, Prefer, resolve};
use crate::table::{ago, human_size, now_ns, render, row, short_id};

/// Where `run` puts its pods' logs: `<dir>/<namespace>_<name>_<uid>/<name>/0.log`.
pub const LOG_ROOT: &str = "/var/log/berth/pods";
/// The pods' Kubernetes namespace.
const POD_NAMESPACE: &str = "default";
/// How often `run`, `logs -f` look for new output.
const POLL: Duration = Duration::from_millis(100);

/// Connects and runs `cmd`; returns the exit status.
pub fn run(g: &Global, cmd: Cmd) -> Result<i32, CtlError> {
    let c = Client::connect(&g.address, g.timeout, g.timeout_given)?;
    match cmd {
        Cmd::Version => version(&c, g.output),
        Cmd::Info => info(&c),
        Cmd::Pull { creds, image } => {
            let image_ref = pull(&c, &image, creds)?;
            out(format!("Image is up to date for {image_ref}\n"))?;
            Ok(0)
        }
        Cmd::Images => images(&c, g.output),
        Cmd::Rmi { images } => each(&images, |q| rmi(&c, q)),
        Cmd::Run(o) => run_pod(&c, &o),
        Cmd::Ps { all } => ps(&c, all, g.output),
        Cmd::Pods => pods(&c, g.output),
        Cmd::Exec {
            timeout,
            container,
            cmd,
        } => exec(&c, &container, cmd, timeout),
        Cmd::Logs { follow, container } => logs(&c, &container, follow),
        Cmd::Stop { timeout, ids } => each(&ids, |q| stop(&c, q, timeout)),
        Cmd::Rm { force, ids } => each(&ids, |q| rm(&c, q, force)),
        Cmd::Inspect { id } => inspect(&c, &id),
        Cmd::Stats { id } => stats(&c, id.as_deref(), g.output),
    }
}

/// Writes to stdout.
pub fn out(text: impl AsRef<[u8]>) -> Result<(), CtlError> {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_ref())
        .and_then(|()| o.flush())
        .map_err(|e| CtlError::io("write", "stdout", e))
}

fn err_out(text: impl AsRef<[u8]>) -> Result<(), CtlError> {
    let mut o = std::io::stderr().lock();
    o.write_all(text.as_ref())
        .and_then(|()| o.flush())
        .map_err(|e| CtlError::io("write", "stderr", e))
}

fn emit(chunks: Vec<(Stream, Vec<u8>)>) -> Result<(), CtlError> {
    for (s, bytes) in chunks {
        match s {
            Stream::Stdout => out(bytes)?,
            Stream::Stderr => err_out(bytes)?,
        }
    }
    Ok(())
}

fn json(v: &impl serde::Serialize) -> Result<(), CtlError> {
    out(serde_json::to_string_pretty(v)? + "\n")
}

/// Runs `f` on every argument; the failures are reported as they happen and make the exit
/// status 1.
fn each(
    items: &[String],
    mut f: impl FnMut(&str) -> Result<(), CtlError>,
) -> Result<i32, CtlError> {
    let mut code = 0;
    for q in items {
        if let Err(e) = f(q) {
            let _ = err_out(format!("berthctl: {q}: {e}\n"));
            code = e.exit_code();
        }
    }
    Ok(code)
}

/// A verbose answer's `info` map with each value parsed as JSON when it is JSON.
fn info_json(info: &HashMap<String, String>) -> serde_json::Map<String, serde_json::Value> {
    let mut keys: Vec<_> = info.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let v = &info[k];
            let parsed =
                serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone()));
            (k.clone(), parsed)
        })
        .collect()
}

fn version(c: &Client, output: Output) -> Result<i32, CtlError> {
    let req = cri::VersionRequest {
        version: "v1".into(),
    };
    let v = c.call("Version", c.rs().version(req))?;
    match output {
        Output::Json => json(&v)?,
        Output::Table => out(render(&[
            row(["Version:", &v.version]),
            row(["RuntimeName:", &v.runtime_name]),
            row(["RuntimeVersion:", &v.runtime_version]),
            row(["RuntimeApiVersion:", &v.runtime_api_version]),
        ]))?,
    }
    Ok(0)
}

fn info(c: &Client) -> Result<i32, CtlError> {
    let s = c.call(
        "Status",
        c.rs().status(cri::StatusRequest { verbose: true }),
    )?;
    json(&serde_json::json!({
        "status": s.status,
        "runtimeHandlers": s.runtime_handlers,
        "features": s.features,
        "info": info_json(&s.info),
    }))?;
    Ok(0)
}

fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

fn fs_used(r: &cri::ImageFsInfoResponse) -> Option<u64> {
    let used: Vec<u64> = r
        .image_filesystems
        .iter()
        .filter_map(|f| f.used_bytes.as_ref().map(|u| u.value))
        .collect();
    (!used.is_empty()).then(|| used.iter().sum())
}

/// PullImage with a progress display; returns the image's reference.
fn pull(c: &Client, image: &str, creds: Option<(String, String)>) -> Result<String, CtlError> {
    let req = cri::PullImageRequest {
        image: image_spec(image),
        auth: creds.map(|(username, password)| cri::AuthConfig {
            username,
            password,
            ..Default::default()
        }),
        sandbox_config: None,
    };
    let deadline = c.timeout_given.then_some(c.timeout);
    let mut progress = Progress::new(image, std::io::stderr().is_terminal());
    let probe = Some(Duration::from_secs(2));
    let t0 = Instant::now();
    let (result, grown) = c.block_on(async {
        let fs = |is: k8s_cri::v1::image_service_client::ImageServiceClient<_>| async move {
            let mut is = is;
            within(
                "ImageFsInfo",
                probe,
                is.image_fs_info(cri::ImageFsInfoRequest {}),
            )
            .await
            .ok()
            .and_then(|r| fs_used(&r))
        };
        let base = fs(c.is()).await;
        let mut is = c.is();
        let pull = within("PullImage", deadline, is.pull_image(req));
        tokio::pin!(pull);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut grown = None;
        loop {
            tokio::select! {
                r = &mut pull => break (r, grown),
                _ = tick.tick() => {
                    if let (Some(b), Some(now)) = (base, fs(c.is()).await) {
                        grown = Some(now.saturating_sub(b));
                    }
                    progress.show(grown, t0.elapsed());
                }
            }
        }
    });
    progress.done(grown, t0.elapsed(), result.is_ok());
    Ok(result?.image_ref)
}

fn list_images(c: &Client) -> Result<Vec<cri::Image>, CtlError> {
    Ok(c.call(
        "ListImages",
        c.is().list_images(cri::ListImagesRequest { filter: None }),
    )?
    .images)
}

fn images(c: &Client, output: Output) -> Result<i32, CtlError> {
    let mut list = list_images(c)?;
    if output == Output::Json {
        json(&serde_json::json!({ "images": list }))?;
        return Ok(0);
    }
    list.sort_by(|a, b| a.repo_tags.first().cmp(&b.repo_tags.first()));
    let mut rows = vec![row(["IMAGE", "IMAGE ID", "SIZE"])];
    for i in &list {
        let refs: Vec<String> = if !i.repo_tags.is_empty() {
            i.repo_tags.clone()
        } else if !i.repo_digests.is_empty() {
            i.repo_digests.clone()
        } else {
            vec!["<none>".into()]
        };
        for r in refs {
            rows.push(vec![r, short_id(&i.id), human_size(i.size)]);
        }
    }
    out(render(&rows))?;
    Ok(0)
}

/// The image `q` names: a reference the runtime knows, else a unique id prefix.
fn find_image(c: &Client, q: &str) -> Result<cri::Image, CtlError> {
    let st = c.call(
        "ImageStatus",
        c.is().image_status(cri::ImageStatusRequest {
            image: image_spec(q),
            verbose: false,
        }),
    );
    if let Ok(cri::ImageStatusResponse {
        image: Some(image), ..
    }) = st
    {
        return Ok(image);
    }
    let bare = q.strip_prefix("sha256:").unwrap_or(q);
    let mut found: Vec<cri::Image> = list_images(c)?
        .into_iter()
        .filter(|i| {
            !bare.is_empty()
                && i.id
                    .strip_prefix("sha256:")
                    .unwrap_or(&i.id)
                    .starts_with(bare)
        })
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => match st {
            Err(e) => Err(e),
            Ok(_) => Err(CtlError::NotFound {
                kinds: "image",
                query: q.to_string(),
            }),
        },
        _ => Err(CtlError::Ambiguous {
            query: q.to_string(),
            matches: found
                .iter()
                .map(|i| short_id(&i.id))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn rmi(c: &Client, q: &str) -> Result<(), CtlError> {
    let image = find_image(c, q)?;
    c.call(
        "RemoveImage",
        c.is().remove_image(cri::RemoveImageRequest {
            image: image_spec(&image.id),
        }),
    )?;
    for t in image.repo_tags.iter().chain(&image.repo_digests) {
        out(format!("Untagged: {t}\n"))?;
    }
    out(format!("Deleted: {}\n", image.id))
}

fn list_containers(c: &Client, all: bool) -> Result<Vec<cri::Container>, CtlError> {
    let filter = (!all).then(|| cri::ContainerFilter {
        state: Some(cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    });
    Ok(c.call(
        "ListContainers",
        c.rs()
            .list_containers(cri::ListContainersRequest { filter }),
    )?
    .containers)
}

fn list_pods(c: &Client) -> Result<Vec<cri::PodSandbox>, CtlError> {
    Ok(c.call(
        "ListPodSandbox",
        c.rs()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
    )?
    .items)
}

fn container_state(s: i32) -> &'static str {
    match cri::ContainerState::try_from(s) {
        Ok(cri::ContainerState::ContainerCreated) => "Created",
        Ok(cri::ContainerState::ContainerRunning) => "Running",
        Ok(cri::ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

fn pod_state(s: i32) -> &'static str {
    match cri::PodSandboxState::try_from(s) {
        Ok(cri::PodSandboxState::SandboxReady) => "Ready",
        _ => "NotReady",
    }
}

fn ps(c: &Client, all: bool, output: Output) -> Result<i32, CtlError> {
    let mut list = list_containers(c, all)?;
    if output == Output::Json {
        json(&serde_json::json!({ "containers": list }))?;
        return Ok(0);
    }
    // Image ids shown by their first tag, as crictl does.
    let tags: HashMap<String, String> = list_images(c)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| Some((i.id.clone(), i.repo_tags.first()?.clone())))
        .collect();
    list.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    let now = now_ns();
    let mut rows = vec![row([
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "NAME",
        "ATTEMPT",
        "POD ID",
    ])];
    for k in &list {
        let image = k.image.as_ref().map_or("", |i| i.image.as_str());
        let image = tags
            .get(image)
            .or_else(|| tags.get(&k.image_ref))
            .cloned()
            .unwrap_or_else(|| {
                if image.starts_with("sha256:") {
                    short_id(image)
                } else {
                    image.to_string()
                }
            });
        let (name, attempt) = k
            .metadata
            .as_ref()
            .map_or((String::new(), 0), |m| (m.name.clone(), m.attempt));
        rows.push(vec![
            short_id(&k.id),
            image,
            ago(k.created_at, now),
            container_state(k.state).into(),
            name,
            attempt.to_string(),
            short_id(&k.pod_sandbox_id),
        ]);
    }
    out(render(&rows))?;
    Ok(0)
}

fn pods(c: &Client, output: Output) -> Result<i32, CtlError> {
    let mut list = list_pods(c)?;
    if output == Output::Json {
        json(&serde_json::json!({ "items": list }))?;
        return Ok(0);
    }
    list.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    let now = now_ns();
    let mut rows = vec![row([
        "POD ID",
        "CREATED",
        "STATE",
        "NAME",
        "NAMESPACE",
        "ATTEMPT",
        "RUNTIME",
    ])];
    for p in &list {
        let m = p.metadata.clone().unwrap_or_default();
        let handler = if p.runtime_handler.is_empty() {
            "(default)".to_string()
        } else {
            p.runtime_handler.clone()
        };
        rows.push(vec![
            short_id(&p.id),
            ago(p.created_at, now),
            pod_state(p.state).into(),
            m.name,
            m.namespace,
            m.attempt.to_string(),
            handler,
        ]);
    }
    out(render(&rows))?;
    Ok(0)
}

/// The containers (all states) and, with `pods`, the pods, as resolution candidates.
fn candidates(c: &Client, pods: bool) -> Result<Vec<Candidate>, CtlError> {
    let mut out: Vec<Candidate> = list_containers(c, true)?
        .into_iter()
        .map(|k| Candidate {
            kind: Kind::Container,
            name: k.metadata.map(|m| m.name).unwrap_or_default(),
            id: k.id,
            pod: Some(k.pod_sandbox_id),
        })
        .collect();
    if pods {
        out.extend(list_pods(c)?.into_iter().map(|p| Candidate {
            kind: Kind::Pod,
            name: p.metadata.map(|m| m.name).unwrap_or_default(),
            id: p.id,
            pod: None,
        }));
    }
    Ok(out)
}

fn container_id(c: &Client, q: &str) -> Result<String, CtlError> {
    let all = candidates(c, false)?;
    Ok(resolve(q, &all, Prefer::Container, "container")?.id.clone())
}

fn container_status(
    c: &Client,
    id: &str,
    verbose: bool,
) -> Result<cri::ContainerStatusResponse, CtlError> {
    c.call(
        "ContainerStatus",
        c.rs().container_status(cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose,
        }),
    )
}

fn exec(c: &Client, q: &str, cmd: Vec<String>, timeout: i64) -> Result<i32, CtlError> {
    let id = container_id(c, q)?;
    let deadline = (timeout > 0).then(|| Duration::from_secs(timeout as u64) + c.timeout);
    let r = c.call_within(
        "ExecSync",
        deadline,
        c.rs().exec_sync(cri::ExecSyncRequest {
            container_id: id,
            cmd,
            timeout,
        }),
    )?;
    out(&r.stdout)?;
    err_out(&r.stderr)?;
    Ok(exit_status(r.exit_code))
}

/// A container's exit code as this process' exit status.
fn exit_status(code: i32) -> i32 {
    if (0..=255).contains(&code) { code } else { 255 }
}

fn log_path(c: &Client, id: &str) -> Result<PathBuf, CtlError> {
    let st = container_status(c, id, false)?
        .status
        .ok_or(CtlError::Missing {
            call: "ContainerStatus",
            field: "status",
        })?;
    if st.log_path.is_empty() {
        return Err(CtlError::Missing {
            call: "ContainerStatus",
            field: "log_path (the container has no log file)",
        });
    }
    Ok(PathBuf::from(st.log_path))
}

fn exited(c: &Client, id: &str) -> Result<Option<i32>, CtlError> {
    let st = container_status(c, id, false)?
        .status
        .ok_or(CtlError::Missing {
            call: "ContainerStatus",
            field: "status",
        })?;
    Ok((st.state == cri::ContainerState::ContainerExited as i32).then_some(st.exit_code))
}

fn logs(c: &Client, q: &str, follow: bool) -> Result<i32, CtlError> {
    let id = container_id(c, q)?;
    let path = log_path(c, &id)?;
    if !follow {
        let bytes = std::fs::read(&path).map_err(|e| CtlError::io("read", &path, e))?;
        emit(crate::logs::decode(&bytes))?;
        return Ok(0);
    }
    let mut log = LogFile::new(&path);
    let mut checked = Instant::now();
    loop {
        emit(log.read_new()?)?;
        if checked.elapsed() >= Duration::from_secs(1) {
            checked = Instant::now();
            if exited(c, &id)?.is_some() {
                emit(log.finish()?)?;
                return Ok(0);
            }
        }
        std::thread::sleep(POLL);
    }
}

/// A fresh random UUID (the pod's uid).
fn uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("{:x}-{:x}", std::process::id(), now_ns()))
}

/// A name from the image's: `busybox-1a2b3c` for `docker.io/library/busybox:latest`.
pub fn generated_name(image: &str, uid: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split([':', '@']).next().unwrap_or(base);
    let mut base: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect::<String>()
        .to_ascii_lowercase();
    if !base
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        base = "berthctl".into();
    }
    let suffix: String = uid
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(6)
        .collect();
    format!("{base}-{suffix}")
}

/// The pod `run` makes.
pub fn pod_config(name: &str, uid: &str, host_network: bool) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.to_string(),
            namespace: POD_NAMESPACE.to_string(),
            attempt: 0,
        }),
        hostname: if host_network {
            String::new()
        } else {
            name.to_string()
        },
        log_directory: format!("{LOG_ROOT}/{POD_NAMESPACE}_{name}_{uid}"),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(host_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn namespaces(host_network: bool) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: if host_network {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        } as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        target_id: String::new(),
        userns_options: None,
    }
}

/// The container `run` makes.
pub fn container_config(o: &RunOpts, name: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: image_spec(&o.image),
        args: o.args.clone(),
        envs: o
            .envs
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        log_path: format!("{name}/0.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces(o.host_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Removes what `run` made, best effort: the container, the pod, the log directory.
fn teardown(
    c: &Client,
    container: Option<&str>,
    pod: &str,
    log_dir: &Path,
) -> Result<(), CtlError> {
    let mut first: Option<CtlError> = None;
    let mut keep = |r: Result<(), CtlError>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    if let Some(id) = container {
        keep(stop_container(c, id, 0));
        keep(remove_container(c, id));
    }
    keep(stop_pod(c, pod));
    keep(remove_pod(c, pod));
    match std::fs::remove_dir_all(log_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            keep(Err(CtlError::io("remove", log_dir, e)))
        }
        _ => {}
    }
    first.map_or(Ok(()), Err)
}

fn run_pod(c: &Client, o: &RunOpts) -> Result<i32, CtlError> {
    let known = c.call(
        "ImageStatus",
        c.is().image_status(cri::ImageStatusRequest {
            image: image_spec(&o.image),
            verbose: false,
        }),
    )?;
    if known.image.is_none() {
        pull(c, &o.image, None)?;
    }
    let uid = uuid();
    let name = o
        .name
        .clone()
        .unwrap_or_else(|| generated_name(&o.image, &uid));
    let pod = pod_config(&name, &uid, o.host_network);
    let log_dir = PathBuf::from(&pod.log_directory);
    // The kubelet makes the pod's log directory; so does this client, as a kubelet would
    // (a runtime may make it too: that is no error).
    let _ = std::fs::create_dir_all(log_dir.join(&name));
    let sid = match c.call(
        "RunPodSandbox",
        c.rs().run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        }),
    ) {
        Ok(r) => r.pod_sandbox_id,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&log_dir);
            return Err(e);
        }
    };
    let created = c.call(
        "CreateContainer",
        c.rs().create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sid.clone(),
            config: Some(container_config(o, &name)),
            sandbox_config: Some(pod),
        }),
    );
    let cid = match created {
        Ok(r) => r.container_id,
        Err(e) => {
            let _ = teardown(c, None, &sid, &log_dir);
            return Err(e);
        }
    };
    if let Err(e) = c.call(
        "StartContainer",
        c.rs().start_container(cri::StartContainerRequest {
            container_id: cid.clone(),
        }),
    ) {
        let _ = teardown(c, Some(&cid), &sid, &log_dir);
        return Err(e);
    }
    if o.detach {
        out(format!("{cid}\n"))?;
        return Ok(0);
    }
    let waited = wait_and_show(c, &cid);
    let cleaned = if o.remove {
        teardown(c, Some(&cid), &sid, &log_dir)
    } else {
        Ok(())
    };
    let code = waited?;
    cleaned?;
    Ok(code)
}

/// Shows the container's output as it comes until it exits; returns its exit status. A
/// Ctrl-C stops the container (SIGTERM, SIGKILL 2 s later) and goes on waiting.
fn wait_and_show(c: &Client, cid: &str) -> Result<i32, CtlError> {
    let path = log_path(c, cid)?;
    let mut log = LogFile::new(&path);
    c.block_on(async {
        let mut rs = c.rs();
        let mut stopping = false;
        let interrupt = tokio::signal::ctrl_c();
        tokio::pin!(interrupt);
        loop {
            emit(log.read_new()?)?;
            let st = within(
                "ContainerStatus",
                Some(c.timeout),
                rs.container_status(cri::ContainerStatusRequest {
                    container_id: cid.to_string(),
                    verbose: false,
                }),
            )
            .await?
            .status
            .ok_or(CtlError::Missing {
                call: "ContainerStatus",
                field: "status",
            })?;
            if st.state == cri::ContainerState::ContainerExited as i32 {
                emit(log.finish()?)?;
                return Ok(exit_status(st.exit_code));
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                r = &mut interrupt, if !stopping => {
                    if r.is_ok() {
                        stopping = true;
                        let _ = err_out("berthctl: stopping the container\n");
                        let req = cri::StopContainerRequest { container_id: cid.to_string(), timeout: 2 };
                        let _ = within("StopContainer", Some(c.timeout + Duration::from_secs(2)), rs.stop_container(req)).await;
                    }
                }
            }
        }
    })
}

fn stop_container(c: &Client, id: &str, timeout: i64) -> Result<(), CtlError> {
    c.call_within(
        "StopContainer",
        Some(c.timeout + Duration::from_secs(timeout.max(0) as u64)),
        c.rs().stop_container(cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout,
        }),
    )
    .map(drop)
}

fn remove_container(c: &Client, id: &str) -> Result<(), CtlError> {
    c.call(
        "RemoveContainer",
        c.rs().remove_container(cri::RemoveContainerRequest {
            container_id: id.to_string(),
        }),
    )
    .map(drop)
}

fn stop_pod(c: &Client, id: &str) -> Result<(), CtlError> {
    c.call(
        "StopPodSandbox",
        c.rs().stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        }),
    )
    .map(drop)
}

fn remove_pod(c: &Client, id: &str) -> Result<(), CtlError> {
    c.call(
        "RemovePodSandbox",
        c.rs().remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        }),
    )
    .map(drop)
}

fn stop(c: &Client, q: &str, timeout: i64) -> Result<(), CtlError> {
    let all = candidates(c, true)?;
    let t = resolve(q, &all, Prefer::Pod, "container or pod")?;
    match t.kind {
        Kind::Container => stop_container(c, &t.id, timeout)?,
        Kind::Pod => stop_pod(c, &t.id)?,
    }
    out(format!("{}\n", t.id))
}

fn rm(c: &Client, q: &str, force: bool) -> Result<(), CtlError> {
    let all = candidates(c, true)?;
    let t = resolve(q, &all, Prefer::Pod, "container or pod")?;
    match t.kind {
        Kind::Container => {
            if force {
                stop_container(c, &t.id, 0)?;
            }
            remove_container(c, &t.id)?;
        }
        Kind::Pod => {
            if force {
                stop_pod(c, &t.id)?;
            }
            remove_pod(c, &t.id)?;
        }
    }
    out(format!("{}\n", t.id))
}

fn inspect(c: &Client, q: &str) -> Result<i32, CtlError> {
    let all = candidates(c, true)?;
    match resolve(q, &all, Prefer::Container, "container, pod or image") {
        Ok(t) if t.kind == Kind::Container => {
            let r = container_status(c, &t.id, true)?;
            json(&serde_json::json!({ "status": r.status, "info": info_json(&r.info) }))?;
        }
        Ok(t) => {
            let r = c.call(
                "PodSandboxStatus",
                c.rs().pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: t.id.clone(),
                    verbose: true,
                }),
            )?;
            json(&serde_json::json!({
                "status": r.status,
                "info": info_json(&r.info),
                "containersStatuses": r.containers_statuses,
            }))?;
        }
        Err(CtlError::NotFound { .. }) => {
            let image = find_image(c, q).map_err(|e| match e {
                CtlError::NotFound { .. } | CtlError::Rpc(_) => CtlError::NotFound {
                    kinds: "container, pod or image",
                    query: q.to_string(),
                },
                e => e,
            })?;
            let r = c.call(
                "ImageStatus",
                c.is().image_status(cri::ImageStatusRequest {
                    image: image_spec(&image.id),
                    verbose: true,
                }),
            )?;
            json(&serde_json::json!({ "status": r.image, "info": info_json(&r.info) }))?;
        }
        Err(e) => return Err(e),
    }
    Ok(0)
}

fn list_stats(c: &Client, id: &str) -> Result<Vec<cri::ContainerStats>, CtlError> {
    let filter = Some(cri::ContainerStatsFilter {
        id: id.to_string(),
        ..Default::default()
    });
    Ok(c.call(
        "ListContainerStats",
        c.rs()
            .list_container_stats(cri::ListContainerStatsRequest { filter }),
    )?
    .stats)
}

fn cpu_sample(s: &cri::ContainerStats) -> Option<(i64, u64)> {
    let cpu = s.cpu.as_ref()?;
    Some((cpu.timestamp, cpu.usage_core_nano_seconds.as_ref()?.value))
}

/// CPU use between two samples `(timestamp ns, cumulative core-ns)`, in percent of one core.
pub fn cpu_percent(before: (i64, u64), after: (i64, u64)) -> Option<f64> {
    let dt = after.0.checked_sub(before.0).filter(|d| *d > 0)?;
    let used = after.1.checked_sub(before.1)?;
    Some(used as f64 * 100.0 / dt as f64)
}

fn stats(c: &Client, q: Option<&str>, output: Output) -> Result<i32, CtlError> {
    let id = match q {
        Some(q) => container_id(c, q)?,
        None => String::new(),
    };
    let first = list_stats(c, &id)?;
    // CPU use is a rate: two samples a second apart, as crictl takes them.
    std::thread::sleep(Duration::from_secs(1));
    let second = list_stats(c, &id)?;
    if output == Output::Json {
        json(&serde_json::json!({ "stats": second }))?;
        return Ok(0);
    }
    let before: HashMap<String, (i64, u64)> = first
        .iter()
        .filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), cpu_sample(s)?)))
        .collect();
    let mut rows = vec![row(["CONTAINER", "NAME", "CPU %", "MEM", "CPU TIME"])];
    for s in &second {
        let Some(a) = &s.attributes else { continue };
        let name = a.metadata.as_ref().map_or("", |m| m.name.as_str());
        let cpu = match (before.get(&a.id), cpu_sample(s)) {
            (Some(b), Some(n)) => cpu_percent(*b, n).map_or("-".into(), |p| format!("{p:.2}")),
            _ => "-".into(),
        };
        let mem = s
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map_or("-".into(), |w| human_size(w.value));
        let time = cpu_sample(s).map_or("-".into(), |(_, ns)| format!("{:.2}s", ns as f64 / 1e9));
        rows.push(vec![short_id(&a.id), name.into(), cpu, mem, time]);
    }
    out(render(&rows))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_images() {
        let uid = "1a2b3c4d-0000";
        assert_eq!(
            generated_name("docker.io/library/busybox:latest", uid),
            "busybox-1a2b3c"
        );
        assert_eq!(
            generated_name("localhost/berth@sha256:ab", uid),
            "berth-1a2b3c"
        );
        assert_eq!(generated_name("__", uid), "berthctl-1a2b3c");
        assert!(crate::cli::valid_name(&generated_name(
            "Reg:5000/Some_App:v1",
            uid
        )));
    }

    #[test]
    fn run_configs() {
        let o = RunOpts {
            name: None,
            host_network: true,
            envs: vec![("A".into(), "1".into())],
            remove: false,
            detach: false,
            image: "busybox".into(),
            args: vec!["echo".into(), "hi".into()],
        };
        let p = pod_config("web", "u-1", true);
        assert_eq!(p.log_directory, "/var/log/berth/pods/default_web_u-1");
        let m = p.metadata.unwrap();
        assert_eq!(
            (m.name.as_str(), m.uid.as_str(), m.namespace.as_str()),
            ("web", "u-1", "default")
        );
        let ns = p
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        let pod_net = pod_config("web", "u-1", false);
        let ns = pod_net
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(pod_net.hostname, "web");
        let k = container_config(&o, "web");
        assert_eq!(k.log_path, "web/0.log");
        assert_eq!(k.args, ["echo", "hi"]);
        assert!(k.command.is_empty());
        assert_eq!(k.envs[0].key, "A");
        assert_eq!(k.image.unwrap().image, "busybox");
    }

    #[test]
    fn cpu_rates_and_exit_statuses() {
        assert_eq!(
            cpu_percent((0, 0), (1_000_000_000, 500_000_000)),
            Some(50.0)
        );
        assert_eq!(cpu_percent((5, 0), (5, 10)), None);
        assert_eq!(cpu_percent((0, 10), (1, 5)), None);
        assert_eq!(exit_status(3), 3);
        assert_eq!(exit_status(137), 137);
        assert_eq!(exit_status(-1), 255);
        assert_eq!(exit_status(256), 255);
    }
}
