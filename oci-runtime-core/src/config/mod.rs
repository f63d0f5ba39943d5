//! The config: a bundle's `config.json` loaded and validated, the default spec, what this
//! build and host support, and the kernel features `create` needs.

pub mod features;
pub(crate) mod kernel;
pub mod spec;
pub mod validate;
