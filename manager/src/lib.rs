//! `berth-manager`: a containerd-like manager that speaks Kubernetes' CRI.
//!
//! [`Manager`] keeps images (pulled from registries or imported from archives into a
//! verified content store, unpacked once into a layer store), pod sandboxes (namespaces held
//! without a process, networks set up through CNI) and containers (each pod's handed to one
//! shim v2 process that outlives the manager), with their metadata in a transactional
//! database. [`serve`] answers CRI v1 (`runtime.v1.RuntimeService` and `ImageService`) on a
//! unix socket.
//!
//! Restart safety: a record is committed only once what it describes is complete; at
//! [`Manager::open`] the manager reconnects to every shim, takes the real exit of every
//! container that ended while it was down (from the shim, or from the exit file the shim
//! saved when the shim itself is gone), and removes whatever an interrupted operation left
//! without a record (bundles, snapshots, pinned namespaces, networks, blobs).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = berth_manager::Config::new("/var/lib/berth", "/run/berth");
//! let manager = berth_manager::Manager::open(config)?;
//! berth_manager::serve(manager, "/run/berth/berthd.sock".as_ref()).await?;
//! # Ok(()) }
//! ```

mod container;
mod cri_service;
mod db;
mod error;
mod events;
mod images;
mod sandbox;
mod shim;
mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use cri_service::serve;
pub use db::{ContainerRecord, ContainerState, ImageRecord, SandboxRecord, SandboxState};
pub use error::{Error, Result};

/// Where the manager keeps things and what it runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Persistent data: the database, content store, layers, containers' writable layers.
    pub root: PathBuf,
    /// Runtime state: bundles, pods' namespaces, the event socket.
    pub state: PathBuf,
    /// The CRI socket (shims hash it into their socket names).
    pub address: PathBuf,
    /// The shim v2 binary (`containerd-shim-berth-v2`).
    pub shim: PathBuf,
    /// The CNI config directory.
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugins are.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The shim namespace (containerd's namespace argument).
    pub namespace: String,
    /// The pods' cgroup parent when the pod config names none (cgroupfs path). Made with the
    /// first container in it, removed when the last pod in it is.
    pub cgroup_parent: String,
}

impl Config {
    /// Defaults for a root and a state directory: socket `<state>/berthd.sock`, the shim
    /// next to the running executable (else on `PATH`), CNI from `/etc/cni/net.d` and
    /// `/usr/lib/cni` + `/opt/cni/bin`.
    ///
    /// ```
    /// let c = berth_manager::Config::new("/var/lib/berth", "/run/berth");
    /// assert_eq!(c.address, std::path::Path::new("/run/berth/berthd.sock"));
    /// ```
    pub fn new(root: impl Into<PathBuf>, state: impl Into<PathBuf>) -> Config {
        let state = state.into();
        let shim = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("containerd-shim-berth-v2")))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("containerd-shim-berth-v2"));
        Config {
            root: root.into(),
            address: state.join("berthd.sock"),
            state,
            shim,
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            namespace: "berthd".into(),
            cgroup_parent: "/berthd".into(),
        }
    }
}

/// Per-object locks: one operation at a time on a sandbox or container.
#[derive(Debug, Default)]
struct Locks(Mutex<HashMap<String, Arc<Mutex<()>>>>);

impl Locks {
    fn of(&self, id: &str) -> Arc<Mutex<()>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 4096 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        Arc::clone(m.entry(id.to_owned()).or_default())
    }
}

/// Names being given out: a sandbox or container name is held from the moment it is checked
/// against the database until its record is stored or the attempt is given up, so that two
/// calls asking for one name can't both succeed while calls for different names run at once.
#[derive(Debug, Default)]
struct Names(Mutex<HashMap<(&'static str, String), String>>);

/// A name held by one call; dropping it gives the name back (the record stored by then holds
/// it from there on).
struct NameHold<'a> {
    names: &'a Names,
    key: (&'static str, String),
}

impl Drop for NameHold<'_> {
    fn drop(&mut self) {
        let mut m = self.names.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&self.key);
    }
}

impl Names {
    /// Holds `name` of `kind` for `id`, unless a call in flight holds it or `stored` (run
    /// with the holds locked, so that no record can appear between the two checks) finds
    /// the id of a stored record with that name.
    fn hold(
        &self,
        kind: &'static str,
        name: &str,
        id: &str,
        stored: impl FnOnce() -> Result<Option<String>>,
    ) -> Result<NameHold<'_>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (kind, name.to_owned());
        let owner = match m.get(&key) {
            Some(other) => Some(other.clone()),
            None => stored()?,
        };
        if let Some(id) = owner {
            return Err(Error::AlreadyExists {
                kind,
                name: name.to_owned(),
                id,
            });
        }
        m.insert(key.clone(), id.to_owned());
        Ok(NameHold { names: self, key })
    }
}

/// Runs `f` with the object's lock held.
fn locked<T>(locks: &Locks, id: &str, f: impl FnOnce() -> T) -> T {
    let l = locks.of(id);
    let _g = l.lock().unwrap_or_else(|p| p.into_inner());
    f()
}

/// The manager.
pub struct Manager {
    cfg: Config,
    db: db::Db,
    content: berth_image::ContentStore,
    layers: berth_image::LayerStore,
    shims: shim::Shims,
    cni: berth_cni::Cni,
    locks: Locks,
    names: Names,
    images_lock: Mutex<()>,
    /// Pulls and imports hold it shared, garbage collection exclusively.
    gc_lock: std::sync::RwLock<()>,
    /// Containers whose shim reported an OOM kill.
    oom: Mutex<std::collections::HashSet<String>>,
    min_oom_score_adj: i32,
    events_server: Mutex<Option<ttrpc::Server>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("cfg", &self.cfg).finish()
    }
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(p)
        .map_err(|e| Error::io("create directory", p, e))
}

/// Nanoseconds since the epoch.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A new 64-hex-digit id.
pub(crate) fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    let f =
        std::fs::File::open("/dev/urandom").map_err(|e| Error::io("open", "/dev/urandom", e))?;
    std::io::Read::read_exact(&mut &f, &mut b).map_err(|e| Error::io("read", "/dev/urandom", e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Manager {
    /// Opens the manager's directories and database, starts its event socket, and
    /// reconciles what it finds with what is running (see the crate documentation).
    pub fn open(cfg: Config) -> Result<Arc<Manager>> {
        for d in [&cfg.root, &cfg.state] {
            mkdir(d, 0o711)?;
        }
        for d in ["containers", "pods", "exec", "cni-cache"] {
            mkdir(&cfg.state.join(d), 0o711)?;
        }
        mkdir(&cfg.root.join("snapshots"), 0o711)?;
        let db = db::Db::open(&cfg.root.join("meta.redb"))?;
        let content = berth_image::ContentStore::open(cfg.root.join("content"))?;
        let layers = berth_image::LayerStore::open(cfg.root.join("layers"))?;
        let events_path = cfg.state.join("berthd.ttrpc");
        let shims = shim::Shims::new(
            cfg.shim.clone(),
            &cfg.namespace,
            &cfg.address.display().to_string(),
            &format!("unix://{}", events_path.display()),
        );
        let cni = berth_cni::Cni::new(
            cfg.cni_conf_dir.clone(),
            cfg.cni_bin_dirs.clone(),
            cfg.state.join("cni-cache"),
        );
        let min_oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let m = Arc::new(Manager {
            cfg,
            db,
            content,
            layers,
            shims,
            cni,
            locks: Locks::default(),
            names: Names::default(),
            images_lock: Mutex::new(()),
            gc_lock: std::sync::RwLock::new(()),
            oom: Mutex::new(Default::default()),
            min_oom_score_adj,
            events_server: Mutex::new(None),
        });
        let server = events::listen(&m, &events_path)?;
        *m.events_server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
        m.reconcile()?;
        Ok(m)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn bundle_of(&self, id: &str) -> PathBuf {
        self.cfg.state.join("containers").join(id)
    }

    fn pod_dir(&self, id: &str) -> PathBuf {
        self.cfg.state.join("pods").join(id)
    }

    fn snapshot_of(&self, id: &str) -> PathBuf {
        self.cfg.root.join("snapshots").join(id)
    }

    /// Restart: every container's state from its shim; leftovers of interrupted
    /// operations removed.
    fn reconcile(&self) -> Result<()> {
        let containers = self.db.containers()?;
        for c in &containers {
            self.reconcile_container(c)?;
        }
        let sandboxes = self.db.sandboxes()?;
        // Bundles without a record: a create interrupted before its commit.
        for id in dir_names(&self.cfg.state.join("containers")) {
            if !containers.iter().any(|c| c.id == id) {
                self.discard_container(&id, None);
            }
        }
        for id in dir_names(&self.cfg.root.join("snapshots")) {
            if !containers.iter().any(|c| c.id == id) {
                let _ = std::fs::remove_dir_all(self.snapshot_of(&id));
            }
        }
        for id in dir_names(&self.cfg.state.join("pods")) {
            if !sandboxes.iter().any(|s| s.id == id) {
                self.discard_pod_dir(&id);
            }
        }
        // Blobs of a pull interrupted before its image was recorded.
        self.collect_garbage()?;
        Ok(())
    }
}

impl Manager {
    /// Whether pods can get a network: Ok, or why not (CRI's NetworkReady condition).
    pub fn network_ready(&self) -> std::result::Result<(), String> {
        self.cni.status().map_err(|e| e.to_string())
    }
}

/// The names of the directories in `dir`.
fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
