//! # berth-containerd-shim
//!
//! containerd's shim v2 for berth, as containerd 1.6 speaks it: runtime
//! `io.containerd.berth.v2` runs the binary `containerd-shim-berth-v2`, which is this
//! crate's [`main`]. The work is done by `berth-shim-core` ([`berth_shim_core::task`]): this
//! crate is the protocol.
//!
//! * `start`: finds or starts the daemon for the container's group (a pod's containers
//!   share one: annotation `io.kubernetes.cri.sandbox-id`), prints its bare `unix://`
//!   address, exits. The daemon is this binary again without an action, its listener on
//!   fd 3, in its own session, its stdio away from start's (containerd waits for EOF).
//! * the daemon: the exit monitor, the task service `containerd.task.v2.Task` over ttrpc
//!   (sync, no tokio), events forwarded to `$TTRPC_ADDRESS`. It outlives containerd.
//! * `delete`: after a daemon died: the container force-deleted, its rootfs unmounted, a
//!   `DeleteResponse` with the init's real exit status where it was saved.
//!
//! The whole `main` of `containerd-shim-berth-v2`:
//!
//! ```no_run
//! berth_containerd_shim::main()
//! ```

mod args;
mod error;
mod events;
mod service;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_runtime_core::Runtime;
use berth_shim_core::footprint::{CodePages, ReleaseWhenQuiet};
use berth_shim_core::monitor::Monitor;
use berth_shim_core::task::{Tasks, saved_exit};
use containerd_shim_protos::protobuf::{Message, MessageField};
use sha2::{Digest, Sha256};

pub use args::{Action, Args, parse};
pub use error::Error;

/// Where shims put their sockets (containerd 1.6's `defaults.DefaultStateDir` + `/s`).
pub const SOCKET_DIR: &str = "/run/containerd/s";

/// How long after its last request a shim gives back the mappings of the code that served
/// it: long enough for a burst (create, start, the events, containerd's follow-up calls).
const QUIET: Duration = Duration::from_secs(1);

/// The berth runtime's state root for a containerd namespace (as runc's is
/// `/run/containerd/runc/<ns>`): `berth --root /run/containerd/berth/<ns> list` shows them.
pub fn runtime_root(namespace: &str) -> PathBuf {
    Path::new("/run/containerd/berth").join(namespace)
}

/// The shim binary's entry point: parses containerd's command line and runs the action.
/// Bad input is a message on stderr and exit status 1.
pub fn main() -> ! {
    let (args, action) = match args::parse(std::env::args().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("containerd-shim-berth-v2: {e}");
            std::process::exit(1)
        }
    };
    let r = match action {
        Action::Version => {
            println!(
                "containerd-shim-berth-v2:\n  Version: {}",
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
        Action::Start => start(&args),
        Action::Delete => delete(&args),
        Action::Serve => serve(&args),
    };
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("containerd-shim-berth-v2: {e}");
            std::process::exit(1)
        }
    }
}

/// The grouping id: a pod's containers share one shim.
fn group_of(bundle: &Path, id: &str) -> String {
    let Ok(text) = std::fs::read_to_string(bundle.join("config.json")) else {
        return id.to_owned();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return id.to_owned();
    };
    let ann = &v["annotations"];
    for key in [
        "io.containerd.runc.v2.group",
        "io.kubernetes.cri.sandbox-id",
    ] {
        if let Some(g) = ann[key].as_str().filter(|g| !g.is_empty()) {
            return g.to_owned();
        }
    }
    id.to_owned()
}

/// The socket path of a group's shim: `/run/containerd/s/<sha256(address/ns/group)>`.
pub fn socket_path(address: &str, namespace: &str, group: &str) -> PathBuf {
    let digest = Sha256::digest(format!("{address}/{namespace}/{group}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Path::new(SOCKET_DIR).join(hex)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}

fn start(args: &Args) -> Result<(), Error> {
    let bundle = std::env::current_dir().map_err(|e| Error::io("getcwd", ".", e))?;
    // The options Any on stdin: read so containerd's write completes (nothing in it applies
    // to the daemon: no shim cgroup is asked of a berth runtime).
    let mut opts = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut opts);
    let group = group_of(&bundle, &args.id);
    let sock = socket_path(&args.address, &args.namespace, &group);
    let address = format!("unix://{}", sock.display());
    std::fs::create_dir_all(SOCKET_DIR)
        .map_err(|e| Error::io("create directory", SOCKET_DIR, e))?;
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(&sock).is_ok() {
                // The group's shim is running: it takes this container too.
                write_atomic(&bundle.join("address"), address.as_bytes())?;
                print!("{address}");
                return Ok(());
            }
            let _ = std::fs::remove_file(&sock);
            UnixListener::bind(&sock).map_err(|e| Error::io("bind", &sock, e))?
        }
        Err(e) => return Err(Error::io("bind", &sock, e)),
    };
    let r = spawn_daemon(args, &bundle, &listener);
    if let Err(e) = r {
        let _ = std::fs::remove_file(&sock);
        return Err(e);
    }
    write_atomic(&bundle.join("address"), address.as_bytes())?;
    print!("{address}");
    let _ = std::io::stdout().flush();
    Ok(())
}

fn spawn_daemon(args: &Args, bundle: &Path, listener: &UnixListener) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let sock_path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_owned));
    if let Some(p) = &sock_path {
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600));
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("readlink", "/proc/self/exe", e))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args([
        "-namespace",
        &args.namespace,
        "-id",
        &args.id,
        "-address",
        &args.address,
    ]);
    if args.debug {
        cmd.arg("-debug");
    }
    cmd.current_dir(bundle)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let fd = listener.as_raw_fd();
    // SAFETY: between fork and exec the closure only makes async-signal-safe calls (dup2,
    // fcntl, setsid) on integers.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it by hand then.
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 || libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The daemon is reaped by whoever inherits it (it outlives us): never waited for here.
    let daemon = cmd
        .spawn()
        .map_err(|e| Error::io("spawn shim daemon", &exe, e))?;
    // As containerd's Go shims: one point above containerd (our parent), so that under memory
    // pressure the OOM killer takes a shim, or its containers (which inherit it), first.
    let parent = std::os::unix::process::parent_id();
    if let Ok(adj) = std::fs::read_to_string(format!("/proc/{parent}/oom_score_adj")) {
        if let Ok(adj) = adj.trim().parse::<i32>() {
            let path = format!("/proc/{}/oom_score_adj", daemon.id());
            let _ = std::fs::write(path, (adj + 1).min(1000).to_string());
        }
    }
    Ok(())
}

fn delete(args: &Args) -> Result<(), Error> {
    let bundle = if args.bundle.is_empty() {
        std::env::current_dir().map_err(|e| Error::io("getcwd", ".", e))?
    } else {
        PathBuf::from(&args.bundle)
    };
    let runtime = Runtime::new(runtime_root(&args.namespace));
    let pid = std::fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let killed = runtime.delete(&args.id, true);
    if let Err(e) = &killed {
        if !matches!(e, berth_runtime_core::Error::NotFound { .. }) {
            eprintln!("containerd-shim-berth-v2 delete {}: {e}", args.id);
        }
    }
    if let Err(e) = berth_shim_core::mounts::unmount_all(&bundle.join("rootfs")) {
        eprintln!("containerd-shim-berth-v2 delete {}: {e}", args.id);
    }
    let mut r = containerd_shim_protos::api::DeleteResponse::new();
    match saved_exit(&bundle) {
        // The real status, saved by the daemon when it reaped the init.
        Some(e) => {
            r.pid = e.pid.max(0) as u32;
            r.exit_status = e.status;
            r.exited_at = MessageField::some(events::timestamp(e.at));
        }
        // It was still running when its shim died: the delete above SIGKILLed it.
        None => {
            r.pid = pid.unwrap_or(0);
            r.exit_status = 128 + libc::SIGKILL as u32;
            r.exited_at = MessageField::some(events::timestamp(SystemTime::now()));
        }
    }
    let bytes = r.write_to_bytes()?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| Error::io("write", "stdout", e))?;
    Ok(())
}

fn serve(args: &Args) -> Result<(), Error> {
    // First, before any thread: SIGCHLD blocked in every thread to come.
    let monitor = Monitor::start()?;
    // Before anything could load a library: the code mappings an idle shim gives back.
    let code = CodePages::at_startup().unwrap_or_else(|e| {
        eprintln!("berth shim: {e}: code mappings are kept");
        CodePages::none()
    });
    // SAFETY: setting a disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // containerd holds the read side of `log` and copies it into its own log.
    if let Ok(log) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("log")
    {
        let fd: OwnedFd = log.into();
        // SAFETY: dup2 onto our own stderr.
        unsafe { libc::dup2(fd.as_raw_fd(), 2) };
    }
    // SAFETY: fd 3 is the listener start passed us; we own it from here on.
    let listener = unsafe { OwnedFd::from_raw_fd(3) };
    let sock_path = UnixListener::from(
        listener
            .try_clone()
            .map_err(|e| Error::io("dup", "fd 3", e))?,
    )
    .local_addr()
    .ok()
    .and_then(|a| a.as_pathname().map(Path::to_owned));
    let root = runtime_root(&args.namespace);
    std::fs::create_dir_all(&root).map_err(|e| Error::io("create directory", &root, e))?;
    let publisher = events::Publisher::start(
        std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
        args.namespace.clone(),
    );
    let events = publisher.clone();
    let runtime = Runtime::new(root).on_warning(|w| eprintln!("berth: warning: {w}"));
    let tasks = Tasks::new(runtime, monitor, move |e| events.publish(&e));
    let (shutdown_tx, shutdown_rx) = std::sync::mpsc::channel();
    let service = service::Service {
        tasks,
        shutdown: shutdown_tx,
        quiet: ReleaseWhenQuiet::start(code, QUIET)?,
    };
    let mut server = ttrpc::Server::new()
        .add_listener(listener.as_raw_fd())?
        .register_service(containerd_shim_protos::create_task(Arc::new(service)))
        .set_thread_count_default(2)
        .set_thread_count_min(1)
        .set_thread_count_max(3);
    server.start()?;
    let _ = shutdown_rx.recv();
    publisher.flush(Duration::from_secs(2));
    if let Some(p) = sock_path {
        let _ = std::fs::remove_file(p);
    }
    // The server's threads may be inside a request: exit without unwinding them.
    std::process::exit(0)
}
