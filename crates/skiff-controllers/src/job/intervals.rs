//! Sets of completion indexes as ordered, disjoint, non-adjacent intervals,
//! and their string form in `status.completedIndexes` / `failedIndexes`
//! and `successPolicy.rules[].succeededIndexes` ("1,3-5,7").

use std::fmt;

/// One closed interval `[first, last]` of indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// The first index.
    pub first: i32,
    /// The last index (inclusive).
    pub last: i32,
}

/// Indexes as sorted, disjoint, non-adjacent intervals (upstream's
/// `orderedIntervals`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderedIntervals(pub Vec<Interval>);

impl OrderedIntervals {
    /// Parses "1,3-5" keeping only indexes below `completions`; malformed
    /// or out-of-order parts are skipped, as upstream logs and skips them.
    pub fn parse(s: &str, completions: i32) -> Self {
        let mut out: Vec<Interval> = Vec::new();
        if s.is_empty() {
            return OrderedIntervals(out);
        }
        for part in s.split(',') {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => match (a.parse::<i32>(), b.parse::<i32>()) {
                    (Ok(a), Ok(b)) => (a, b),
                    _ => continue,
                },
                None => match part.parse::<i32>() {
                    Ok(a) => (a, a),
                    Err(_) => continue,
                },
            };
            if first < 0 || last < first || first >= completions {
                continue;
            }
            if out.last().is_some_and(|p| first <= p.last) {
                continue;
            }
            let last = last.min(completions - 1);
            match out.last_mut() {
                Some(p) if p.last + 1 == first => p.last = last,
                _ => out.push(Interval { first, last }),
            }
        }
        OrderedIntervals(out)
    }

    /// How many indexes.
    pub fn total(&self) -> i32 {
        self.0.iter().map(|i| i.last - i.first + 1).sum()
    }

    /// Whether `ix` is in the set.
    pub fn has(&self, ix: i32) -> bool {
        // Few intervals in practice; a binary search keeps big sets cheap.
        let pos = self.0.partition_point(|i| i.last < ix);
        self.0.get(pos).is_some_and(|i| i.first <= ix)
    }

    /// A new set with the sorted indexes `new` merged in.
    pub fn with_ordered_indexes(&self, new: &[i32]) -> Self {
        let mut all: Vec<Interval> = self.0.clone();
        all.extend(new.iter().map(|&i| Interval { first: i, last: i }));
        all.sort_by_key(|i| (i.first, i.last));
        let mut out: Vec<Interval> = Vec::with_capacity(all.len());
        for i in all {
            match out.last_mut() {
                Some(p) if i.first <= p.last.saturating_add(1) => p.last = p.last.max(i.last),
                _ => out.push(i),
            }
        }
        OrderedIntervals(out)
    }

    /// How many indexes of `self` are also in `other`.
    pub fn intersection_total(&self, other: &OrderedIntervals) -> i32 {
        let mut n = 0;
        for a in &self.0 {
            for b in &other.0 {
                let (lo, hi) = (a.first.max(b.first), a.last.min(b.last));
                if lo <= hi {
                    n += hi - lo + 1;
                }
            }
        }
        n
    }

    /// Every index, in order.
    pub fn indexes(&self) -> impl Iterator<Item = i32> + '_ {
        self.0.iter().flat_map(|i| i.first..=i.last)
    }
}

impl fmt::Display for OrderedIntervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, i) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            if i.first == i.last {
                write!(f, "{}", i.first)?;
            } else {
                write!(f, "{}-{}", i.first, i.last)?;
            }
        }
        Ok(())
    }
}
