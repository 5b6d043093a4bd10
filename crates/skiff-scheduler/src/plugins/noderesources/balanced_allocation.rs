//! NodeResourcesBalancedAllocation: prefers nodes whose utilisation
//! fractions (cpu and memory by default) stay close to each other, scoring
//! `(1 - std) * 100` over the fractions with the pod added.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use skiff_api::field::{Error, ErrorList, Path};

use super::scorer::{PodRequests, ResourceAllocationScorer, ScoringStrategy};
use crate::framework::{
    CycleState, Handle, NodeInfo, NodeScore, Plugin, PodInfo, PreScorePlugin, ScorePlugin,
    Snapshot, Status,
};
use crate::plugins::helper::args;

/// The plugin's name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";
const PRE_SCORE_STATE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

/// The plugin with its resources.
#[derive(Debug, Clone)]
pub struct BalancedAllocation {
    scorer: ResourceAllocationScorer,
}

/// The factory: args `{resources: [{name, weight}]}` (default cpu and
/// memory; every weight must be 1).
pub fn new(args_value: Option<&Value>, _handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    let obj = args::object(args_value)?;
    let path = Path::new("resources");
    let resources = args::resource_specs(obj.get("resources"), &path)?
        .unwrap_or_else(args::default_resource_specs);
    let mut errs = ErrorList::new();
    let mut seen = BTreeSet::new();
    for (i, r) in resources.iter().enumerate() {
        if !seen.insert(r.name.as_str()) {
            errs.push(Error::duplicate(
                &path.index(i).child("name"),
                r.name.as_str(),
            ));
        }
        if r.weight != 1 {
            errs.push(Error::invalid(
                &path.index(i).child("weight"),
                r.weight,
                "must be 1",
            ));
        }
    }
    args::aggregate(errs)?;
    Ok(Arc::new(BalancedAllocation {
        scorer: ResourceAllocationScorer {
            strategy: ScoringStrategy::Balanced,
            resources,
            use_requested: true,
        },
    }))
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        let pod_requests = self.scorer.pod_requests(pod);
        // Best-effort pods would all pile onto the most balanced node
        // (kubernetes#129138), so they are not scored.
        if pod_requests.iter().all(|&r| r == 0) {
            return Status::skip();
        }
        state.write(PRE_SCORE_STATE_KEY, PodRequests(pod_requests));
        Status::success()
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let score = self
            .scorer
            .score_in_cycle(state, PRE_SCORE_STATE_KEY, pod, node);
        (score, Status::success())
    }

    fn score_nodes<'n>(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &'n [Arc<NodeInfo>],
        scores: &mut Vec<NodeScore<'n>>,
    ) -> Status {
        self.scorer
            .score_nodes_in_cycle(state, PRE_SCORE_STATE_KEY, pod, nodes, scores);
        Status::success()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::plugins::testing::{handle, node_with_pods, pod, run_score, snapshot};
    use serde_json::json;

    fn requesting(name: &str, cpu: &str, mem: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}))
    }

    fn machine(name: &str, cpu: &str, mem: &str, pods: Vec<PodInfo>) -> NodeInfo {
        node_with_pods(
            json!({"metadata": {"name": name},
                   "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}}),
            pods,
        )
    }

    #[test]
    fn std_dev_scores() {
        let plugin = new(None, &handle()).unwrap();
        // Upstream's "nothing scheduled, resources requested, differently
        // sized nodes": cpu 3000m/4000m = 0.75, mem 5000/10000 = 0.5 →
        // std 0.125 → 87; on the second node 3000/6000 = 0.5 and
        // 5000/10000 = 0.5 → 100.
        let p = requesting("p", "3", "5000");
        let snap = snapshot(vec![
            machine("n1", "4", "10000", vec![]),
            machine("n2", "6", "10000", vec![]),
        ]);
        assert_eq!(run_score(plugin.as_ref(), &p, &snap), vec![87, 100]);

        // Existing pods count with their actual requests: n1 has 3000m and
        // 0 memory requested; with the pod (1000m, 2000): cpu 4000/10000 =
        // 0.4, mem 2000/20000 = 0.1 → std 0.15 → 85.
        let existing = requesting("e", "3", "0");
        let snap = snapshot(vec![machine("n1", "10", "20000", vec![existing])]);
        assert_eq!(
            run_score(plugin.as_ref(), &requesting("p", "1", "2000"), &snap),
            vec![85]
        );

        // Fractions are capped at 1: cpu 2.0 → 1, mem 0.5 → std 0.25 → 75.
        let snap = snapshot(vec![machine("n1", "1", "10000", vec![])]);
        assert_eq!(
            run_score(plugin.as_ref(), &requesting("p", "2", "5000"), &snap),
            vec![75]
        );
    }

    #[test]
    fn three_resources_use_the_full_formula() {
        let args = json!({"resources": [{"name": "cpu", "weight": 1},
            {"name": "memory", "weight": 1}, {"name": "example.com/gpu", "weight": 1}]});
        let plugin = new(Some(&args), &handle()).unwrap();
        let p = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {
            "cpu": "1", "memory": "1000", "example.com/gpu": "1"}}}]}}),
        );
        let n = node_with_pods(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {
                "cpu": "2", "memory": "4000", "example.com/gpu": "4", "pods": "10"}}}),
            vec![],
        );
        // Fractions 0.5, 0.25, 0.25: mean 1/3, squared deviations sum to
        // 1/36 + 2/144 = 0.041667, / 3 = 0.013889 → std 0.1179 → 88.
        assert_eq!(run_score(plugin.as_ref(), &p, &snapshot(vec![n])), vec![88]);
    }

    #[test]
    fn best_effort_pods_are_skipped() {
        let plugin = new(None, &handle()).unwrap();
        let snap = snapshot(vec![machine("n1", "4", "10000", vec![])]);
        let p = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
        assert!(run_score(plugin.as_ref(), &p, &snap).is_empty());
    }

    #[test]
    fn args_validation() {
        let err = new(
            Some(&json!({"resources": [{"name": "cpu", "weight": 2},
            {"name": "cpu", "weight": 1}]})),
            &handle(),
        )
        .err()
        .unwrap();
        assert_eq!(
            err,
            "[resources[0].weight: Invalid value: 2: must be 1, resources[1].name: Duplicate value: \"cpu\"]"
        );
    }
}
