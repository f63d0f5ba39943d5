//! The fragile child's raw system calls (see docs/DESIGN.md): no allocation, no locks, no
//! panics, errors as plain errno values. They live in berth-sys, shared with berth-rootfs
//! and berth-namespaces; this module re-exports them under the names this crate uses.

pub(crate) use berth_sys::{
    PathBuf4k, check, cloexec_from, clone_maybe_into_cgroup, close, close_fds_except, errno,
    exit_now, fmt_u64, open, raw_clone, read as read_once, recv_fd, send_fd, set_ids,
    set_pdeathsig, write_all,
};
