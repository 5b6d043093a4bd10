//! The default plugins, one module each, and the registry that maps their
//! configuration names to factories.

pub mod helper;
pub mod image_locality;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_unschedulable;
pub mod noderesources;
pub mod queue_sort;
pub mod scheduling_gates;
pub mod taint_toleration;
pub mod volume_binding;

#[cfg(test)]
pub(crate) mod testing;

use crate::framework::PluginFactory;

/// Every built-in plugin by name (upstream's in-tree registry).
pub fn registry() -> Vec<(&'static str, PluginFactory)> {
    vec![
        (queue_sort::NAME, queue_sort::new as PluginFactory),
        (scheduling_gates::NAME, scheduling_gates::new),
        (node_unschedulable::NAME, node_unschedulable::new),
        (node_name::NAME, node_name::new),
        (taint_toleration::NAME, taint_toleration::new),
        (node_affinity::NAME, node_affinity::new),
        (node_ports::NAME, node_ports::new),
        (noderesources::fit::NAME, noderesources::fit::new),
        (
            noderesources::balanced_allocation::NAME,
            noderesources::balanced_allocation::new,
        ),
        (image_locality::NAME, image_locality::new),
        (volume_binding::NAME, volume_binding::new),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds_every_plugin_with_default_args() {
        let handle = testing::handle();
        let reg = registry();
        let mut names: Vec<&str> = reg.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), reg.len(), "duplicate names");
        for (name, factory) in reg {
            let plugin = factory(None, &handle).unwrap();
            assert_eq!(plugin.name(), name);
        }
    }
}
