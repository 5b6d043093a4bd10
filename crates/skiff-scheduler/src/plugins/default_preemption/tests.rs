#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use skiff_client::events::PendingEvent;

use super::candidates::{Candidate, calculate_num_candidates, pick_one_node_for_preemption};
use super::prepare::{Evicted, PodPreemptor};
use super::victims::{Victims, filter_pods_with_pdb_violation, select_victims_on_node};
use super::*;
use crate::config::Profile;
use crate::framework::{
    Code, CycleState, FrameworkHandle, NodeInfo, NominatedPods, PodInfo, Snapshot, StaticLister,
    Status,
};
use crate::metrics::SchedulerMetrics;
use crate::plugins::testing::{node_with_pods, pod, snapshot};
use crate::runtime::{CycleHandle, Framework, PodNominator};

/// The runtime's handle over `snapshot` with no nominated pods, and no
/// events, metrics or queue.
pub(super) fn bare_handle<'a>(fwk: &'a Framework, snapshot: &'a Snapshot) -> CycleHandle<'a> {
    CycleHandle {
        framework: fwk,
        snapshot,
        nominator: None,
        events: None,
        metrics: None,
        activator: None,
    }
}

/// A pod requesting `cpu`, with `priority`, optionally on `node`, started
/// at second `start` of 2024-01-01.
pub(super) fn p(
    name: &str,
    cpu: &str,
    priority: i32,
    node: Option<&str>,
    start: Option<u32>,
) -> PodInfo {
    let mut v = json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": {"app": name}},
        "spec": {"priority": priority, "containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu}}}]},
        "status": {}
    });
    if let Some(n) = node {
        v["spec"]["nodeName"] = json!(n);
    }
    if let Some(s) = start {
        v["status"]["startTime"] = json!(format!("2024-01-01T00:{:02}:{:02}Z", s / 60, s % 60));
    }
    pod(v)
}

fn with(mut info: PodInfo, f: impl FnOnce(&mut Value)) -> PodInfo {
    let mut v = serde_json::to_value(&*info.pod).unwrap();
    f(&mut v);
    info = PodInfo::new(Arc::new(serde_json::from_value::<Pod>(v).unwrap()));
    info
}

pub(super) fn n(name: &str, cpu: &str, pods: Vec<PodInfo>) -> NodeInfo {
    node_with_pods(
        json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}}),
        pods,
    )
}

fn pdb(name: &str, app: &str, allowed: i32, disrupted: &[&str]) -> Arc<PodDisruptionBudget> {
    let disrupted: serde_json::Map<String, Value> = disrupted
        .iter()
        .map(|p| ((*p).to_owned(), json!("2024-01-01T00:00:00Z")))
        .collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": app}}},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1,
                "expectedPods": 1, "disruptedPods": disrupted}
        }))
        .unwrap(),
    )
}

pub(super) fn framework() -> Framework {
    let handle = crate::plugins::testing::handle();
    let profile = Profile::default_named("default-scheduler");
    Framework::new(0, &profile, &crate::plugins::registry(), &handle, 1, None).unwrap()
}

#[derive(Debug, Default)]
struct Recorder {
    preempted: Mutex<Vec<String>>,
    cleared: Mutex<Vec<String>>,
    events: Mutex<Vec<PendingEvent>>,
    rejected: Mutex<Vec<String>>,
}

impl PodPreemptor for Recorder {
    fn preempt<'a>(
        &'a self,
        victim: &'a Pod,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Evicted, String>> {
        let name = victim.metadata.name.clone().unwrap_or_default();
        self.preempted.lock().unwrap().push(name);
        Box::pin(async { Ok(Evicted::Deleted) })
    }
    fn clear_nominated_node_name<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), String>> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.cleared.lock().unwrap().push(name);
        Box::pin(async { Ok(()) })
    }
}

impl skiff_client::EventSink for Recorder {
    fn record(&self, event: PendingEvent) {
        self.events.lock().unwrap().push(event);
    }
}

/// Nominated pods by node.
#[derive(Default)]
struct Nominated(Vec<(String, Arc<PodInfo>)>);

impl PodNominator for Nominated {
    fn nominated_pods_for_node(&self, node: &str) -> Option<NominatedPods> {
        let on: Vec<Arc<PodInfo>> = self
            .0
            .iter()
            .filter(|(n, _)| n == node)
            .map(|(_, p)| p.clone())
            .collect();
        (!on.is_empty()).then(|| on.into())
    }
    fn has_nominated_pods(&self) -> bool {
        !self.0.is_empty()
    }
    fn nominated_node_of(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(_, p)| p.key == key)
            .map(|(n, _)| n.clone())
    }
}

/// The runtime's handle, with some pods waiting at Permit.
struct TestHandle<'a> {
    inner: CycleHandle<'a>,
    waiting: Vec<String>,
    rec: &'a Recorder,
}

impl FrameworkHandle for TestHandle<'_> {
    fn snapshot(&self) -> &Snapshot {
        self.inner.snapshot()
    }
    fn nominated_pods_for_node(&self, node: &str) -> Option<NominatedPods> {
        self.inner.nominated_pods_for_node(node)
    }
    fn nominated_node_of(&self, key: &str) -> Option<String> {
        self.inner.nominated_node_of(key)
    }
    fn run_filter_plugins_with_nominated_pods(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.inner
            .run_filter_plugins_with_nominated_pods(state, pod, node)
    }
    fn run_pre_filter_extension_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.inner
            .run_pre_filter_extension_add_pod(state, pod, other, node)
    }
    fn run_pre_filter_extension_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.inner
            .run_pre_filter_extension_remove_pod(state, pod, other, node)
    }
    fn reject_waiting_pod(&self, key: &str, _: &'static str, _: &str) -> bool {
        let waiting = self.waiting.iter().any(|k| k == key);
        if waiting {
            self.rec.rejected.lock().unwrap().push(key.to_owned());
        }
        waiting
    }
    fn record_event(&self, event: PendingEvent) {
        self.inner.record_event(event);
    }
    fn metrics(&self) -> Option<&SchedulerMetrics> {
        self.inner.metrics()
    }
    fn detached(&self) -> crate::framework::DetachedHandle {
        self.inner.detached()
    }
}

/// One scheduling cycle's failure and the preemption that follows.
struct Run {
    result: Option<PostFilterResult>,
    status: Status,
    message: String,
    rec: Arc<Recorder>,
    metrics: SchedulerMetrics,
}

fn plugin(rec: &Arc<Recorder>, pdbs: Vec<Arc<PodDisruptionBudget>>) -> DefaultPreemption {
    DefaultPreemption::with(
        DefaultPreemptionArgs::default(),
        Arc::new(StaticLister {
            pdbs,
            ..StaticLister::default()
        }),
        Some(rec.clone() as Arc<dyn PodPreemptor>),
        StdRng::seed_from_u64(1),
    )
}

fn preempt(
    preemptor: &PodInfo,
    nodes: Vec<NodeInfo>,
    pdbs: Vec<Arc<PodDisruptionBudget>>,
    nominated: Nominated,
    waiting: &[&str],
) -> Run {
    let fwk = framework();
    let snap = snapshot(nodes);
    let mut state = CycleState::new();
    let (feasible, mut diagnosis) = fwk
        .find_nodes_that_fit(&mut state, preemptor, &snap, Some(&nominated))
        .unwrap();
    assert!(feasible.is_empty(), "the preemptor must not fit anywhere");
    let rec = Arc::new(Recorder::default());
    let pl = plugin(&rec, pdbs);
    let metrics = SchedulerMetrics::new();
    let handle = TestHandle {
        inner: CycleHandle {
            framework: &fwk,
            snapshot: &snap,
            nominator: Some(&nominated),
            events: Some(rec.clone()),
            metrics: Some(metrics.clone()),
            activator: None,
        },
        waiting: waiting.iter().map(|w| format!("default/{w}")).collect(),
        rec: &rec,
    };
    let fut = pl.post_filter(
        &handle,
        &state,
        preemptor,
        &diagnosis.node_to_status,
        diagnosis.absent_nodes_status.as_ref(),
    );
    // The evictions run as tasks: wait for them before looking.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (result, status) = rt.block_on(async {
        let r = fut.await;
        pl.wait_for_preemptions().await;
        r
    });
    diagnosis.post_filter_msg = status.to_string();
    let message = crate::runtime::FitError {
        pod: preemptor.key.clone(),
        num_all_nodes: snap.nodes.len(),
        diagnosis,
    }
    .to_string();
    drop(handle);
    Run {
        result,
        status,
        message,
        rec,
        metrics,
    }
}

/// The sample lines of one metric in the text exposition.
fn samples(r: &Run, prefix: &str) -> Vec<String> {
    r.metrics
        .encode_text()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

fn nominated_to(r: &Run) -> Option<&str> {
    r.result
        .as_ref()
        .and_then(|r| r.nominated_node_name.as_deref())
}

fn preempted(r: &Run) -> Vec<String> {
    let mut v = r.rec.preempted.lock().unwrap().clone();
    v.sort();
    v
}

#[test]
fn victims_are_the_fewest_least_important_lower_priority_pods() {
    // Node n1 (4 cpu) is full; the preemptor needs 2 cpu. Reprieving from
    // the most important down keeps "a" (priority 10) and evicts "b" and
    // "c"; "high" (priority 200) is never a victim.
    let nodes = vec![n(
        "n1",
        "6",
        vec![
            p("a", "2", 10, Some("n1"), Some(1)),
            p("b", "1", 5, Some("n1"), Some(2)),
            p("c", "1", 5, Some("n1"), Some(3)),
            p("high", "2", 200, Some("n1"), Some(4)),
        ],
    )];
    let r = preempt(
        &p("pre", "2", 100, None, None),
        nodes,
        vec![],
        Nominated::default(),
        &[],
    );
    assert!(r.status.is_success(), "{:?}", r.status);
    assert_eq!(nominated_to(&r), Some("n1"));
    assert_eq!(preempted(&r), ["b", "c"]);
    let events = r.rec.events.lock().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].reason, "Preempted");
    assert!(events[0].normal);
    assert_eq!(events[0].note, "Preempted by pod uid-pre on node n1");
    assert_eq!(
        samples(&r, "scheduler_preemption_attempts_total"),
        ["scheduler_preemption_attempts_total 1"]
    );
    // Two victims: the observation lands in the `le="2"` bucket.
    let victims = samples(&r, "scheduler_preemption_victims");
    assert!(
        victims.contains(&"scheduler_preemption_victims_sum 2.0".to_owned()),
        "{victims:?}"
    );
    assert!(
        victims.contains(&"scheduler_preemption_victims_count 1".to_owned()),
        "{victims:?}"
    );
    assert!(
        victims.contains(&"scheduler_preemption_victims_bucket{le=\"1\"} 0".to_owned()),
        "{victims:?}"
    );
    assert!(
        victims.contains(&"scheduler_preemption_victims_bucket{le=\"2\"} 1".to_owned()),
        "{victims:?}"
    );
}

#[test]
fn equal_priority_victims_started_later_go_first() {
    // Two equal-priority pods, room needed for one: the one that started
    // later is evicted, the older one reprieved.
    let nodes = vec![n(
        "n1",
        "2",
        vec![
            p("old", "1", 0, Some("n1"), Some(10)),
            p("young", "1", 0, Some("n1"), Some(50)),
        ],
    )];
    let r = preempt(
        &p("pre", "1", 1, None, None),
        nodes,
        vec![],
        Nominated::default(),
        &[],
    );
    assert_eq!(preempted(&r), ["young"]);
}

#[test]
fn no_lower_priority_pods_means_no_victims() {
    let nodes = vec![
        n("n1", "1", vec![p("x", "1", 100, Some("n1"), Some(1))]),
        n("n2", "1", vec![p("y", "1", 500, Some("n2"), Some(1))]),
    ];
    let r = preempt(
        &p("pre", "1", 100, None, None),
        nodes,
        vec![],
        Nominated::default(),
        &[],
    );
    assert_eq!(r.status.code(), Code::Unschedulable);
    assert_eq!(r.result, Some(PostFilterResult::default()));
    assert!(preempted(&r).is_empty());
    // The attempt counts; nothing was evicted, so no victims are observed.
    assert_eq!(
        samples(&r, "scheduler_preemption_attempts_total"),
        ["scheduler_preemption_attempts_total 1"]
    );
    assert!(
        samples(&r, "scheduler_preemption_victims_count")
            .contains(&"scheduler_preemption_victims_count 0".to_owned())
    );
    assert_eq!(
        r.message,
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
         2 No preemption victims found for incoming pod.."
    );
}

#[test]
fn unresolvable_nodes_are_not_candidates() {
    // n1 has a victim but the preemptor's nodeSelector excludes it
    // (UnschedulableAndUnresolvable); n2 is merely full of higher-priority
    // pods.
    let nodes = vec![
        n("n1", "1", vec![p("low", "1", 0, Some("n1"), Some(1))]),
        n("n2", "1", vec![p("high", "1", 500, Some("n2"), Some(1))]),
    ];
    let pre = with(p("pre", "1", 100, None, None), |v| {
        v["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "n2"});
    });
    let r = preempt(&pre, nodes, vec![], Nominated::default(), &[]);
    assert!(preempted(&r).is_empty());
    assert_eq!(
        r.message,
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
         1 Preemption is not helpful for scheduling.."
    );
}

#[test]
fn preemption_policy_never_does_not_preempt() {
    let nodes = vec![n("n1", "1", vec![p("low", "1", 0, Some("n1"), Some(1))])];
    let pre = with(p("pre", "1", 100, None, None), |v| {
        v["spec"]["preemptionPolicy"] = json!("Never");
    });
    let r = preempt(&pre, nodes, vec![], Nominated::default(), &[]);
    assert_eq!(r.result, None);
    assert!(preempted(&r).is_empty());
    assert_eq!(
        r.message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.."
    );
}

#[test]
fn a_nominated_pod_waits_for_its_terminating_victims() {
    let terminating = with(p("low", "1", 0, Some("n1"), Some(1)), |v| {
        v["metadata"]["deletionTimestamp"] = json!("2024-01-01T01:00:00Z");
        v["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True",
            "reason": "PreemptionByScheduler"}]);
    });
    let pre = with(p("pre", "1", 100, None, None), |v| {
        v["status"]["nominatedNodeName"] = json!("n1");
    });
    let r = preempt(
        &pre,
        vec![n("n1", "1", vec![terminating.clone()])],
        vec![],
        Nominated::default(),
        &[],
    );
    assert_eq!(r.result, None);
    assert!(
        r.message
            .ends_with("preemption: not eligible due to a terminating pod on the nominated node.."),
        "{}",
        r.message
    );
    // Deleted for another reason (no DisruptionTarget): preempt again, and
    // the victim already being deleted gets no second API call.
    let deleting = with(terminating, |v| {
        v["status"]["conditions"] = json!([]);
    });
    let r = preempt(
        &pre,
        vec![n("n1", "1", vec![deleting])],
        vec![],
        Nominated::default(),
        &[],
    );
    assert_eq!(nominated_to(&r), Some("n1"));
    assert!(preempted(&r).is_empty());
}

#[test]
fn a_pod_nominated_in_memory_waits_before_its_status_shows_it() {
    // This scheduler nominated "pre" to n1 and evicted n1's victim; the
    // retry comes before the status write with the nomination is seen.
    // Another victim elsewhere (n2) must not go while n1's terminates.
    let terminating = with(p("low", "1", 0, Some("n1"), Some(1)), |v| {
        v["metadata"]["deletionTimestamp"] = json!("2024-01-01T01:00:00Z");
        v["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True",
            "reason": "PreemptionByScheduler"}]);
    });
    let pre = p("pre", "1", 100, None, None);
    let nodes = || {
        vec![
            n("n1", "1", vec![terminating.clone()]),
            n("n2", "1", vec![p("other", "1", 0, Some("n2"), Some(2))]),
        ]
    };
    let r = preempt(
        &pre,
        nodes(),
        vec![],
        Nominated(vec![("n1".to_owned(), Arc::new(pre.clone()))]),
        &[],
    );
    assert_eq!(r.result, None);
    assert!(preempted(&r).is_empty(), "{:?}", preempted(&r));
    assert!(
        r.message
            .ends_with("preemption: not eligible due to a terminating pod on the nominated node.."),
        "{}",
        r.message
    );
    // Without the record (nominated by nobody) it may preempt.
    let r = preempt(&pre, nodes(), vec![], Nominated::default(), &[]);
    assert!(nominated_to(&r).is_some(), "{}", r.message);
}

#[test]
fn pdb_protected_pods_are_reprieved_first() {
    // Room for one more 1-cpu pod: "b" is covered by a budget that allows
    // no disruption, so "a" goes although it is more important.
    let nodes = vec![n(
        "n1",
        "2",
        vec![
            p("a", "1", 10, Some("n1"), Some(1)),
            p("b", "1", 5, Some("n1"), Some(2)),
        ],
    )];
    let r = preempt(
        &p("pre", "1", 100, None, None),
        nodes,
        vec![pdb("pdb-b", "b", 0, &[])],
        Nominated::default(),
        &[],
    );
    assert_eq!(preempted(&r), ["a"]);
}

#[test]
fn nodes_without_pdb_violations_win() {
    // Either node works; evicting n1's pod violates its budget.
    let nodes = vec![
        n("n1", "1", vec![p("a", "1", 0, Some("n1"), Some(1))]),
        n("n2", "1", vec![p("b", "1", 0, Some("n2"), Some(1))]),
    ];
    let r = preempt(
        &p("pre", "1", 100, None, None),
        nodes,
        vec![pdb("pdb-a", "a", 0, &[])],
        Nominated::default(),
        &[],
    );
    assert_eq!(nominated_to(&r), Some("n2"));
    assert_eq!(preempted(&r), ["b"]);
}

#[test]
fn waiting_pods_are_rejected_and_lower_nominations_cleared() {
    let nodes = vec![n(
        "n1",
        "2",
        vec![
            p("w", "1", 0, Some("n1"), Some(1)),
            p("x", "1", 0, Some("n1"), Some(2)),
        ],
    )];
    let mut nominated = Nominated::default();
    nominated
        .0
        .push(("n1".into(), Arc::new(p("nom-low", "1", 50, None, None))));
    nominated
        .0
        .push(("n1".into(), Arc::new(p("nom-high", "0", 500, None, None))));
    let r = preempt(
        &p("pre", "2", 100, None, None),
        nodes,
        vec![],
        nominated,
        &["w"],
    );
    assert_eq!(nominated_to(&r), Some("n1"));
    assert_eq!(preempted(&r), ["x"]);
    assert_eq!(*r.rec.rejected.lock().unwrap(), ["default/w"]);
    assert_eq!(*r.rec.cleared.lock().unwrap(), ["nom-low"]);
}

fn cand(name: &str, pdb: i64, victims: &[(i32, Option<u32>)]) -> Candidate {
    Candidate {
        name: name.into(),
        victims: Victims {
            pods: victims
                .iter()
                .enumerate()
                .map(|(i, (prio, start))| {
                    Arc::new(p(&format!("{name}-{i}"), "1", *prio, None, *start))
                })
                .collect(),
            num_pdb_violations: pdb,
        },
    }
}

#[test]
fn picking_the_best_candidate() {
    let cases: Vec<(&str, Vec<Candidate>, &str)> = vec![
        (
            "fewest PDB violations",
            vec![
                cand("n1", 1, &[(0, Some(1))]),
                cand("n2", 0, &[(50, Some(1))]),
            ],
            "n2",
        ),
        (
            "lowest highest-priority victim",
            vec![
                cand("n1", 0, &[(20, Some(1))]),
                cand("n2", 0, &[(10, Some(1)), (10, Some(1))]),
            ],
            "n2",
        ),
        (
            "smallest sum of priorities",
            vec![
                cand("n1", 0, &[(10, Some(1)), (5, Some(1))]),
                cand("n2", 0, &[(10, Some(1)), (1, Some(1)), (1, Some(1))]),
            ],
            "n1",
        ),
        (
            "negative priorities do not favour more victims",
            vec![
                cand("n1", 0, &[(-10, Some(1)), (-10, Some(1))]),
                cand("n2", 0, &[(-10, Some(1))]),
            ],
            "n2",
        ),
        (
            "fewest victims",
            vec![
                cand("n1", 0, &[(10, Some(1)), (0, Some(1)), (0, Some(1))]),
                cand(
                    "n2",
                    0,
                    &[(10, Some(1)), (0, Some(1)), (0, Some(1)), (0, Some(1))],
                ),
            ],
            "n1",
        ),
        (
            "latest start of the highest-priority victims",
            vec![
                cand("n1", 0, &[(10, Some(5)), (0, Some(100))]),
                cand("n2", 0, &[(10, Some(9)), (0, Some(1))]),
                cand("n3", 0, &[(10, Some(7)), (0, Some(2))]),
            ],
            "n2",
        ),
        (
            "a tie picks the first",
            vec![
                cand("n1", 0, &[(1, Some(1))]),
                cand("n2", 0, &[(1, Some(1))]),
            ],
            "n1",
        ),
    ];
    for (name, cands, want) in cases {
        let i = pick_one_node_for_preemption(&cands).unwrap();
        assert_eq!(cands[i].name, want, "{name}");
    }
    assert_eq!(pick_one_node_for_preemption(&[]), None);
}

#[test]
fn pdb_violations_are_counted_per_budget() {
    let pods: Vec<Arc<PodInfo>> = ["a", "a2", "b", "c"]
        .iter()
        .map(|n| {
            let app = if *n == "a2" { "a" } else { n };
            Arc::new(with(p(n, "1", 0, Some("n1"), None), |v| {
                v["metadata"]["labels"] = json!({"app": app});
            }))
        })
        .collect();
    let other_ns = Arc::new(
        serde_json::from_value::<PodDisruptionBudget>(json!({
            "metadata": {"name": "x", "namespace": "other"},
            "spec": {"selector": {"matchLabels": {"app": "c"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}
        }))
        .unwrap(),
    );
    let empty_selector = Arc::new(
        serde_json::from_value::<PodDisruptionBudget>(json!({
            "metadata": {"name": "e", "namespace": "default"},
            "spec": {"selector": {}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}
        }))
        .unwrap(),
    );
    let names = |v: &[Arc<PodInfo>]| -> Vec<String> {
        v.iter()
            .map(|p| p.pod.metadata.name.clone().unwrap())
            .collect()
    };
    // "a" uses up the single allowed disruption, "a2" exceeds it; "b" is
    // already among its budget's disrupted pods; budgets in another
    // namespace or with an empty selector match nothing.
    let (violating, ok) = filter_pods_with_pdb_violation(
        &pods,
        &[
            pdb("pa", "a", 1, &[]),
            pdb("pb", "b", 0, &["b"]),
            other_ns,
            empty_selector,
        ],
    );
    assert_eq!(names(&violating), ["a2"]);
    assert_eq!(names(&ok), ["a", "b", "c"]);
}

#[test]
fn select_victims_reports_unresolvable_without_lower_priority_pods() {
    let fwk = framework();
    let node = n("n1", "1", vec![p("x", "1", 10, Some("n1"), None)]);
    let snap = snapshot(vec![node.clone()]);
    let handle = bare_handle(&fwk, &snap);
    let pre = p("pre", "1", 10, None, None);
    let mut state = CycleState::new();
    let _ = fwk
        .find_nodes_that_fit(&mut state, &pre, &snap, None)
        .unwrap();
    let mut copy = node.clone();
    let err = select_victims_on_node(&handle, &mut state, &pre, &mut copy, &[]).unwrap_err();
    assert_eq!(err.code(), Code::UnschedulableAndUnresolvable);
    assert_eq!(
        err.to_string(),
        "No preemption victims found for incoming pod"
    );
    // A preemptor too big for the node even when empty.
    let big = p("big", "2", 100, None, None);
    let mut state = CycleState::new();
    let _ = fwk
        .find_nodes_that_fit(&mut state, &big, &snap, None)
        .unwrap();
    let mut copy = node.clone();
    let err = select_victims_on_node(&handle, &mut state, &big, &mut copy, &[]).unwrap_err();
    assert_eq!(err.to_string(), "Insufficient cpu");
}

#[test]
fn number_of_candidates() {
    let cases = [
        (10, 10, 100, 10),
        (1000, 10, 100, 100),
        (5000, 10, 100, 500),
        (5000, 0, 3, 3),
        (50, 100, 0, 50),
        (50, 30, 1, 15),
    ];
    for (nodes, pct, abs, want) in cases {
        assert_eq!(
            calculate_num_candidates(nodes, pct, abs),
            want,
            "{nodes} {pct} {abs}"
        );
    }
}

#[test]
fn args_are_validated() {
    assert_eq!(
        DefaultPreemptionArgs::parse(None).unwrap(),
        DefaultPreemptionArgs::default()
    );
    let a = DefaultPreemptionArgs::parse(Some(
        &json!({"minCandidateNodesPercentage": 20, "minCandidateNodesAbsolute": 5}),
    ))
    .unwrap();
    assert_eq!(
        (
            a.min_candidate_nodes_percentage,
            a.min_candidate_nodes_absolute
        ),
        (20, 5)
    );
    let cases = [
        (
            json!({"minCandidateNodesPercentage": 101}),
            "minCandidateNodesPercentage: Invalid value: 101: not in valid range [0, 100]",
        ),
        (
            json!({"minCandidateNodesAbsolute": -1}),
            "minCandidateNodesAbsolute: Invalid value: -1: not in valid range [0, inf)",
        ),
        (
            json!({"minCandidateNodesPercentage": 0, "minCandidateNodesAbsolute": 0}),
            "minCandidateNodesPercentage: Invalid value: 0: cannot be zero at the same time as minCandidateNodesAbsolute",
        ),
        (
            json!({"minCandidateNodesPercentage": "x"}),
            "minCandidateNodesPercentage: expected an integer",
        ),
    ];
    for (v, want) in cases {
        assert_eq!(DefaultPreemptionArgs::parse(Some(&v)).unwrap_err(), want);
    }
}

#[test]
fn dry_run_over_many_nodes_finds_every_candidate_and_orders_violations_last() {
    // 80 full nodes (enough for the parallel path); every tenth has a
    // low-priority pod, the others only higher-priority ones. n0's victim
    // is protected by a budget.
    let nodes: Vec<NodeInfo> = (0..80)
        .map(|i| {
            let name = format!("n{i}");
            let prio = if i % 10 == 0 { 0 } else { 500 };
            let victim = p(&format!("v{i}"), "1", prio, Some(&name), Some(1));
            n(&name, "1", vec![victim])
        })
        .collect();
    let fwk = framework();
    let snap = snapshot(nodes);
    let pre = p("pre", "1", 100, None, None);
    let mut state = CycleState::new();
    let (_, diagnosis) = fwk
        .find_nodes_that_fit(&mut state, &pre, &snap, None)
        .unwrap();
    let handle = bare_handle(&fwk, &snap);
    let potential = super::candidates::nodes_where_preemption_might_help(
        &snap.nodes,
        &diagnosis.node_to_status,
        diagnosis.absent_nodes_status.as_ref(),
    );
    assert_eq!(potential.len(), 80);
    let pdbs = vec![pdb("p0", "v0", 0, &[])];
    for (offset, threads) in [(0, 1), (37, 1), (0, 2), (37, 4)] {
        let (cands, statuses) = super::candidates::dry_run_preemption(
            &handle, &state, &pre, &potential, &pdbs, offset, 100, threads,
        );
        let mut names: Vec<&str> = cands.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.last(), Some(&"n0"), "the violating candidate is last");
        assert_eq!(cands.last().unwrap().victims.num_pdb_violations, 1);
        names.sort_unstable();
        assert_eq!(
            names,
            ["n0", "n10", "n20", "n30", "n40", "n50", "n60", "n70"]
        );
        assert_eq!(statuses.len(), 72);
        assert!(
            statuses
                .values()
                .all(|s| s.code() == Code::UnschedulableAndUnresolvable)
        );
        // Asking for fewer stops early, but never returns more.
        let (few, _) = super::candidates::dry_run_preemption(
            &handle, &state, &pre, &potential, &pdbs, offset, 2, threads,
        );
        assert!(!few.is_empty() && few.len() <= 4, "{}", few.len());
        assert_eq!(few[0].victims.num_pdb_violations, 0);
    }
}
