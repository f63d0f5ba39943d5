//! `crilog://` stdio: real busybox containers run by `Tasks`, whose stdout and stderr the
//! shim writes into CRI log files, read back and parsed as the kubelet would.
//!
//! * lines on both streams into one file, a 40 KiB line (cut into `P` entries of 16 KiB and
//!   an `F`), a `\r\n` line, a last line without newline (a `P`): every entry parses
//!   (timestamp, stream, tag) and the streams reassemble to exactly what was printed;
//! * the output is in the file when `Tasks::wait` returns, even 2 MiB written right before
//!   the exit (most of the last 64 KiB still in the pipe when the process is reaped);
//! * an exec's `crilog://` stdout, and a terminal's output (logged as `stdout`, the pty's
//!   `\r\n` ends a line);
//! * `Tasks::reopen_log` while the container writes as fast as it can: the file renamed, the
//!   rest in the new file, not a line lost, duplicated or split between the two;
//! * the copier's wait for the end of file gives up after `DRAIN_TIMEOUT` when a writer
//!   keeps the pipe open, and goes on copying;
//! * a relative path, a missing directory, a CRI log as stdin: a clear error at create,
//!   nothing left (no container, process, cgroup or state).
//!
//! A plain `main` (harness = false): `Monitor::start` must come before any thread.

#[path = "common/bundle.rs"]
mod bundle;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_runtime_core::Runtime;
use berth_shim_core::crilog::{CriLog, DRAIN_TIMEOUT, MAX_LINE};
use berth_shim_core::monitor::Monitor;
use berth_shim_core::task::{CreateTask, Event, TaskError, Tasks};

use bundle::Namespaces;

/// The 40 KiB line (no newline in the file: `echo` adds it).
const LONG: usize = 40 * 1024;
/// Lines of the big output written right before an exit.
const BIG_LINES: usize = 100_000;

struct Ctx {
    tasks: Tasks,
    events: Arc<Mutex<Vec<Event>>>,
    base: PathBuf,
    rootfs: PathBuf,
    logs: PathBuf,
    parent: String,
}

impl Ctx {
    fn bundle(&self, id: &str, args: &[&str], pid_ns: bool) -> PathBuf {
        let dir = self.base.join("bundles").join(id);
        let ns = Namespaces {
            pid: pid_ns,
            net: false,
        };
        let spec = bundle::config(&self.rootfs, args, &format!("/{}/{id}", self.parent), ns);
        bundle::write_bundle(&dir, &spec);
        dir
    }

    fn create(&self, id: &str, args: &[&str], stdout: &str, stderr: &str) -> i32 {
        let mut req = CreateTask::new(id, self.bundle(id, args, true));
        req.stdout = stdout.to_owned();
        req.stderr = stderr.to_owned();
        self.tasks.create(req).expect("create")
    }
}

/// The content of the long line: no newline, no `\r`, not periodic in 16 KiB.
fn long_line() -> Vec<u8> {
    (0..LONG)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[(i * 7 + i / 1000) % 36])
        .collect()
}

/// One parsed entry.
#[derive(Debug, Clone)]
struct Entry {
    at: SystemTime,
    stream: String,
    full: bool,
    content: Vec<u8>,
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` as Go's `RFC3339Nano` writes it in UTC: 1 to
/// 9 fraction digits without a trailing zero, or none.
fn parse_timestamp(s: &str) -> SystemTime {
    let b = s.as_bytes();
    assert!(b.len() >= 20, "timestamp {s:?} too short");
    let num = |r: std::ops::Range<usize>| -> i64 {
        let t = &s[r];
        assert!(t.bytes().all(|c| c.is_ascii_digit()), "timestamp {s:?}");
        t.parse().expect("digits")
    };
    for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        assert_eq!(b[i], c, "timestamp {s:?}");
    }
    assert_eq!(b[b.len() - 1], b'Z', "timestamp {s:?} is not UTC");
    let (y, mo, d, h, mi, sec) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    );
    assert!((1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && sec < 60);
    let mut nanos = 0u32;
    if b.len() > 20 {
        assert_eq!(b[19], b'.', "timestamp {s:?}");
        let frac = &s[20..s.len() - 1];
        assert!(
            (1..=9).contains(&frac.len()) && !frac.ends_with('0'),
            "fraction of {s:?} (RFC3339Nano drops trailing zeros)"
        );
        nanos = num(20..s.len() - 1) as u32 * 10u32.pow(9 - frac.len() as u32);
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    UNIX_EPOCH + Duration::new(secs as u64, nanos)
}

/// Every entry of a CRI log file, checked: four fields, a stream, a tag, an end of line.
fn parse_log(path: &Path) -> Vec<Entry> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        data.is_empty() || data.ends_with(b"\n"),
        "{} does not end with a newline",
        path.display()
    );
    let mut out = Vec::new();
    for line in data.split(|&c| c == b'\n') {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(4, |&c| c == b' ');
        let ts = std::str::from_utf8(parts.next().expect("timestamp")).expect("utf-8 timestamp");
        let stream = String::from_utf8(parts.next().expect("stream").to_vec()).expect("utf-8");
        let tag = parts.next().expect("tag");
        let content = parts
            .next()
            .unwrap_or_else(|| panic!("entry {line:?}"))
            .to_vec();
        assert!(
            stream == "stdout" || stream == "stderr",
            "stream {stream:?}"
        );
        assert!(tag == b"F" || tag == b"P", "tag {tag:?}");
        assert!(
            content.len() <= MAX_LINE,
            "entry of {} bytes",
            content.len()
        );
        out.push(Entry {
            at: parse_timestamp(ts),
            stream,
            full: tag == b"F",
            content,
        });
    }
    out
}

/// What a stream printed, rebuilt from its entries (an `F` ends a line).
fn reassemble(entries: &[Entry], stream: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| e.stream == stream) {
        out.extend_from_slice(&e.content);
        if e.full {
            out.push(b'\n');
        }
    }
    out
}

fn exit_events(ctx: &Ctx, id: &str) -> usize {
    ctx.events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|e| matches!(e, Event::Exit { id: i, exec_id: None, .. } if i == id))
        .count()
}

fn both_streams_in_one_file(ctx: &Ctx) {
    let log = ctx.logs.join("c1.log");
    let spec = format!("crilog://{}", log.display());
    let script = "echo out1; echo err1 >&2; cat /long; echo; echo out2; echo err2 >&2; \
                  echo -e 'crlf\\r'; echo -n last";
    let started = SystemTime::now();
    ctx.create("c1", &["sh", "-c", script], &spec, &spec);
    ctx.tasks.start("c1", None).expect("start");
    let exit = ctx.tasks.wait("c1", None).expect("wait");
    assert_eq!(exit.status, 0);
    // Read as soon as the wait returned: everything must be there already.
    let entries = parse_log(&log);
    assert_eq!(exit_events(ctx, "c1"), 1, "the exit event was sent");
    ctx.tasks.delete("c1", None).expect("delete");

    let mut expected = b"out1\n".to_vec();
    expected.extend_from_slice(&long_line());
    expected.extend_from_slice(b"\nout2\ncrlf\nlast");
    let stdout = reassemble(&entries, "stdout");
    assert_eq!(
        stdout.len(),
        expected.len(),
        "stdout reassembled: {} bytes, printed {}",
        stdout.len(),
        expected.len()
    );
    assert!(stdout == expected, "stdout reassembled differs");
    assert_eq!(reassemble(&entries, "stderr"), b"err1\nerr2\n");
    // The long line: P entries of exactly MAX_LINE bytes, then an F with the rest.
    let tags: Vec<(bool, usize)> = entries
        .iter()
        .filter(|e| e.stream == "stdout")
        .map(|e| (e.full, e.content.len()))
        .collect();
    assert_eq!(
        tags,
        [
            (true, 4),
            (false, MAX_LINE),
            (false, MAX_LINE),
            (true, LONG - 2 * MAX_LINE),
            (true, 4),
            (true, 4),
            (false, 4),
        ],
        "stdout entries (full, length)"
    );
    let now = SystemTime::now();
    for e in &entries {
        assert!(
            e.at + Duration::from_secs(1) >= started && e.at <= now + Duration::from_secs(1),
            "timestamp {:?} not between {started:?} and {now:?}",
            e.at
        );
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&log).expect("stat log").permissions(),
    );
    assert_eq!(mode & 0o777, 0o640, "log file mode");
}

fn output_is_written_before_the_exit(ctx: &Ctx) {
    for round in 0..3 {
        let id = format!("big{round}");
        let out = ctx.logs.join(format!("{id}.out.log"));
        let err = ctx.logs.join(format!("{id}.err.log"));
        ctx.create(
            &id,
            &["sh", "-c", "cat /big; echo done >&2; exit 3"],
            &format!("crilog://{}", out.display()),
            &format!("crilog://{}", err.display()),
        );
        ctx.tasks.start(&id, None).expect("start");
        let exit = ctx.tasks.wait(&id, None).expect("wait");
        assert_eq!(exit.status, 3);
        let entries = parse_log(&out);
        let errs = parse_log(&err);
        ctx.tasks.delete(&id, None).expect("delete");
        assert_eq!(
            entries.len(),
            BIG_LINES,
            "{id}: entries in the log after wait"
        );
        for (i, e) in entries.iter().enumerate() {
            assert!(e.full && e.stream == "stdout");
            assert_eq!(e.content, format!("line {i}").as_bytes(), "{id}: entry {i}");
        }
        assert!(
            entries.windows(2).all(|w| w[0].at <= w[1].at),
            "{id}: timestamps go back"
        );
        assert_eq!(reassemble(&errs, "stderr"), b"done\n");
        assert!(errs.iter().all(|e| e.stream == "stderr"));
    }
}

fn exec_writes_its_own_log(ctx: &Ctx) {
    let id = "ex";
    ctx.create(id, &["sleep", "3600"], "", "");
    ctx.tasks.start(id, None).expect("start");
    let log = ctx.logs.join("exec.log");
    let spec = bundle::config(
        &ctx.rootfs,
        &["sleep", "1"],
        "/x",
        Namespaces {
            pid: true,
            net: false,
        },
    );
    let process = bundle::exec_process(&spec, &["sh", "-c", "echo from-exec; echo oops >&2"]);
    let path = format!("crilog://{}", log.display());
    ctx.tasks
        .exec(
            id,
            "e1",
            process,
            false,
            [String::new(), path.clone(), path],
        )
        .expect("exec");
    ctx.tasks.start(id, Some("e1")).expect("start exec");
    let exit = ctx.tasks.wait(id, Some("e1")).expect("wait exec");
    assert_eq!(exit.status, 0);
    let entries = parse_log(&log);
    assert_eq!(reassemble(&entries, "stdout"), b"from-exec\n");
    assert_eq!(reassemble(&entries, "stderr"), b"oops\n");
    // The init has no CRI log.
    match ctx.tasks.reopen_log(id) {
        Err(TaskError::FailedPrecondition(m)) => assert!(m.contains("no crilog"), "{m}"),
        r => panic!("reopen_log without a CRI log: {r:?}"),
    }
    ctx.tasks
        .kill(id, None, libc::SIGKILL, false)
        .expect("kill");
    ctx.tasks.wait(id, None).expect("wait");
    ctx.tasks.delete(id, None).expect("delete");
}

fn terminal_output_is_logged_as_stdout(ctx: &Ctx) {
    let id = "tty";
    let log = ctx.logs.join("tty.log");
    let ns = Namespaces {
        pid: true,
        net: false,
    };
    let script = "echo hello; echo world >&2; echo -n end";
    let mut spec = bundle::config(
        &ctx.rootfs,
        &["sh", "-c", script],
        &format!("/{}/{id}", ctx.parent),
        ns,
    );
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(true));
    }
    let dir = ctx.base.join("bundles").join(id);
    bundle::write_bundle(&dir, &spec);
    let mut req = CreateTask::new(id, dir);
    req.terminal = true;
    req.stdout = format!("crilog://{}", log.display());
    ctx.tasks.create(req).expect("create with a terminal");
    ctx.tasks.start(id, None).expect("start");
    assert_eq!(ctx.tasks.wait(id, None).expect("wait").status, 0);
    let entries = parse_log(&log);
    ctx.tasks.delete(id, None).expect("delete");
    // The pty turns each \n into \r\n: the \r goes with the newline.
    assert!(entries.iter().all(|e| e.stream == "stdout"));
    assert_eq!(reassemble(&entries, "stdout"), b"hello\nworld\nend");
}

fn reopen_moves_to_a_new_file(ctx: &Ctx) {
    let id = "rot";
    let log = ctx.logs.join("rot.log");
    let old = ctx.logs.join("rot.log.1");
    let spec = format!("crilog://{}", log.display());
    let script = "i=0; while true; do echo line$i; i=$((i+1)); done";
    ctx.create(id, &["sh", "-c", script], &spec, &spec);
    ctx.tasks.start(id, None).expect("start");
    let wait_for_size = |p: &Path, size: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) < size {
            assert!(Instant::now() < deadline, "{} does not grow", p.display());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for_size(&log, 200_000);
    std::fs::rename(&log, &old).expect("rename the log");
    // Still written to the renamed file until the reopen.
    std::thread::sleep(Duration::from_millis(50));
    ctx.tasks.reopen_log(id).expect("reopen_log");
    wait_for_size(&log, 200_000);
    ctx.tasks
        .kill(id, None, libc::SIGKILL, false)
        .expect("kill");
    assert_eq!(ctx.tasks.wait(id, None).expect("wait").status, 137);
    let (first, second) = (parse_log(&old), parse_log(&log));
    ctx.tasks.delete(id, None).expect("delete");
    assert!(!first.is_empty() && !second.is_empty());
    let mut n = 0usize;
    for (file, entries) in [("old", &first), ("new", &second)] {
        for e in entries.iter() {
            assert!(e.full, "{file}: a partial entry {:?}", e.content);
            assert_eq!(e.stream, "stdout");
            assert_eq!(
                e.content,
                format!("line{n}").as_bytes(),
                "{file} file: line {n} lost, duplicated or split"
            );
            n += 1;
        }
    }
    println!(
        "  reopen: {} lines in the renamed file, {} in the new one",
        first.len(),
        second.len()
    );
}

fn drain_gives_up_on_an_open_pipe(ctx: &Ctx) {
    let log = ctx.logs.join("held.log");
    let (cri, [out, _]) = CriLog::start(Some(&log), None).expect("start the copier");
    let out = out.expect("a stdout pipe");
    nix::unistd::write(&out, b"before\nhalf").expect("write");
    let (tx, rx) = std::sync::mpsc::channel();
    let asked = Instant::now();
    cri.drain().then(move || {
        let _ = tx.send(Instant::now());
    });
    let fired = rx
        .recv_timeout(DRAIN_TIMEOUT + Duration::from_secs(3))
        .expect("the drain wait never gave up");
    let waited = fired - asked;
    assert!(
        waited >= DRAIN_TIMEOUT - Duration::from_millis(50),
        "gave up after {waited:?}"
    );
    assert_eq!(reassemble(&parse_log(&log), "stdout"), b"before\n");
    // Still copying; a later `then` runs at once.
    let (tx2, rx2) = std::sync::mpsc::channel();
    cri.drain().then(move || {
        let _ = tx2.send(());
    });
    rx2.try_recv().expect("a then after giving up runs at once");
    nix::unistd::write(&out, b"-rest\n").expect("write");
    drop(out);
    let deadline = Instant::now() + Duration::from_secs(5);
    while reassemble(&parse_log(&log), "stdout") != b"before\nhalf-rest\n" {
        assert!(
            Instant::now() < deadline,
            "the copier stopped after giving up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(cri);
}

fn bad_paths_fail_and_leave_nothing(ctx: &Ctx) {
    let missing = ctx.base.join("no-such-dir").join("c.log");
    let cases = [
        ("bad1", "crilog://relative/c.log".to_owned(), "", "absolute"),
        (
            "bad2",
            format!("crilog://{}", missing.display()),
            "",
            "directory must exist",
        ),
        (
            "bad3",
            String::new(),
            "crilog:///tmp/x.log",
            "stdout and stderr only",
        ),
    ];
    for (id, out, input, says) in cases {
        let mut req = CreateTask::new(id, ctx.bundle(id, &["sleep", "3600"], true));
        req.stdout = out.clone();
        req.stderr = out;
        req.stdin = input.to_owned();
        match ctx.tasks.create(req) {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(says),
                    "{id}: error {msg:?} does not say {says:?}"
                );
                println!("  {id}: {msg}");
            }
            Ok(pid) => panic!("{id}: created (pid {pid}) with a bad CRI log path"),
        }
        assert!(
            ctx.tasks.state(id, None).is_err(),
            "{id}: a container is left"
        );
        let cg = bundle::cgroups_under(&ctx.parent);
        assert!(
            !cg.iter().any(|p| p.ends_with(id)),
            "{id}: cgroup left: {cg:?}"
        );
        assert!(
            !ctx.base.join("state").join(id).exists(),
            "{id}: runtime state left"
        );
    }
    assert!(!missing.parent().is_some_and(Path::exists));
    assert!(!Path::new("/tmp/x.log").exists());
    let children = bundle::children();
    assert!(children.is_empty(), "children left: {children:?}");
}

type Test = (&'static str, fn(&Ctx));

const TESTS: &[Test] = &[
    ("both_streams_in_one_file", both_streams_in_one_file),
    (
        "output_is_written_before_the_exit",
        output_is_written_before_the_exit,
    ),
    ("exec_writes_its_own_log", exec_writes_its_own_log),
    (
        "terminal_output_is_logged_as_stdout",
        terminal_output_is_logged_as_stdout,
    ),
    ("reopen_moves_to_a_new_file", reopen_moves_to_a_new_file),
    (
        "drain_gives_up_on_an_open_pipe",
        drain_gives_up_on_an_open_pipe,
    ),
    (
        "bad_paths_fail_and_leave_nothing",
        bad_paths_fail_and_leave_nothing,
    ),
];

fn main() {
    let monitor = Monitor::start().expect("start the exit monitor");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let pid = std::process::id();
    let base = std::env::temp_dir().join(format!("berth-test-crilog-{pid}"));
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let ev = Arc::clone(&events);
    let tasks = Tasks::new(Runtime::new(base.join("state")), monitor, move |e| {
        ev.lock().unwrap_or_else(|p| p.into_inner()).push(e)
    });
    let ctx = Ctx {
        tasks,
        events,
        rootfs: base.join("rootfs"),
        logs: base.join("logs"),
        base,
        parent: format!("berth-test-crilog-{pid}"),
    };
    // Before any container: the rootfs' files are closed when the first init is cloned.
    std::fs::create_dir_all(&ctx.logs).expect("create the test's temp dir");
    bundle::busybox_rootfs(&ctx.rootfs);
    std::fs::write(ctx.rootfs.join("long"), long_line()).expect("write /long");
    let big: String = (0..BIG_LINES).map(|i| format!("line {i}\n")).collect();
    std::fs::write(ctx.rootfs.join("big"), big).expect("write /big");

    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in TESTS {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        ran += 1;
        match catch_unwind(AssertUnwindSafe(|| f(&ctx))) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    // Whatever a failed test left: its containers, cgroups, mounts, files.
    let runtime = Runtime::new(ctx.base.join("state"));
    for id in [
        "c1", "big0", "big1", "big2", "ex", "tty", "rot", "bad1", "bad2", "bad3",
    ] {
        let _ = ctx.tasks.kill(id, None, libc::SIGKILL, true);
        let deadline = Instant::now() + Duration::from_secs(5);
        while ctx.tasks.delete(id, None).is_err()
            && ctx.tasks.state(id, None).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = runtime.delete(id, true);
    }
    let cgroups = bundle::remove_cgroups(&ctx.parent);
    bundle::unmount_under(&ctx.base);
    let mounts = bundle::mounts_under(&ctx.base);
    let _ = std::fs::remove_dir_all(&ctx.base);
    if !cgroups.is_empty() || !mounts.is_empty() {
        println!("left behind: cgroups {cgroups:?}, mounts {mounts:?}");
        failed.push("clean-up");
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len().min(ran),
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}
