//! Events back to containerd: `containerd.services.events.ttrpc.v1.Events/Forward` at
//! `$TTRPC_ADDRESS`, from one thread, in the order they were queued.
//!
//! An event that can't be sent (containerd restarting, say) is retried, with a backoff up to
//! 2 s, until it goes through: events are never reordered, and none is dropped while fewer
//! than [`QUEUE_MAX`] wait. (containerd reconciles from State and Wait as well, and the exits
//! stay queryable until Delete.)

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_shim_core::task::{Event, ExitInfo};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::types::mount::Mount;

/// Events kept while containerd can't be reached; older ones are dropped beyond it.
pub const QUEUE_MAX: usize = 4096;

/// A protobuf timestamp.
pub(crate) fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

/// An `Any` with containerd's type URL: the message's full name, bare.
pub(crate) fn any(type_url: &str, m: &impl Message) -> Any {
    let mut a = Any::new();
    a.type_url = type_url.to_owned();
    a.value = m.write_to_bytes().unwrap_or_default();
    a
}

fn exit_fields(exit: &ExitInfo) -> (u32, u32, MessageField<Timestamp>) {
    (
        exit.pid.max(0) as u32,
        exit.status,
        MessageField::some(timestamp(exit.at)),
    )
}

/// The topic and payload of a task event.
pub fn encode(event: &Event) -> (&'static str, Any) {
    match event {
        Event::Create {
            id,
            bundle,
            pid,
            request,
        } => {
            let mut m = TaskCreate::new();
            m.container_id = id.clone();
            m.bundle = bundle.display().to_string();
            m.pid = (*pid).max(0) as u32;
            m.rootfs = request
                .rootfs
                .iter()
                .map(|r| {
                    let mut mm = Mount::new();
                    mm.type_ = r.kind.clone();
                    mm.source = r.source.clone();
                    mm.options = r.options.clone();
                    mm
                })
                .collect();
            let mut io = TaskIO::new();
            io.stdin = request.stdin.clone();
            io.stdout = request.stdout.clone();
            io.stderr = request.stderr.clone();
            io.terminal = request.terminal;
            m.io = MessageField::some(io);
            ("/tasks/create", any("containerd.events.TaskCreate", &m))
        }
        Event::Start { id, pid } => {
            let mut m = TaskStart::new();
            m.container_id = id.clone();
            m.pid = (*pid).max(0) as u32;
            ("/tasks/start", any("containerd.events.TaskStart", &m))
        }
        Event::ExecAdded { id, exec_id } => {
            let mut m = TaskExecAdded::new();
            m.container_id = id.clone();
            m.exec_id = exec_id.clone();
            (
                "/tasks/exec-added",
                any("containerd.events.TaskExecAdded", &m),
            )
        }
        Event::ExecStarted { id, exec_id, pid } => {
            let mut m = TaskExecStarted::new();
            m.container_id = id.clone();
            m.exec_id = exec_id.clone();
            m.pid = (*pid).max(0) as u32;
            (
                "/tasks/exec-started",
                any("containerd.events.TaskExecStarted", &m),
            )
        }
        Event::Exit { id, exec_id, exit } => {
            let mut m = TaskExit::new();
            m.container_id = id.clone();
            m.id = exec_id.clone().unwrap_or_else(|| id.clone());
            (m.pid, m.exit_status, m.exited_at) = exit_fields(exit);
            ("/tasks/exit", any("containerd.events.TaskExit", &m))
        }
        Event::Delete { id, exit } => {
            let mut m = TaskDelete::new();
            m.container_id = id.clone();
            m.id = id.clone();
            (m.pid, m.exit_status, m.exited_at) = exit_fields(exit);
            ("/tasks/delete", any("containerd.events.TaskDelete", &m))
        }
        Event::Paused { id } => {
            let mut m = TaskPaused::new();
            m.container_id = id.clone();
            ("/tasks/paused", any("containerd.events.TaskPaused", &m))
        }
        Event::Resumed { id } => {
            let mut m = TaskResumed::new();
            m.container_id = id.clone();
            ("/tasks/resumed", any("containerd.events.TaskResumed", &m))
        }
        Event::Oom { id } => {
            let mut m = TaskOOM::new();
            m.container_id = id.clone();
            ("/tasks/oom", any("containerd.events.TaskOOM", &m))
        }
        // Event is non-exhaustive: a new kind is sent under containerd's unknown topic.
        #[allow(unreachable_patterns)]
        _ => ("/tasks/?", Any::new()),
    }
}

struct Queue {
    items: VecDeque<ForwardRequest>,
}

/// The publisher: queue events with [`Publisher::publish`]; one thread sends them.
#[derive(Clone)]
pub struct Publisher {
    queue: Arc<(Mutex<Queue>, Condvar)>,
}

impl Publisher {
    /// Starts the sending thread for containerd at `ttrpc_address` (a unix socket path, with
    /// or without `unix://`), events of `namespace`. With an empty address, events are
    /// dropped (a shim run by hand).
    pub fn start(ttrpc_address: String, namespace: String) -> Publisher {
        let p = Publisher {
            queue: Arc::new((
                Mutex::new(Queue {
                    items: VecDeque::new(),
                }),
                Condvar::new(),
            )),
        };
        if ttrpc_address.is_empty() {
            return p;
        }
        let q = Arc::clone(&p.queue);
        let _ = std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || send_loop(&q, &ttrpc_address, &namespace));
        p
    }

    /// Queues `event` (never blocks).
    pub fn publish(&self, event: &Event) {
        let (topic, payload) = encode(event);
        let mut env = Envelope::new();
        env.timestamp = MessageField::some(timestamp(SystemTime::now()));
        env.topic = topic.to_owned();
        env.event = MessageField::some(payload);
        let mut req = ForwardRequest::new();
        req.envelope = MessageField::some(env);
        let (m, cv) = &*self.queue;
        let mut q = m.lock().unwrap_or_else(|p| p.into_inner());
        if q.items.len() >= QUEUE_MAX {
            q.items.pop_front();
        }
        q.items.push_back(req);
        cv.notify_one();
    }

    /// Waits up to `timeout` for the queue to empty (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        let (m, cv) = &*self.queue;
        let deadline = std::time::Instant::now() + timeout;
        let mut q = m.lock().unwrap_or_else(|p| p.into_inner());
        while !q.items.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            q = cv
                .wait_timeout(q, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn send_loop(queue: &(Mutex<Queue>, Condvar), address: &str, namespace: &str) {
    let url = if address.starts_with("unix://") {
        address.to_owned()
    } else {
        format!("unix://{address}")
    };
    let mut client: Option<containerd_shim_protos::EventsClient> = None;
    let mut backoff = Duration::from_millis(10);
    let (m, cv) = queue;
    loop {
        let mut req = {
            let mut q = m.lock().unwrap_or_else(|p| p.into_inner());
            while q.items.is_empty() {
                q = cv.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            match q.items.front() {
                Some(r) => r.clone(),
                None => continue,
            }
        };
        if let Some(env) = req.envelope.as_mut() {
            env.namespace = namespace.to_owned();
        }
        if client.is_none() {
            client = ttrpc::Client::connect(&url)
                .ok()
                .map(containerd_shim_protos::EventsClient::new);
        }
        let sent = client.as_ref().is_some_and(|c| {
            let ctx = ttrpc::context::with_timeout(Duration::from_secs(5).as_nanos() as i64);
            c.forward(ctx, &req).is_ok()
        });
        if sent {
            backoff = Duration::from_millis(10);
            let mut q = m.lock().unwrap_or_else(|p| p.into_inner());
            q.items.pop_front();
            cv.notify_all();
        } else {
            client = None;
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}
