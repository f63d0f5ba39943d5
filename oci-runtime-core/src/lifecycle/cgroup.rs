//! The operations on a container's cgroup: pause, resume, update, ps, stats, OOM events.

use oci_spec::runtime::LinuxResources;

use super::Runtime;
use crate::error::Error;
use crate::state::{self, Status};

impl Runtime {
    /// Pauses a running container: freezes every process of its cgroup.
    pub fn pause(&self, id: &str) -> Result<(), Error> {
        let (_, cg) = self.live(id, "pause", &[Status::Running])?;
        Ok(cg.freeze()?)
    }

    /// Resumes a paused container.
    pub fn resume(&self, id: &str) -> Result<(), Error> {
        let (_, cg) = self.live(id, "resume", &[Status::Paused])?;
        Ok(cg.thaw()?)
    }

    /// Changes the resources of a created, running or paused container; returns what was
    /// adjusted rather than applied (as warnings).
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<Vec<String>, Error> {
        let (_, cg) = self.live(
            id,
            "update",
            &[Status::Created, Status::Running, Status::Paused],
        )?;
        // The device rules stay those of create (config rules + the default set): runc
        // 1.1's update ignores linux.resources.devices too, so an update can neither
        // open a denied device nor take /dev/null away.
        let mut warnings = Vec::new();
        let mut resources = resources.clone();
        if resources.devices_mut().take().is_some() {
            warnings.push(
                "linux.resources.devices: ignored by update (device rules are set at create)"
                    .to_string(),
            );
        }
        warnings.extend(cg.update(&resources)?.iter().map(ToString::to_string));
        Ok(warnings)
    }

    /// The host pids of every process of the container (sorted); for a stopped container
    /// what is left in its cgroup (usually nothing), as runc.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>, Error> {
        let (dir, record) = self.open_record(id, "ps")?;
        match (state::live_status(&dir.path, &record), record.cgroup()?) {
            (Status::Creating, _) => Err(Error::InvalidState {
                id: id.to_owned(),
                status: Status::Creating,
                op: "ps",
            }),
            (_, Some(cg)) => Ok(cg.pids()?),
            (Status::Stopped, None) => Ok(Vec::new()),
            (_, None) => Err(Error::NoCgroup { id: id.to_owned() }),
        }
    }

    /// Resource usage of the container's cgroup.
    pub fn stats(&self, id: &str) -> Result<berth_cgroups::Stats, Error> {
        let (_, cg) = self.live(
            id,
            "get stats of",
            &[Status::Created, Status::Running, Status::Paused],
        )?;
        Ok(cg.stats()?)
    }

    /// Starts watching the container's OOM events; [`berth_cgroups::OomWatcher::wait`]
    /// returns the new counters after each OOM (kill), and fails once the cgroup is gone.
    pub fn oom_watcher(&self, id: &str) -> Result<berth_cgroups::OomWatcher, Error> {
        let (_, cg) = self.live(
            id,
            "watch events of",
            &[Status::Created, Status::Running, Status::Paused],
        )?;
        Ok(cg.oom_watcher()?)
    }
}
