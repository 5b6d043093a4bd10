//! Node labels with their hashes precomputed, so plugins that count pods per
//! topology domain (InterPodAffinity, PodTopologySpread) find a node's value
//! for a topology key without comparing label strings one by one, and
//! intern it for the cycle without hashing it again.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use skiff_api::selector::labels::Labels;

use super::node_info::NodeInfo;
use crate::plugins::fasthash::FastHasher;

/// The hash of a label key or value as [`NodeInfo::topology_value`] uses it.
pub fn hash_label(s: &str) -> u64 {
    BuildHasherDefault::<FastHasher>::default().hash_one(s)
}

/// A topology key (a node label key) with its hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopologyKey {
    name: String,
    hash: u64,
}

impl TopologyKey {
    /// The key `name`.
    pub fn new(name: &str) -> TopologyKey {
        TopologyKey {
            name: name.to_owned(),
            hash: hash_label(name),
        }
    }

    /// The label key.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its [`hash_label`].
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// A node's value for a topology key (its domain), with the value's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopologyValue<'a> {
    /// The label value.
    pub value: &'a str,
    /// Its [`hash_label`].
    pub hash: u64,
}

impl<'a> TopologyValue<'a> {
    /// `value` with its hash computed now.
    pub fn new(value: &'a str) -> TopologyValue<'a> {
        TopologyValue {
            value,
            hash: hash_label(value),
        }
    }
}

/// Bytes per label in a [`LabelIndex`]'s table: key hash and value hash
/// (u64), where the key and the value end (u32), little-endian.
const ENTRY: usize = 24;

/// A label set packed into one allocation: a table of hashes and offsets,
/// then an optional prefix and every key and value back to back. Scanning
/// thousands of nodes or pods per cycle then touches one block per object
/// instead of a tree node and two strings per label.
///
/// The block is shared, not copied, when its owner is cloned: a NodeInfo
/// is cloned into the snapshot whenever a pod lands on it, and a copy per
/// clone scattered the blocks over the heap, so every cycle's scan of a
/// node's labels missed the cache (most of PodTopologySpread's filter in a
/// 5,000-node profile). Blocks made together at node registration stay
/// together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelIndex {
    data: Arc<[u8]>,
    len: usize,
    prefix_end: usize,
}

impl LabelIndex {
    /// Packs `prefix` (e.g. a pod's namespace) and `labels`. Label sets
    /// beyond 4 GiB are not indexed (lookups then find nothing).
    pub fn new<'a>(
        prefix: &str,
        labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> LabelIndex {
        let labels: Vec<_> = labels.into_iter().collect();
        let table = labels.len() * ENTRY;
        let strings: usize =
            prefix.len() + labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let mut data = vec![0u8; table];
        data.reserve_exact(strings);
        data.extend_from_slice(prefix.as_bytes());
        let prefix_end = data.len();
        for (i, (k, v)) in labels.iter().enumerate() {
            data.extend_from_slice(k.as_bytes());
            let key_end = data.len();
            data.extend_from_slice(v.as_bytes());
            let (Ok(key_end), Ok(value_end)) = (u32::try_from(key_end), u32::try_from(data.len()))
            else {
                return LabelIndex::default();
            };
            let e = &mut data[i * ENTRY..(i + 1) * ENTRY];
            e[..8].copy_from_slice(&hash_label(k).to_le_bytes());
            e[8..16].copy_from_slice(&hash_label(v).to_le_bytes());
            e[16..20].copy_from_slice(&key_end.to_le_bytes());
            e[20..].copy_from_slice(&value_end.to_le_bytes());
        }
        LabelIndex {
            data: Arc::from(data),
            len: labels.len(),
            prefix_end,
        }
    }

    fn u64_at(&self, at: usize) -> u64 {
        self.data
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }

    fn offset_at(&self, at: usize) -> usize {
        self.data
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes) as usize
    }

    fn str_at(&self, start: usize, end: usize) -> &str {
        // Offsets are those of whole strings, so the bytes are UTF-8.
        self.data
            .get(start..end)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The prefix given to [`LabelIndex::new`].
    pub fn prefix(&self) -> &str {
        self.str_at(self.len * ENTRY, self.prefix_end)
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where label `i`'s key starts and ends and its value ends.
    fn bounds(&self, i: usize) -> (usize, usize, usize) {
        let start = match i {
            0 => self.prefix_end,
            _ => self.offset_at((i - 1) * ENTRY + 20),
        };
        (
            start,
            self.offset_at(i * ENTRY + 16),
            self.offset_at(i * ENTRY + 20),
        )
    }

    /// The value of `key` if label `i` has that key.
    fn value_if_key(&self, i: usize, key: &str) -> Option<&str> {
        let (start, key_end, value_end) = self.bounds(i);
        (self.data.get(start..key_end) == Some(key.as_bytes()))
            .then(|| self.str_at(key_end, value_end))
    }

    /// The value of `key`, whose [`hash_label`] is `key_hash`.
    pub fn get_hashed(&self, key: &str, key_hash: u64) -> Option<TopologyValue<'_>> {
        (0..self.len).find_map(|i| {
            if self.u64_at(i * ENTRY) != key_hash {
                return None;
            }
            self.value_if_key(i, key).map(|value| TopologyValue {
                value,
                hash: self.u64_at(i * ENTRY + 8),
            })
        })
    }
}

impl Labels for LabelIndex {
    fn label(&self, key: &str) -> Option<&str> {
        (0..self.len).find_map(|i| self.value_if_key(i, key))
    }
}

/// A node's [`LabelIndex`] and the Node it was built from (so a Node
/// replaced without [`NodeInfo::set_node`] is noticed rather than misread).
#[derive(Debug, Clone, Default)]
pub struct LabelHashes {
    source: Option<Arc<Node>>,
    index: LabelIndex,
}

impl LabelHashes {
    /// Indexes `node`'s labels.
    pub fn new(node: &Arc<Node>) -> LabelHashes {
        LabelHashes {
            source: Some(node.clone()),
            index: LabelIndex::new("", node.metadata.labels.iter().flatten()),
        }
    }

    /// The index, when it was built from `node`.
    fn of(&self, node: Option<&Arc<Node>>) -> Option<&LabelIndex> {
        match (self.source.as_ref(), node) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => Some(&self.index),
            _ => None,
        }
    }
}

/// A node's labels as selectors read them: the packed [`LabelIndex`] while
/// it is the current Node's, else the Node's own map. Matching a node
/// affinity against thousands of nodes per cycle then reads one block per
/// node rather than a tree node and a string per label compared.
#[derive(Debug, Clone, Copy)]
pub enum NodeLabels<'a> {
    /// The node's packed index.
    Packed(&'a LabelIndex),
    /// The Node's `metadata.labels`.
    Map(&'a BTreeMap<String, String>),
}

impl Labels for NodeLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        match self {
            NodeLabels::Packed(index) => index.label(key),
            NodeLabels::Map(map) => map.label(key),
        }
    }
}

impl NodeInfo {
    /// Starts loading the node's label block into the caches (a hint, for
    /// loops about to read the labels of many nodes in turn).
    pub fn prefetch_labels(&self) {
        skiff_sys::memory::prefetch_bytes(&self.label_hashes.index.data, 8);
    }

    /// The node's labels for selectors (see [`NodeLabels`]).
    pub fn label_set(&self) -> NodeLabels<'_> {
        match self.label_hashes.of(self.node.as_ref()) {
            Some(index) => NodeLabels::Packed(index),
            None => NodeLabels::Map(self.labels()),
        }
    }

    /// The node's value for topology key `key` (None when the node lacks
    /// the label).
    pub fn topology_value(&self, key: &TopologyKey) -> Option<TopologyValue<'_>> {
        self.label_value_hashed(&key.name, key.hash)
    }

    /// As [`NodeInfo::topology_value`], for a key given by name and
    /// [`hash_label`].
    pub fn label_value_hashed(&self, key: &str, key_hash: u64) -> Option<TopologyValue<'_>> {
        match self.label_set() {
            NodeLabels::Packed(index) => index.get_hashed(key, key_hash),
            // Stale: look the key up directly.
            NodeLabels::Map(labels) => lookup(labels, key),
        }
    }
}

fn lookup<'a>(labels: &'a BTreeMap<String, String>, key: &str) -> Option<TopologyValue<'a>> {
    labels.get(key).map(|v| TopologyValue::new(v))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "n", "labels": labels}})).unwrap(),
        )
    }

    #[test]
    fn topology_value_finds_each_label_and_only_those() {
        let info = NodeInfo::new(node(json!({
            "kubernetes.io/hostname": "n", "topology.kubernetes.io/zone": "z1", "a": "", "b": "x"
        })));
        for (k, want) in [
            ("kubernetes.io/hostname", Some("n")),
            ("topology.kubernetes.io/zone", Some("z1")),
            ("a", Some("")),
            ("b", Some("x")),
            ("c", None),
            ("", None),
        ] {
            let got = info.topology_value(&TopologyKey::new(k));
            assert_eq!(got.map(|v| v.value), want, "{k}");
            if let Some(v) = got {
                assert_eq!(v.hash, hash_label(v.value), "{k}");
            }
        }
    }

    #[test]
    fn a_node_replaced_without_set_node_is_read_directly() {
        let mut info = NodeInfo::new(node(json!({"zone": "a"})));
        info.node = Some(node(json!({"zone": "b", "rack": "r1"})));
        let zone = info.topology_value(&TopologyKey::new("zone")).unwrap();
        assert_eq!(zone, TopologyValue::new("b"));
        assert_eq!(
            info.topology_value(&TopologyKey::new("rack"))
                .unwrap()
                .value,
            "r1"
        );
        info.set_node(node(json!({"zone": "c"})));
        assert_eq!(
            info.topology_value(&TopologyKey::new("zone"))
                .unwrap()
                .value,
            "c"
        );
        assert!(info.topology_value(&TopologyKey::new("rack")).is_none());
    }

    #[test]
    fn label_set_is_the_index_while_current_and_the_map_once_stale() {
        let mut info = NodeInfo::new(node(json!({"zone": "a", "rack": "r1"})));
        assert!(matches!(info.label_set(), NodeLabels::Packed(_)));
        let affinity = |sel: &str| {
            let s = skiff_api::selector::labels::parse(sel).unwrap();
            s.matches(&info.label_set())
        };
        assert!(affinity("zone in (a,b),rack"));
        assert!(!affinity("zone=b"));
        // Replaced without set_node: the new Node's labels, read directly.
        info.node = Some(node(json!({"zone": "b"})));
        assert!(matches!(info.label_set(), NodeLabels::Map(_)));
        let s = skiff_api::selector::labels::parse("zone=b,!rack").unwrap();
        assert!(s.matches(&info.label_set()));
    }

    #[test]
    fn a_key_hash_collision_is_told_apart_by_the_name() {
        let info = NodeInfo::new(node(json!({"zone": "a"})));
        // The zone key's hash under another name: the names differ.
        let h = hash_label("zone");
        assert!(info.label_value_hashed("region", h).is_none());
        assert_eq!(info.label_value_hashed("zone", h).unwrap().value, "a");
    }

    #[test]
    fn label_index_packs_a_prefix_and_labels() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("empty", ""), ("tier", "x")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let idx = LabelIndex::new("ns1", &labels);
        assert_eq!(idx.prefix(), "ns1");
        assert_eq!(idx.len(), 3);
        for (k, want) in [
            ("app", Some("web")),
            ("empty", Some("")),
            ("tier", Some("x")),
            ("ns1", None),
            ("ap", None),
            ("", None),
        ] {
            assert_eq!(idx.label(k), want, "{k}");
            assert_eq!(
                idx.get_hashed(k, hash_label(k)).map(|v| v.value),
                want,
                "{k}"
            );
        }
        // Selectors match the index as they match the map.
        for sel in [
            "app=web",
            "app!=web",
            "empty",
            "!empty",
            "tier in (x,y)",
            "missing",
            "app=web,tier=y",
        ] {
            let s = skiff_api::selector::labels::parse(sel).unwrap();
            assert_eq!(s.matches(&idx), s.matches(&labels), "{sel}");
        }
        let none = LabelIndex::new("", &BTreeMap::new());
        assert!(none.is_empty() && none.prefix().is_empty() && none.label("a").is_none());
    }
}
