//! The scheduler's cache (upstream's `cacheImpl`): nodes and the pods on
//! them from the informers, plus pods assumed at Reserve time so the next
//! cycle sees a decision before its binding lands. Snapshots are updated
//! incrementally: only nodes whose generation moved are copied.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::node_info::ImageStateSummary;
use crate::framework::{NodeInfo, PodInfo, Snapshot};

/// Cache errors: inconsistent informer input, reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The pod is already assumed or added.
    #[error("pod {0} is in the cache, so can't be assumed")]
    AlreadyPresent(String),
    /// The pod is not assumed.
    #[error("pod {0} wasn't assumed so cannot be forgotten")]
    NotAssumed(String),
}

#[derive(Debug, Clone)]
struct PodState {
    node: String,
    assumed: bool,
}

struct NodeEntry {
    info: NodeInfo,
    /// The node's images (name → size), for the cluster-wide counts.
    images: Vec<(Vec<String>, i64)>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, NodeEntry>,
    pods: HashMap<String, PodState>,
    /// Node names by the generation of their last change.
    by_generation: BTreeMap<u64, String>,
    generation: u64,
    /// Image name → nodes that have it.
    image_nodes: HashMap<String, BTreeSet<String>>,
    /// Bumped when a node is removed, so snapshots rebuild their index.
    removals: u64,
}

/// Nodes and pods as the scheduler sees them.
#[derive(Default)]
pub struct Cache {
    state: Mutex<State>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

/// The node a pod runs on, if assigned.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl State {
    fn touch(&mut self, node: &str) {
        self.generation += 1;
        let g = self.generation;
        let entry = self
            .nodes
            .entry(node.to_owned())
            .or_insert_with(|| NodeEntry {
                info: NodeInfo::default(),
                images: Vec::new(),
            });
        self.by_generation.remove(&entry.info.generation);
        entry.info.generation = g;
        self.by_generation.insert(g, node.to_owned());
    }

    fn add_pod_to_node(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.touch(node);
        if let Some(e) = self.nodes.get_mut(node) {
            let g = e.info.generation;
            e.info.add_pod(pod);
            e.info.generation = g;
        }
    }

    /// Puts `pod` in place of the pod with its key on `node`.
    fn replace_pod_on_node(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.touch(node);
        if let Some(e) = self.nodes.get_mut(node) {
            let g = e.info.generation;
            e.info.remove_pod(&pod.key);
            e.info.add_pod(pod);
            e.info.generation = g;
        }
    }

    fn remove_pod_from_node(&mut self, key: &str, node: &str) {
        if !self.nodes.contains_key(node) {
            return;
        }
        self.touch(node);
        if let Some(e) = self.nodes.get_mut(node) {
            let g = e.info.generation;
            e.info.remove_pod(key);
            e.info.generation = g;
            if e.info.node.is_none() && e.info.pods.is_empty() {
                self.by_generation.remove(&g);
                self.nodes.remove(node);
                self.removals += 1;
            }
        }
    }
}

fn node_images(node: &Node) -> Vec<(Vec<String>, i64)> {
    node.status
        .as_ref()
        .and_then(|s| s.images.as_ref())
        .map(|imgs| {
            imgs.iter()
                .map(|i| {
                    (
                        i.names.clone().unwrap_or_default(),
                        i.size_bytes.unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces a Node.
    pub fn add_or_update_node(&self, node: Arc<Node>) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        let mut st = self.lock();
        st.touch(&name);
        let images = node_images(&node);
        let old_images = st
            .nodes
            .get(&name)
            .map(|e| e.images.clone())
            .unwrap_or_default();
        for (names, _) in &old_images {
            for n in names {
                if let Some(s) = st.image_nodes.get_mut(n) {
                    s.remove(&name);
                }
            }
        }
        for (names, _) in &images {
            for n in names {
                st.image_nodes
                    .entry(n.clone())
                    .or_default()
                    .insert(name.clone());
            }
        }
        if let Some(e) = st.nodes.get_mut(&name) {
            e.info.set_node(node);
            e.images = images;
        }
    }

    /// Removes a Node; its pods stay until their own deletion arrives.
    pub fn remove_node(&self, name: &str) {
        let mut st = self.lock();
        let Some(e) = st.nodes.get_mut(name) else {
            return;
        };
        e.info.clear_node();
        let images = std::mem::take(&mut e.images);
        let empty = e.info.pods.is_empty();
        for (names, _) in images {
            for n in names {
                if let Some(s) = st.image_nodes.get_mut(&n) {
                    s.remove(name);
                }
            }
        }
        if empty {
            if let Some(e) = st.nodes.remove(name) {
                st.by_generation.remove(&e.info.generation);
            }
        } else {
            st.touch(name);
        }
        st.removals += 1;
    }

    /// Assumes `pod` onto `node` (Reserve): the next snapshot counts it.
    pub fn assume_pod(&self, pod: Arc<PodInfo>, node: &str) -> Result<(), CacheError> {
        let mut st = self.lock();
        if st.pods.contains_key(&pod.key) {
            return Err(CacheError::AlreadyPresent(pod.key.clone()));
        }
        st.add_pod_to_node(pod.clone(), node);
        st.pods.insert(
            pod.key.clone(),
            PodState {
                node: node.to_owned(),
                assumed: true,
            },
        );
        Ok(())
    }

    /// Undoes [`assume_pod`](Self::assume_pod) after a failed binding.
    pub fn forget_pod(&self, key: &str) -> Result<(), CacheError> {
        let mut st = self.lock();
        match st.pods.get(key) {
            Some(ps) if ps.assumed => {
                let node = ps.node.clone();
                st.pods.remove(key);
                st.remove_pod_from_node(key, &node);
                Ok(())
            }
            _ => Err(CacheError::NotAssumed(key.to_owned())),
        }
    }

    /// An assigned pod from the informer: confirms an assumed pod (moving it
    /// if the binding went elsewhere) or adds it; updates replace it.
    pub fn add_or_update_pod(&self, pod: Arc<Pod>) {
        let Some(node) = node_name(&pod).map(str::to_owned) else {
            return;
        };
        let info = Arc::new(PodInfo::new(pod));
        let mut st = self.lock();
        match st.pods.get(&info.key) {
            // A confirmation, or an update in place: one change of the node.
            Some(old) if old.node == node => st.replace_pod_on_node(info.clone(), &node),
            Some(old) => {
                let old = old.node.clone();
                st.remove_pod_from_node(&info.key, &old);
                st.add_pod_to_node(info.clone(), &node);
            }
            None => st.add_pod_to_node(info.clone(), &node),
        }
        st.pods.insert(
            info.key.clone(),
            PodState {
                node,
                assumed: false,
            },
        );
    }

    /// An assigned pod was deleted.
    pub fn remove_pod(&self, key: &str) {
        let mut st = self.lock();
        if let Some(old) = st.pods.remove(key) {
            st.remove_pod_from_node(key, &old.node);
        }
    }

    /// True when `key` is assumed and not yet confirmed.
    pub fn is_assumed(&self, key: &str) -> bool {
        self.lock().pods.get(key).is_some_and(|p| p.assumed)
    }

    /// The node `key` is on (assumed or confirmed).
    pub fn pod_node(&self, key: &str) -> Option<String> {
        self.lock().pods.get(key).map(|p| p.node.clone())
    }

    /// Number of nodes with a Node object.
    pub fn node_count(&self) -> usize {
        self.lock()
            .nodes
            .values()
            .filter(|e| e.info.node.is_some())
            .count()
    }

    /// Brings `snap` up to date, copying only nodes changed since it was
    /// last updated (upstream's `UpdateSnapshot`).
    pub fn update_snapshot(&self, snap: &mut CacheSnapshot) {
        let st = self.lock();
        let full = snap.removals != st.removals || snap.snapshot.nodes.is_empty();
        let mut claims_dirty = false;
        let changed: Vec<&String> = st
            .by_generation
            .range(snap.generation + 1..)
            .map(|(_, n)| n)
            .collect();
        for name in changed {
            let Some(e) = st.nodes.get(name) else {
                continue;
            };
            if e.info.node.is_none() {
                continue;
            }
            let mut info = e.info.clone();
            info.image_states = HashMap::new();
            for (names, size) in &e.images {
                for n in names {
                    let num_nodes = st.image_nodes.get(n).map_or(0, BTreeSet::len);
                    info.image_states.insert(
                        n.clone(),
                        ImageStateSummary {
                            size: *size,
                            num_nodes,
                        },
                    );
                }
            }
            let info = Arc::new(info);
            match snap.snapshot.by_name.get(name).copied() {
                Some(i) if !full => {
                    let old = std::mem::replace(&mut snap.snapshot.nodes[i], info.clone());
                    let s = &mut snap.snapshot;
                    replace_member(&mut s.have_pods_with_affinity, &old, &info, |n| {
                        !n.pods_with_affinity.is_empty()
                    });
                    replace_member(
                        &mut s.have_pods_with_required_anti_affinity,
                        &old,
                        &info,
                        |n| !n.pods_with_required_anti_affinity.is_empty(),
                    );
                    if !old.pvc_ref_counts.is_empty() || !info.pvc_ref_counts.is_empty() {
                        claims_dirty = true;
                    }
                }
                _ => {
                    snap.pending.insert(name.clone(), info);
                }
            }
        }
        if full {
            let mut nodes: Vec<Arc<NodeInfo>> = Vec::with_capacity(st.nodes.len());
            for (name, e) in &st.nodes {
                if e.info.node.is_none() {
                    continue;
                }
                let info = snap
                    .pending
                    .remove(name)
                    .or_else(|| {
                        snap.snapshot
                            .get(name)
                            .filter(|n| n.generation == e.info.generation)
                            .cloned()
                    })
                    .unwrap_or_else(|| Arc::new(e.info.clone()));
                nodes.push(info);
            }
            nodes.sort_by(|a, b| a.name().cmp(b.name()));
            snap.snapshot = Snapshot::from_nodes(nodes);
        } else if !snap.pending.is_empty() {
            let mut nodes = std::mem::take(&mut snap.snapshot.nodes);
            nodes.extend(snap.pending.drain().map(|(_, v)| v));
            snap.snapshot = Snapshot::from_nodes(nodes);
        } else if claims_dirty {
            snap.snapshot.refresh_used_claims();
        }
        snap.pending.clear();
        snap.generation = st.generation;
        snap.removals = st.removals;
    }
}

/// Keeps a snapshot subset (nodes with pods of some kind) in step with one
/// node's new info: `old` is swapped for `new` where `new` still belongs
/// (`belongs`), dropped where it no longer does, and `new` added where it
/// now does. Only a node that was or is a member is looked for. The order
/// of a subset does not matter to its readers (they count over it).
fn replace_member(
    subset: &mut Vec<Arc<NodeInfo>>,
    old: &Arc<NodeInfo>,
    new: &Arc<NodeInfo>,
    belongs: impl Fn(&NodeInfo) -> bool,
) {
    let (was, is) = (belongs(old), belongs(new));
    let at = if was {
        subset.iter().position(|n| Arc::ptr_eq(n, old))
    } else {
        None
    };
    match (at, is) {
        (Some(at), true) => subset[at] = new.clone(),
        (Some(at), false) => {
            subset.swap_remove(at);
        }
        (None, true) => subset.push(new.clone()),
        (None, false) => {}
    }
}

/// A [`Snapshot`] with what the cache needs to update it incrementally.
#[derive(Debug, Default)]
pub struct CacheSnapshot {
    /// The frozen view for one cycle.
    pub snapshot: Snapshot,
    generation: u64,
    removals: u64,
    pending: HashMap<String, Arc<NodeInfo>>,
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
