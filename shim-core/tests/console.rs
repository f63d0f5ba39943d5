//! The console from outside: a pty master sent over the console socket by another process,
//! the relay copying bytes both ways through a real pty pair (openpty) around a supervised
//! shell, window sizes and raw mode.

mod common;

use std::io::{IoSlice, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_shim_core::Error;
use berth_shim_core::console::{
    ConsoleSocket, RawTty, WinSize, copy_winsize, set_winsize, winsize,
};
use berth_shim_core::reap::ExitStatus;
use berth_shim_core::relay::Relay;
use berth_shim_core::signals::Signals;
use berth_shim_core::supervise::supervise;
use common::{ChildGuard, dup, pipe};
use nix::pty::{OpenptyResult, openpty};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::termios::{LocalFlags, tcgetattr};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

const TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    common::run(&[
        (
            "relay_copies_both_ways_through_a_pty",
            relay_copies_both_ways,
        ),
        ("sigwinch_resizes_the_pty", sigwinch_resizes),
        (
            "receives_a_master_sent_by_another_process",
            receives_from_a_peer,
        ),
        ("socket_dir_is_private_and_removed", |_| {
            socket_dir_is_private_and_removed()
        }),
        ("bind_at_removes_only_the_socket", |_| {
            bind_at_removes_only_the_socket()
        }),
        ("times_out_without_a_connection", |_| {
            times_out_without_a_connection()
        }),
        ("rejects_a_message_without_descriptor", |_| {
            rejects_without_descriptor()
        }),
        ("rejects_a_descriptor_that_is_not_a_tty", |_| {
            rejects_non_tty()
        }),
        ("window_sizes", |_| window_sizes()),
        ("raw_mode_is_restored", |_| raw_mode_is_restored()),
    ]);
}

fn send_fd(stream: &UnixStream, fd: &impl AsRawFd) {
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(b"/dev/pts/x")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

/// A shell on the slave reads a line and answers; the relay feeds it from a pipe and copies
/// its answer (and the terminal's echo) into another pipe.
fn relay_copies_both_ways(signals: &Signals) {
    let OpenptyResult { master, slave } = openpty(None, None).unwrap();
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    let mut guard = ChildGuard::new(
        Command::new("/bin/sh")
            .args(["-c", "read line; echo \"got:$line\"; exit 5"])
            .stdin(Stdio::from(dup(&slave)))
            .stdout(Stdio::from(dup(&slave)))
            .stderr(Stdio::from(dup(&slave)))
            .spawn()
            .unwrap(),
    );
    // Only the shell holds the slave now: its exit hangs the master up.
    drop(slave);
    nix::unistd::write(&in_w, b"ping\n").unwrap();
    drop(in_w);
    let mut relay = Relay::new(master, Some(in_r), Some(out_w)).unwrap();
    let status = supervise(guard.pid, signals, Some(&mut relay), |_| {}).unwrap();
    guard.disarm();
    assert_eq!(status, ExitStatus::Exited(5));
    assert!(!relay.is_open(), "the master should have hung up");
    drop(relay);
    let out = read_all(out_r);
    assert!(out.contains("got:ping"), "{out:?}");
    // The pty's own echo of what went in: the bytes did cross the master.
    assert!(out.starts_with("ping"), "{out:?}");
}

/// `SIGWINCH` to the supervisor copies the size of the caller's terminal (here another pty)
/// to the relayed pty instead of being forwarded.
fn sigwinch_resizes(signals: &Signals) {
    let caller = openpty(None, None).unwrap();
    set_winsize(&caller.master, WinSize::new(41, 97)).unwrap();
    let OpenptyResult { master, slave } = openpty(None, None).unwrap();
    let (in_r, in_w) = pipe();
    // The shell exits only after the relay passed it a line, so the pending SIGWINCH is
    // handled while it runs.
    let mut guard = ChildGuard::new(
        Command::new("/bin/sh")
            .args(["-c", "read line; exit 0"])
            .stdin(Stdio::from(dup(&slave)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    nix::unistd::write(&in_w, b"go\n").unwrap();
    drop(in_w);
    let mut relay = Relay::new(master, Some(in_r), None).unwrap();
    relay.set_size_source(dup(&caller.master));
    nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGWINCH).unwrap();
    let mut forwarded = 0;
    let status = supervise(guard.pid, signals, Some(&mut relay), |e| {
        if let berth_shim_core::supervise::Event::Forwarding { .. } = e {
            forwarded += 1;
        }
    })
    .unwrap();
    guard.disarm();
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(forwarded, 0, "SIGWINCH must resize, not be forwarded");
    assert_eq!(winsize(&slave).unwrap(), WinSize::new(41, 97));
}

/// A forked peer (as a runtime would) opens a pty, connects and sends the master.
fn receives_from_a_peer(_: &Signals) {
    let sock = ConsoleSocket::bind().unwrap();
    let path = sock.path().to_path_buf();
    // SAFETY: this test binary runs its tests on its only thread, so the child may allocate;
    // it exits with _exit without returning into the test runner.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(|| {
                let OpenptyResult { master, slave } = openpty(None, None).unwrap();
                let client = UnixStream::connect(&path).unwrap();
                send_fd(&client, &master);
                drop(master);
                // What the container writes on its terminal.
                nix::unistd::write(&slave, b"hello from the peer").unwrap();
                // Wait for the receiver to be done before closing the slave.
                let mut b = [0u8; 1];
                let _ = nix::unistd::read(&client, &mut b);
                0
            })
            .unwrap_or(1);
            // SAFETY: _exit ends the forked child at once, running no destructor of the
            // parent's state.
            unsafe { libc::_exit(code) };
        }
        ForkResult::Parent { child } => {
            let got = sock.receive(TIMEOUT);
            let got = got.map(|m| {
                let mut buf = [0u8; 64];
                let mut fds = [nix::poll::PollFd::new(
                    m.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)).unwrap();
                let n = nix::unistd::read(&m, &mut buf).unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            });
            drop(sock);
            let status = waitpid(child, None).unwrap();
            assert_eq!(got.unwrap(), "hello from the peer");
            assert_eq!(status, WaitStatus::Exited(child, 0));
        }
    }
}

fn socket_dir_is_private_and_removed() {
    let sock = ConsoleSocket::bind().unwrap();
    let dir = sock.path().parent().unwrap().to_path_buf();
    let mode = std::fs::metadata(&dir).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );
    assert!(sock.path().exists());
    drop(sock);
    assert!(!dir.exists());
}

fn bind_at_removes_only_the_socket() {
    let dir = std::env::temp_dir().join(format!("shim-core-console-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("c.sock");
    let sock = ConsoleSocket::bind_at(&path).unwrap();
    assert_eq!(sock.path(), path);
    let again = ConsoleSocket::bind_at(&path).unwrap_err();
    drop(sock);
    let exists = path.exists();
    let dir_exists = dir.exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(again.to_string().contains("bind console socket"), "{again}");
    assert!(!exists && dir_exists);
}

fn times_out_without_a_connection() {
    let sock = ConsoleSocket::bind().unwrap();
    let err = sock.receive(Duration::from_millis(50)).unwrap_err();
    assert!(err.to_string().contains("did not connect"), "{err}");
    assert!(err.to_string().contains(sock.path().to_str().unwrap()));
}

fn rejects_without_descriptor() {
    let sock = ConsoleSocket::bind().unwrap();
    let mut client = UnixStream::connect(sock.path()).unwrap();
    std::io::Write::write_all(&mut client, b"no fd").unwrap();
    let err = sock.receive(TIMEOUT).unwrap_err();
    assert!(matches!(err, Error::Console { .. }), "{err}");
    assert!(err.to_string().contains("exactly one descriptor"), "{err}");
    assert!(err.to_string().contains(sock.path().to_str().unwrap()));
}

fn rejects_non_tty() {
    let sock = ConsoleSocket::bind().unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let client = UnixStream::connect(sock.path()).unwrap();
    send_fd(&client, &file);
    let err = sock.receive(TIMEOUT).unwrap_err();
    assert!(err.to_string().contains("not a terminal"), "{err}");
}

fn window_sizes() {
    let a = openpty(None, None).unwrap();
    let b = openpty(None, None).unwrap();
    set_winsize(&a.master, WinSize::new(33, 101)).unwrap();
    assert_eq!(winsize(&a.slave).unwrap(), WinSize::new(33, 101));
    copy_winsize(&a.master, &b.master).unwrap();
    assert_eq!(winsize(&b.slave).unwrap(), WinSize::new(33, 101));
    let file = std::fs::File::open("/dev/null").unwrap();
    let err = copy_winsize(&file, &b.master).unwrap_err();
    assert!(err.to_string().contains("TIOCGWINSZ"), "{err}");
}

fn raw_mode_is_restored() {
    let pty = openpty(None, None).unwrap();
    assert!(
        tcgetattr(&pty.slave)
            .unwrap()
            .local_flags
            .contains(LocalFlags::ICANON)
    );
    let raw = RawTty::enable(&pty.slave)
        .unwrap()
        .expect("a pty slave is a terminal");
    assert!(
        !tcgetattr(&pty.slave)
            .unwrap()
            .local_flags
            .contains(LocalFlags::ICANON)
    );
    drop(raw);
    assert!(
        tcgetattr(&pty.slave)
            .unwrap()
            .local_flags
            .contains(LocalFlags::ICANON)
    );
    let file = std::fs::File::open("/dev/null").unwrap();
    assert!(RawTty::enable(&file).unwrap().is_none());
}
