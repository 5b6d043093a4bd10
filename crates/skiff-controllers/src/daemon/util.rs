//! Pure helpers of the DaemonSet controller (upstream's
//! `pkg/controller/daemon/util` and `NodeShouldRunDaemonPod`): which nodes
//! should run a daemon pod, the pod template with the DaemonSet's default
//! tolerations and labels, node pinning by affinity, update arithmetic.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    PodTemplateSpec, Taint, Toleration,
};

use crate::cached_pod::CachedPod;
use crate::deployment::util::scaled_value;
use crate::history::CONTROLLER_REVISION_HASH_LABEL;

/// The pod label with the DaemonSet's template generation (deprecated
/// upstream, still set).
pub const POD_TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The DaemonSet annotation apps/v1 keeps the template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// The node field daemon pods are pinned by.
pub const OBJECT_NAME_FIELD: &str = "metadata.name";

/// `(key, effect)` of the tolerations every daemon pod gets, the NoExecute
/// ones without tolerationSeconds so node problems never evict it.
const DAEMON_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// The DaemonSet's spec fields with upstream's defaults.
pub fn template(ds: &DaemonSet) -> PodTemplateSpec {
    ds.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// `spec.minReadySeconds`.
pub fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// `spec.revisionHistoryLimit` (default 10).
pub fn revision_history_limit(ds: &DaemonSet) -> i32 {
    ds.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
}

/// Whether the update strategy is RollingUpdate (the default).
pub fn is_rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// The template generation from the DaemonSet's annotation (upstream's
/// `GetTemplateGeneration`); `None` when absent or unparsable.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// Adds `toleration` unless an identical one exists; one for the same key,
/// operator, value and effect is replaced (upstream's
/// `AddOrUpdateTolerationInPodSpec`).
fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    let same = |t: &Toleration| {
        t.key == toleration.key
            && t.operator.as_deref().unwrap_or("Equal")
                == toleration.operator.as_deref().unwrap_or("Equal")
            && t.value.as_deref().unwrap_or("") == toleration.value.as_deref().unwrap_or("")
            && t.effect == toleration.effect
    };
    match list.iter_mut().find(|t| same(t)) {
        Some(existing) => *existing = toleration,
        None => list.push(toleration),
    }
}

/// The DaemonSet default tolerations (upstream's
/// `AddOrUpdateDaemonPodTolerations`): not-ready and unreachable NoExecute
/// forever, the node-condition NoSchedule taints, and network-unavailable
/// for host-network pods.
pub fn add_or_update_daemon_pod_tolerations(spec: &mut PodSpec) {
    let exists = |key: &str, effect: &str| Toleration {
        key: Some(key.to_owned()),
        operator: Some("Exists".to_owned()),
        effect: Some(effect.to_owned()),
        ..Toleration::default()
    };
    for (key, effect) in DAEMON_TOLERATIONS {
        add_or_update_toleration(spec, exists(key, effect));
    }
    if spec.host_network == Some(true) {
        add_or_update_toleration(spec, exists(NETWORK_UNAVAILABLE, "NoSchedule"));
    }
}

/// The template new daemon pods are made from (upstream's
/// `CreatePodTemplate`): default tolerations, and the template-generation
/// and revision-hash labels.
pub fn create_pod_template(
    template: &PodTemplateSpec,
    generation: Option<i64>,
    hash: &str,
) -> PodTemplateSpec {
    let mut t = template.clone();
    add_or_update_daemon_pod_tolerations(t.spec.get_or_insert_with(PodSpec::default));
    let labels = t
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    if let Some(g) = generation {
        labels.insert(POD_TEMPLATE_GENERATION_LABEL.to_owned(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.to_owned(), hash.to_owned());
    }
    t
}

fn name_term(node: &str) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: OBJECT_NAME_FIELD.to_owned(),
            operator: "In".to_owned(),
            values: Some(vec![node.to_owned()]),
        }]),
        match_expressions: None,
    }
}

/// Pins a pod to `node` for the scheduler: the required node affinity
/// becomes the single term `metadata.name In [node]` (upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`; the node already passed the
/// original terms).
pub fn replace_daemon_set_pod_node_name_node_affinity(
    affinity: Option<Affinity>,
    node: &str,
) -> Affinity {
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    match na
        .required_during_scheduling_ignored_during_execution
        .as_mut()
    {
        Some(sel) => sel.node_selector_terms = vec![name_term(node)],
        None => {
            na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
                node_selector_terms: vec![name_term(node)],
            });
        }
    }
    affinity
}

/// The node a daemon pod is for: its `nodeName`, else the single
/// `metadata.name In [node]` field of its required affinity (upstream's
/// `GetTargetNodeName`).
pub fn target_node_name(pod: &CachedPod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_owned());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|f| {
            let values = f.values.as_deref().unwrap_or(&[]);
            (f.key == OBJECT_NAME_FIELD && f.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

/// Whether the pod is of the current template: its revision hash or its
/// template generation matches (upstream's `IsPodUpdated`).
pub fn is_pod_updated(pod: &CachedPod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let template_matches = generation
        .is_some_and(|g| label(POD_TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
    let hash_matches = !hash.is_empty() && label(CONTROLLER_REVISION_HASH_LABEL) == Some(hash);
    hash_matches || template_matches
}

fn rolling_param(
    ds: &DaemonSet,
    field: impl Fn(
        &k8s_openapi::api::apps::v1::RollingUpdateDaemonSet,
    ) -> Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    number_to_schedule: i32,
) -> Result<i32, String> {
    if !is_rolling_update(ds) {
        return Ok(0);
    }
    let Some(r) = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
    else {
        return Ok(0);
    };
    match field(r) {
        Some(v) => scaled_value(v, number_to_schedule, true),
        None => Ok(0),
    }
}

/// maxSurge as a number of nodes (percentages round up; upstream's
/// `SurgeCount`).
pub fn surge_count(ds: &DaemonSet, number_to_schedule: i32) -> Result<i32, String> {
    rolling_param(ds, |r| r.max_surge.as_ref(), number_to_schedule)
}

/// maxUnavailable as a number of nodes (percentages round up; upstream's
/// `UnavailableCount`).
pub fn unavailable_count(ds: &DaemonSet, number_to_schedule: i32) -> Result<i32, String> {
    rolling_param(ds, |r| r.max_unavailable.as_ref(), number_to_schedule)
}

/// Whether updates surge (create the new pod before deleting the old).
pub fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1).is_ok_and(|s| s != 0)
}

/// Creation order with scheduled pods first, then by name (upstream's
/// `podByCreationTimestampAndPhase`).
pub fn pod_by_creation_timestamp_and_phase(a: &CachedPod, b: &CachedPod) -> Ordering {
    let scheduled = |p: &CachedPod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    scheduled(b)
        .cmp(&scheduled(a))
        .then_with(|| {
            let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ta.cmp(&tb)
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// One node-selector requirement against a node (`matchExpressions` on
/// labels); unknown operators and bad values match nothing.
fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let v = labels.get(&r.key);
    let int_cmp = |want: Ordering| {
        let (Some(v), [bound]) = (v, values) else {
            return false;
        };
        match (v.parse::<i64>(), bound.parse::<i64>()) {
            (Ok(a), Ok(b)) => a.cmp(&b) == want,
            _ => false,
        }
    };
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values.contains(v)),
        "NotIn" => v.is_none_or(|v| !values.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" => int_cmp(Ordering::Greater),
        "Lt" => int_cmp(Ordering::Less),
        _ => false,
    }
}

fn field_matches(r: &NodeSelectorRequirement, node_name: &str) -> bool {
    if r.key != OBJECT_NAME_FIELD {
        return false;
    }
    let values = r.values.as_deref().unwrap_or(&[]);
    let has = values.iter().any(|v| v == node_name);
    match r.operator.as_str() {
        "In" => values.len() == 1 && has,
        "NotIn" => values.len() == 1 && !has,
        _ => false,
    }
}

/// A term matches when all its requirements do; an empty term matches
/// nothing.
fn term_matches(t: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
    let fields = t.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels))
        && fields.iter().all(|r| field_matches(r, name))
}

/// The pod's nodeSelector and required node affinity against the node
/// (upstream's `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn required_node_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or("");
    if let Some(sel) = spec.node_selector.as_ref()
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, labels, name))
}

/// Whether `toleration` tolerates `taint` (upstream's `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && k != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

fn has_untolerated_taint(
    taints: &[Taint],
    tolerations: &[Toleration],
    effect: impl Fn(&str) -> bool,
) -> bool {
    taints
        .iter()
        .any(|t| effect(&t.effect) && !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// `(should_run, should_continue_running)` for a daemon pod of `ds` on
/// `node` (upstream's `NodeShouldRunDaemonPod`): nodeName, nodeSelector and
/// required node affinity must fit; an untolerated NoSchedule or NoExecute
/// taint stops new pods, and only an untolerated NoExecute one evicts a
/// running pod.
pub fn node_should_run_daemon_pod(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let mut spec = template(ds).spec.unwrap_or_default();
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    add_or_update_daemon_pod_tolerations(&mut spec);
    if !required_node_affinity_matches(&spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    if has_untolerated_taint(taints, tolerations, |e| {
        e == "NoSchedule" || e == "NoExecute"
    }) {
        let evicted = has_untolerated_taint(taints, tolerations, |e| e == "NoExecute");
        return (false, !evicted);
    }
    (true, true)
}
