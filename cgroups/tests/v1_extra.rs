//! v1 controllers this development VM does not mount: net_cls/net_prio for real in a private
//! mount namespace (never on the host; on the host's own hierarchy where it has one, as in
//! the VM lane), hugetlb and rdma against a fake v1 tree.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use berth_cgroups::{CgroupManager, CgroupPath, Layout};
use common::*;

/// Runs `netcls_helper` in a child process (this test binary again) that first
/// unshares a mount namespace with private propagation: its net_cls,net_prio mount
/// vanishes with it.
/// On a host that mounts net_cls,net_prio (a real v1 host, the VM lane's), the same check runs
/// on the host's hierarchy.
#[test]
fn net_cls_and_net_prio_in_a_private_mount_namespace() {
    if Layout::detect()
        .unwrap()
        .v1_controllers()
        .contains(&"net_cls")
    {
        check_net_cls();
        return;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "netcls_helper",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    // SAFETY: the closure runs between fork and exec and only makes two raw syscalls
    // on static C strings.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains("netcls helper done")
            && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by net_cls_and_net_prio_in_a_private_mount_namespace in its own mount namespace"]
fn netcls_helper() {
    let ns = |p: &str| fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
    // The parent is the test process that unshared us (or whoever ran us directly).
    // SAFETY: getppid(2) has no arguments and cannot fail.
    let parent = unsafe { libc::getppid() }.to_string();
    assert_ne!(
        ns("self"),
        ns(&parent),
        "refusing to mount a cgroup hierarchy in the host's mount namespace"
    );
    let tmp = TempDir::new("netcls");
    let target = std::ffi::CString::new(tmp.0.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mount(2) with valid C strings that outlive the call.
    let r = unsafe {
        libc::mount(
            c"cgroup".as_ptr(),
            target.as_ptr(),
            c"cgroup".as_ptr(),
            0,
            c"net_cls,net_prio".as_ptr().cast(),
        )
    };
    assert_eq!(
        r,
        0,
        "mount net_cls,net_prio: {}",
        std::io::Error::last_os_error()
    );
    struct Umount(std::ffi::CString);
    impl Drop for Umount {
        fn drop(&mut self) {
            // SAFETY: umount2 of the mount made above, with a valid C string.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let _umount = Umount(target);
    check_net_cls();
    // Unmount only once the kernel has freed the removed cgroup: a hierarchy that
    // still has a (dying) child when its last mount goes is kept by the kernel.
    let net_cls_cgroups = || {
        fs::read_to_string("/proc/cgroups")
            .unwrap()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&"net_cls")).then(|| f.get(2).map(|n| n.to_string()))
            })
            .flatten()
    };
    eventually(10, "the removed net_cls cgroup to be freed", || {
        net_cls_cgroups().as_deref() == Some("1")
    });
    println!("netcls helper done");
}

/// A container cgroup with a class id and an interface priority, read back, then removed.
fn check_net_cls() {
    let layout = Layout::detect().unwrap();
    assert!(layout.v1_controllers().contains(&"net_cls"));
    let r =
        res(r#"{"network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 5}]}}"#);
    let (cg, w) = CgroupManager::create(&layout, &test_path("netcls"), Some(&r)).unwrap();
    let g = Guard::new(cg);
    assert!(w.is_empty());
    let d = g.dir("net_cls");
    assert_eq!(read(&d, "net_cls.classid"), "1048577");
    assert!(read(&d, "net_prio.ifpriomap").lines().any(|l| l == "lo 5"));
    drop(g);
    assert!(!d.exists());
}

#[test]
fn hugetlb_and_rdma_v1_files_on_a_fake_tree() {
    let tmp = TempDir::new("v1fake");
    let mountinfo = format!(
        "1 0 0:99 / {} rw - cgroup cgroup rw,hugetlb,rdma\n",
        tmp.0.display()
    );
    let layout = Layout::from_proc(&mountinfo, "3:hugetlb,rdma:/\n").unwrap();
    let name = unique("v1fake");
    let leaf = tmp.0.join(&name);
    fs::create_dir(&leaf).unwrap();
    for (f, v) in [
        ("cgroup.procs", ""),
        ("hugetlb.2MB.limit_in_bytes", "9223372036854771712"),
        ("hugetlb.2MB.rsvd.limit_in_bytes", "9223372036854771712"),
        ("hugetlb.2MB.usage_in_bytes", "4194304"),
        ("hugetlb.2MB.max_usage_in_bytes", "8388608"),
        ("hugetlb.2MB.failcnt", "2"),
        ("hugetlb.1GB.limit_in_bytes", "9223372036854771712"),
        ("rdma.max", ""),
    ] {
        fs::write(leaf.join(f), v).unwrap();
    }
    let path = CgroupPath::from_spec(Some(Path::new(&name)), "x").unwrap();
    let r = res(
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 6291456}, {"pageSize": "1GB", "limit": -1}],
                    "rdma": {"mlx4_0": {"hcaHandles": 2, "hcaObjects": 2000}}}"#,
    );
    let (cg, w) = CgroupManager::create(&layout, &path, Some(&r)).unwrap();
    assert!(w.is_empty());
    assert_eq!(read(&leaf, "hugetlb.2MB.limit_in_bytes"), "6291456");
    assert_eq!(read(&leaf, "hugetlb.2MB.rsvd.limit_in_bytes"), "6291456");
    assert_eq!(read(&leaf, "hugetlb.1GB.limit_in_bytes"), "-1");
    assert_eq!(
        read(&leaf, "rdma.max"),
        "mlx4_0 hca_handle=2 hca_object=2000"
    );
    if berth_cgroups::hugepage_sizes().contains(&"2MB".to_string()) {
        let s = cg.stats().unwrap();
        assert_eq!(s.hugetlb["2MB"].usage, 4_194_304);
        assert_eq!(s.hugetlb["2MB"].max_usage, 8_388_608);
        assert_eq!(s.hugetlb["2MB"].failcnt, 2);
    }
}

/// The kernel refuses cpu.shares for an idle group (cpu.idle = 1, EINVAL): one update
/// that leaves idle and sets shares writes cpu.idle first.
#[test]
fn idle_and_shares_in_either_direction_v1() {
    let layout = berth_cgroups::Layout::detect().unwrap();
    if !layout.v1_controllers().contains(&"cpu") {
        println!("SKIP: no v1 cpu controller");
        return;
    }
    let g = create(
        "v1idle",
        Some(&res(r#"{"cpu": {"shares": 2048, "idle": 1}}"#)),
    );
    let d = g.dir("cpu");
    if !d.join("cpu.idle").exists() {
        println!("SKIP: this kernel has no cpu.idle");
        return;
    }
    assert_eq!(read(&d, "cpu.idle"), "1");
    g.cg.update(&res(r#"{"cpu": {"shares": 512, "idle": 0}}"#))
        .unwrap();
    assert_eq!(read(&d, "cpu.idle"), "0");
    assert_eq!(read(&d, "cpu.shares"), "512");
    g.cg.update(&res(r#"{"cpu": {"shares": 1024, "idle": 1}}"#))
        .unwrap();
    assert_eq!(read(&d, "cpu.idle"), "1");
}

/// The kernel keeps cpu.cfs_burst_us <= cpu.cfs_quota_us at every step (EINVAL):
/// lowering both writes the burst first, raising both the quota first.
#[test]
fn burst_and_quota_in_either_direction_v1() {
    let layout = berth_cgroups::Layout::detect().unwrap();
    if !layout.v1_controllers().contains(&"cpu") {
        println!("SKIP: no v1 cpu controller");
        return;
    }
    let g = create(
        "v1burst",
        Some(&res(
            r#"{"cpu": {"quota": 50000, "period": 100000, "burst": 40000}}"#,
        )),
    );
    let d = g.dir("cpu");
    if !d.join("cpu.cfs_burst_us").exists() {
        println!("SKIP: this kernel has no cpu.cfs_burst_us");
        return;
    }
    assert_eq!(read(&d, "cpu.cfs_burst_us"), "40000");
    g.cg.update(&res(r#"{"cpu": {"quota": 10000, "burst": 5000}}"#))
        .unwrap();
    assert_eq!(read(&d, "cpu.cfs_quota_us"), "10000");
    assert_eq!(read(&d, "cpu.cfs_burst_us"), "5000");
    g.cg.update(&res(r#"{"cpu": {"quota": 200000, "burst": 150000}}"#))
        .unwrap();
    assert_eq!(read(&d, "cpu.cfs_quota_us"), "200000");
    assert_eq!(read(&d, "cpu.cfs_burst_us"), "150000");
}
