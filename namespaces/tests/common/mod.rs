//! Shared helpers for the integration tests: config builders, forked children
//! that are always killed and reaped, pipes with timeouts, namespace inodes.
//!
//! Code that runs in a forked child (the closures given to `spawn`, and the
//! `*_raw` helpers) must not allocate or panic: the test harness is
//! multi-threaded, so the child is a copy of a process whose allocator lock may
//! be held by another thread.

#![allow(dead_code)]

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_namespaces::{ChildError, NamespaceKind, namespace_path};
use oci_spec::runtime::{
    Linux, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxTimeOffset, LinuxTimeOffsetBuilder,
};

// ---------------------------------------------------------------- config

/// A `linux.namespaces` entry: a type and an optional path.
pub fn ns(typ: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
    let b = LinuxNamespaceBuilder::default().typ(typ);
    match path {
        Some(p) => b.path(p).build().unwrap(),
        None => b.build().unwrap(),
    }
}

/// An id mapping `containerID hostID size`.
pub fn idmap(container: u32, host: u32, size: u32) -> LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .container_id(container)
        .host_id(host)
        .size(size)
        .build()
        .unwrap()
}

/// A time offset.
pub fn offset(secs: i64, nanosecs: u32) -> LinuxTimeOffset {
    LinuxTimeOffsetBuilder::default()
        .secs(secs)
        .nanosecs(nanosecs)
        .build()
        .unwrap()
}

/// A `Linux` section with exactly these fields set (everything else default,
/// `namespaces` as given, no mappings or offsets unless given).
pub fn linux(
    namespaces: Option<Vec<LinuxNamespace>>,
    uid: Option<Vec<LinuxIdMapping>>,
    gid: Option<Vec<LinuxIdMapping>>,
    offsets: Option<Vec<(&str, LinuxTimeOffset)>>,
) -> Linux {
    let mut l = Linux::default();
    l.set_namespaces(namespaces);
    l.set_uid_mappings(uid);
    l.set_gid_mappings(gid);
    l.set_time_offsets(offsets.map(|v| {
        v.into_iter()
            .map(|(k, o)| (k.to_owned(), o))
            .collect::<HashMap<_, _>>()
    }));
    l
}

// ---------------------------------------------------------------- files

/// A fresh directory under the system's temp dir, `berth-<tag>-<pid>-<n>`, removed with
/// everything in it on drop (also when the test fails).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- processes

/// A child process of the test; killed (SIGKILL) and reaped on drop unless
/// waited for, so a failing assertion never leaks it.
pub struct Proc {
    pub pid: libc::pid_t,
    reaped: bool,
}

impl Proc {
    /// Takes ownership of an existing child (e.g. a grandchild cloned with
    /// CLONE_PARENT, which is our child).
    pub fn adopt(pid: libc::pid_t) -> Self {
        assert!(pid > 0, "bad pid {pid}");
        Proc { pid, reaped: false }
    }

    /// Waits for the child and returns its exit code; panics if it was killed by a
    /// signal or does not exit within 30 s.
    pub fn wait(mut self) -> i32 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                self.reaped = true;
                assert!(
                    libc::WIFEXITED(status),
                    "child {} did not exit normally: status {status:#x}",
                    self.pid
                );
                return libc::WEXITSTATUS(status);
            }
            assert!(
                r == 0,
                "waitpid({}): {}",
                self.pid,
                std::io::Error::last_os_error()
            );
            assert!(
                std::time::Instant::now() < deadline,
                "child {} did not exit within 30 s",
                self.pid
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Raw fork-like `clone(2)` with `flags | SIGCHLD`: returns 0 in the child, the
/// child's pid in the parent, -1 on failure. Usable in a fragile child.
pub fn raw_clone(flags: libc::c_int) -> libc::pid_t {
    // SAFETY: clone without CLONE_VM and without a new stack behaves like fork:
    // the child gets a copy of the address space and continues from here.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    r as libc::pid_t
}

/// Clones a child with `flags` (plus SIGCHLD) that runs `f` and exits with its
/// return value. `f` runs in a fragile child: no allocation, no panics.
pub fn spawn<F: FnOnce() -> i32>(flags: libc::c_int, f: F) -> Proc {
    let pid = raw_clone(flags);
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    assert!(
        pid > 0,
        "clone({flags:#x}): {}",
        std::io::Error::last_os_error()
    );
    Proc::adopt(pid)
}

/// A child that lives in new namespaces `flags` until killed; `setup` runs
/// first (return non-zero to fail), then the child reports ready. Returns once
/// the child is ready.
pub fn spawn_target<F: FnOnce() -> i32>(flags: libc::c_int, setup: F) -> Proc {
    let ready = Pipe::new();
    let p = spawn(flags, || {
        let rc = setup();
        if rc != 0 {
            return rc;
        }
        if !write_all_raw(ready.w(), &[TAG_OK]) {
            return 97;
        }
        loop {
            // SAFETY: pause only waits for a signal (SIGKILL ends us).
            unsafe { libc::pause() };
        }
    });
    let mut b = [0u8; 1];
    read_exact_timeout(ready.r(), &mut b).expect("target child did not get ready");
    p
}

// ---------------------------------------------------------------- pipes

/// A CLOEXEC pipe.
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    pub fn new() -> Self {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a valid array of two ints.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
        // SAFETY: pipe2 just returned these two fds, owned by nobody else.
        unsafe {
            Pipe {
                r: OwnedFd::from_raw_fd(fds[0]),
                w: OwnedFd::from_raw_fd(fds[1]),
            }
        }
    }

    pub fn r(&self) -> RawFd {
        self.r.as_raw_fd()
    }

    pub fn w(&self) -> RawFd {
        self.w.as_raw_fd()
    }
}

pub const TAG_OK: u8 = 0x5a;
pub const TAG_ERR: u8 = 0xee;

/// Writes all of `buf`. Fragile-child safe.
pub fn write_all_raw(fd: RawFd, buf: &[u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let rest = &buf[done..];
        // SAFETY: rest is a live buffer.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return false;
        }
        done += n as usize;
    }
    true
}

/// Reads exactly `buf.len()` bytes (blocking). Fragile-child safe.
pub fn read_exact_raw(fd: RawFd, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: rest is a live, writable buffer.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n <= 0 {
            return false;
        }
        done += n as usize;
    }
    true
}

/// Child side: sends a ChildError record (TAG_ERR + 8 bytes) and returns exit code 1.
pub fn report_err(fd: RawFd, e: ChildError) -> i32 {
    let b = e.to_bytes();
    let msg = [TAG_ERR, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
    write_all_raw(fd, &msg);
    1
}

/// Child side: sends TAG_OK + payload. Payload at most 255 bytes.
pub fn report_ok(fd: RawFd, payload: &[u8]) -> bool {
    let mut msg = [0u8; 256];
    if payload.len() >= msg.len() {
        return false;
    }
    msg[0] = TAG_OK;
    msg[1..=payload.len()].copy_from_slice(payload);
    write_all_raw(fd, &msg[..=payload.len()])
}

/// Parent side: reads exactly `buf.len()` bytes, failing after 30 s.
pub fn read_exact_timeout(fd: RawFd, buf: &mut [u8]) -> Result<(), String> {
    let mut done = 0;
    while done < buf.len() {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, 30_000) };
        if rc == 0 {
            return Err(format!("timed out after {done} of {} bytes", buf.len()));
        }
        if rc < 0 {
            return Err(format!("poll: {}", std::io::Error::last_os_error()));
        }
        let rest = &mut buf[done..];
        // SAFETY: rest is a live, writable buffer.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n <= 0 {
            return Err(format!(
                "read: {} after {done} bytes",
                std::io::Error::last_os_error()
            ));
        }
        done += n as usize;
    }
    Ok(())
}

/// Parent side: reads one message: `Ok(payload)` or `Err(ChildError)`.
pub fn read_msg(fd: RawFd, len: usize) -> Result<Vec<u8>, ChildError> {
    let mut tag = [0u8; 1];
    read_exact_timeout(fd, &mut tag).unwrap();
    match tag[0] {
        TAG_OK => {
            let mut v = vec![0u8; len];
            read_exact_timeout(fd, &mut v).unwrap();
            Ok(v)
        }
        TAG_ERR => {
            let mut b = [0u8; 8];
            read_exact_timeout(fd, &mut b).unwrap();
            Err(ChildError::from_bytes(&b).expect("valid child error record"))
        }
        t => panic!("unexpected message tag {t:#x}"),
    }
}

/// Parent side: sends one byte (a "go" signal).
pub fn signal(fd: RawFd) {
    assert!(write_all_raw(fd, &[1]), "signal write failed");
}

/// Child side: waits for one byte.
pub fn wait_signal(fd: RawFd) -> bool {
    let mut b = [0u8; 1];
    read_exact_raw(fd, &mut b)
}

// ---------------------------------------------------------------- inspection

/// The inode number of a namespace file (follows the /proc magic link).
pub fn ino(path: impl AsRef<Path>) -> u64 {
    let p = path.as_ref();
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .ino()
}

/// Inode of `pid`'s namespace of kind `k`.
pub fn ns_ino(pid: libc::pid_t, k: NamespaceKind) -> u64 {
    ino(namespace_path(pid, k))
}

/// Inode of the test process's own namespace of kind `k`.
pub fn self_ino(k: NamespaceKind) -> u64 {
    ino(PathBuf::from("/proc/self/ns").join(k.proc_name()))
}

/// Parses a `/proc/<pid>/{uid,gid}_map` into (inside, outside, count) triples.
pub fn read_map(path: impl AsRef<Path>) -> Vec<(u32, u32, u32)> {
    let text = std::fs::read_to_string(path.as_ref()).unwrap();
    text.lines()
        .map(|l| {
            let v: Vec<u32> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert_eq!(v.len(), 3, "bad map line {l:?}");
            (v[0], v[1], v[2])
        })
        .collect()
}

/// A NUL-terminated C string in a fixed buffer, as a Rust string.
pub fn c_field(buf: &[u8]) -> String {
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Child side: uname's nodename and domainname into the two 65-byte halves of `out`.
pub fn uname_raw(out: &mut [u8; 130]) -> bool {
    // SAFETY: utsname is a plain C struct; all-zero is valid.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    for i in 0..65 {
        out[i] = u.nodename[i] as u8;
        out[65 + i] = u.domainname[i] as u8;
    }
    true
}

/// Child side: (secs, nanos) of a clock as 16 bytes.
// time_t and c_long are i64 on 64-bit targets only; keep the conversions.
#[allow(clippy::useless_conversion)]
pub fn clock_raw(clock: libc::clockid_t) -> [u8; 16] {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&i64::from(ts.tv_sec).to_ne_bytes());
    out[8..].copy_from_slice(&i64::from(ts.tv_nsec).to_ne_bytes());
    out
}

/// Parent side: a clock now, in seconds.
pub fn clock_now(clock: libc::clockid_t) -> f64 {
    let b = clock_raw(clock);
    clock_from(&b)
}

/// Parent side: decodes `clock_raw` bytes into seconds.
pub fn clock_from(b: &[u8]) -> f64 {
    let secs = i64::from_ne_bytes(b[..8].try_into().unwrap());
    let nanos = i64::from_ne_bytes(b[8..16].try_into().unwrap());
    secs as f64 + nanos as f64 / 1e9
}

/// Parent side: decodes a native-endian i32 at `at`.
pub fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}
