//! Per-node results kept across scheduling cycles.
//!
//! PreFilter of the affinity and spreading plugins sums a per-node
//! contribution over every node of the snapshot. Scanning thousands of
//! NodeInfos per pod is bound by memory latency, yet between two pods of the
//! same workload only the nodes touched by the last binding change. A
//! [`NodeResults`] remembers, for the inputs of the last pod (`K`), each
//! node's result and running totals; the next cycle with equal inputs only
//! recomputes the nodes whose `Arc<NodeInfo>` is not the one it holds.
//! Snapshots never mutate a NodeInfo in place (a change makes a new one), and
//! holding the old `Arc` keeps its address from being reused, so pointer
//! equality means "unchanged".

use std::sync::{Arc, Mutex, MutexGuard};

use crate::framework::NodeInfo;

/// Results of a pure function of (`K`, node) for every node, with totals `T`.
#[derive(Debug)]
pub(crate) struct NodeResults<K, R, T> {
    key: Option<K>,
    nodes: Vec<Arc<NodeInfo>>,
    results: Vec<R>,
    totals: T,
}

impl<K, R, T: Default> Default for NodeResults<K, R, T> {
    fn default() -> Self {
        NodeResults {
            key: None,
            nodes: Vec::new(),
            results: Vec::new(),
            totals: T::default(),
        }
    }
}

impl<K: PartialEq, R, T: Default> NodeResults<K, R, T> {
    /// Brings the results up to date with `nodes` for inputs `key` and
    /// returns the totals. `compute` evaluates one node (it may intern into
    /// the totals); `apply` adds (`sign` 1) or takes away (-1) a result.
    pub(crate) fn refresh(
        &mut self,
        key: K,
        nodes: &[Arc<NodeInfo>],
        mut compute: impl FnMut(&mut T, &NodeInfo) -> R,
        mut apply: impl FnMut(&mut T, &R, i64),
    ) -> &T {
        if self.key.as_ref() != Some(&key) {
            *self = NodeResults {
                key: Some(key),
                ..NodeResults::default()
            };
        }
        for (i, node) in nodes.iter().enumerate() {
            if let Some(held) = self.nodes.get(i) {
                if Arc::ptr_eq(held, node) {
                    continue;
                }
                apply(&mut self.totals, &self.results[i], -1);
                let r = compute(&mut self.totals, node);
                apply(&mut self.totals, &r, 1);
                self.results[i] = r;
                self.nodes[i] = node.clone();
            } else {
                let r = compute(&mut self.totals, node);
                apply(&mut self.totals, &r, 1);
                self.results.push(r);
                self.nodes.push(node.clone());
            }
        }
        for r in self.results.drain(nodes.len()..) {
            apply(&mut self.totals, &r, -1);
        }
        self.nodes.truncate(nodes.len());
        &self.totals
    }
}

/// A [`NodeResults`] behind a lock, for a plugin's `&self` methods. PreFilter
/// runs once per cycle, so the lock is not contended.
#[derive(Debug)]
pub(crate) struct SharedNodeResults<K, R, T>(Mutex<NodeResults<K, R, T>>);

impl<K, R, T: Default> Default for SharedNodeResults<K, R, T> {
    fn default() -> Self {
        SharedNodeResults(Mutex::new(NodeResults::default()))
    }
}

impl<K, R, T: Default> SharedNodeResults<K, R, T> {
    /// The results; after a panic while they were held they start afresh,
    /// as they may be half updated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeResults<K, R, T>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                let mut g = poisoned.into_inner();
                *g = NodeResults::default();
                self.0.clear_poison();
                g
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plugins::test_util::{node, node_info, pod};
    use serde_json::json;

    /// Totals: pods per node summed.
    #[derive(Debug, Default)]
    struct Totals {
        pods: i64,
    }

    fn refresh(
        c: &mut NodeResults<&'static str, i64, Totals>,
        key: &'static str,
        nodes: &[Arc<NodeInfo>],
    ) -> (i64, usize) {
        // How many nodes were computed.
        let mut computed = 0;
        let t = c.refresh(
            key,
            nodes,
            |_, n| {
                computed += 1;
                i64::try_from(n.pods.len()).unwrap()
            },
            |t, r, sign| t.pods += sign * r,
        );
        (t.pods, computed)
    }

    fn with_pods(name: &str, n: usize) -> Arc<NodeInfo> {
        let pods = (0..n)
            .map(|i| pod(&format!("{name}-{i}"), "default", &[], json!({})))
            .collect();
        node_info(node(name, &[]), pods)
    }

    #[test]
    fn only_changed_nodes_are_recomputed() {
        let mut c = NodeResults::default();
        let mut nodes = vec![with_pods("a", 1), with_pods("b", 2), with_pods("c", 0)];
        assert_eq!(refresh(&mut c, "k", &nodes), (3, 3));
        assert_eq!(refresh(&mut c, "k", &nodes), (3, 0));
        // A binding replaces one node.
        nodes[1] = with_pods("b", 3);
        assert_eq!(refresh(&mut c, "k", &nodes), (4, 1));
        // A node added, then the last two removed.
        nodes.push(with_pods("d", 5));
        assert_eq!(refresh(&mut c, "k", &nodes), (9, 1));
        nodes.truncate(2);
        assert_eq!(refresh(&mut c, "k", &nodes), (4, 0));
        // Other inputs start afresh.
        assert_eq!(refresh(&mut c, "other", &nodes), (4, 2));
        // Nodes moved to other positions are recomputed there.
        nodes.swap(0, 1);
        assert_eq!(refresh(&mut c, "other", &nodes), (4, 2));
    }

    #[test]
    fn a_poisoned_lock_starts_afresh() {
        let shared: Arc<SharedNodeResults<&'static str, i64, Totals>> = Arc::default();
        let nodes = vec![with_pods("a", 2)];
        assert_eq!(refresh(&mut shared.lock(), "k", &nodes), (2, 1));
        let s = shared.clone();
        let _ = std::thread::spawn(move || {
            let _g = s.lock();
            panic!("while holding the results");
        })
        .join();
        assert_eq!(refresh(&mut shared.lock(), "k", &nodes), (2, 1));
    }
}
