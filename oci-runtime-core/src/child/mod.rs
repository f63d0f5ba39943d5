//! The fragile child: everything that runs between `clone` and `execve`, under the rules of
//! `docs/DESIGN.md` (no allocation, no panics, raw system calls on data the parent prepared).

pub(crate) mod exec;
pub(crate) mod init;
pub(crate) mod sync;
pub(crate) mod sys;
