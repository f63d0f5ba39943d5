//! The manager's event socket: shims forward task events here (`TTRPC_ADDRESS`).
//!
//! Exits are taken from these events as they come; a shim that could not deliver while the
//! manager was down delivers when it is back, and [`crate::Manager::open`] also asks every
//! shim directly, so an exit is recorded whichever comes first (recording is idempotent).

use std::path::Path;
use std::sync::{Arc, Weak};

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::events::ForwardRequest;
use ttrpc::TtrpcContext;

use crate::Manager;
use crate::error::{Error, Result};
use crate::shim::Exit;

struct Service {
    manager: Weak<Manager>,
}

impl containerd_shim_protos::Events for Service {
    fn forward(&self, _: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<api::Empty> {
        let Some(m) = self.manager.upgrade() else {
            return Ok(api::Empty::new());
        };
        let Some(env) = req.envelope.as_ref() else {
            return Ok(api::Empty::new());
        };
        let Some(ev) = env.event.as_ref() else {
            return Ok(api::Empty::new());
        };
        match env.topic.as_str() {
            "/tasks/exit" => {
                if let Ok(e) = TaskExit::parse_from_bytes(&ev.value) {
                    // Only a container's init ends the container.
                    if e.id == e.container_id || e.id.is_empty() {
                        let at = e
                            .exited_at
                            .as_ref()
                            .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
                            .unwrap_or(0);
                        let r = m.record_exit(
                            &e.container_id,
                            Exit {
                                status: e.exit_status,
                                at,
                            },
                        );
                        if let Err(err) = r {
                            // Not acknowledged: the shim sends it again.
                            return Err(ttrpc::Error::Others(err.to_string()));
                        }
                    }
                }
            }
            "/tasks/oom" => {
                if let Ok(e) = TaskOOM::parse_from_bytes(&ev.value) {
                    m.record_oom(&e.container_id);
                }
            }
            _ => {}
        }
        Ok(api::Empty::new())
    }
}

/// Listens at `path` (replacing a stale socket) and serves events for `manager`.
pub(crate) fn listen(manager: &Arc<Manager>, path: &Path) -> Result<ttrpc::Server> {
    let _ = std::fs::remove_file(path);
    let service = Service {
        manager: Arc::downgrade(manager),
    };
    let mut server = ttrpc::Server::new()
        .bind(&format!("unix://{}", path.display()))
        .map_err(|e| Error::shim(format!("listen on {}", path.display()), e))?
        .register_service(containerd_shim_protos::create_events(Arc::new(service)));
    server
        .start()
        .map_err(|e| Error::shim(format!("serve {}", path.display()), e))?;
    Ok(server)
}
