//! Why a pod fits nowhere: per-node statuses aggregated into upstream's
//! `FitError` message ("0/3 nodes are available: 1 node(s) had untolerated
//! taint {...}, 2 Insufficient cpu. preemption: ...").

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::framework::{NodeToStatus, Status};

/// The message when the cluster has no nodes at all (upstream's
/// `ErrNoNodesAvailable`).
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// What the filters said, node by node (upstream's `framework.Diagnosis`).
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    /// Each evaluated node's rejection.
    pub node_to_status: NodeToStatus,
    /// The status of nodes absent from `node_to_status` (excluded by a
    /// PreFilterResult, or all nodes when PreFilter rejected the pod).
    pub absent_nodes_status: Option<Status>,
    /// Plugins that rejected the pod somewhere.
    pub unschedulable_plugins: BTreeSet<&'static str>,
    /// Plugins that returned Pending.
    pub pending_plugins: BTreeSet<&'static str>,
    /// The PreFilter rejection, when PreFilter failed.
    pub pre_filter_msg: String,
    /// What PostFilter (preemption) said.
    pub post_filter_msg: String,
}

/// No node fits the pod.
#[derive(Debug, Clone)]
pub struct FitError {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Nodes in the snapshot.
    pub num_all_nodes: usize,
    /// Why.
    pub diagnosis: Diagnosis,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        let d = &self.diagnosis;
        if !d.pre_filter_msg.is_empty() {
            // PreFilter failures mark every node with the same status; listing
            // them per node would only repeat the message.
            write!(f, " {}.", d.pre_filter_msg)?;
        } else {
            let mut reasons: HashMap<&str, usize> = HashMap::new();
            for status in d.node_to_status.values() {
                for r in status.reasons() {
                    *reasons.entry(r.as_str()).or_default() += 1;
                }
            }
            let absent = self.num_all_nodes.saturating_sub(d.node_to_status.len());
            if absent > 0
                && let Some(s) = &d.absent_nodes_status
            {
                for r in s.reasons() {
                    *reasons.entry(r.as_str()).or_default() += absent;
                }
            }
            let mut lines: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            // Upstream sorts the formatted "count reason" strings.
            lines.sort();
            if !lines.is_empty() {
                write!(f, " {}.", lines.join(", "))?;
            }
        }
        if !d.post_filter_msg.is_empty() {
            write!(f, " {}.", d.post_filter_msg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(statuses: &[(&str, Status)], all: usize) -> FitError {
        FitError {
            pod: "ns/p".into(),
            num_all_nodes: all,
            diagnosis: Diagnosis {
                node_to_status: statuses
                    .iter()
                    .map(|(n, s)| ((*n).to_owned(), s.clone()))
                    .collect(),
                ..Diagnosis::default()
            },
        }
    }

    #[test]
    fn reasons_are_counted_and_sorted() {
        let taint = "node(s) had untolerated taint {node-role: master}";
        let e = fit(
            &[
                ("a", Status::unresolvable(taint)),
                ("b", Status::unschedulable("Insufficient cpu")),
                ("c", Status::unschedulable("Insufficient cpu")),
            ],
            3,
        );
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role: master}, 2 Insufficient cpu."
        );
    }

    #[test]
    fn several_reasons_per_node_each_count() {
        let e = fit(
            &[(
                "a",
                Status::with_reasons(
                    crate::framework::Code::Unschedulable,
                    vec!["Insufficient memory".into(), "Insufficient cpu".into()],
                ),
            )],
            1,
        );
        assert_eq!(
            e.to_string(),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
        );
    }

    #[test]
    fn absent_nodes_prefilter_and_postfilter_messages() {
        let mut e = fit(&[("a", Status::unschedulable("Insufficient cpu"))], 3);
        e.diagnosis.absent_nodes_status = Some(Status::unresolvable(
            "node(s) didn't satisfy plugin(s) [NodeAffinity]",
        ));
        e.diagnosis.post_filter_msg =
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling"
                .into();
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        let mut e = fit(&[("a", Status::unschedulable("x"))], 2);
        e.diagnosis.pre_filter_msg = "node(s) didn't match pod topology spread constraints".into();
        assert_eq!(
            e.to_string(),
            "0/2 nodes are available: node(s) didn't match pod topology spread constraints."
        );
    }
}
