mod common;
use common::*;

#[test]
fn probe() {
    let dir = TempDir::new("probe");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    println!("{}", c.report);
    for m in c.mountinfo() { println!("{:?}", m); }
    println!("{:?}", std::fs::read_dir(c.root_path("/dev")).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>());
    c.ok();
}
