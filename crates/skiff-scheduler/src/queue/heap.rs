//! A binary heap ordered by a run-time comparator (the QueueSort plugin),
//! with lazy deletion: entries carry a sequence number and are skipped on
//! pop when their pod was updated or removed since.

/// A min-heap by `less` of `(seq, item)`.
#[derive(Debug)]
pub(crate) struct Heap<T> {
    items: Vec<(u64, T)>,
}

impl<T> Default for Heap<T> {
    fn default() -> Self {
        Heap { items: Vec::new() }
    }
}

impl<T> Heap<T> {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn push(&mut self, seq: u64, item: T, less: &dyn Fn(&T, &T) -> bool) {
        self.items.push((seq, item));
        let mut i = self.items.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if less(&self.items[i].1, &self.items[parent].1) {
                self.items.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    pub(crate) fn pop(&mut self, less: &dyn Fn(&T, &T) -> bool) -> Option<(u64, T)> {
        if self.items.is_empty() {
            return None;
        }
        let last = self.items.len() - 1;
        self.items.swap(0, last);
        let top = self.items.pop();
        let n = self.items.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && less(&self.items[l].1, &self.items[m].1) {
                m = l;
            }
            if r < n && less(&self.items[r].1, &self.items[m].1) {
                m = r;
            }
            if m == i {
                break;
            }
            self.items.swap(i, m);
            i = m;
        }
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_comparator_order() {
        let less = |a: &i32, b: &i32| a > b;
        let mut h = Heap::default();
        for (s, v) in [5, 1, 9, 3, 7, 9, 2].into_iter().enumerate() {
            h.push(s as u64, v, &less);
        }
        let mut out = Vec::new();
        while let Some((_, v)) = h.pop(&less) {
            out.push(v);
        }
        assert_eq!(out, vec![9, 9, 7, 5, 3, 2, 1]);
        assert_eq!(h.len(), 0);
    }
}
