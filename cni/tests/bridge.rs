//! Real plugins (Debian's containernetworking-plugins in /usr/lib/cni): bridge +
//! host-local + loopback between two pinned network namespaces. Needs root.

mod common;

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use berth_cni::Cni;
use common::{Scratch, have, is_root};

const PLUGINS: &str = "/usr/lib/cni";

/// How many `Host`s are alive, and `ip_forward` before the first: the bridge plugin
/// turns forwarding on for a gateway, and the last test to finish puts it back.
static FORWARD: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

/// Everything the test makes on the host, taken down on drop even when it fails.
struct Host {
    bridge: String,
    netns: Vec<PathBuf>,
}

impl Host {
    fn new(bridge: String) -> Self {
        let mut f = FORWARD.lock().unwrap_or_else(|e| e.into_inner());
        if f.0 == 0 {
            f.1 = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok();
        }
        f.0 += 1;
        Host {
            bridge,
            netns: Vec::new(),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for ns in &self.netns {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(ns)
                .stderr(std::process::Stdio::null())
                .status();
            let _ = fs::remove_file(ns);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        let mut f = FORWARD.lock().unwrap_or_else(|e| e.into_inner());
        f.0 -= 1;
        if f.0 == 0
            && let Some(v) = f.1.take()
        {
            let _ = fs::write("/proc/sys/net/ipv4/ip_forward", v);
        }
    }
}

impl Host {
    /// A new network namespace pinned at `path` (util-linux `unshare --net=FILE`).
    fn netns(&mut self, path: PathBuf) -> PathBuf {
        fs::write(&path, "").unwrap();
        self.netns.push(path.clone());
        let st = Command::new("unshare")
            .arg(format!("--net={}", path.display()))
            .arg("true")
            .status()
            .unwrap();
        assert!(st.success(), "unshare --net={path:?}");
        path
    }
}

fn ready() -> bool {
    is_root()
        && (Path::new(PLUGINS).join("bridge").exists()
            || common::skip("containernetworking-plugins not installed"))
        && have("unshare")
        && have("nsenter")
        && have("ip")
}

fn ping(from: &Path, to: IpAddr) -> bool {
    let net = format!("--net={}", from.display());
    let mut cmd = Command::new("nsenter");
    cmd.arg(&net);
    if Path::new("/bin/busybox").exists() {
        cmd.args(["/bin/busybox", "ping"]);
    } else {
        cmd.arg("ping");
    }
    cmd.args(["-c1", "-W2", &to.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Addresses host-local holds for the network (its files named by IP).
fn reservations(data_dir: &Path, network: &str) -> Vec<String> {
    fs::read_dir(data_dir.join(network))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn conflist(version: &str, bridge: &str, octet: u32, data_dir: &Path, portmap: bool) -> String {
    let pm = if portmap {
        r#",{"type":"portmap","capabilities":{"portMappings":true}}"#
    } else {
        ""
    };
    format!(
        r#"{{"cniVersion":"{version}","name":"berthtest","plugins":[
          {{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,
            "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.89.{octet}.0/24"}}]],
                     "dataDir":"{}"}}}},
          {{"type":"loopback"}}{pm}]}}"#,
        data_dir.display()
    )
}

fn pod_args(name: &str) -> Vec<(String, String)> {
    [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", "default"),
        ("K8S_POD_NAME", name),
        ("K8S_POD_INFRA_CONTAINER_ID", name),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn two_pods(version: &str, octet_offset: u32) {
    let s = Scratch::new();
    let pid = std::process::id();
    let mut host = Host::new(format!("bct{}{octet_offset}", pid % 10000));
    let octet = (pid % 100) * 2 + octet_offset + 20;
    let data_dir = s.root.join("ipam");
    s.write_conf(
        "10-test.conflist",
        &conflist(version, &host.bridge, octet, &data_dir, false),
    );
    let cni = Cni::new(s.conf(), vec![PLUGINS.into()], s.cache());
    cni.status().unwrap();

    let a = host.netns(s.root.join("ns-a"));
    let b = host.netns(s.root.join("ns-b"));
    let ra = cni
        .setup("poda", &a, "eth0", &pod_args("a"), serde_json::json!({}))
        .unwrap();
    let rb = cni
        .setup("podb", &b, "eth0", &pod_args("b"), serde_json::Value::Null)
        .unwrap();
    let (ia, ib) = (ra.ip_of("eth0"), rb.ip_of("eth0"));
    assert_eq!(ia.len(), 1, "{ra:?}");
    assert_eq!(ib.len(), 1, "{rb:?}");
    let prefix = format!("10.89.{octet}.");
    assert!(ia[0].to_string().starts_with(&prefix), "{ia:?}");
    assert!(ib[0].to_string().starts_with(&prefix), "{ib:?}");
    assert_ne!(ia, ib);
    assert!(
        ra.interfaces
            .iter()
            .any(|i| i.name == "eth0" && i.sandbox.as_deref() == Some(a.to_str().unwrap()))
    );
    assert_eq!(ra.cni_version, version);
    assert_eq!(
        ra.ips[0].gateway.as_deref(),
        Some(&*format!("10.89.{octet}.1"))
    );

    // The address really is on eth0 in the namespace, and lo is up.
    let net = format!("--net={}", a.display());
    let out = Command::new("nsenter")
        .args([&net, "ip", "-o", "addr"])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&out.stdout);
    assert!(
        addrs.contains(&format!("eth0    inet {}", ia[0])),
        "{addrs}"
    );
    assert!(addrs.contains("lo    inet 127.0.0.1"), "{addrs}");

    assert!(ping(&a, ib[0]), "a cannot ping b at {}", ib[0]);
    assert!(ping(&b, ia[0]), "b cannot ping a at {}", ia[0]);
    let mut held = reservations(&data_dir, "berthtest");
    held.sort();
    let mut want = vec![ia[0].to_string(), ib[0].to_string()];
    want.sort();
    assert_eq!(held, want);
    assert_eq!(s.cache_files().len(), 2);

    if version != "0.3.1" {
        cni.check("poda", &a, "eth0").unwrap();
        cni.check("podb", &b, "eth0").unwrap();
    }

    cni.teardown("poda", Some(&a), "eth0").unwrap();
    // b's namespace goes away before its teardown: DEL runs with an empty CNI_NETNS.
    let _ = Command::new("umount").arg(&b).status();
    fs::remove_file(&b).unwrap();
    cni.teardown("podb", Some(&b), "eth0").unwrap();
    assert_eq!(reservations(&data_dir, "berthtest"), Vec::<String>::new());
    assert_eq!(s.cache_files(), Vec::<PathBuf>::new());
    // Idempotent.
    cni.teardown("poda", Some(&a), "eth0").unwrap();
    cni.teardown("podb", None, "eth0").unwrap();
    assert!(!ping(&a, ib[0]));
    drop(host);
}

#[test]
fn bridge_host_local_loopback_v1_0_0() {
    if !ready() {
        return;
    }
    two_pods("1.0.0", 0);
}

#[test]
fn bridge_host_local_loopback_v0_4_0() {
    if !ready() {
        return;
    }
    two_pods("0.4.0", 1);
}

/// portmap (iptables DNAT) on top: a host port reaches the pod, and no longer after
/// teardown. portmap leaves its empty top-level CNI-HOSTPORT-* chains behind, as with
/// any runtime.
#[test]
fn portmap_forwards_a_host_port_to_the_pod() {
    let busybox = Path::new("/bin/busybox").exists() || common::skip("busybox-static missing");
    if !ready() || !have("iptables") || !busybox {
        return;
    }
    let s = Scratch::new();
    let pid = std::process::id();
    let mut host = Host::new(format!("bct{}9", pid % 10000));
    let octet = 220 + pid % 30; // the two_pods tests use 20..220
    let data_dir = s.root.join("ipam");
    s.write_conf(
        "10-test.conflist",
        &conflist("1.0.0", &host.bridge, octet, &data_dir, true),
    );
    let cni = Cni::new(s.conf(), vec![PLUGINS.into()], s.cache());
    let a = host.netns(s.root.join("ns-a"));
    let port = 20000 + (pid % 20000) as u16;
    let rc = serde_json::json!({"portMappings":[{"hostPort":port,"containerPort":8080,"protocol":"tcp"}]});
    let r = match cni.setup("podpm", &a, "eth0", &pod_args("pm"), rc) {
        Ok(r) => r,
        Err(e) => {
            // portmap needs a working iptables nat table.
            common::skip(&format!("portmap does not work here: {e}"));
            return;
        }
    };
    let ip = r.ip_of("eth0")[0];
    // A one-shot server in the pod answers "hello".
    let net = format!("--net={}", a.display());
    let mut server = Command::new("nsenter")
        .args([
            &net,
            "/bin/busybox",
            "sh",
            "-c",
            "echo hello | /bin/busybox nc -l -p 8080",
        ])
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(&mut server);
    let gw = format!("10.89.{octet}.1");
    let mut got = String::new();
    for _ in 0..50 {
        let out = Command::new("/bin/busybox")
            .args([
                "sh",
                "-c",
                &format!("/bin/busybox nc -w 2 {gw} {port} </dev/null"),
            ])
            .output()
            .unwrap();
        got = String::from_utf8_lossy(&out.stdout).into_owned();
        if got.contains("hello") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        got.contains("hello"),
        "nothing from {gw}:{port} -> {ip}:8080: {got:?}"
    );
    cni.teardown("podpm", Some(&a), "eth0").unwrap();
    let rules = Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains(&format!("--dport {port}")), "{rules}");
    assert_eq!(reservations(&data_dir, "berthtest"), Vec::<String>::new());
}
