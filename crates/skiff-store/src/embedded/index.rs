//! The in-memory MVCC index: for every key, the revisions of its records
//! still on disk, like etcd's `treeIndex`. Values stay on disk; the index
//! answers "which revision of key K was visible at revision R" without I/O.
//!
//! Pure data structure: no I/O, no locking (the store wraps it in a lock).

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use crate::Revision;

/// One record of a key, as the index remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The record's revision (the key's mod revision from then on).
    pub rev: Revision,
    /// Create revision of the key's current life (0 for a tombstone).
    pub create: Revision,
    /// Version within the current life (0 for a tombstone).
    pub version: i64,
    /// True for a delete.
    pub deleted: bool,
}

/// The index of every key's retained records, plus the store's revisions.
#[derive(Debug, Default)]
pub(crate) struct Index {
    keys: BTreeMap<Box<str>, Vec<Entry>>,
    /// Keys with more than one record or a tombstone: the only ones a
    /// compaction can shrink, so it need not visit every key.
    compactable: HashSet<Box<str>>,
    live: usize,
    records: usize,
    current: Revision,
    compacted: Revision,
}

impl Index {
    /// The revision of the last write.
    pub fn current(&self) -> Revision {
        self.current
    }

    /// The revision history was compacted to (0 if never).
    pub fn compacted(&self) -> Revision {
        self.compacted
    }

    /// Number of live keys at the current revision.
    pub fn live_keys(&self) -> usize {
        self.live
    }

    /// Number of records the index refers to (live and historical).
    pub fn retained_records(&self) -> usize {
        self.records
    }

    /// Sets the revisions after loading from disk.
    pub fn set_revisions(&mut self, current: Revision, compacted: Revision) {
        self.current = current;
        self.compacted = compacted;
    }

    /// The key's latest record if the key is live.
    pub fn latest(&self, key: &str) -> Option<Entry> {
        self.keys
            .get(key)
            .and_then(|e| e.last().copied())
            .filter(|e| !e.deleted)
    }

    /// The key's record visible at revision `rev`, if the key was live then.
    #[cfg(test)]
    pub fn at(&self, key: &str, rev: Revision) -> Option<Entry> {
        self.keys.get(key).and_then(|e| visible_at(e, rev))
    }

    /// Live keys at `rev` under `prefix`, strictly after `after`, in key order.
    pub fn range<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        rev: Revision,
    ) -> impl Iterator<Item = (&'a str, Entry)> + 'a {
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.keys
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter_map(move |(k, e)| visible_at(e, rev).map(|e| (&**k, e)))
    }

    /// Records a write at `entry.rev`, which must be above every revision
    /// already in the index; advances the current revision.
    pub fn apply(&mut self, key: &str, entry: Entry) {
        debug_assert!(entry.rev > self.current);
        self.current = entry.rev;
        self.records += 1;
        let (was_live, len) = match self.keys.get_mut(key) {
            Some(entries) => {
                let was_live = entries.last().is_some_and(|e| !e.deleted);
                entries.push(entry);
                (was_live, entries.len())
            }
            None => {
                self.keys.insert(key.into(), vec![entry]);
                (false, 1)
            }
        };
        if (len > 1 || entry.deleted) && !self.compactable.contains(key) {
            self.compactable.insert(key.into());
        }
        match (was_live, entry.deleted) {
            (false, false) => self.live += 1,
            (true, true) => self.live -= 1,
            _ => {}
        }
    }

    /// Forgets history before `rev`: for each key, every record superseded
    /// by a later record at or below `rev`, and a tombstone below `rev`.
    /// Returns the revisions whose records can be removed from disk. The
    /// state at `rev` and every record at or above it stay.
    pub fn compact(&mut self, rev: Revision) -> Vec<Revision> {
        let mut removed = Vec::new();
        if rev <= self.compacted {
            return removed;
        }
        self.compacted = rev;
        let keys = &mut self.keys;
        let records = &mut self.records;
        self.compactable.retain(|key| {
            let Some(entries) = keys.get_mut(key) else {
                return false;
            };
            // Index of the last record at or below `rev`.
            let upto = entries.partition_point(|e| e.rev <= rev);
            if upto == 0 {
                return true;
            }
            let mut drop = upto - 1;
            let keep = entries[drop];
            if keep.deleted && keep.rev < rev {
                drop += 1;
            }
            removed.extend(entries.drain(..drop).map(|e| e.rev));
            *records -= drop;
            if entries.is_empty() {
                keys.remove(key);
                return false;
            }
            entries.len() > 1 || entries[0].deleted
        });
        removed
    }
}

fn visible_at(entries: &[Entry], rev: Revision) -> Option<Entry> {
    let upto = entries.partition_point(|e| e.rev <= rev);
    upto.checked_sub(1)
        .map(|i| entries[i])
        .filter(|e| !e.deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: Revision, create: Revision, version: i64) -> Entry {
        Entry {
            rev,
            create,
            version,
            deleted: false,
        }
    }
    fn del(rev: Revision) -> Entry {
        Entry {
            rev,
            create: 0,
            version: 0,
            deleted: true,
        }
    }

    /// a: put 1, put 2, del 3, put 5; b: put 4; c: put 6, del 7
    fn sample() -> Index {
        let mut ix = Index::default();
        ix.apply("/a", put(1, 1, 1));
        ix.apply("/a", put(2, 1, 2));
        ix.apply("/a", del(3));
        ix.apply("/b", put(4, 4, 1));
        ix.apply("/a", put(5, 5, 1));
        ix.apply("/c", put(6, 6, 1));
        ix.apply("/c", del(7));
        ix
    }

    #[test]
    fn visibility_at_revisions() {
        let ix = sample();
        assert_eq!(ix.current(), 7);
        assert_eq!(ix.live_keys(), 2);
        assert_eq!(ix.at("/a", 1), Some(put(1, 1, 1)));
        assert_eq!(ix.at("/a", 2), Some(put(2, 1, 2)));
        assert_eq!(ix.at("/a", 3), None);
        assert_eq!(ix.at("/a", 4), None);
        assert_eq!(ix.at("/a", 5), Some(put(5, 5, 1)));
        assert_eq!(ix.at("/b", 3), None);
        assert_eq!(ix.latest("/c"), None);
        assert_eq!(ix.at("/c", 6), Some(put(6, 6, 1)));
        let keys = |rev| {
            ix.range("/", None, rev)
                .map(|(k, _)| k.to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(2), ["/a"]);
        assert_eq!(keys(4), ["/b"]);
        assert_eq!(keys(6), ["/a", "/b", "/c"]);
        assert_eq!(keys(7), ["/a", "/b"]);
        let after: Vec<_> = ix.range("/", Some("/a"), 7).map(|(k, _)| k).collect();
        assert_eq!(after, ["/b"]);
    }

    #[test]
    fn range_respects_prefix_boundaries() {
        let mut ix = Index::default();
        for (i, k) in ["/p/a", "/p/b", "/p0", "/pa", "/q"].iter().enumerate() {
            ix.apply(k, put(i as i64 + 1, i as i64 + 1, 1));
        }
        let got: Vec<_> = ix.range("/p/", None, 5).map(|(k, _)| k).collect();
        assert_eq!(got, ["/p/a", "/p/b"]);
        // A continue key before the prefix starts at the prefix.
        let got: Vec<_> = ix.range("/p/", Some("/a"), 5).map(|(k, _)| k).collect();
        assert_eq!(got, ["/p/a", "/p/b"]);
    }

    #[test]
    fn compaction_keeps_state_at_and_after_the_revision() {
        let mut ix = sample();
        let mut removed = ix.compact(4);
        removed.sort();
        // a's records 1, 2 and tombstone 3 go; b@4 and a@5 stay; c untouched.
        assert_eq!(removed, [1, 2, 3]);
        assert_eq!(ix.compacted(), 4);
        assert_eq!(ix.at("/b", 4), Some(put(4, 4, 1)));
        assert_eq!(ix.at("/a", 5), Some(put(5, 5, 1)));
        assert_eq!(ix.at("/c", 6), Some(put(6, 6, 1)));
        // Compacting to 7: c's put 6 is superseded by its tombstone at 7,
        // which stays because it is not below 7.
        let removed = ix.compact(7);
        assert_eq!(removed, [6]);
        assert_eq!(ix.at("/c", 7), None);
        let removed = ix.compact(8);
        assert_eq!(removed, [7]);
        assert!(!ix.keys.contains_key("/c"));
        // Older targets are no-ops.
        assert!(ix.compact(5).is_empty());
        assert_eq!(ix.live_keys(), 2);
        assert_eq!(ix.retained_records(), 2);
    }

    #[test]
    fn compaction_keeps_the_previous_record_of_later_writes() {
        let mut ix = Index::default();
        ix.apply("/k", put(1, 1, 1));
        ix.apply("/k", put(2, 1, 2));
        ix.apply("/k", put(3, 1, 3));
        ix.apply("/k", put(4, 1, 4));
        assert_eq!(ix.compact(2), [1]);
        // Record 2 is the state at 2 and the previous value of record 3.
        assert_eq!(ix.at("/k", 2), Some(put(2, 1, 2)));
        assert_eq!(ix.keys["/k"].len(), 3);
        assert!(ix.compactable.contains("/k"));
        assert_eq!(ix.compact(10), [2, 3]);
        assert!(!ix.compactable.contains("/k"));
    }
}
