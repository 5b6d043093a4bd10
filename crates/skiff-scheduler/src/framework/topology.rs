//! Node labels with their hashes precomputed, so plugins that count pods per
//! topology domain (InterPodAffinity, PodTopologySpread) find a node's value
//! for a topology key without comparing label strings one by one, and
//! intern it for the cycle without hashing it again.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

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

/// Hashes of one label's key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelHash {
    /// [`hash_label`] of the key.
    pub key: u64,
    /// [`hash_label`] of the value.
    pub value: u64,
}

/// The hashes of a Node's labels in `metadata.labels` order, and the Node
/// they were computed from (so a Node replaced without
/// [`NodeInfo::set_node`] is noticed rather than misread).
#[derive(Debug, Clone, Default)]
pub struct LabelHashes {
    source: Option<Arc<Node>>,
    hashes: Vec<LabelHash>,
}

impl LabelHashes {
    /// Hashes `node`'s labels.
    pub fn new(node: &Arc<Node>) -> LabelHashes {
        let hashes = node
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| LabelHash {
                key: hash_label(k),
                value: hash_label(v),
            })
            .collect();
        LabelHashes {
            source: Some(node.clone()),
            hashes,
        }
    }

    /// The hashes, when they were computed from `node`.
    fn of(&self, node: Option<&Arc<Node>>) -> Option<&[LabelHash]> {
        match (self.source.as_ref(), node) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => Some(&self.hashes),
            _ => None,
        }
    }
}

impl NodeInfo {
    /// The node's value for topology key `key` (None when the node lacks
    /// the label).
    pub fn topology_value(&self, key: &TopologyKey) -> Option<TopologyValue<'_>> {
        self.label_value_hashed(&key.name, key.hash)
    }

    /// As [`NodeInfo::topology_value`], for a key given by name and
    /// [`hash_label`].
    pub fn label_value_hashed(&self, key: &str, key_hash: u64) -> Option<TopologyValue<'_>> {
        let labels = self.labels();
        if let Some(hashes) = self.label_hashes.of(self.node.as_ref()) {
            // Fresh hashes without the key's: the node lacks the label.
            let i = hashes.iter().position(|h| h.key == key_hash)?;
            if let Some((k, v)) = labels.iter().nth(i)
                && k == key
            {
                return Some(TopologyValue {
                    value: v,
                    hash: hashes[i].value,
                });
            }
        }
        // Hashes stale or colliding between keys: look the key up directly.
        lookup(labels, key)
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
    fn a_key_hash_collision_falls_back_to_the_name() {
        let info = NodeInfo::new(node(json!({"zone": "a"})));
        // The zone key's hash under another name: the names differ.
        let h = hash_label("zone");
        assert!(info.label_value_hashed("region", h).is_none());
        assert_eq!(info.label_value_hashed("zone", h).unwrap().value, "a");
    }
}
