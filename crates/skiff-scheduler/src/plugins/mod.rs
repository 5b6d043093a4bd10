//! The default plugins, one module each, and the registry that maps their
//! configuration names to factories.

pub mod default_binder;
pub mod default_preemption;
mod domains;
pub(crate) mod fasthash;
pub mod helper;
pub mod image_locality;
mod incremental;
pub mod interpodaffinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_unschedulable;
pub mod noderesources;
pub mod podtopologyspread;
pub mod queue_sort;
pub mod scheduling_gates;
pub mod taint_toleration;
pub mod volume_binding;

#[cfg(test)]
mod bench_tests;
#[cfg(test)]
mod hints_tests;
#[cfg(test)]
mod kept_counts_tests;
#[cfg(test)]
mod test_util;
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
        (interpodaffinity::NAME, interpodaffinity::new),
        (podtopologyspread::NAME, podtopologyspread::new),
        (default_binder::NAME, default_binder::factory),
        (default_preemption::NAME, default_preemption::new),
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

    #[test]
    fn rejected_pods_are_retried_on_the_events_that_can_help() {
        use crate::framework::{ClusterEvent, EventResource as R, action as a};
        let handle = testing::handle();
        let plugin = |name: &str| {
            let (_, factory) = registry().into_iter().find(|(n, _)| *n == name).unwrap();
            factory(None, &handle).unwrap()
        };
        let ev = |resource, action| ClusterEvent { resource, action };
        let cases = [
            (
                "NodeResourcesFit",
                ev(R::Node, a::UPDATE_NODE_ALLOCATABLE),
                true,
            ),
            ("NodeResourcesFit", ev(R::Pod, a::DELETE), true),
            ("NodeResourcesFit", ev(R::Pod, a::ADD), false),
            ("TaintToleration", ev(R::Node, a::UPDATE_NODE_TAINT), true),
            (
                "TaintToleration",
                ev(R::Node, a::UPDATE_NODE_ALLOCATABLE),
                false,
            ),
            ("NodeAffinity", ev(R::Node, a::UPDATE_NODE_LABEL), true),
            ("NodeAffinity", ev(R::Pod, a::DELETE), false),
            ("NodePorts", ev(R::Pod, a::DELETE), true),
            (
                "SchedulingGates",
                ev(R::Pod, a::UPDATE_POD_SCHEDULING_GATES_ELIMINATED),
                true,
            ),
            ("VolumeBinding", ev(R::PersistentVolumeClaim, a::ADD), true),
            ("VolumeBinding", ev(R::StorageClass, a::UPDATE), true),
            ("NodeUnschedulable", ev(R::Node, a::UPDATE_NODE_TAINT), true),
            ("DefaultPreemption", ev(R::Pod, a::DELETE), true),
            ("DefaultPreemption", ev(R::Node, a::ADD), false),
        ];
        for (name, happened, want) in cases {
            let got = plugin(name)
                .events_to_register()
                .iter()
                .any(|e| e.matches(&happened));
            assert_eq!(got, want, "{name} {happened:?}");
        }
    }
}
