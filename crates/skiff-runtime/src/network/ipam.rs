//! Pod address management over the node's podCIDR, stored the way the CNI
//! `host-local` plugin stores it: one file per allocated address, named by the
//! address and holding the owner's id, plus `last_reserved_ip.0` so that
//! allocation goes round the range instead of reusing a just-freed address.
//!
//! The first host address is the bridge gateway; pods get the rest, up to the
//! address before broadcast. Creating an address file with `create_new` is the
//! reservation, so two allocators (even in two processes) never hand out the
//! same address.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::cidr::Ipv4Cidr;

/// host-local's line break between the owner id and the interface name.
const LINE_BREAK: &str = "\r\n";
/// host-local's file remembering the last address handed out (range set 0).
const LAST_RESERVED_FILE: &str = "last_reserved_ip.0";
/// The interface name recorded next to the owner.
const IFNAME: &str = "eth0";

/// Errors of pod address management.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every address of the range is taken.
    #[error("no IP addresses available in range set: {first}-{last}")]
    Exhausted {
        /// First allocatable address.
        first: Ipv4Addr,
        /// Last allocatable address.
        last: Ipv4Addr,
    },
    /// The subnet has no room for a gateway and a pod.
    #[error("pod CIDR {0} is too small: it needs room for a gateway and pods (at most /30)")]
    SubnetTooSmall(Ipv4Cidr),
    /// The sandbox id cannot be stored.
    #[error("invalid sandbox id {0:?}")]
    InvalidId(String),
    /// Reading or writing the store failed.
    #[error("IPAM store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IpamError + '_ {
    move |source| IpamError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Address allocator for one subnet, persisted under one directory.
#[derive(Debug)]
pub struct Ipam {
    dir: PathBuf,
    subnet: Ipv4Cidr,
    /// Serialises allocations in this process; files guard across processes.
    lock: Mutex<()>,
}

impl Ipam {
    /// An allocator for `subnet` storing its files in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>, subnet: Ipv4Cidr) -> Result<Self, IpamError> {
        if subnet.prefix_len() > 30 {
            return Err(IpamError::SubnetTooSmall(subnet));
        }
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Self {
            dir,
            subnet,
            lock: Mutex::new(()),
        })
    }

    /// The gateway: the first host address of the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// The subnet allocated from.
    pub fn subnet(&self) -> Ipv4Cidr {
        self.subnet
    }

    fn first(&self) -> u32 {
        u32::from(self.subnet.network()) + 2
    }

    fn last(&self) -> u32 {
        u32::from(self.subnet.broadcast()) - 1
    }

    /// The address held by `id`, if any.
    pub fn get(&self, id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        Ok(self.owned_by(id)?.into_iter().next())
    }

    /// Every (address, owner) pair on record.
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io_err(&self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let content = match fs::read_to_string(&path) {
                Ok(content) => content,
                // Released while we listed.
                Err(err) if err.kind() == ErrorKind::NotFound => continue,
                Err(err) => return Err(io_err(&path)(err)),
            };
            let owner = content.split(LINE_BREAK).next().unwrap_or("").trim();
            out.push((ip, owner.to_string()));
        }
        out.sort();
        Ok(out)
    }

    fn owned_by(&self, id: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        Ok(self
            .allocations()?
            .into_iter()
            .filter(|(_, owner)| owner == id)
            .map(|(ip, _)| ip)
            .collect())
    }

    /// Allocates an address for `id`, or returns the one it already holds.
    pub fn allocate(&self, id: &str) -> Result<Ipv4Addr, IpamError> {
        if id.is_empty() || id.contains(['\r', '\n', '/']) || id.trim() != id {
            return Err(IpamError::InvalidId(id.to_string()));
        }
        let (ip, file) = {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(ip) = self.owned_by(id)?.into_iter().next() {
                return Ok(ip);
            }
            self.reserve(id)?
        };
        // Flushed outside the lock: the file already holds the address for
        // `id`, and sandboxes made at once need not queue behind each
        // other's disk writes.
        let path = self.dir.join(ip.to_string());
        if let Err(err) = file.sync_all() {
            // Do not leave a reservation behind that may not survive.
            let _ = self.release(id);
            return Err(io_err(&path)(err));
        }
        Ok(ip)
    }

    /// Reserves the next free address for `id` (caller holds the lock);
    /// returns it with its reservation file, written but not yet flushed.
    fn reserve(&self, id: &str) -> Result<(Ipv4Addr, fs::File), IpamError> {
        let (first, last) = (self.first(), self.last());
        // Start after the last address handed out, wrapping round, as host-local does.
        let start = match self.last_reserved() {
            Some(prev) if (first..last).contains(&prev) => prev + 1,
            _ => first,
        };
        let count = last - first + 1;
        for step in 0..count {
            let candidate = first + (start - first + step) % count;
            let ip = Ipv4Addr::from(candidate);
            let path = self.dir.join(ip.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let record = format!("{id}{LINE_BREAK}{IFNAME}");
                    if let Err(err) = file.write_all(record.as_bytes()) {
                        // Do not leave a reservation without an owner behind.
                        let _ = fs::remove_file(&path);
                        return Err(io_err(&path)(err));
                    }
                    self.write_last_reserved(ip)?;
                    return Ok((ip, file));
                }
                Err(err) if err.kind() == ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(io_err(&path)(err)),
            }
        }
        Err(IpamError::Exhausted {
            first: Ipv4Addr::from(first),
            last: Ipv4Addr::from(last),
        })
    }

    /// Releases every address held by `id`; returns them. Unknown ids are fine.
    pub fn release(&self, id: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let owned = self.owned_by(id)?;
        for ip in &owned {
            let path = self.dir.join(ip.to_string());
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(io_err(&path)(err)),
            }
        }
        Ok(owned)
    }

    fn last_reserved(&self) -> Option<u32> {
        let text = fs::read_to_string(self.dir.join(LAST_RESERVED_FILE)).ok()?;
        text.trim().parse::<Ipv4Addr>().ok().map(u32::from)
    }

    fn write_last_reserved(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let path = self.dir.join(LAST_RESERVED_FILE);
        fs::write(&path, ip.to_string()).map_err(io_err(&path))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn first_allocation_skips_network_and_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), cidr("10.244.1.0/24")).unwrap();
        assert_eq!(ipam.gateway(), ip("10.244.1.1"));
        assert_eq!(ipam.allocate("a").unwrap(), ip("10.244.1.2"));
        assert_eq!(ipam.allocate("b").unwrap(), ip("10.244.1.3"));
        let record = fs::read_to_string(dir.path().join("10.244.1.2")).unwrap();
        assert_eq!(record, "a\r\neth0");
    }

    #[test]
    fn allocation_is_idempotent_per_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), cidr("10.244.1.0/24")).unwrap();
        let first = ipam.allocate("a").unwrap();
        assert_eq!(ipam.allocate("a").unwrap(), first);
        assert_eq!(ipam.allocations().unwrap(), vec![(first, "a".to_string())]);
        assert_eq!(ipam.get("a").unwrap(), Some(first));
        assert_eq!(ipam.get("b").unwrap(), None);
    }

    #[test]
    fn survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = {
            let ipam = Ipam::new(dir.path(), cidr("10.244.1.0/24")).unwrap();
            (ipam.allocate("a").unwrap(), ipam.allocate("b").unwrap())
        };
        let ipam = Ipam::new(dir.path(), cidr("10.244.1.0/24")).unwrap();
        assert_eq!(ipam.allocate("a").unwrap(), a);
        assert_eq!(ipam.get("b").unwrap(), Some(b));
        let c = ipam.allocate("c").unwrap();
        assert!(c != a && c != b, "{c} reused");
    }

    #[test]
    fn exhaustion_is_a_clear_error_and_release_frees() {
        let dir = tempfile::tempdir().unwrap();
        // /29: .0 network, .1 gateway, .2-.6 pods, .7 broadcast.
        let ipam = Ipam::new(dir.path(), cidr("10.244.9.0/29")).unwrap();
        let got: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&format!("s{i}")).unwrap())
            .collect();
        let want: Vec<_> = (2..=6).map(|n| Ipv4Addr::new(10, 244, 9, n)).collect();
        assert_eq!(got, want);
        let err = ipam.allocate("s5").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no IP addresses available in range set: 10.244.9.2-10.244.9.6"
        );
        assert_eq!(ipam.release("s2").unwrap(), vec![ip("10.244.9.4")]);
        assert_eq!(ipam.allocate("s5").unwrap(), ip("10.244.9.4"));
    }

    #[test]
    fn round_robin_does_not_reuse_just_released_address() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), cidr("10.244.9.0/29")).unwrap();
        let a = ipam.allocate("a").unwrap();
        ipam.release("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_ne!(a, b);
        // After the last address it wraps to the first free one.
        for id in ["c", "d", "e"] {
            ipam.allocate(id).unwrap();
        }
        assert_eq!(ipam.allocate("f").unwrap(), a);
    }

    #[test]
    fn release_of_unknown_id_is_ok_and_release_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), cidr("10.244.1.0/24")).unwrap();
        assert!(ipam.release("nobody").unwrap().is_empty());
        ipam.allocate("a").unwrap();
        assert_eq!(ipam.release("a").unwrap().len(), 1);
        assert!(ipam.release("a").unwrap().is_empty());
        assert!(!dir.path().join("10.244.1.2").exists());
    }

    #[test]
    fn never_double_allocates_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = cidr("10.244.2.0/26");
        // Two allocators over one directory stand in for two processes.
        let one = std::sync::Arc::new(Ipam::new(dir.path(), subnet).unwrap());
        let two = std::sync::Arc::new(Ipam::new(dir.path(), subnet).unwrap());
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let ipam = if i % 2 == 0 { one.clone() } else { two.clone() };
                std::thread::spawn(move || ipam.allocate(&format!("s{i}")).unwrap())
            })
            .collect();
        let mut ips: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 40);
        assert!(ips.iter().all(|ip| subnet.contains(*ip)));
    }

    #[test]
    fn rejects_tiny_subnets_and_bad_ids() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Ipam::new(dir.path(), cidr("10.0.0.0/31")),
            Err(IpamError::SubnetTooSmall(_))
        ));
        let ipam = Ipam::new(dir.path(), cidr("10.0.0.0/30")).unwrap();
        for id in ["", "a\nb", "../x", " a"] {
            assert!(
                matches!(ipam.allocate(id), Err(IpamError::InvalidId(_))),
                "{id:?}"
            );
        }
        // /30 holds exactly one pod.
        assert_eq!(ipam.allocate("a").unwrap(), ip("10.0.0.2"));
        assert!(matches!(
            ipam.allocate("b"),
            Err(IpamError::Exhausted { .. })
        ));
    }
}
