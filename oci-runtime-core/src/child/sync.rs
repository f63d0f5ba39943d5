//! The sync protocol between the runtime and its fragile children (the init, the slow path's
//! intermediate, exec's child), over a `SOCK_SEQPACKET` pair: one message per packet, encoded
//! and decoded here only.
//!
//! | from the child ([`ToParent`]) | tag | then the parent |
//! |---|---|---|
//! | [`MapIds`](ToParent::MapIds): a user namespace was unshared (slow path) | `M` | writes the id maps, sends `G` |
//! | [`Pid`](ToParent::Pid): the pid forked with `CLONE_PARENT` (slow path, exec) | `P` + i32 | reaps the intermediate |
//! | [`BindSources`](ToParent::BindSources): open the bind-mount sources | `B` | sends one `b` + fd per source, then `G` |
//! | [`Mounted`](ToParent::Mounted): mounts done | `H` | runs prestart and createRuntime, sends `S` + length, then the state JSON in chunks |
//! | [`Listener`](ToParent::Listener): the seccomp notify fd, in SCM_RIGHTS | `F` | hands it to `listenerPath` |
//! | [`Ready`](ToParent::Ready): about to wait on exec.fifo (init) or to execve (exec, and the init of `run`) | `R` | create returns (`run` waits for EOF: the exec) |
//! | [`Failed`](ToParent::Failed): a failure record, then the child exits | `E` + record | reports the error |
//!
//! Parent to child ([`ToChild`]): `G` go on (in the container's cgroup, maps written; with
//! the fd of the network namespace made for the init on the fast path), `b` one
//! bind source, `S` the state's length. After `R` the init reports to exec.fifo instead (the
//! init of `run`, which has no start barrier, reports on the socket still, as exec's child).
//!
//! The allowed order is checked on the parent's side by [`Order`]. The intermediate's `P` and
//! the messages of the init it forked race on the socket, so `P` may come at any point after
//! the intermediate's `M`s: the caller holds the init's messages back until it has the init's
//! pid.
//!
//! The child side ([`send`], [`send_with_fd`], [`recv`]) is fragile-child code: fixed-size
//! stack buffers and raw system calls only.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::child::init::{ChildFailure, FAILURE_LEN, InitError, InitStep};
use crate::child::sys;

/// A message from a child to the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToParent {
    /// The slow path's intermediate unshared a user namespace: write its id maps.
    MapIds,
    /// The process the slow path's intermediate (or exec's) forked with `CLONE_PARENT`.
    Pid(i32),
    /// The init wants the bind-mount sources, opened by the parent.
    BindSources,
    /// The mounts are made: run the runtime-namespace hooks and send the state.
    Mounted,
    /// The seccomp notify listener, passed in SCM_RIGHTS.
    Listener,
    /// About to block on exec.fifo (the init) or to `execve` (exec's child, the init of
    /// `run`).
    Ready,
    /// What failed; the child exits after sending it.
    Failed(ChildFailure),
}

/// The longest encoded [`ToParent`].
pub(crate) const MAX_TO_PARENT: usize = FAILURE_LEN;

impl ToParent {
    /// # Fragile child
    /// The wire form, in `out`.
    pub(crate) fn encode(self, out: &mut [u8; MAX_TO_PARENT]) -> &[u8] {
        let (tag, len) = match self {
            ToParent::MapIds => (b'M', 1),
            ToParent::Pid(pid) => {
                let [a, b, c, d] = pid.to_le_bytes();
                out[1..5].copy_from_slice(&[a, b, c, d]);
                (b'P', 5)
            }
            ToParent::BindSources => (b'B', 1),
            ToParent::Mounted => (b'H', 1),
            ToParent::Listener => (b'F', 1),
            ToParent::Ready => (b'R', 1),
            ToParent::Failed(f) => {
                *out = f.encode();
                return &out[..];
            }
        };
        out[0] = tag;
        out.get(..len).unwrap_or_default()
    }

    /// The message in `msg`, or what is wrong with it.
    pub(crate) fn decode(msg: &[u8]) -> Result<Self, String> {
        let one = |m| {
            if msg.len() == 1 {
                Ok(m)
            } else {
                Err(format!(
                    "message {:?} of {} bytes",
                    msg.first().map(|&b| char::from(b)),
                    msg.len()
                ))
            }
        };
        match msg.first() {
            None => Err("empty message".into()),
            Some(b'M') => one(ToParent::MapIds),
            Some(b'B') => one(ToParent::BindSources),
            Some(b'H') => one(ToParent::Mounted),
            Some(b'F') => one(ToParent::Listener),
            Some(b'R') => one(ToParent::Ready),
            Some(b'P') => match msg {
                [_, a, b, c, d] => Ok(ToParent::Pid(i32::from_le_bytes([*a, *b, *c, *d]))),
                _ => Err(format!("pid message of {} bytes", msg.len())),
            },
            Some(b'E') => ChildFailure::decode(msg)
                .map(ToParent::Failed)
                .ok_or_else(|| "undecodable failure record".into()),
            Some(other) => Err(format!("unknown message {other:#x}")),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            ToParent::MapIds => "map-ids",
            ToParent::Pid(_) => "pid",
            ToParent::BindSources => "bind-sources",
            ToParent::Mounted => "mounted",
            ToParent::Listener => "seccomp-listener",
            ToParent::Ready => "ready",
            ToParent::Failed(_) => "failed",
        }
    }
}

/// A message from the runtime to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToChild {
    /// Go on: in the container's cgroup, id maps written, bind sources all sent.
    Go,
    /// One bind-mount source, in SCM_RIGHTS (in the order of the plan's bind mounts).
    BindSource,
    /// The state JSON's length; the JSON follows in raw chunks of at most [`STATE_CHUNK`].
    State(u32),
}

/// The size of the pieces the state JSON travels in after [`ToChild::State`]: well below a
/// socket's message limit.
pub(crate) const STATE_CHUNK: usize = 32 * 1024;

impl ToChild {
    fn encode(self, out: &mut [u8; 5]) -> &[u8] {
        match self {
            ToChild::Go => {
                out[0] = b'G';
                &out[..1]
            }
            ToChild::BindSource => {
                out[0] = b'b';
                &out[..1]
            }
            ToChild::State(len) => {
                out[0] = b'S';
                out[1..5].copy_from_slice(&len.to_le_bytes());
                &out[..]
            }
        }
    }

    /// # Fragile child
    fn decode(msg: &[u8]) -> Option<Self> {
        match msg {
            [b'G'] => Some(ToChild::Go),
            [b'b'] => Some(ToChild::BindSource),
            [b'S', a, b, c, d] => Some(ToChild::State(u32::from_le_bytes([*a, *b, *c, *d]))),
            _ => None,
        }
    }
}

fn sync_err(index: u32, errno: i32) -> InitError {
    InitError::new(InitStep::Sync, index, errno)
}

/// # Fragile child
/// Sends `msg` to the parent.
pub(crate) fn send(sock: RawFd, msg: ToParent) -> Result<(), InitError> {
    let mut buf = [0u8; MAX_TO_PARENT];
    sys::write_all(sock, msg.encode(&mut buf)).map_err(|e| sync_err(1, e))
}

/// # Fragile child
/// Sends `msg` with `fd` in SCM_RIGHTS.
pub(crate) fn send_with_fd(sock: RawFd, msg: ToParent, fd: RawFd) -> Result<(), i32> {
    let mut buf = [0u8; MAX_TO_PARENT];
    sys::send_fd(sock, fd, msg.encode(&mut buf)).map(drop)
}

/// # Fragile child
/// The parent's next message and the fd it carries; EOF is `EPIPE`, anything undecodable
/// `EPROTO` (an fd that came with it is closed).
pub(crate) fn recv(sock: RawFd) -> Result<(ToChild, Option<RawFd>), InitError> {
    let mut buf = [0u8; 5];
    let (n, fd) = sys::recv_fd(sock, &mut buf).map_err(|e| sync_err(4, e))?;
    if n == 0 {
        return Err(sync_err(0, libc::EPIPE));
    }
    match buf.get(..n).and_then(ToChild::decode) {
        Some(m) => Ok((m, fd)),
        None => {
            if let Some(fd) = fd {
                sys::close(fd);
            }
            Err(sync_err(5, libc::EPROTO))
        }
    }
}

/// # Fragile child
/// Waits for [`ToChild::Go`].
pub(crate) fn wait_go(sock: RawFd) -> Result<(), InitError> {
    match wait_go_with_fd(sock)? {
        None => Ok(()),
        Some(fd) => {
            sys::close(fd);
            Err(sync_err(2, libc::EPROTO))
        }
    }
}

/// # Fragile child
/// Waits for [`ToChild::Go`] and the fd it may carry (the network namespace the parent made).
pub(crate) fn wait_go_with_fd(sock: RawFd) -> Result<Option<RawFd>, InitError> {
    match recv(sock)? {
        (ToChild::Go, fd) => Ok(fd),
        (_, fd) => {
            if let Some(fd) = fd {
                sys::close(fd);
            }
            Err(sync_err(2, libc::EPROTO))
        }
    }
}

/// # Fragile child
/// Receives the state JSON after [`ToChild::State`] into `buf`; returns the filled part.
pub(crate) fn recv_state(sock: RawFd, buf: &mut [u8]) -> Result<&[u8], InitError> {
    let len = match recv(sock)? {
        (ToChild::State(len), None) => len as usize,
        _ => return Err(sync_err(3, libc::EPROTO)),
    };
    let Some(state) = buf.get_mut(..len) else {
        return Err(sync_err(3, libc::EMSGSIZE));
    };
    let mut got = 0;
    while let Some(rest) = state.get_mut(got..).filter(|r| !r.is_empty()) {
        match sys::read_once(sock, rest) {
            Ok(0) => return Err(sync_err(0, libc::EPIPE)),
            Ok(n) => got += n,
            Err(e) => return Err(sync_err(0, e)),
        }
    }
    Ok(state)
}

/// Who is on the other end of a [`Channel`]: which messages it may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// The init, cloned directly (`intermediate: false`) or forked by the slow path's
    /// intermediate, which sends `M` and `P` first.
    Init { intermediate: bool },
    /// Exec's child, which forks the process (and sends `P`) when it joins a pid or time
    /// namespace.
    Exec { fork: bool },
}

/// The allowed order of the [`ToParent`] messages of one peer. The messages of the process
/// that will exec (bind sources, mounted, listener, ready) come once each, in that order;
/// `M` only before `P`; `P` once, where the peer forks (it may come after the failure of the
/// process it forked); nothing else after `R` or a failure but EOF.
#[derive(Debug)]
pub(crate) struct Order {
    peer: Peer,
    /// The rank of the last ranked message (0: none yet).
    last: u8,
    pid_seen: bool,
    done: bool,
}

impl Order {
    pub(crate) fn new(peer: Peer) -> Self {
        Order {
            peer,
            last: 0,
            pid_seen: false,
            done: false,
        }
    }

    /// Whether `msg` may come now; records it.
    pub(crate) fn accept(&mut self, msg: &ToParent) -> Result<(), String> {
        let refuse = |why: &str| Err(format!("{} message {why}", msg.name()));
        let (forks, init) = match self.peer {
            Peer::Init { intermediate } => (intermediate, true),
            Peer::Exec { fork } => (fork, false),
        };
        let rank = match msg {
            // The intermediate's pid races with what the process it forked sends, its
            // failure included: it may come last, and must not be lost (that process is the
            // caller's child, to be reaped).
            ToParent::Pid(_) if forks && !self.pid_seen => {
                self.pid_seen = true;
                return Ok(());
            }
            // A failure ends the exchange; a second one (as the exec loop has always taken)
            // changes nothing.
            ToParent::Failed(_) => {
                self.done = true;
                return Ok(());
            }
            _ if self.done => return refuse("after the end of the exchange"),
            ToParent::MapIds if init && forks && !self.pid_seen => return Ok(()),
            ToParent::MapIds | ToParent::Pid(_) => return refuse("not expected here"),
            ToParent::BindSources if init => 1,
            ToParent::Mounted if init => 2,
            ToParent::BindSources | ToParent::Mounted => return refuse("not expected from exec"),
            ToParent::Listener => 3,
            ToParent::Ready => 4,
        };
        if rank <= self.last {
            return refuse("out of order");
        }
        self.last = rank;
        Ok(())
    }

    /// Whether the exchange ended as it must: `R` (and `P` where the peer forks).
    pub(crate) fn complete(&self) -> bool {
        let forks = match self.peer {
            Peer::Init { intermediate } => intermediate,
            Peer::Exec { fork } => fork,
        };
        self.last == 4 && (self.pid_seen || !forks)
    }
}

/// A new sync socket: a close-on-exec `SOCK_SEQPACKET` pair (one message per send, EOF
/// once the peer has exited or exec'd), `(runtime's end, child's end)`.
pub(crate) fn socket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// The runtime's end of the sync socket.
#[derive(Debug)]
pub(crate) struct Channel {
    sock: UnixStream,
    order: Order,
}

impl Channel {
    pub(crate) fn new(sock: OwnedFd, peer: Peer) -> Self {
        Channel {
            sock: UnixStream::from(sock),
            order: Order::new(peer),
        }
    }

    /// The next message with the fd it carries, or `None` at EOF (every child closed its end
    /// or exec'd). A message out of order or undecodable is an error.
    pub(crate) fn recv(&mut self) -> Result<Option<(ToParent, Option<OwnedFd>)>, String> {
        let mut buf = [0u8; 64];
        let (n, fd) = loop {
            match recv_with_fd(&self.sock, &mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.map_err(|e| format!("reading the sync socket: {e}"))?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let msg = ToParent::decode(buf.get(..n).unwrap_or_default())?;
        self.order.accept(&msg)?;
        Ok(Some((msg, fd)))
    }

    /// Whether the exchange is complete (see [`Order::complete`]).
    pub(crate) fn complete(&self) -> bool {
        self.order.complete()
    }

    /// Sends `msg`.
    pub(crate) fn send(&self, msg: ToChild) -> std::io::Result<()> {
        use std::io::Write;
        let mut buf = [0u8; 5];
        (&self.sock).write_all(msg.encode(&mut buf))
    }

    /// Sends [`ToChild::Go`] with an fd (the network namespace made for the init).
    pub(crate) fn send_go_with_fd(&self, fd: RawFd) -> std::io::Result<()> {
        let mut buf = [0u8; 5];
        sys::send_fd(self.sock.as_raw_fd(), fd, ToChild::Go.encode(&mut buf))
            .map(drop)
            .map_err(std::io::Error::from_raw_os_error)
    }

    /// Sends one bind-mount source.
    pub(crate) fn send_bind_source(&self, fd: RawFd) -> std::io::Result<()> {
        let mut buf = [0u8; 5];
        sys::send_fd(
            self.sock.as_raw_fd(),
            fd,
            ToChild::BindSource.encode(&mut buf),
        )
        .map(drop)
        .map_err(std::io::Error::from_raw_os_error)
    }

    /// Sends [`ToChild::State`] and the state JSON in chunks.
    pub(crate) fn send_state(&self, state: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let len = u32::try_from(state.len())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EMSGSIZE))?;
        self.send(ToChild::State(len))?;
        for chunk in state.chunks(STATE_CHUNK) {
            (&self.sock).write_all(chunk)?;
        }
        Ok(())
    }
}

/// One message from `sock` with the fd it carries (close-on-exec), if any.
fn recv_with_fd(sock: &UnixStream, buf: &mut [u8]) -> std::io::Result<(usize, Option<OwnedFd>)> {
    berth_sys::recv_fd_owned(std::os::fd::AsFd::as_fd(sock), buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::init::InitError;

    fn round_trip(m: ToParent) -> ToParent {
        let mut buf = [0u8; MAX_TO_PARENT];
        ToParent::decode(m.encode(&mut buf)).unwrap()
    }

    #[test]
    fn every_message_to_the_parent_decodes_to_itself() {
        let failure = ChildFailure::Init(InitError::new(InitStep::Exec, 3, libc::ENOENT));
        for m in [
            ToParent::MapIds,
            ToParent::Pid(4_000_123),
            ToParent::BindSources,
            ToParent::Mounted,
            ToParent::Listener,
            ToParent::Ready,
            ToParent::Failed(failure),
        ] {
            assert_eq!(round_trip(m), m);
        }
    }

    #[test]
    fn every_message_to_the_child_decodes_to_itself() {
        for m in [ToChild::Go, ToChild::BindSource, ToChild::State(70_000)] {
            let mut buf = [0u8; 5];
            assert_eq!(ToChild::decode(m.encode(&mut buf)), Some(m));
        }
        assert_eq!(ToChild::decode(b"S\x01"), None);
        assert_eq!(ToChild::decode(b"GG"), None);
        assert_eq!(ToChild::decode(b""), None);
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [&b""[..], b"RR", b"P\x01\x02", b"Z", b"E\x00"] {
            assert!(ToParent::decode(bad).is_err(), "{bad:?}");
        }
    }

    fn run(peer: Peer, msgs: &[ToParent]) -> Result<bool, String> {
        let mut o = Order::new(peer);
        for m in msgs {
            o.accept(m)?;
        }
        Ok(o.complete())
    }

    const FAST: Peer = Peer::Init {
        intermediate: false,
    };
    const SLOW: Peer = Peer::Init { intermediate: true };
    use ToParent::*;

    #[test]
    fn the_init_order_is_enforced() {
        assert_eq!(run(FAST, &[Ready]), Ok(true));
        assert_eq!(
            run(FAST, &[BindSources, Mounted, Listener, Ready]),
            Ok(true)
        );
        assert_eq!(run(FAST, &[Mounted]), Ok(false));
        assert!(run(FAST, &[Mounted, BindSources]).is_err());
        assert!(run(FAST, &[Ready, Ready]).is_err());
        assert!(run(FAST, &[Listener, Mounted]).is_err());
        assert!(
            run(FAST, &[MapIds]).is_err(),
            "no intermediate, no maps to ask for"
        );
        assert!(run(FAST, &[Pid(7)]).is_err());
        assert!(run(FAST, &[Ready, Mounted]).is_err());
    }

    #[test]
    fn the_slow_path_may_send_its_pid_among_the_inits_messages() {
        assert_eq!(run(SLOW, &[MapIds, MapIds, Pid(9), Ready]), Ok(true));
        assert_eq!(run(SLOW, &[BindSources, Pid(9), Mounted, Ready]), Ok(true));
        assert_eq!(run(SLOW, &[Mounted, Ready, Pid(9)]), Ok(true));
        assert_eq!(run(SLOW, &[Ready]), Ok(false), "no pid: incomplete");
        assert!(run(SLOW, &[Pid(9), Pid(9)]).is_err());
        assert!(
            run(SLOW, &[Pid(9), MapIds]).is_err(),
            "maps come before the fork"
        );
    }

    #[test]
    fn exec_sends_no_init_messages() {
        assert_eq!(
            run(Peer::Exec { fork: false }, &[Listener, Ready]),
            Ok(true)
        );
        assert_eq!(run(Peer::Exec { fork: true }, &[Ready, Pid(3)]), Ok(true));
        assert!(run(Peer::Exec { fork: false }, &[Pid(3)]).is_err());
        assert!(run(Peer::Exec { fork: true }, &[Mounted]).is_err());
        assert!(run(Peer::Exec { fork: true }, &[BindSources]).is_err());
        assert!(run(Peer::Exec { fork: true }, &[MapIds]).is_err());
    }

    #[test]
    fn nothing_comes_after_a_failure_but_the_intermediates_pid() {
        let f = Failed(ChildFailure::Init(InitError::new(InitStep::Sync, 0, 1)));
        assert_eq!(run(FAST, &[f]), Ok(false));
        assert!(run(FAST, &[f, Ready]).is_err());
        assert!(run(FAST, &[f, Pid(3)]).is_err(), "no intermediate, no pid");
        // The forked process failed before its parent's `Pid` reached us.
        assert_eq!(run(Peer::Exec { fork: true }, &[f, Pid(3)]), Ok(false));
        assert_eq!(run(SLOW, &[f, Pid(3)]), Ok(false));
        assert!(run(Peer::Exec { fork: true }, &[f, Pid(3), Ready]).is_err());
    }

    #[test]
    fn a_channel_carries_messages_and_fds_both_ways() {
        let (a, b) = socket_pair().unwrap();
        let mut parent = Channel::new(a, FAST);
        let child = b.as_raw_fd();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        send_with_fd(child, Listener, file.as_raw_fd()).unwrap();
        send(child, Ready).unwrap();
        let (m, fd) = parent.recv().unwrap().unwrap();
        assert_eq!(m, Listener);
        assert!(fd.is_some());
        assert_eq!(parent.recv().unwrap().map(|(m, _)| m), Some(Ready));
        assert!(parent.complete());
        parent.send_state(b"{\"status\":\"created\"}").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            recv_state(child, &mut buf).unwrap(),
            b"{\"status\":\"created\"}"
        );
        parent.send(ToChild::Go).unwrap();
        wait_go(child).unwrap();
        drop(b);
        assert!(parent.recv().unwrap().is_none());
    }
}
