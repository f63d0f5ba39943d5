//! The container process set-up shared by the init and exec's child: the [`ProcessPlan`]
//! (args, env, cwd, user, rlimits, capabilities, the console), the security plan (LSM labels,
//! no_new_privs, the seccomp install point), the hooks, the exe guard and `HOME`. Much of it
//! runs in the fragile child: indexing, `unwrap`, `expect` and `panic!` are denied here.

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub(crate) mod exe_guard;
pub(crate) mod home;
pub(crate) mod hooks;
mod plan;
pub(crate) mod security;

pub(crate) use plan::{CStrArray, ProcessPlan};
