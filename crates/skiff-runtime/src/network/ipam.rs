//! Pod address management over the node's podCIDR, stored the way the CNI
//! `host-local` plugin stores it: one file per allocated address, named by the
//! address and holding the owner's id, plus `last_reserved_ip.0` so that
//! allocation goes round the range instead of reusing a just-freed address.
//!
//! The first host address is the bridge gateway; pods get the rest, up to the
//! address before broadcast. Creating an address file with `create_new` is the
//! reservation, so two allocators (even in two processes) never hand out the
//! same address.
//!
//! The allocator reads the directory once, when it is made, and then keeps an
//! index of owners and taken addresses in memory: a new sandbox costs one new
//! file, not a read of every allocation. Where the index and the disk
//! disagree (another process changed the directory) the disk wins: an address
//! whose file exists is skipped and indexed, an owner's address is checked
//! against its file before it is returned or released, and the directory is
//! read again before the range is declared exhausted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

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

/// The owner recorded in address file `path`; `None` if there is no file.
fn read_owner(path: &Path) -> Result<Option<String>, IpamError> {
    match fs::read_to_string(path) {
        Ok(content) => Ok(Some(
            content
                .split(LINE_BREAK)
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        )),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_err(path)(err)),
    }
}

/// Every (address, owner) pair on record in the allocator directory `dir`,
/// sorted (what [`Ipam::allocations`] reads, without knowing the subnet).
pub fn allocations_in(dir: &Path) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_err(dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let Some(ip) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        // `None`: released while we listed.
        if let Some(owner) = read_owner(&entry.path())? {
            out.push((ip, owner));
        }
    }
    out.sort();
    Ok(out)
}

/// What the allocator knows of its directory.
#[derive(Debug, Default)]
struct Index {
    /// Every address on record, with its owner.
    owner_of: BTreeMap<Ipv4Addr, String>,
    /// The addresses each owner holds.
    held_by: HashMap<String, BTreeSet<Ipv4Addr>>,
    /// The last address handed out (what `last_reserved_ip.0` says).
    last_reserved: Option<u32>,
}

impl Index {
    fn insert(&mut self, ip: Ipv4Addr, owner: String) {
        self.remove(ip);
        self.held_by.entry(owner.clone()).or_default().insert(ip);
        self.owner_of.insert(ip, owner);
    }

    fn remove(&mut self, ip: Ipv4Addr) {
        let Some(owner) = self.owner_of.remove(&ip) else {
            return;
        };
        if let Some(held) = self.held_by.get_mut(&owner) {
            held.remove(&ip);
            if held.is_empty() {
                self.held_by.remove(&owner);
            }
        }
    }

    fn held_by(&self, owner: &str) -> Vec<Ipv4Addr> {
        self.held_by
            .get(owner)
            .map(|held| held.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Address allocator for one subnet, persisted under one directory.
#[derive(Debug)]
pub struct Ipam {
    dir: PathBuf,
    subnet: Ipv4Cidr,
    /// The index; its lock serialises allocations in this process, files
    /// guard across processes.
    index: Mutex<Index>,
}

impl Ipam {
    /// An allocator for `subnet` storing its files in `dir` (created if
    /// missing); reads the allocations already there.
    pub fn new(dir: impl Into<PathBuf>, subnet: Ipv4Cidr) -> Result<Self, IpamError> {
        if subnet.prefix_len() > 30 {
            return Err(IpamError::SubnetTooSmall(subnet));
        }
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let ipam = Self {
            dir,
            subnet,
            index: Mutex::new(Index::default()),
        };
        let index = ipam.read_index()?;
        *ipam.lock() = index;
        Ok(ipam)
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The index as the directory has it now.
    fn read_index(&self) -> Result<Index, IpamError> {
        let mut index = Index::default();
        for (ip, owner) in self.allocations()? {
            index.insert(ip, owner);
        }
        index.last_reserved = fs::read_to_string(self.dir.join(LAST_RESERVED_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from);
        Ok(index)
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

    fn path_of(&self, ip: Ipv4Addr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// The address held by `id`, if any (as this allocator knows it).
    pub fn get(&self, id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        Ok(self.lock().held_by(id).into_iter().next())
    }

    /// Every (address, owner) pair on record, read from the directory (it
    /// includes what other processes allocated since this allocator was made).
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        allocations_in(&self.dir)
    }

    /// The indexed addresses of `id` whose files still name it; the index
    /// takes what the files say about the others.
    fn confirmed(&self, index: &mut Index, id: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        let mut held = Vec::new();
        for ip in index.held_by(id) {
            match read_owner(&self.path_of(ip))? {
                Some(owner) if owner == id => held.push(ip),
                Some(owner) => index.insert(ip, owner),
                None => index.remove(ip),
            }
        }
        Ok(held)
    }

    /// Allocates an address for `id`, or returns the one it already holds.
    pub fn allocate(&self, id: &str) -> Result<Ipv4Addr, IpamError> {
        if id.is_empty() || id.contains(['\r', '\n', '/']) || id.trim() != id {
            return Err(IpamError::InvalidId(id.to_string()));
        }
        let (ip, file) = {
            let mut index = self.lock();
            if let Some(ip) = self.confirmed(&mut index, id)?.into_iter().next() {
                return Ok(ip);
            }
            match self.reserve(&mut index, id) {
                Err(IpamError::Exhausted { .. }) => {
                    // Other processes may have released addresses: ask the disk.
                    *index = self.read_index()?;
                    self.reserve(&mut index, id)?
                }
                reserved => reserved?,
            }
        };
        // Flushed outside the lock: the file already holds the address for
        // `id`, and sandboxes made at once need not queue behind each
        // other's disk writes.
        if let Err(err) = file.sync_all() {
            // Do not leave a reservation behind that may not survive.
            let _ = self.release(id);
            return Err(io_err(&self.path_of(ip))(err));
        }
        Ok(ip)
    }

    /// Reserves the next free address for `id` (caller holds the index);
    /// returns it with its reservation file, written but not yet flushed.
    fn reserve(&self, index: &mut Index, id: &str) -> Result<(Ipv4Addr, fs::File), IpamError> {
        let (first, last) = (self.first(), self.last());
        // Start after the last address handed out, wrapping round, as host-local does.
        let start = match index.last_reserved {
            Some(prev) if (first..last).contains(&prev) => prev + 1,
            _ => first,
        };
        let count = last - first + 1;
        for step in 0..count {
            let ip = Ipv4Addr::from(first + (start - first + step) % count);
            if index.owner_of.contains_key(&ip) {
                continue;
            }
            let path = self.path_of(ip);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let record = format!("{id}{LINE_BREAK}{IFNAME}");
                    if let Err(err) = file.write_all(record.as_bytes()) {
                        // Do not leave a reservation without an owner behind.
                        let _ = fs::remove_file(&path);
                        return Err(io_err(&path)(err));
                    }
                    index.insert(ip, id.to_string());
                    index.last_reserved = Some(u32::from(ip));
                    self.write_last_reserved(ip)?;
                    return Ok((ip, file));
                }
                // Made behind our back: the disk wins.
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                    if let Some(owner) = read_owner(&path)? {
                        index.insert(ip, owner);
                    }
                }
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
        let mut index = self.lock();
        let held = self.confirmed(&mut index, id)?;
        for ip in &held {
            let path = self.path_of(*ip);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(io_err(&path)(err)),
            }
            index.remove(*ip);
        }
        Ok(held)
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

    /// The names in `dir`, sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn allocator_over_an_existing_directory_knows_its_owners() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = cidr("10.244.1.0/24");
        let (a, b) = {
            let ipam = Ipam::new(dir.path(), subnet).unwrap();
            (ipam.allocate("a").unwrap(), ipam.allocate("b").unwrap())
        };
        let before = files(dir.path());
        let ipam = Ipam::new(dir.path(), subnet).unwrap();
        assert_eq!(ipam.get("a").unwrap(), Some(a));
        assert_eq!(ipam.allocate("a").unwrap(), a);
        assert_eq!(
            files(dir.path()),
            before,
            "an idempotent allocate made a file"
        );
        assert_eq!(ipam.release("b").unwrap(), vec![b]);
        assert!(!dir.path().join(b.to_string()).exists());
        assert_eq!(
            fs::read_to_string(dir.path().join(a.to_string())).unwrap(),
            "a\r\neth0"
        );
        assert_eq!(ipam.allocations().unwrap(), vec![(a, "a".to_string())]);
    }

    #[test]
    fn a_file_made_behind_the_allocators_back_is_not_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), cidr("10.244.1.0/24")).unwrap();
        assert_eq!(ipam.allocate("a").unwrap(), ip("10.244.1.2"));
        // Another process (host-local, say) takes the next address.
        fs::write(dir.path().join("10.244.1.3"), "other\r\neth0").unwrap();
        assert_eq!(ipam.allocate("b").unwrap(), ip("10.244.1.4"));
        assert_eq!(
            fs::read_to_string(dir.path().join("10.244.1.3")).unwrap(),
            "other\r\neth0"
        );
        // The allocator learnt the owner from the file it met.
        assert_eq!(ipam.get("other").unwrap(), Some(ip("10.244.1.3")));
        assert_eq!(ipam.release("other").unwrap(), vec![ip("10.244.1.3")]);
        assert!(!dir.path().join("10.244.1.3").exists());
    }

    #[test]
    fn the_disk_wins_over_a_stale_index() {
        let dir = tempfile::tempdir().unwrap();
        // /30 holds exactly one pod: 10.0.0.2.
        let ipam = Ipam::new(dir.path(), cidr("10.0.0.0/30")).unwrap();
        let only = dir.path().join("10.0.0.2");
        assert_eq!(ipam.allocate("a").unwrap(), ip("10.0.0.2"));
        // Released behind the allocator's back: the range is free again,
        // and `a` no longer holds an address.
        fs::remove_file(&only).unwrap();
        assert_eq!(ipam.allocate("b").unwrap(), ip("10.0.0.2"));
        assert_eq!(fs::read_to_string(&only).unwrap(), "b\r\neth0");
        // Taken over behind its back: `a` does not get it, and releasing
        // `a` leaves the new owner's file alone.
        ipam.release("b").unwrap();
        fs::write(&only, "c\r\neth0").unwrap();
        assert!(ipam.release("a").unwrap().is_empty());
        assert!(matches!(
            ipam.allocate("a"),
            Err(IpamError::Exhausted { .. })
        ));
        assert_eq!(fs::read_to_string(&only).unwrap(), "c\r\neth0");
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
