//! The CNI plugin protocol (<https://github.com/containernetworking/cni>, spec versions
//! up to 1.0.0) from the container runtime's side.
//!
//! * [`Cni`]: the network of a config directory (the first file by name), its readiness
//!   ([`Cni::status`]), and ADD, CHECK and DEL of its plugin chain for a container's
//!   network namespace ([`Cni::setup`], [`Cni::check`], [`Cni::teardown`]), with the
//!   results cached on disk for DEL.
//! * [`NetworkList`]: a validated network configuration list.
//! * [`CniResult`]: a plugin chain's result, in every result shape of the spec.
//!
//! ```no_run
//! use berth_cni::Cni;
//!
//! let cni = Cni::new("/etc/cni/net.d", vec!["/usr/lib/cni".into()], "/var/lib/berth/cni");
//! if let Err(e) = cni.status() {
//!     println!("NetworkReady=false: {e}");
//! }
//! ```

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cache;
mod cni;
mod config;
mod error;
mod exec;
mod result;

pub use cni::{Cni, DEFAULT_TIMEOUT};
pub use config::{NetworkList, PluginConf, SUPPORTED_VERSIONS};
pub use error::CniError;
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
