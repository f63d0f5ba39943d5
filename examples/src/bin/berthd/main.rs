//! `berthd`: berth's containerd-like manager, serving Kubernetes' CRI on a unix socket.
//!
//! ```text
//! berthd [--root DIR] [--state DIR] [--address SOCKET] [--shim PATH]
//!        [--cni-conf-dir DIR] [--cni-bin-dir DIR]... [--cgroup-parent PATH]
//! ```
//!
//! Defaults: `--root /var/lib/berth`, `--state /run/berth`, `--address
//! /run/berth/berthd.sock`, the shim next to this binary, CNI from `/etc/cni/net.d` and
//! `/usr/lib/cni`, `/opt/cni/bin`. Bad arguments: a message and exit status 2; a failure to
//! start: a message and exit status 1. SIGTERM or SIGINT stop serving; containers keep
//! running under their shims and the next berthd picks them up.

use std::path::PathBuf;

const USAGE: &str = "usage: berthd [--root DIR] [--state DIR] [--address SOCKET] [--shim PATH] \
[--cni-conf-dir DIR] [--cni-bin-dir DIR]... [--cgroup-parent PATH]";

fn parse(args: Vec<String>) -> Result<berth_manager::Config, String> {
    let mut root = PathBuf::from("/var/lib/berth");
    let mut state = PathBuf::from("/run/berth");
    let mut address = None;
    let mut shim = None;
    let mut conf_dir = None;
    let mut bin_dirs = Vec::new();
    let mut cgroup_parent = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--version" {
            println!("berthd {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0);
        }
        let mut value = || -> Result<String, String> {
            let v = match inline.clone() {
                Some(v) => v,
                None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
            };
            if v.is_empty() {
                return Err(format!("{flag} needs a non-empty value"));
            }
            Ok(v)
        };
        match flag.as_str() {
            "--root" => root = PathBuf::from(value()?),
            "--state" => state = PathBuf::from(value()?),
            "--address" | "-a" => address = Some(PathBuf::from(value()?)),
            "--shim" => shim = Some(PathBuf::from(value()?)),
            "--cni-conf-dir" => conf_dir = Some(PathBuf::from(value()?)),
            "--cni-bin-dir" => bin_dirs.push(PathBuf::from(value()?)),
            "--cgroup-parent" => cgroup_parent = Some(value()?),
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    for (name, p) in [("--root", &root), ("--state", &state)] {
        if !p.is_absolute() {
            return Err(format!("{name} {} must be an absolute path", p.display()));
        }
    }
    let mut c = berth_manager::Config::new(root, &state);
    c.address = address.unwrap_or_else(|| PathBuf::from("/run/berth/berthd.sock"));
    if !c.address.is_absolute() {
        return Err(format!(
            "--address {} must be an absolute path",
            c.address.display()
        ));
    }
    if let Some(s) = shim {
        c.shim = s;
    }
    if let Some(d) = conf_dir {
        c.cni_conf_dir = d;
    }
    if !bin_dirs.is_empty() {
        c.cni_bin_dirs = bin_dirs;
    }
    if let Some(p) = cgroup_parent {
        c.cgroup_parent = p;
    }
    Ok(c)
}

fn main() {
    let config = match parse(std::env::args().skip(1).collect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let address = config.address.clone();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let r = rt.block_on(async move {
        let manager = berth_manager::Manager::open(config)?;
        eprintln!("berthd: serving CRI on {}", address.display());
        berth_manager::serve(manager, &address).await
    });
    if let Err(e) = r {
        eprintln!("berthd: {e}");
        std::process::exit(1);
    }
    // Blocking calls still in flight are not waited for: the shims keep the containers.
    std::process::exit(0)
}
