//! Per-cycle plugin state (upstream's `framework.CycleState`): what a
//! PreFilter/PreScore computes once and Filter/Score read for every node.

use std::any::Any;
use std::collections::HashSet;

/// A value a plugin keeps in the [`CycleState`]. Cloned when preemption
/// simulates removing pods (upstream's `StateData.Clone`).
pub trait StateData: Any + Send + Sync {
    /// A deep copy.
    fn clone_data(&self) -> Box<dyn StateData>;
    /// For downcasting to the concrete type.
    fn as_any(&self) -> &dyn Any;
    /// For downcasting to the concrete type, mutably (PreFilter extensions
    /// `AddPod`/`RemovePod` update the state in place).
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// State for one scheduling cycle of one pod. Read-only (and shared between
/// threads) while Filter and Score run over the nodes.
///
/// The values live in a short vector, not a hash map: a profile keeps about
/// ten, and Filter/Score read them once per node, where comparing a few
/// short keys beats hashing one.
#[derive(Default)]
pub struct CycleState {
    data: Vec<(&'static str, Box<dyn StateData>)>,
    /// Filter plugins whose PreFilter returned Skip.
    pub skip_filter_plugins: HashSet<&'static str>,
    /// Score plugins whose PreScore returned Skip.
    pub skip_score_plugins: HashSet<&'static str>,
}

impl std::fmt::Debug for CycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleState")
            .field(
                "keys",
                &self.data.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("skip_filter_plugins", &self.skip_filter_plugins)
            .field("skip_score_plugins", &self.skip_score_plugins)
            .finish()
    }
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self
                .data
                .iter()
                .map(|(k, v)| (*k, v.as_ref().clone_data()))
                .collect(),
            skip_filter_plugins: self.skip_filter_plugins.clone(),
            skip_score_plugins: self.skip_score_plugins.clone(),
        }
    }
}

impl CycleState {
    /// An empty state.
    pub fn new() -> Self {
        CycleState::default()
    }

    /// Stores `value` under `key` (by convention the plugin's state key,
    /// e.g. `"PreFilterNodeResourcesFit"`).
    pub fn write<T: StateData>(&mut self, key: &'static str, value: T) {
        match self.data.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = Box::new(value),
            None => self.data.push((key, Box::new(value))),
        }
    }

    /// The value under `key`, if present and of type `T`.
    pub fn read<T: 'static>(&self, key: &str) -> Option<&T> {
        let (_, data) = self.data.iter().find(|(k, _)| *k == key)?;
        let data: &dyn StateData = data.as_ref();
        data.as_any().downcast_ref::<T>()
    }

    /// The value under `key`, mutably, if present and of type `T`.
    pub fn read_mut<T: 'static>(&mut self, key: &str) -> Option<&mut T> {
        let (_, data) = self.data.iter_mut().find(|(k, _)| *k == key)?;
        let data: &mut dyn StateData = data.as_mut();
        data.as_any_mut().downcast_mut::<T>()
    }

    /// Removes the value under `key`.
    pub fn delete(&mut self, key: &str) {
        self.data.retain(|(k, _)| *k != key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Counter(u32);

    #[test]
    fn typed_read_write_and_deep_clone() {
        let mut s = CycleState::new();
        s.write("k", Counter(1));
        assert_eq!(s.read::<Counter>("k"), Some(&Counter(1)));
        assert_eq!(s.read::<String>("k"), None);
        let copy = s.clone();
        if let Some(c) = s.read_mut::<Counter>("k") {
            c.0 = 2;
        }
        assert_eq!(copy.read::<Counter>("k"), Some(&Counter(1)));
        assert_eq!(s.read::<Counter>("k"), Some(&Counter(2)));
        s.delete("k");
        assert!(s.read::<Counter>("k").is_none());
    }
}
