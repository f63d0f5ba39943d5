//! The metadata database: images, sandboxes and containers in one `redb` file.
//!
//! Every change is one write transaction committed with immediate durability, so a crash
//! (`kill -9`, power loss) leaves either the state before or after it, never a torn record.
//! A record is written only once the object it describes is complete (a sandbox with its
//! namespaces and network, a container whose task the shim created); what a crash leaves on
//! disk without a record is found and removed at startup ([`crate::Manager::open`]).

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandboxes");
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");

/// A pulled or imported image, keyed by its normalized name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// The normalized reference (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The image id CRI reports: the config's digest.
    pub id: String,
    /// What the name points at: a manifest or an index.
    pub top: String,
    /// The manifest chosen for this platform.
    pub manifest: String,
    /// The size of the manifest, config and layers.
    pub size: u64,
    /// The user the image's config names (`User`), for ImageStatus.
    pub user: String,
    /// Seconds since the epoch of the pull or import.
    pub created: i64,
}

/// A sandbox's life-cycle state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum SandboxState {
    /// Its namespaces and network exist.
    Ready,
    /// Stopped: its containers are stopped, its network torn down.
    NotReady,
}

/// A pod sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// 64 hex digits.
    pub id: String,
    /// The unique name made of the metadata (`name_namespace_uid_attempt`).
    pub name: String,
    /// The CRI config, as asked.
    pub config: k8s_cri::v1::PodSandboxConfig,
    /// The runtime handler asked for (berthd has one).
    pub runtime_handler: String,
    /// The state.
    pub state: SandboxState,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// The pinned namespaces (`<state>/pods/<id>/ns/{net,ipc,uts}`; absent = the host's).
    pub netns: Option<String>,
    /// The pinned IPC namespace, if not the host's.
    pub ipcns: Option<String>,
    /// The pinned UTS namespace, if not the host's.
    pub utsns: Option<String>,
    /// The pod's IPs on eth0 (v4 first).
    pub ips: Vec<String>,
    /// The cgroup parent of its containers (cgroupfs path).
    pub cgroup_parent: String,
}

/// A container's life-cycle state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ContainerState {
    /// Its task exists in the shim, not started.
    Created,
    /// Started.
    Running,
    /// Its init exited (exit code and time recorded).
    Exited,
    /// Lost: its shim is gone and nothing tells how it ended.
    Unknown,
}

/// A container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// Its pod.
    pub sandbox_id: String,
    /// The unique name (`name_sandboxname_attempt`).
    pub name: String,
    /// The CRI config, as asked.
    pub config: k8s_cri::v1::ContainerConfig,
    /// The image name as asked, and the image's id (config digest).
    pub image_ref: String,
    /// The image id.
    pub image_id: String,
    /// The state.
    pub state: ContainerState,
    /// The init's pid while it runs.
    pub pid: u32,
    /// Nanoseconds since the epoch (0: not yet).
    pub created_at: i64,
    /// Nanoseconds since the epoch (0: not yet).
    pub started_at: i64,
    /// Nanoseconds since the epoch (0: not yet).
    pub finished_at: i64,
    /// The init's exit status.
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, `Unknown`.
    pub reason: String,
    /// More about how it ended.
    pub message: String,
    /// The log file (`<sandbox log dir>/<log path>`), empty for none.
    pub log_path: String,
    /// The bundle directory.
    pub bundle: String,
}

/// The database.
#[derive(Debug)]
pub struct Db {
    db: Database,
}

fn decode<T: DeserializeOwned>(table: &str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Db(format!("record {table}/{key} does not decode: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Db(format!("encode record: {e}")))
}

impl Db {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> Result<Db> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        for t in [IMAGES, SANDBOXES, CONTAINERS] {
            tx.open_table(t)?;
        }
        tx.commit()?;
        Ok(Db { db })
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        v: &T,
    ) -> Result<()> {
        let bytes = encode(v)?;
        let tx = self.db.begin_write()?;
        tx.open_table(table)?.insert(key, bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        match t.get(key)? {
            Some(v) => decode(table.name(), key, v.value()).map(Some),
            None => Ok(None),
        }
    }

    fn all<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<T>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push(decode(table.name(), k.value(), v.value())?);
        }
        Ok(out)
    }

    fn remove(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<bool> {
        let tx = self.db.begin_write()?;
        let existed = tx.open_table(table)?.remove(key)?.is_some();
        tx.commit()?;
        Ok(existed)
    }

    /// Saves an image (replacing one of the same name).
    pub fn put_image(&self, r: &ImageRecord) -> Result<()> {
        self.put(IMAGES, &r.name, r)
    }
    /// The image of that name.
    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>> {
        self.get(IMAGES, name)
    }
    /// Every image.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.all(IMAGES)
    }
    /// Forgets an image name.
    pub fn remove_image(&self, name: &str) -> Result<bool> {
        self.remove(IMAGES, name)
    }

    /// Saves a sandbox.
    pub fn put_sandbox(&self, r: &SandboxRecord) -> Result<()> {
        self.put(SANDBOXES, &r.id, r)
    }
    /// The sandbox of that id.
    pub fn sandbox(&self, id: &str) -> Result<Option<SandboxRecord>> {
        self.get(SANDBOXES, id)
    }
    /// Every sandbox.
    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        self.all(SANDBOXES)
    }
    /// Forgets a sandbox.
    pub fn remove_sandbox(&self, id: &str) -> Result<bool> {
        self.remove(SANDBOXES, id)
    }

    /// Saves a container.
    pub fn put_container(&self, r: &ContainerRecord) -> Result<()> {
        self.put(CONTAINERS, &r.id, r)
    }
    /// The container of that id.
    pub fn container(&self, id: &str) -> Result<Option<ContainerRecord>> {
        self.get(CONTAINERS, id)
    }
    /// Every container.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        self.all(CONTAINERS)
    }
    /// Forgets a container.
    pub fn remove_container(&self, id: &str) -> Result<bool> {
        self.remove(CONTAINERS, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_bad_records_are_errors() {
        let dir = std::env::temp_dir().join(format!("berth-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("meta.redb");
        {
            let db = Db::open(&path).unwrap();
            let img = ImageRecord {
                name: "docker.io/library/busybox:latest".into(),
                id: "sha256:aa".into(),
                top: "sha256:bb".into(),
                manifest: "sha256:bb".into(),
                size: 10,
                user: String::new(),
                created: 1,
            };
            db.put_image(&img).unwrap();
            assert_eq!(db.image(&img.name).unwrap(), Some(img));
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.images().unwrap().len(), 1);
        assert!(db.remove_image("docker.io/library/busybox:latest").unwrap());
        assert!(!db.remove_image("docker.io/library/busybox:latest").unwrap());
        assert!(db.sandbox("nope").unwrap().is_none());
        // A record that does not decode is an error naming it, not a panic.
        let tx = db.db.begin_write().unwrap();
        tx.open_table(SANDBOXES)
            .unwrap()
            .insert("x", b"{".as_slice())
            .unwrap();
        tx.commit().unwrap();
        let e = db.sandbox("x").unwrap_err().to_string();
        assert!(e.contains("sandboxes/x"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
