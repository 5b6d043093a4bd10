//! Per-cycle interning of topology values (domains) to dense ids, so the
//! affinity and spreading plugins count pods in `Vec`s and look a node's
//! domain up with one integer-keyed probe, without a `String` per domain.

use crate::framework::{NodeInfo, TopologyKey, TopologyValue};
use crate::plugins::fasthash::FastMap;

/// The end of a chain of ids whose values share a hash.
const END: u32 = u32::MAX;

/// The values of one topology key seen in a cycle, each with a dense id
/// (0, 1, ...) in the order first seen. Lookups are exact: values are
/// compared after their hashes match.
#[derive(Debug, Clone, Default)]
pub(crate) struct Domains {
    /// Hash → the first id with that hash.
    first: FastMap<u64, u32>,
    /// Per id: the next id whose value has the same hash, or [`END`].
    next: Vec<u32>,
    /// Every value, back to back.
    arena: String,
    /// Per id: where its value ends in `arena` (it starts where the
    /// previous one ends).
    ends: Vec<usize>,
}

impl Domains {
    /// The number of values.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The value with id `id` ("" for an unknown id).
    pub(crate) fn value(&self, id: u32) -> &str {
        let i = id as usize;
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.arena.get(start..end).unwrap_or("")
    }

    /// The id of `v`, if seen.
    pub(crate) fn get(&self, v: TopologyValue<'_>) -> Option<u32> {
        let mut id = *self.first.get(&v.hash)?;
        while id != END {
            if self.value(id) == v.value {
                return Some(id);
            }
            id = self.next[id as usize];
        }
        None
    }

    /// The id of `v`, added if new.
    pub(crate) fn intern(&mut self, v: TopologyValue<'_>) -> u32 {
        let new_id = u32::try_from(self.ends.len()).unwrap_or(END - 1);
        let head = match self.first.get(&v.hash) {
            Some(&head) => {
                let mut id = head;
                while id != END {
                    if self.value(id) == v.value {
                        return id;
                    }
                    id = self.next[id as usize];
                }
                head
            }
            None => END,
        };
        // New values go to the front of their chain.
        self.first.insert(v.hash, new_id);
        self.next.push(head);
        self.arena.push_str(v.value);
        self.ends.push(self.arena.len());
        new_id
    }
}

/// A count per domain of one topology key.
#[derive(Debug, Clone, Default)]
pub(crate) struct DomainCounts {
    pub(crate) domains: Domains,
    /// Per domain id.
    pub(crate) counts: Vec<i64>,
}

impl DomainCounts {
    /// Adds `delta` to `v`'s count (creating the domain with 0 first) and
    /// returns the domain's id and new count.
    pub(crate) fn add(&mut self, v: TopologyValue<'_>, delta: i64) -> (u32, i64) {
        let id = self.domains.intern(v);
        let i = id as usize;
        if i == self.counts.len() {
            self.counts.push(0);
        }
        let n = &mut self.counts[i];
        *n += delta;
        (id, *n)
    }

    /// `v`'s count (0 for an unknown domain).
    pub(crate) fn get(&self, v: TopologyValue<'_>) -> i64 {
        self.domains.get(v).map_or(0, |id| self.counts[id as usize])
    }

    /// The number of domains (including those counted 0).
    pub(crate) fn len(&self) -> usize {
        self.domains.len()
    }

    /// Each domain's value and count, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        (0..self.counts.len()).map(|i| (self.domains.value(i as u32), self.counts[i]))
    }
}

/// A pair's ids in a [`TopologyCounts`]: key index and domain id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PairId(u32, u32);

/// Counts per topology pair (key and value) over a few keys, dropping to
/// "empty" when every count is back at zero.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopologyCounts {
    keys: Vec<(TopologyKey, DomainCounts)>,
    /// Pairs with a non-zero count.
    non_zero: usize,
}

impl TopologyCounts {
    fn key_index(&self, key: &str, key_hash: u64) -> Option<usize> {
        self.keys
            .iter()
            .position(|(k, _)| k.hash() == key_hash && k.name() == key)
    }

    /// The ids of the pair (`key`, the node's value for `key`), added with
    /// count 0 if new; None when the node lacks the label. `key_hash` is
    /// `key`'s [`crate::framework::topology::hash_label`].
    pub(crate) fn intern(&mut self, node: &NodeInfo, key: &str, key_hash: u64) -> Option<PairId> {
        let value = node.label_value_hashed(key, key_hash)?;
        let k = match self.key_index(key, key_hash) {
            Some(i) => i,
            None => {
                self.keys
                    .push((TopologyKey::new(key), DomainCounts::default()));
                self.keys.len() - 1
            }
        };
        let (d, _) = self.keys[k].1.add(value, 0);
        Some(PairId(u32::try_from(k).unwrap_or(u32::MAX), d))
    }

    /// Adds `delta` to the count of pair `id` (from [`TopologyCounts::intern`]).
    pub(crate) fn add_at(&mut self, id: PairId, delta: i64) {
        let Some(n) = self
            .keys
            .get_mut(id.0 as usize)
            .and_then(|(_, c)| c.counts.get_mut(id.1 as usize))
        else {
            return;
        };
        let before = *n;
        *n += delta;
        match (before == 0, *n == 0) {
            (true, false) => self.non_zero += 1,
            (false, true) => self.non_zero -= 1,
            _ => {}
        }
    }

    /// Adds `delta` to the pair (`key`, the node's value for `key`) if the
    /// node has that label.
    pub(crate) fn update(&mut self, node: &NodeInfo, key: &str, key_hash: u64, delta: i64) {
        if delta == 0 {
            return;
        }
        if let Some(id) = self.intern(node, key, key_hash) {
            self.add_at(id, delta);
        }
    }

    /// The count of (`key`, the node's value for `key`).
    pub(crate) fn get(&self, node: &NodeInfo, key: &str, key_hash: u64) -> i64 {
        let Some(i) = self.key_index(key, key_hash) else {
            return 0;
        };
        node.label_value_hashed(key, key_hash)
            .map_or(0, |v| self.keys[i].1.get(v))
    }

    /// The count of (`key`, `value`).
    pub(crate) fn get_value(&self, key: &str, key_hash: u64, value: TopologyValue<'_>) -> i64 {
        self.key_index(key, key_hash)
            .map_or(0, |i| self.keys[i].1.get(value))
    }

    /// True when some key's count in the node's domain is positive.
    pub(crate) fn any_positive(&self, node: &NodeInfo) -> bool {
        self.keys
            .iter()
            .any(|(k, counts)| node.topology_value(k).is_some_and(|v| counts.get(v) > 0))
    }

    /// The sum over the keys of the count in the node's domain.
    pub(crate) fn sum(&self, node: &NodeInfo) -> i64 {
        self.keys
            .iter()
            .filter_map(|(k, counts)| node.topology_value(k).map(|v| counts.get(v)))
            .sum()
    }

    /// True when no pair has a non-zero count.
    pub(crate) fn is_empty(&self) -> bool {
        self.non_zero == 0
    }

    /// The pairs with a non-zero count, sorted (for comparing states).
    pub(crate) fn pairs(&self) -> Vec<(String, String, i64)> {
        let mut out: Vec<_> = self
            .keys
            .iter()
            .flat_map(|(k, counts)| {
                counts
                    .iter()
                    .filter(|(_, n)| *n != 0)
                    .map(|(v, n)| (k.name().to_owned(), v.to_owned(), n))
            })
            .collect();
        out.sort();
        out
    }
}

impl PartialEq for TopologyCounts {
    fn eq(&self, other: &Self) -> bool {
        self.pairs() == other.pairs()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::framework::topology::hash_label;
    use crate::plugins::test_util::{node, node_info};

    /// A value with a forced hash, to exercise chains.
    fn with_hash(value: &str, hash: u64) -> TopologyValue<'_> {
        TopologyValue { value, hash }
    }

    #[test]
    fn domains_intern_exactly_even_when_hashes_collide() {
        let mut d = Domains::default();
        assert_eq!(d.get(TopologyValue::new("a")), None);
        // (value, forced hash, expected id)
        let cases = [
            ("a", 1, 0),
            ("b", 1, 1),
            ("", 1, 2),
            ("c", 2, 3),
            ("a", 1, 0),
            ("b", 1, 1),
            ("", 1, 2),
            ("c", 2, 3),
        ];
        for (v, h, id) in cases {
            assert_eq!(d.intern(with_hash(v, h)), id, "{v}");
        }
        assert_eq!(d.len(), 4);
        for (v, h, id) in cases {
            assert_eq!(d.get(with_hash(v, h)), Some(id), "{v}");
            assert_eq!(d.value(id), v);
        }
        // Same hash, unseen value; seen value, other hash.
        assert_eq!(d.get(with_hash("d", 1)), None);
        assert_eq!(d.get(with_hash("a", 2)), None);
        assert_eq!(d.value(99), "");
    }

    #[test]
    fn domain_counts_add_and_get() {
        let mut c = DomainCounts::default();
        assert_eq!(c.add(TopologyValue::new("z1"), 2), (0, 2));
        assert_eq!(c.add(TopologyValue::new("z2"), 0), (1, 0));
        assert_eq!(c.add(TopologyValue::new("z1"), -1), (0, 1));
        assert_eq!(c.get(TopologyValue::new("z1")), 1);
        assert_eq!(c.get(TopologyValue::new("z3")), 0);
        assert_eq!(c.len(), 2);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![("z1", 1), ("z2", 0)]);
    }

    #[test]
    fn topology_counts_track_pairs_per_node_domain() {
        let n1 = node_info(node("n1", &[("zone", "a"), ("host", "n1")]), vec![]);
        let n2 = node_info(node("n2", &[("zone", "a"), ("host", "n2")]), vec![]);
        let n3 = node_info(node("n3", &[("host", "n3")]), vec![]);
        let (zone, host) = (hash_label("zone"), hash_label("host"));
        let mut c = TopologyCounts::default();
        assert!(c.is_empty());
        c.update(&n1, "zone", zone, 1);
        c.update(&n3, "zone", zone, 1); // no zone label: nothing counted
        c.update(&n2, "host", host, 2);
        assert!(!c.is_empty());
        assert_eq!(c.get(&n2, "zone", zone), 1);
        assert_eq!(c.get(&n3, "zone", zone), 0);
        assert_eq!(c.get(&n1, "host", host), 0);
        assert!(c.any_positive(&n2) && !c.any_positive(&n3));
        assert_eq!(c.sum(&n2), 3);
        assert_eq!(
            c.pairs(),
            vec![
                ("host".to_owned(), "n2".to_owned(), 2),
                ("zone".to_owned(), "a".to_owned(), 1)
            ]
        );
        c.update(&n2, "zone", zone, -1);
        c.update(&n2, "host", host, -2);
        assert!(c.is_empty());
        assert!(c.pairs().is_empty());
        // Same pairs reached in another order compare equal.
        let mut a = TopologyCounts::default();
        a.update(&n1, "host", host, 1);
        a.update(&n1, "zone", zone, 1);
        let mut b = TopologyCounts::default();
        b.update(&n2, "zone", zone, 1);
        b.update(&n1, "host", host, 1);
        assert_eq!(a, b);
        b.update(&n1, "host", host, 1);
        assert_ne!(a, b);
    }
}
