//! A recording [`Cgroups`] for other crates' tests: a tree of paths with
//! the last configuration applied to each.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::manager::Cgroups;
use super::resources::ResourceConfig;

/// Cgroups kept in memory.
#[derive(Debug, Default)]
pub struct FakeCgroups {
    /// path → the merged configuration applied so far.
    cgroups: Mutex<BTreeMap<String, ResourceConfig>>,
    /// Paths `kill_all` was called on, in order.
    killed: Mutex<Vec<String>>,
}

fn norm(path: &str) -> String {
    format!("/{}", path.trim_matches('/'))
}

fn merge(into: &mut ResourceConfig, c: &ResourceConfig) {
    into.cpu_shares = c.cpu_shares.or(into.cpu_shares);
    into.cpu_quota = c.cpu_quota.or(into.cpu_quota);
    into.cpu_period = c.cpu_period.or(into.cpu_period);
    into.memory_limit = c.memory_limit.or(into.memory_limit);
    into.pids_limit = c.pids_limit.or(into.pids_limit);
}

impl FakeCgroups {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ResourceConfig>> {
        self.cgroups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration of `path`, if it exists.
    pub fn config(&self, path: &str) -> Option<ResourceConfig> {
        self.lock().get(&norm(path)).cloned()
    }

    /// Whether `path` exists.
    pub fn exists_path(&self, path: &str) -> bool {
        self.lock().contains_key(&norm(path))
    }

    /// Every existing cgroup path.
    pub fn paths(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Paths emptied with `kill_all`, in order.
    pub fn killed(&self) -> Vec<String> {
        self.killed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Cgroups for FakeCgroups {
    fn ensure(&self, path: &str, config: &ResourceConfig) -> io::Result<()> {
        let mut cgroups = self.lock();
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at.push('/');
            at.push_str(part);
            cgroups.entry(at.clone()).or_default();
        }
        merge(cgroups.entry(norm(path)).or_default(), config);
        Ok(())
    }

    fn update(&self, path: &str, config: &ResourceConfig) -> io::Result<()> {
        match self.lock().get_mut(&norm(path)) {
            Some(c) => {
                merge(c, config);
                Ok(())
            }
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn exists(&self, path: &str) -> bool {
        self.lock().contains_key(&norm(path))
    }

    fn children(&self, path: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{}/", norm(path).trim_end_matches('/'));
        Ok(self
            .lock()
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_owned)
            .collect())
    }

    fn kill_all(&self, path: &str) -> io::Result<usize> {
        self.killed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(norm(path));
        Ok(0)
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        let path = norm(path);
        let below = format!("{path}/");
        self.lock()
            .retain(|k, _| k != &path && !k.starts_with(&below));
        Ok(())
    }
}
