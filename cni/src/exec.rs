//! Running one plugin binary: its environment, its stdin, its stdout, a timeout.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use crate::error::CniError;

/// One call of a plugin.
pub(crate) struct Call<'a> {
    pub network: &'a str,
    pub plugin: &'a str,
    pub binary: &'a Path,
    pub command: &'static str,
    pub container_id: &'a str,
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    /// CNI_ARGS, already joined (`K=V;K=V`).
    pub args: &'a str,
    /// CNI_PATH, already joined.
    pub cni_path: &'a str,
    pub stdin: Vec<u8>,
    pub timeout: Duration,
}

/// Where a plugin binary is: the first `dir/<plugin>` that is an executable file.
pub(crate) fn find(plugin: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter().map(|d| d.join(plugin)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Runs the plugin and returns its stdout when it succeeds.
pub(crate) fn run(call: Call<'_>) -> Result<Vec<u8>, CniError> {
    let exec_err = |source| CniError::Exec {
        path: call.binary.to_owned(),
        command: call.command,
        source,
    };
    let mut cmd = Command::new(call.binary);
    cmd.env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env(
            "CNI_NETNS",
            call.netns.map(|p| p.as_os_str()).unwrap_or_default(),
        )
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_ARGS", call.args)
        .env("CNI_PATH", call.cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills what it started too.
        .process_group(0);
    let mut child = cmd.spawn().map_err(exec_err)?;
    let pid = child.id();

    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    if let Some(mut stdin) = child.stdin.take() {
        let input = call.stdin;
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    for (is_out, pipe) in [
        (
            true,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        if let Some(mut pipe) = pipe {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send((is_out, buf));
            });
        }
    }
    drop(tx);

    let deadline = Instant::now() + call.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                if let Ok(pgid) = i32::try_from(pid) {
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(CniError::Timeout {
                    network: call.network.to_owned(),
                    plugin: call.plugin.to_owned(),
                    command: call.command,
                    timeout: call.timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(exec_err(e)),
        }
    };
    // The output, unless something the plugin left behind holds its pipes open.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let grace = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let until = Instant::now() + grace;
    for _ in 0..2 {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok((true, b)) => stdout = b,
            Ok((false, b)) => stderr = b,
            Err(_) => break,
        }
    }
    if status.success() {
        return Ok(stdout);
    }
    let (code, msg, details) = match serde_json::from_slice::<Value>(&stdout) {
        Ok(Value::Object(e)) if e.contains_key("msg") || e.contains_key("code") => (
            e.get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u32::try_from(c).ok()),
            e.get("msg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            e.get("details")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        _ => {
            let text = if stderr.is_empty() { &stdout } else { &stderr };
            let text = String::from_utf8_lossy(text);
            (None, format!("{status}: {}", text.trim()), String::new())
        }
    };
    Err(CniError::Plugin {
        network: call.network.to_owned(),
        plugin: call.plugin.to_owned(),
        command: call.command,
        code,
        msg,
        details,
    })
}
