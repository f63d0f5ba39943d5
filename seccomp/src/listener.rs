//! The runtime's side of `SCMP_ACT_NOTIFY`: the listener fd to the agent at `listenerPath`.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::{Error, Program};

/// Connects to `listenerPath` (AF_UNIX, SOCK_STREAM) and sends the container process state
/// (config-linux.md, "The Container Process State"): `{"ociVersion", "fds": ["seccompFd"],
/// "pid", "metadata" (listenerMetadata, when set), "state"}`, in one `sendmsg` that carries the
/// listener `fd` in `SCM_RIGHTS` (a remainder the socket did not take at once follows without
/// fds, as the spec allows), then closes the connection. `fd` stays the caller's.
///
/// `state` is the container's state as `state` reports it; `pid` the process the filter is on.
///
/// # Errors
///
/// [`Error::Invalid`] when the profile has no `listenerPath`; [`Error::Listener`], naming the
/// path, when connecting or sending fails.
///
/// ```no_run
/// # fn demo(program: &berth_seccomp::Program, listener: std::os::fd::RawFd, pid: i32) -> Result<(), berth_seccomp::Error> {
/// let state = serde_json::json!({"ociVersion": "1.2.0", "id": "c1", "status": "creating",
///                                "pid": pid, "bundle": "/srv/c1"});
/// berth_seccomp::send_to_listener(program, &state, pid, listener)?;
/// # Ok(()) }
/// ```
pub fn send_to_listener(
    program: &Program,
    state: &serde_json::Value,
    pid: i32,
    fd: RawFd,
) -> Result<(), Error> {
    let path = program.listener_path().ok_or_else(|| {
        Error::invalid(
            "linux.seccomp.listenerPath",
            "is required with SCMP_ACT_NOTIFY",
        )
    })?;
    let listener_error = |op, source| Error::Listener {
        op,
        path: path.to_owned(),
        source,
    };
    let mut msg = serde_json::json!({
        "ociVersion": oci_spec::runtime::VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state,
    });
    if let (Some(m), Some(obj)) = (program.listener_metadata(), msg.as_object_mut()) {
        obj.insert("metadata".into(), m.into());
    }
    let payload = msg.to_string().into_bytes();
    let mut stream =
        UnixStream::connect(path).map_err(|e| listener_error("connect to seccomp listener", e))?;
    let sent = send_fd(stream.as_raw_fd(), fd, &payload).map_err(|e| {
        listener_error(
            "sendmsg to seccomp listener",
            std::io::Error::from_raw_os_error(e),
        )
    })?;
    stream
        .write_all(payload.get(sent..).unwrap_or_default())
        .map_err(|e| listener_error("write to seccomp listener", e))?;
    Ok(())
}

pub(crate) use berth_sys::send_fd;
