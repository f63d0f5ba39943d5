//! `delete`: the poststop hooks, what is left of the container killed, its cgroup and state
//! removed.

use std::path::Path;
use std::time::Duration;

use berth_cgroups::{CgroupManager, CgroupPath};

use crate::error::Error;
use crate::process::hooks::{self};
use crate::state::{self, ContainerDir, Record, Status};

use super::kill::kill_and_wait;
use super::{Container, Runtime, list, state_json};

impl Runtime {
    /// Deletes a container: refused while it runs unless `force` (then it is killed with
    /// SIGKILL and waited for). Runs the poststop hooks, kills what is left in its cgroup and
    /// removes the cgroup (waiting for those processes) and all its state.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        self.delete_with(ContainerDir::open(&self.root, id)?, force, None)
    }

    /// [`Runtime::delete`] of a container this process created (`berth run` deletes what it
    /// ran), with what create kept of it: its cgroup, opened, is not looked for again (the
    /// cgroup layout from mountinfo and each hierarchy's directory). If the id now names
    /// another container (this one was deleted meanwhile and the id reused), that one is
    /// left alone: [`Error::NotFound`].
    ///
    /// ```no_run
    /// use berth_runtime_core::{CreateOptions, Runtime};
    /// let rt = Runtime::new("/run/berth");
    /// let c = rt.run("demo", &CreateOptions::new("/tmp/bundle"))?;
    /// c.wait()?;
    /// rt.delete_container(c, false)?;
    /// # Ok::<(), berth_runtime_core::Error>(())
    /// ```
    pub fn delete_container(&self, container: Container, force: bool) -> Result<(), Error> {
        let dir = ContainerDir::open(&self.root, container.id())?;
        let kept = container.kept;
        self.delete_with(dir, force, Some((&kept.created, kept.cgroup)))
    }

    /// `delete` of the locked `dir`; `ours`: the `created` time of the container the caller
    /// made (another one is not found) and its cgroup, open.
    fn delete_with(
        &self,
        dir: ContainerDir,
        force: bool,
        ours: Option<(&str, Option<CgroupManager>)>,
    ) -> Result<(), Error> {
        let id = dir.id.clone();
        let id = id.as_str();
        let record = match dir.read_record() {
            Ok(Some(r)) => r,
            // A create that died before writing its first record made nothing else.
            Ok(None) if ours.is_none() => return dir.remove(),
            // Ours wrote one: this is another container's, still being made.
            Ok(None) => return Err(Error::NotFound { id: id.to_owned() }),
            Err(e @ Error::CorruptState { .. }) if force => return delete_corrupt(dir, e),
            Err(e) => return Err(e),
        };
        let cgroup = match ours {
            Some((created, _)) if created != record.created => {
                return Err(Error::NotFound { id: id.to_owned() });
            }
            Some((_, cg)) => cg,
            None => None,
        };
        // From here on the state dir goes last, so that a delete killed midway can be run
        // again: it still finds the processes to kill and the cgroup to remove.
        let status = state::live_status(&dir.path, &record);
        match status {
            Status::Stopped => {}
            // A create killed before it finished (it would hold the lock if it still ran):
            // its child, if any, waits for `Go` or for `start`.
            Status::Creating => kill_and_wait(&record)?,
            // The spec: deleting a container that is not stopped (`created` included, which
            // runc 1.1 deletes anyway) MUST be an error and leave it as it was.
            _ if force => kill_and_wait(&record)?,
            _ => {
                return Err(Error::InvalidState {
                    id: id.to_owned(),
                    status,
                    op: "delete",
                });
            }
        }
        let warnings = record
            .hooks
            .as_ref()
            .map(|h| {
                hooks::run_hooks_warn(
                    "poststop",
                    list(h.poststop()),
                    &state_json(&record, Status::Stopped),
                )
            })
            .unwrap_or_default();
        for w in warnings {
            (self.warn)(&w);
        }
        state::release_host_mounts(Path::new(&record.rootfs), record.host_mounts_above)?;
        destroy_cgroup(&record, cgroup)?;
        dir.remove()
    }
}

/// How long removing a cgroup waits for its processes to be gone.
pub(super) const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// `delete --force` of a container whose `state.json` is corrupt (or empty): its saved config
/// names its cgroup, which holds its processes; they are killed and the cgroup removed, then
/// the state dir. When the cgroup can't be known (no saved config, a relative cgroupsPath, or
/// no cgroup where a container may run without one) nothing is removed and the error says so.
fn delete_corrupt(dir: ContainerDir, corrupt: Error) -> Result<(), Error> {
    let fail = |why: String| Error::CorruptDelete {
        id: dir.id.clone(),
        dir: dir.path.clone(),
        reason: format!("{corrupt}; {why}"),
    };
    let spec = match dir.read_config() {
        Ok(Some(spec)) => spec,
        Ok(None) => return Err(fail("no saved config.json names its cgroup".into())),
        Err(e) => return Err(fail(e.to_string())),
    };
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let path = match CgroupPath::from_spec(cgroups_path.as_deref(), &dir.id) {
        Ok(CgroupPath::Absolute(p)) => p,
        Ok(_) => {
            return Err(fail(format!(
                "its linux.cgroupsPath {} is relative to the cgroup of the create that made it",
                cgroups_path.as_deref().unwrap_or(Path::new("")).display()
            )));
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let record = Record {
        id: dir.id.clone(),
        cgroup: Some(path.to_string_lossy().into_owned()),
        ..Record::default()
    };
    if record.cgroup_to_remove()?.is_none() && !nix::unistd::geteuid().is_root() {
        return Err(fail(format!(
            "its cgroup {} does not exist, and a rootless container may run without one",
            path.display()
        )));
    }
    kill_and_wait(&record)?;
    destroy_cgroup(&record, None)?;
    dir.remove()
}

/// Kills every process of the container's cgroup (thawing it so that they can die) and
/// removes the cgroup, waiting for the processes to be gone. A cgroup an interrupted create
/// or delete left in some hierarchies only is removed from those. `open`: the cgroup, when
/// the caller has it open already.
fn destroy_cgroup(record: &Record, open: Option<CgroupManager>) -> Result<(), Error> {
    let cg = match open {
        Some(cg) => Some(cg),
        None => record.cgroup_to_remove()?,
    };
    if let Some(cg) = cg {
        // Usually nothing is left once the init is gone: then the rmdirs are all there is.
        if !cg.remove_if_empty()? {
            cg.kill_all()?;
            let _ = cg.thaw();
            cg.remove(REMOVE_TIMEOUT)?;
        }
    }
    if let Some(g) = &record.intel_rdt {
        g.remove()?;
    }
    Ok(())
}
