//! The fragile child: everything that runs between `clone` and `execve`, under the rules of
//! `docs/DESIGN.md` (no allocation, no panics, raw system calls on data the parent prepared). Indexing, `unwrap`, `expect` and `panic!` are denied here: the child must not
//! unwind.

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub(crate) mod exec;
pub(crate) mod init;
pub(crate) mod sync;
pub(crate) mod sys;
