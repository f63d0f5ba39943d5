//! OCI hooks of every kind, run for real: order, the state JSON on their stdin, args, env,
//! the namespaces they run in, timeouts and failures.
//!
//! The hooks are busybox invoked as `sh` through `args[0]` (which proves args[0] is passed
//! as given: busybox picks the applet by it) running a small script that records what it
//! saw in a log dir.

mod common;
mod support;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_runtime_core::Error;
use berth_runtime_core::oci_spec::runtime::{Hook, Hooks};
use common::{Bundle, TempDir, busybox};
use support::*;

/// Records, for hook kind `$1`: the order, stdin, `$0|$HOOK_VAR|mount ns|$2`, and the env.
const RECORD: &str = r#"echo "$1" >> "$LOGDIR/order"; cat > "$LOGDIR/$1.json"; echo "$0|$HOOK_VAR|$(readlink /proc/self/ns/mnt)|$2" > "$LOGDIR/$1.info"; env > "$LOGDIR/$1.env"; pwd -P > "$LOGDIR/$1.cwd""#;

fn hook(path: &Path, script: &str, kind: &str, env: &[String], timeout: Option<i64>) -> Hook {
    let mut h = Hook::default();
    h.set_path(path.to_path_buf());
    h.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        format!("argv0-{kind}"),
        kind.into(),
        "second arg".into(),
    ]));
    h.set_env(Some(env.to_vec()));
    h.set_timeout(timeout);
    h
}

fn log_dir() -> TempDir {
    let d = TempDir::new("berth-hooklog");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    d
}

fn host_env(log: &TempDir, kind: &str) -> Vec<String> {
    vec![
        format!("LOGDIR={}", log.path().display()),
        format!("HOOK_VAR=var-{kind}"),
        "PATH=/usr/bin:/bin".into(),
    ]
}

fn host_hook(log: &TempDir, kind: &str) -> Hook {
    hook(&busybox(), RECORD, kind, &host_env(log, kind), Some(10))
}

/// A startContainer hook recording into the container's `/out`: it runs after pivot_root, so
/// its path and LOGDIR are the container's.
fn container_hook() -> Hook {
    hook(
        Path::new("/bin/busybox"),
        RECORD,
        "startContainer",
        &[
            "LOGDIR=/out".into(),
            "HOOK_VAR=var-startContainer".into(),
            "PATH=/bin".into(),
        ],
        Some(10),
    )
}

/// Every hook kind but the deprecated prestart, each recording into `log` (startContainer
/// into the container's `/out`).
fn recording_hooks(log: &TempDir) -> Hooks {
    let mut hooks = Hooks::default();
    hooks.set_create_runtime(Some(vec![host_hook(log, "createRuntime")]));
    hooks.set_create_container(Some(vec![host_hook(log, "createContainer")]));
    hooks.set_start_container(Some(vec![container_hook()]));
    hooks.set_poststart(Some(vec![host_hook(log, "poststart")]));
    hooks.set_poststop(Some(vec![host_hook(log, "poststop")]));
    hooks
}

fn json(log: &TempDir, kind: &str) -> serde_json::Value {
    let text = read(log.path().join(format!("{kind}.json")));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{kind} stdin is not JSON ({e}): {text:?}"))
}

#[test]
fn every_hook_kind_runs_in_order_with_the_state() {
    let log = log_dir();
    let (mut b, out) = sh_bundle("echo program >> /out/order-program");
    b.spec.set_annotations(Some(HashMap::from([(
        "hook.test".to_string(),
        "1".to_string(),
    )])));
    let mut hooks = recording_hooks(&log);
    #[allow(deprecated)]
    hooks.set_prestart(Some(vec![host_hook(&log, "prestart")]));
    b.spec.set_hooks(Some(hooks));
    let h = Harness::new();
    let id = h.id("hooks");
    let host_mnt = ns_id("self", "mnt");

    let c = h.create(&id, &b).expect("create");
    let order = || {
        read(log.path().join("order"))
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(order(), ["prestart", "createRuntime", "createContainer"]);
    assert!(
        !out.path().join("startContainer.json").exists(),
        "startContainer ran at create"
    );
    h.rt.start(&id).expect("start");
    assert_eq!(
        order(),
        ["prestart", "createRuntime", "createContainer", "poststart"]
    );
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");
    assert_eq!(
        order(),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop"
        ]
    );
    assert_eq!(read(out.path().join("order")), "startContainer");

    let container_mnt = read(out.path().join("startContainer.info"))
        .split('|')
        .nth(2)
        .expect("ns field")
        .to_string();
    assert_ne!(container_mnt, host_mnt);
    // Copy the startContainer record next to the others.
    for ext in ["json", "info", "env"] {
        fs::copy(
            out.path().join(format!("startContainer.{ext}")),
            log.path().join(format!("startContainer.{ext}")),
        )
        .expect("copy");
    }

    for (kind, status, in_container) in [
        ("prestart", "created", false),
        ("createRuntime", "created", false),
        ("createContainer", "created", true),
        ("startContainer", "created", true),
        ("poststart", "running", false),
        ("poststop", "stopped", false),
    ] {
        let s = json(&log, kind);
        assert_eq!(s["status"], status, "{kind}: {s}");
        assert_eq!(s["id"], id.as_str(), "{kind}");
        assert_eq!(s["ociVersion"], b.spec.version().as_str(), "{kind}");
        assert_eq!(s["bundle"], b.path().to_str().expect("utf8"), "{kind}");
        assert_eq!(s["annotations"]["hook.test"], "1", "{kind}");
        if status != "stopped" {
            assert_eq!(s["pid"], c.pid(), "{kind}");
        }
        let info = read(log.path().join(format!("{kind}.info")));
        let f: Vec<&str> = info.split('|').collect();
        assert_eq!(f.len(), 4, "{kind}: {info}");
        assert_eq!(
            f[0],
            format!("argv0-{kind}"),
            "{kind}: args not passed as given"
        );
        assert_eq!(f[1], format!("var-{kind}"), "{kind}: env not passed");
        assert_eq!(f[3], "second arg", "{kind}: args not passed as given");
        if in_container {
            assert_eq!(
                f[2], container_mnt,
                "{kind} did not run in the container's mount ns"
            );
        } else {
            assert_eq!(
                f[2], host_mnt,
                "{kind} did not run in the runtime's mount ns"
            );
        }
        if kind == "createContainer" {
            // Spec-silent; runc runs it from the container's root, before pivot_root.
            let root = fs::canonicalize(b.rootfs()).expect("rootfs");
            assert_eq!(
                read(log.path().join("createContainer.cwd")).trim_end(),
                root.to_str().expect("utf8"),
                "createContainer cwd"
            );
        }
        // Only the hook's own env: nothing of the runtime's (cargo sets CARGO_* for tests).
        let env = read(log.path().join(format!("{kind}.env")));
        for l in env.lines() {
            let key = l.split('=').next().unwrap_or_default();
            assert!(
                ["LOGDIR", "HOOK_VAR", "PATH", "PWD", "SHLVL", "OLDPWD", "_"].contains(&key),
                "{kind}: unexpected env {l:?}"
            );
        }
    }
}

/// A createRuntime/createContainer hook that records its pid and hangs. Both kinds run
/// before pivot_root, where /proc is still the host's: the first field of /proc/self/stat,
/// read by the shell itself, is its pid on the host.
fn hanging_hook(log: &TempDir, kind: &str, timeout: i64) -> Hook {
    hook(
        &busybox(),
        r#"read -r me rest < /proc/self/stat; echo $me > "$LOGDIR/$1.pid"; exec sleep 30"#,
        kind,
        &host_env(log, kind),
        Some(timeout),
    )
}

fn hook_pid(log: &TempDir, kind: &str) -> i32 {
    read(log.path().join(format!("{kind}.pid")))
        .parse()
        .expect("pid")
}

#[test]
fn hook_timeouts_kill_the_hook_and_fail_create() {
    for kind in ["createRuntime", "createContainer"] {
        let log = log_dir();
        let mut b = Bundle::new();
        let mut hooks = Hooks::default();
        if kind == "createRuntime" {
            hooks.set_create_runtime(Some(vec![hanging_hook(&log, kind, 1)]));
        } else {
            hooks.set_create_container(Some(vec![hanging_hook(&log, kind, 1)]));
        }
        b.spec.set_hooks(Some(hooks));
        let h = Harness::exclusive();
        let before = children();
        let id = h.id("timeout");
        let t = Instant::now();
        let err = h.create(&id, &b).expect_err("create with a hanging hook");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{kind}: failed after only {took:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "{kind}: the timeout was not enforced ({took:?})"
        );
        match &err {
            Error::Hook {
                kind: k,
                index: 0,
                path,
                reason,
            } => {
                assert_eq!(*k, kind);
                assert_eq!(path, &busybox());
                assert!(reason.contains("timed out"), "{kind}: {reason}");
            }
            other => panic!("{kind}: expected a hook error, got {other:?}"),
        }
        let pid = hook_pid(&log, kind);
        assert!(
            wait_until(Duration::from_secs(2), || !alive(pid)),
            "{kind}: the hanging hook {pid} survived"
        );
        assert!(h.leftover_state().is_empty(), "{kind}: state left");
        assert_eq!(children(), before, "{kind}: create left a process behind");
    }
}

#[test]
fn failing_create_hooks_abort_create_and_leave_nothing() {
    for kind in ["createRuntime", "createContainer"] {
        let log = log_dir();
        let mut b = Bundle::new();
        let failing = hook(
            &busybox(),
            r#"cat > "$LOGDIR/$1.json"; exit 3"#,
            kind,
            &host_env(&log, kind),
            Some(10),
        );
        let never = hook(
            &busybox(),
            RECORD,
            "never",
            &host_env(&log, "never"),
            Some(10),
        );
        let mut hooks = Hooks::default();
        if kind == "createRuntime" {
            hooks.set_create_runtime(Some(vec![failing, never.clone()]));
        } else {
            hooks.set_create_container(Some(vec![failing, never.clone()]));
        }
        // The lifecycle goes on with poststop (runtime spec: "stop the container, and continue the
        // lifecycle at step 12").
        hooks.set_poststop(Some(vec![host_hook(&log, "poststop")]));
        b.spec.set_hooks(Some(hooks));
        let h = Harness::exclusive();
        let before = children();
        let id = h.id("hookfail");
        let err = h.create(&id, &b).expect_err("create with a failing hook");
        match &err {
            Error::Hook {
                kind: k,
                index: 0,
                path,
                reason,
            } => {
                assert_eq!(*k, kind);
                assert_eq!(path, &busybox(), "{kind}: the error does not name the hook");
                assert!(reason.contains('3'), "{kind}: {reason}");
            }
            other => panic!("{kind}: expected a hook error, got {other:?}"),
        }
        assert_err_contains(&err, &[kind, &busybox().display().to_string()]);
        let state = json(&log, kind);
        let init = state["pid"].as_i64().expect("pid in state") as i32;
        assert!(init > 0);
        assert!(
            !alive(init),
            "{kind}: the init {init} survived the failed create"
        );
        assert!(
            !log.path().join("never.json").exists(),
            "{kind}: a hook after the failing one ran"
        );
        assert_eq!(
            json(&log, "poststop")["status"],
            "stopped",
            "{kind}: poststop"
        );
        assert!(h.leftover_state().is_empty(), "{kind}: state left");
        assert_eq!(
            children(),
            before,
            "{kind}: create left a process or zombie behind"
        );
    }
}

#[test]
fn failing_start_container_hook_fails_start() {
    let (mut b, out) = sh_bundle("echo ran > /out/ran");
    let mut hooks = Hooks::default();
    hooks.set_start_container(Some(vec![hook(
        Path::new("/bin/busybox"),
        "exit 4",
        "startContainer",
        &[],
        Some(10),
    )]));
    b.spec.set_hooks(Some(hooks));
    let h = Harness::new();
    let id = h.id("schook");
    let c = h.create(&id, &b).expect("create");
    let err =
        h.rt.start(&id)
            .expect_err("start with a failing startContainer hook");
    assert!(matches!(err, Error::Start { .. }), "{err:?}");
    assert_err_contains(&err, &["startContainer", "/bin/busybox"]);
    assert_ne!(h.wait(&c), 0);
    assert!(
        !out.path().join("ran").exists(),
        "the program ran although its hook failed"
    );
    h.rt.delete(&id, false).expect("delete");
}

#[test]
fn failing_poststart_and_poststop_hooks_only_warn() {
    let log = log_dir();
    let (mut b, out) = sh_bundle("echo ran > /out/ran");
    let fail = |kind: &str| hook(&busybox(), "exit 1", kind, &host_env(&log, kind), Some(10));
    let mut hooks = Hooks::default();
    hooks.set_poststart(Some(vec![fail("poststart"), host_hook(&log, "poststart")]));
    hooks.set_poststop(Some(vec![
        fail("poststop"),
        hook(
            &PathBuf::from("/nonexistent/hook"),
            "",
            "poststop",
            &[],
            None,
        ),
        host_hook(&log, "poststop"),
    ]));
    b.spec.set_hooks(Some(hooks));
    let h = Harness::new();
    let id = h.id("posthooks");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id)
        .expect("start despite a failing poststart hook");
    assert_eq!(h.wait(&c), 0);
    assert_eq!(read(out.path().join("ran")), "ran");
    h.rt.delete(&id, false)
        .expect("delete despite failing poststop hooks");
    assert!(!h.state_dir(&id).exists());
    // The hooks after the failing ones still ran.
    assert_eq!(json(&log, "poststart")["status"], "running");
    assert_eq!(json(&log, "poststop")["status"], "stopped");
    // And each failure was reported through the runtime's warning sink.
    let warnings = h.warnings();
    for needle in [
        "poststart hook #0",
        "poststop hook #0",
        "poststop hook #1 (/nonexistent/hook)",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(needle)),
            "no warning with {needle:?}: {warnings:?}"
        );
    }
}

#[test]
fn run_in_one_step_runs_every_hook_kind_in_order() {
    let log = log_dir();
    let (mut b, out) = sh_bundle("echo program > /out/program");
    b.spec.set_hooks(Some(recording_hooks(&log)));
    let h = Harness::new();
    let id = h.id("runhooks");
    let c = h.run_started(&id, &b).expect("run");
    // poststart ran before run returned, after the program was exec'd.
    assert_eq!(
        read(log.path().join("order")),
        "createRuntime\ncreateContainer\npoststart"
    );
    assert_eq!(json(&log, "poststart")["status"], "running");
    assert_eq!(json(&log, "poststart")["pid"], c.pid());
    assert_eq!(h.wait(&c), 0);
    assert_eq!(read(out.path().join("order")), "startContainer");
    assert_eq!(read(out.path().join("program")), "program");
    h.rt.delete(&id, false).expect("delete");
    assert_eq!(json(&log, "poststop")["status"], "stopped");
}
