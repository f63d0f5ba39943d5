//! The result of an ADD: interfaces, addresses, routes and DNS, in any of the spec's
//! result shapes (0.1.0/0.2.0 `ip4`/`ip6`, 0.3.x/0.4.0 `ips[].version`, 1.0.0).

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

/// An interface a plugin made or touched.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Interface {
    /// Its name, e.g. `eth0` or the host-side `veth1234`.
    pub name: String,
    /// Its MAC address, when known.
    #[serde(default)]
    pub mac: Option<String>,
    /// The network namespace it is in (the netns path), or `None` for the host's.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// An address given to an interface.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IpConfig {
    /// The address with its prefix length, e.g. `10.89.0.5/24`.
    pub address: String,
    /// The gateway, when there is one.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The index in [`CniResult::interfaces`] of the interface it is on.
    #[serde(default)]
    pub interface: Option<usize>,
}

impl IpConfig {
    /// The address without its prefix length, or `None` if it does not parse.
    pub fn ip(&self) -> Option<IpAddr> {
        let addr = self.address.split('/').next()?;
        addr.parse().ok()
    }
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    /// The destination, e.g. `0.0.0.0/0`.
    pub dst: String,
    /// The next hop, when given.
    #[serde(default)]
    pub gw: Option<String>,
}

/// DNS settings a plugin asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Dns {
    /// Name servers.
    pub nameservers: Vec<String>,
    /// The local domain.
    pub domain: Option<String>,
    /// Search domains.
    pub search: Vec<String>,
    /// resolver options.
    pub options: Vec<String>,
}

/// The final result of a network's ADD chain (what the last plugin printed).
///
/// ```
/// let r = berth_cni::CniResult::parse(br#"{"cniVersion":"1.0.0",
///   "interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"/run/ns/a"}],
///   "ips":[{"address":"fd00::5/64","interface":1},{"address":"10.89.0.5/24","gateway":"10.89.0.1","interface":1}]}"#)?;
/// assert_eq!(r.ip_of("eth0"), ["10.89.0.5".parse::<std::net::IpAddr>()?, "fd00::5".parse()?]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// The result's `cniVersion`.
    pub cni_version: String,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS.
    pub dns: Dns,
    /// The result as printed (what the next plugin gets as `prevResult`).
    pub raw: Value,
}

#[derive(Deserialize)]
struct Current {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
    // 0.1.0 / 0.2.0
    #[serde(default)]
    ip4: Option<Legacy>,
    #[serde(default)]
    ip6: Option<Legacy>,
}

#[derive(Deserialize)]
struct Legacy {
    ip: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<Route>,
}

impl CniResult {
    /// Parses a plugin's result in any supported shape.
    ///
    /// # Errors
    /// What is wrong with it (not JSON, a field of the wrong type, an address that is
    /// no CIDR, an interface index out of range).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        Self::from_value(raw)
    }

    /// [`parse`](Self::parse) of a value already read.
    ///
    /// # Errors
    /// As `parse`.
    pub fn from_value(raw: Value) -> Result<Self, String> {
        if !raw.is_object() {
            return Err("not a JSON object".into());
        }
        let c: Current = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        let mut ips = c.ips;
        let mut routes = c.routes;
        for l in [c.ip4, c.ip6].into_iter().flatten() {
            ips.push(IpConfig {
                address: l.ip,
                gateway: l.gateway,
                interface: None,
            });
            routes.extend(l.routes);
        }
        for (i, ip) in ips.iter().enumerate() {
            let (a, p) = ip
                .address
                .split_once('/')
                .ok_or_else(|| format!("ips[{i}].address {:?} is not a CIDR", ip.address))?;
            let addr: IpAddr = a
                .parse()
                .map_err(|_| format!("ips[{i}].address {:?} is not a CIDR", ip.address))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if !p.parse::<u8>().is_ok_and(|p| p <= max) {
                return Err(format!("ips[{i}].address {:?} is not a CIDR", ip.address));
            }
            if let Some(n) = ip.interface
                && n >= c.interfaces.len()
            {
                return Err(format!(
                    "ips[{i}].interface {n} is out of range ({} interfaces)",
                    c.interfaces.len()
                ));
            }
        }
        Ok(CniResult {
            cni_version: c.cni_version,
            interfaces: c.interfaces,
            ips,
            routes,
            dns: c.dns,
            raw,
        })
    }

    /// The addresses on the interface named `ifname` inside the sandbox (the pod's
    /// IPs, for `eth0`), IPv4 first, in result order otherwise. Addresses without an
    /// interface index count as `ifname`'s when no interface is listed at all (0.2.0).
    pub fn ip_of(&self, ifname: &str) -> Vec<IpAddr> {
        let in_sandbox = |i: &Interface| i.sandbox.as_deref().is_some_and(|s| !s.is_empty());
        let mut idx: Vec<usize> = (0..self.interfaces.len())
            .filter(|&n| self.interfaces[n].name == ifname && in_sandbox(&self.interfaces[n]))
            .collect();
        if idx.is_empty() {
            idx = (0..self.interfaces.len())
                .filter(|&n| self.interfaces[n].name == ifname)
                .collect();
        }
        let mut out: Vec<IpAddr> = self
            .ips
            .iter()
            .filter(|ip| match ip.interface {
                Some(n) => idx.contains(&n),
                None => self.interfaces.is_empty(),
            })
            .filter_map(IpConfig::ip)
            .collect();
        out.sort_by_key(|a| a.is_ipv6());
        out
    }
}
