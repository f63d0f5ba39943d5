//! The read-only operations: the saved config, the state of one container, the list.

use std::collections::BTreeMap;
use std::fs;

use oci_spec::runtime::Spec;

use super::Runtime;
use crate::error::Error;
use crate::state::{self, State, Status};

impl Runtime {
    /// The config container `id` was created from (saved at create, so later edits of the
    /// bundle don't show). `exec` without a process file starts from its `process`, as
    /// `runc exec` does.
    ///
    /// ```no_run
    /// let rt = berth_runtime_core::Runtime::new("/run/berth");
    /// let args = rt.config("web")?.process().as_ref().and_then(|p| p.args().clone());
    /// # let _ = args;
    /// # Ok::<(), berth_runtime_core::Error>(())
    /// ```
    pub fn config(&self, id: &str) -> Result<Spec, Error> {
        let (dir, record) = self.open_record(id, "read the config of")?;
        dir.config(&record)
    }

    /// The state of a container, with the status checked against the live process.
    pub fn state(&self, id: &str) -> Result<State, Error> {
        state::validate_id(id)?;
        let path = self.root.join(id);
        match state::read_record(&path, id)? {
            Some(r) => Ok(r.to_state(state::live_status(&path, &r))),
            None => Ok(State {
                oci_version: String::new(),
                id: id.to_owned(),
                pid: 0,
                status: Status::Creating,
                bundle: String::new(),
                rootfs: String::new(),
                created: String::new(),
                annotations: BTreeMap::new(),
                owner: String::new(),
            }),
        }
    }

    /// The states of all containers under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<State>, Error> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &self.root, e)),
        };
        let mut out: Vec<State> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter_map(|id| self.state(&id).ok())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}
