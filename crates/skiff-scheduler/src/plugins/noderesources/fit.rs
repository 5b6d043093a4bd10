//! NodeResourcesFit: Filter on what the node has left of each requested
//! resource and on its pod slots; Score by the configured strategy
//! (LeastAllocated by default, MostAllocated, RequestedToCapacityRatio).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::Value;
use skiff_api::field::{Error, ErrorList, Path};
use skiff_api::validation::is_qualified_name;

use super::scorer::{
    MAX_CUSTOM_PRIORITY_SCORE, PodRequests, ResourceAllocationScorer, ScoringStrategy,
};
use crate::cache::node_name;
use crate::framework::node_info::pod_requests;
use crate::framework::{
    ClusterEvent, Code, CycleState, EventObjects, EventResource, FilterPlugin, Handle,
    MAX_NODE_SCORE, NodeInfo, NodeScore, Plugin, PodInfo, PreScorePlugin, QueueingHint, Resource,
    ScorePlugin, Snapshot, Status, action,
};
use crate::plugins::helper::args;

/// The plugin's name.
pub const NAME: &str = "NodeResourcesFit";
const PRE_SCORE_STATE_KEY: &str = "PreScoreNodeResourcesFit";
const SUPPORTED_STRATEGIES: &[&str] = &[
    "LeastAllocated",
    "MostAllocated",
    "RequestedToCapacityRatio",
];

/// The plugin with its parsed args.
#[derive(Debug, Clone)]
pub struct Fit {
    ignored_resources: BTreeSet<String>,
    ignored_resource_groups: BTreeSet<String>,
    scorer: ResourceAllocationScorer,
}

/// The factory: args `{ignoredResources, ignoredResourceGroups,
/// scoringStrategy: {type, resources, requestedToCapacityRatio: {shape}}}`.
pub fn new(args_value: Option<&Value>, _handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(Fit::from_args(args_value)?))
}

impl Fit {
    /// Parses, defaults and validates the args as upstream's v1 defaulting
    /// and `ValidateNodeResourcesFitArgs`.
    pub fn from_args(args_value: Option<&Value>) -> Result<Fit, String> {
        let obj = args::object(args_value)?;
        let ignored = args::string_list(&obj, "ignoredResources")?;
        let groups = args::string_list(&obj, "ignoredResourceGroups")?;
        let mut errs = ErrorList::new();
        let rp = Path::new("ignoredResources");
        for (i, r) in ignored.iter().enumerate() {
            for msg in is_qualified_name(r) {
                errs.push(Error::invalid(&rp.index(i), r.as_str(), &msg));
            }
        }
        let gp = Path::new("ignoredResourceGroups");
        for (i, g) in groups.iter().enumerate() {
            if g.contains('/') {
                errs.push(Error::invalid(
                    &gp.index(i),
                    g.as_str(),
                    "resource group name can't contain '/'",
                ));
            }
            for msg in is_qualified_name(g) {
                errs.push(Error::invalid(&gp.index(i), g.as_str(), &msg));
            }
        }

        let sp = Path::new("scoringStrategy");
        let strategy_obj = match obj.get("scoringStrategy") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(format!("{sp}: expected an object")),
        };
        let type_name = strategy_obj
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .unwrap_or("LeastAllocated")
            .to_owned();
        if !SUPPORTED_STRATEGIES.contains(&type_name.as_str()) {
            errs.push(Error::not_supported(
                &sp.child("type"),
                type_name.as_str(),
                SUPPORTED_STRATEGIES,
            ));
        }
        let rsp = sp.child("resources");
        let resources = args::resource_specs(strategy_obj.get("resources"), &rsp)?
            .unwrap_or_else(args::default_resource_specs);
        for (i, r) in resources.iter().enumerate() {
            if r.weight <= 0 || r.weight > 100 {
                let msg = format!("resource weight of {} not in valid range (0, 100]", r.name);
                errs.push(Error::invalid(
                    &rsp.index(i).child("weight"),
                    r.weight,
                    &msg,
                ));
            }
        }
        let rtcr = strategy_obj
            .get("requestedToCapacityRatio")
            .filter(|v| !v.is_null());
        let mut shape = Vec::new();
        if rtcr.is_some() || type_name == "RequestedToCapacityRatio" {
            let points = rtcr.and_then(|v| v.get("shape"));
            shape = parse_shape(points, &sp.child("shape"), &mut errs)?;
        }
        args::aggregate(errs)?;

        let strategy = match type_name.as_str() {
            "MostAllocated" => ScoringStrategy::MostAllocated,
            "RequestedToCapacityRatio" => ScoringStrategy::RequestedToCapacityRatio(
                shape
                    .into_iter()
                    .map(|(u, s)| (u, s * (MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE)))
                    .collect(),
            ),
            _ => ScoringStrategy::LeastAllocated,
        };
        Ok(Fit {
            ignored_resources: ignored.into_iter().collect(),
            ignored_resource_groups: groups.into_iter().collect(),
            scorer: ResourceAllocationScorer {
                strategy,
                resources,
                use_requested: false,
            },
        })
    }

    /// The reasons (and whether any is unresolvable) why `node` cannot
    /// take a pod requesting `req`; empty when it fits.
    pub fn insufficient_resources(&self, req: &Resource, node: &NodeInfo) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let (alloc, used) = (&node.allocatable, &node.requested);
        if node.pods.len() as i64 + 1 > alloc.allowed_pod_number {
            out.push(("Too many pods".to_owned(), false));
        }
        if req.milli_cpu == 0
            && req.memory == 0
            && req.ephemeral_storage == 0
            && req.scalar.values().all(|&v| v == 0)
        {
            return out;
        }
        let mut check = |reason: &str, want: i64, alloc: i64, used: i64| {
            if want > 0 && want > alloc - used {
                out.push((reason.to_owned(), want > alloc));
            }
        };
        check(
            "Insufficient cpu",
            req.milli_cpu,
            alloc.milli_cpu,
            used.milli_cpu,
        );
        check("Insufficient memory", req.memory, alloc.memory, used.memory);
        check(
            "Insufficient ephemeral-storage",
            req.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        );
        for (name, &want) in &req.scalar {
            if want == 0 || self.is_ignored(name) {
                continue;
            }
            let a = alloc.scalar.get(name).copied().unwrap_or(0);
            let u = used.scalar.get(name).copied().unwrap_or(0);
            if want > a - u {
                out.push((format!("Insufficient {name}"), want > a));
            }
        }
        out
    }

    fn is_ignored(&self, name: &str) -> bool {
        // Cheap exit first: the name check below allocates.
        if self.ignored_resources.is_empty() && self.ignored_resource_groups.is_empty() {
            return false;
        }
        if !is_extended_resource_name(name) {
            return false;
        }
        self.ignored_resources.contains(name)
            || name
                .split_once('/')
                .is_some_and(|(group, _)| self.ignored_resource_groups.contains(group))
    }

    /// The scorer (shared with tests and callers that simulate scoring).
    pub fn scorer(&self) -> &ResourceAllocationScorer {
        &self.scorer
    }
}

fn allocatable(node: &Node) -> Resource {
    Resource::from_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
}

/// True when some resource the pod asks for is larger in `after` than in
/// `before` (upstream's `haveAnyRequestedResourcesIncreased` and the
/// scale-down check share it).
fn any_requested_grew(req: &Resource, before: &Resource, after: &Resource) -> bool {
    let grew = |want: i64, b: i64, a: i64| want > 0 && a > b;
    grew(req.milli_cpu, before.milli_cpu, after.milli_cpu)
        || grew(req.memory, before.memory, after.memory)
        || grew(
            req.ephemeral_storage,
            before.ephemeral_storage,
            after.ephemeral_storage,
        )
        || req
            .scalar
            .iter()
            .any(|(name, &want)| grew(want, before.get(name), after.get(name)))
}
/// Upstream's `IsExtendedResourceName`: `domain/name` outside
/// `kubernetes.io`, not a quota `requests.` name.
pub fn is_extended_resource_name(name: &str) -> bool {
    let Some((domain, _)) = name.split_once('/') else {
        return false;
    };
    if domain == "kubernetes.io"
        || domain.ends_with(".kubernetes.io")
        || name.starts_with("requests.")
    {
        return false;
    }
    is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn parse_shape(
    points: Option<&Value>,
    path: &Path,
    errs: &mut ErrorList,
) -> Result<Vec<(i64, i64)>, String> {
    let items = match points {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(format!("{path}: expected a list")),
    };
    if items.is_empty() {
        errs.push(Error::required(
            path,
            "at least one point must be specified",
        ));
        return Ok(Vec::new());
    }
    let mut shape = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        let obj = item
            .as_object()
            .ok_or_else(|| format!("{p}: expected an object"))?;
        shape.push((
            args::int(obj, "utilization", &p, 0)?,
            args::int(obj, "score", &p, 0)?,
        ));
    }
    for i in 1..shape.len() {
        if shape[i - 1].0 >= shape[i].0 {
            errs.push(Error::invalid(
                &path.index(i).child("utilization"),
                shape[i].0,
                "utilization values must be sorted in increasing order",
            ));
            break;
        }
    }
    for (i, &(u, s)) in shape.iter().enumerate() {
        if !(0..=100).contains(&u) {
            errs.push(Error::invalid(
                &path.index(i).child("utilization"),
                u,
                "not in valid range [0, 100]",
            ));
        }
        if !(0..=MAX_CUSTOM_PRIORITY_SCORE).contains(&s) {
            let msg = format!("not in valid range [0, {MAX_CUSTOM_PRIORITY_SCORE}]");
            errs.push(Error::invalid(&path.index(i).child("score"), s, &msg));
        }
    }
    Ok(shape)
}

impl Plugin for Fit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent {
                resource: EventResource::Pod,
                action: action::DELETE | action::UPDATE_POD_SCALE_DOWN,
            },
            // Only allocatable matters to fit (upstream registers taint
            // and label updates too only when queueing hints are off).
            ClusterEvent {
                resource: EventResource::Node,
                action: action::ADD | action::UPDATE_NODE_ALLOCATABLE,
            },
        ]
    }
    /// Upstream's `isSchedulableAfterPodEvent` and
    /// `isSchedulableAfterNodeChange`.
    fn queueing_hint(
        &self,
        pod: &PodInfo,
        _event: &ClusterEvent,
        objects: &EventObjects,
    ) -> QueueingHint {
        match objects {
            EventObjects::Pod {
                old: Some(old),
                new,
            } => {
                let assigned = |p: &Pod| node_name(p).is_some();
                match new {
                    // Any scheduled pod leaving may free room.
                    None => QueueingHint::queue_if(assigned(old)),
                    // A scale-down of the pod itself, or of a scheduled pod
                    // in a resource the pod asks for.
                    Some(new) => QueueingHint::queue_if(
                        new.metadata.uid.is_some() && new.metadata.uid == pod.pod.metadata.uid
                            || assigned(new)
                                && any_requested_grew(
                                    &pod.requests,
                                    &pod_requests(new, false),
                                    &pod_requests(old, false),
                                ),
                    ),
                }
            }
            EventObjects::Node {
                old,
                new: Some(new),
            } => {
                let empty = NodeInfo {
                    allocatable: allocatable(new),
                    ..NodeInfo::default()
                };
                if !self
                    .insufficient_resources(&pod.requests, &empty)
                    .is_empty()
                {
                    return QueueingHint::Skip;
                }
                let Some(old) = old else {
                    return QueueingHint::Queue;
                };
                let (before, after) = (allocatable(old), empty.allocatable);
                QueueingHint::queue_if(
                    after.allowed_pod_number > before.allowed_pod_number
                        || any_requested_grew(&pod.requests, &before, &after),
                )
            }
            _ => QueueingHint::Queue,
        }
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl FilterPlugin for Fit {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        // PodInfo already holds the pod's requests, so there is no PreFilter.
        let insufficient = self.insufficient_resources(&pod.requests, node);
        if insufficient.is_empty() {
            return Status::success();
        }
        let code = if insufficient.iter().any(|(_, unresolvable)| *unresolvable) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Status::with_reasons(code, insufficient.into_iter().map(|(r, _)| r).collect())
    }
}

impl PreScorePlugin for Fit {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        state.write(
            PRE_SCORE_STATE_KEY,
            PodRequests(self.scorer.pod_requests(pod)),
        );
        Status::success()
    }
}

impl ScorePlugin for Fit {
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
#[path = "fit_tests.rs"]
mod tests;
