//! Asynchronous preemption: the cycle does not wait for the evictions, the
//! preemptor is gated meanwhile and moves again afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use rand::SeedableRng;
use rand::rngs::StdRng;
use skiff_client::events::PendingEvent;
use tokio::sync::Semaphore;

use super::prepare::{Evicted, PodPreemptor};
use super::tests::{bare_handle, framework, n, p};
use super::*;
use crate::framework::{CycleState, PodActivator, PodInfo, StaticLister};
use crate::metrics::SchedulerMetrics;
use crate::plugins::testing::snapshot;
use crate::queue::{QueueName, SchedulingQueue};
use crate::runtime::CycleHandle;

/// Evictions that wait for a permit each; victims named in `fail` fail.
#[derive(Debug)]
struct Blocking {
    started: Mutex<Vec<String>>,
    done: Mutex<Vec<String>>,
    cleared: Mutex<Vec<String>>,
    events: Mutex<Vec<PendingEvent>>,
    release: Semaphore,
    fail: Vec<String>,
    /// Victims found gone already.
    gone: Vec<String>,
}

impl Default for Blocking {
    fn default() -> Self {
        Blocking {
            started: Mutex::default(),
            done: Mutex::default(),
            cleared: Mutex::default(),
            events: Mutex::default(),
            release: Semaphore::new(0),
            fail: Vec::new(),
            gone: Vec::new(),
        }
    }
}

impl Blocking {
    fn failing(names: &[&str]) -> Blocking {
        Blocking {
            fail: names.iter().map(|s| (*s).to_owned()).collect(),
            ..Blocking::default()
        }
    }
    fn gone(names: &[&str]) -> Blocking {
        Blocking {
            gone: names.iter().map(|s| (*s).to_owned()).collect(),
            ..Blocking::default()
        }
    }
    fn started(&self) -> usize {
        self.started.lock().unwrap().len()
    }
    fn done(&self) -> Vec<String> {
        let mut v = self.done.lock().unwrap().clone();
        v.sort();
        v
    }
}

impl PodPreemptor for Blocking {
    fn preempt<'a>(
        &'a self,
        victim: &'a Pod,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Evicted, String>> {
        Box::pin(async move {
            let name = victim.metadata.name.clone().unwrap_or_default();
            self.started.lock().unwrap().push(name.clone());
            self.release.acquire().await.unwrap().forget();
            if self.fail.contains(&name) {
                return Err(format!("pods {name:?} is forbidden"));
            }
            if self.gone.contains(&name) {
                return Ok(Evicted::Gone);
            }
            self.done.lock().unwrap().push(name);
            Ok(Evicted::Deleted)
        })
    }
    fn clear_nominated_node_name<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), String>> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.cleared.lock().unwrap().push(name);
        Box::pin(async { Ok(()) })
    }
}

impl skiff_client::EventSink for Blocking {
    fn record(&self, event: PendingEvent) {
        self.events.lock().unwrap().push(event);
    }
}

/// The plugin over `fake`, a queue it gates, and the preemptor popped from
/// that queue (in flight).
struct Fixture {
    plugin: Arc<DefaultPreemption>,
    fake: Arc<Blocking>,
    queue: Arc<SchedulingQueue>,
    metrics: SchedulerMetrics,
    preemptor: crate::framework::QueuedPodInfo,
    victims: usize,
}

/// The preemptor needs `victims` cpu: on node n1, full with that many
/// 1-cpu pods of lower priority, all of them must go.
async fn fixture(fake: Blocking, victims: usize) -> Fixture {
    let fake = Arc::new(fake);
    let plugin = Arc::new(DefaultPreemption::with(
        DefaultPreemptionArgs::default(),
        Arc::new(StaticLister::default()),
        Some(fake.clone() as Arc<dyn PodPreemptor>),
        StdRng::seed_from_u64(1),
    ));
    let as_plugin: Arc<dyn Plugin> = plugin.clone();
    let queue = Arc::new(SchedulingQueue::new(
        None,
        HashMap::from([("default-scheduler".to_owned(), vec![as_plugin.clone()])]),
        &[as_plugin],
        Duration::from_secs(1),
        Duration::from_secs(10),
    ));
    queue.add(p("pre", &victims.to_string(), 100, None, None).pod);
    let preemptor = queue.pop().await.unwrap();
    Fixture {
        plugin,
        fake,
        queue,
        metrics: SchedulerMetrics::new(),
        preemptor,
        victims,
    }
}

/// Runs PostFilter for the preemptor (the scheduling cycle's failure path).
async fn post_filter(f: &Fixture) -> (Option<PostFilterResult>, Status) {
    let victims = f.victims;
    let pods = (0..victims)
        .map(|i| {
            p(
                &format!("v{i}"),
                "1",
                0,
                Some("n1"),
                Some(u32::try_from(i).unwrap()),
            )
        })
        .collect();
    let fwk = framework();
    let snap = snapshot(vec![n("n1", &victims.to_string(), pods)]);
    let mut state = CycleState::new();
    let pre: &PodInfo = &f.preemptor.pod_info;
    let (feasible, diagnosis) = fwk
        .find_nodes_that_fit(&mut state, pre, &snap, None)
        .unwrap();
    assert!(feasible.is_empty());
    let handle = CycleHandle {
        framework: &fwk,
        snapshot: &snap,
        nominator: None,
        events: Some(f.fake.clone()),
        metrics: Some(f.metrics.clone()),
        activator: Some(f.queue.clone()),
    };
    f.plugin
        .post_filter(
            &handle,
            &state,
            pre,
            &diagnosis.node_to_status,
            diagnosis.absent_nodes_status.as_ref(),
        )
        .await
}

/// Lets every runnable task run (paused time advances only when all idle).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// The scheduling loop's requeue after the failed attempt.
fn requeue(f: &Fixture) {
    let mut qpi = f.preemptor.clone();
    qpi.unschedulable_plugins = BTreeSet::from(["NodeResourcesFit"]);
    f.queue.add_unschedulable_if_not_present(qpi);
}

fn samples(m: &SchedulerMetrics, prefix: &str) -> Vec<String> {
    m.encode_text()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// One asynchronous preemption ran, with `result`.
fn assert_one_goroutine(f: &Fixture, result: &str) {
    assert_eq!(
        samples(
            &f.metrics,
            "scheduler_preemption_goroutines_execution_total"
        ),
        [format!(
            "scheduler_preemption_goroutines_execution_total{{result=\"{result}\"}} 1"
        )]
    );
}

const POD_DELETE: ClusterEvent = ClusterEvent {
    resource: EventResource::Pod,
    action: action::DELETE,
};

#[tokio::test(start_paused = true)]
async fn the_cycle_returns_before_the_victims_are_evicted() {
    let f = fixture(Blocking::default(), 3).await;
    let (r, s) = post_filter(&f).await;
    assert!(s.is_success(), "{s:?}");
    assert_eq!(r.unwrap().nominated_node_name.as_deref(), Some("n1"));
    settle().await;
    assert!(f.fake.done().is_empty(), "nothing evicted yet");
    assert!(f.fake.events.lock().unwrap().is_empty());
    assert!(
        f.plugin
            .is_pod_running_preemption(&f.preemptor.pod_info.pod)
    );
    f.fake.release.add_permits(3);
    f.plugin.wait_for_preemptions().await;
    assert_eq!(f.fake.done(), ["v0", "v1", "v2"]);
    let events = f.fake.events.lock().unwrap();
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .all(|e| e.reason == "Preempted" && e.note == "Preempted by pod uid-pre on node n1")
    );
    assert!(
        !f.plugin
            .is_pod_running_preemption(&f.preemptor.pod_info.pod)
    );
    assert_one_goroutine(&f, "success");
}

#[tokio::test(start_paused = true)]
async fn victims_but_the_last_are_evicted_concurrently() {
    let f = fixture(Blocking::default(), 3).await;
    post_filter(&f).await;
    settle().await;
    // Two evictions under way at once, none finished; the last waits.
    assert_eq!(f.fake.started(), 2);
    assert!(f.fake.done().is_empty());
    f.fake.release.add_permits(1);
    settle().await;
    assert_eq!(f.fake.done().len(), 1);
    assert_eq!(f.fake.started(), 2, "the last starts after all the others");
    f.fake.release.add_permits(1);
    settle().await;
    assert_eq!(f.fake.started(), 3);
    // Un-gated before the last eviction, so its deletion event counts.
    assert!(
        !f.plugin
            .is_pod_running_preemption(&f.preemptor.pod_info.pod)
    );
    f.fake.release.add_permits(1);
    f.plugin.wait_for_preemptions().await;
    assert_eq!(f.fake.done().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_preemptor_is_gated_until_its_victims_are_evicted() {
    let f = fixture(Blocking::default(), 2).await;
    post_filter(&f).await;
    let pod = &f.preemptor.pod_info.pod;
    let gate = f.plugin.pre_enqueue(pod);
    assert_eq!(gate.code(), Code::UnschedulableAndUnresolvable);
    assert_eq!(
        gate.to_string(),
        "waiting for the preemption for this pod to be finished"
    );
    requeue(&f);
    let key = f.preemptor.pod_info.key.as_str();
    assert_eq!(f.queue.queue_of(key), Some(QueueName::Unschedulable));
    assert_eq!(f.queue.pending_counts().gated, 1);
    // A victim's deletion while preempting does not let it in.
    f.queue.move_all_to_active_or_backoff(POD_DELETE);
    assert_eq!(f.queue.queue_of(key), Some(QueueName::Unschedulable));
    f.fake.release.add_permits(2);
    f.plugin.wait_for_preemptions().await;
    assert!(f.plugin.pre_enqueue(pod).is_success());
    // Success re-activates nothing by itself (upstream): the last victim's
    // deletion event moves the preemptor, backing off after its attempt.
    assert_eq!(f.queue.queue_of(key), Some(QueueName::Unschedulable));
    f.queue.move_all_to_active_or_backoff(POD_DELETE);
    assert_eq!(f.queue.queue_of(key), Some(QueueName::Backoff));
    assert_eq!(f.queue.pending_counts().gated, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_eviction_re_activates_the_preemptor() {
    let f = fixture(Blocking::failing(&["v0", "v1"]), 3).await;
    let (r, s) = post_filter(&f).await;
    assert!(s.is_success());
    assert_eq!(r.unwrap().nominated_node_name.as_deref(), Some("n1"));
    requeue(&f);
    let key = f.preemptor.pod_info.key.as_str();
    assert_eq!(f.queue.queue_of(key), Some(QueueName::Unschedulable));
    settle().await;
    assert_eq!(f.fake.started(), 2);
    f.fake.release.add_permits(3);
    f.plugin.wait_for_preemptions().await;
    // The others' failure spares the last victim; no event for failures.
    assert_eq!(f.fake.started(), 2);
    assert!(f.fake.done().is_empty());
    assert!(f.fake.events.lock().unwrap().is_empty());
    assert!(
        !f.plugin
            .is_pod_running_preemption(&f.preemptor.pod_info.pod)
    );
    // Straight to activeQ, without waiting for an event or its back-off.
    assert_eq!(f.queue.queue_of(key), Some(QueueName::Active));
    assert_one_goroutine(&f, "error");
    let popped = f.queue.pop().await.unwrap();
    assert_eq!(popped.pod_info.key, key);
}

#[tokio::test(start_paused = true)]
async fn a_last_victim_gone_already_re_activates_the_preemptor() {
    // Another preemptor, scheduled before this one's evictions ran, chose
    // the same pods: their deletions were seen while this one was gated.
    let f = fixture(Blocking::gone(&["v0", "v1"]), 2).await;
    let (_, s) = post_filter(&f).await;
    assert!(s.is_success());
    requeue(&f);
    let key = f.preemptor.pod_info.key.as_str();
    assert_eq!(f.queue.pending_counts().gated, 1);
    f.fake.release.add_permits(2);
    f.plugin.wait_for_preemptions().await;
    // No deletion event is coming: straight to activeQ.
    assert_eq!(f.queue.queue_of(key), Some(QueueName::Active));
    assert_eq!(f.queue.pending_counts().gated, 0);
    // A succeeded preemption, and no Preempted event for pods gone before.
    assert!(f.fake.events.lock().unwrap().is_empty());
    assert_one_goroutine(&f, "success");
}

#[tokio::test(start_paused = true)]
async fn only_the_last_victim_gone_lets_the_preemptor_wait_for_events_otherwise() {
    // The first victim gone, the last deleted: its deletion event moves it.
    let f = fixture(Blocking::gone(&["v0"]), 2).await;
    post_filter(&f).await;
    requeue(&f);
    let key = f.preemptor.pod_info.key.as_str();
    f.fake.release.add_permits(2);
    f.plugin.wait_for_preemptions().await;
    assert_eq!(f.fake.done(), ["v1"]);
    assert_eq!(f.queue.queue_of(key), Some(QueueName::Unschedulable));
    f.queue.move_all_to_active_or_backoff(POD_DELETE);
    assert_eq!(f.queue.queue_of(key), Some(QueueName::Backoff));
}

#[tokio::test(start_paused = true)]
async fn a_failure_while_the_attempt_is_in_flight_requeues_it() {
    let f = fixture(Blocking::failing(&["v0"]), 1).await;
    post_filter(&f).await;
    f.fake.release.add_permits(1);
    f.plugin.wait_for_preemptions().await;
    // The task finished before the loop requeued the pod: activation is
    // remembered, so the pod backs off instead of waiting for an event.
    requeue(&f);
    let key = f.preemptor.pod_info.key.as_str();
    assert_eq!(f.queue.queue_of(key), Some(QueueName::Backoff));
}

#[tokio::test(start_paused = true)]
async fn activation_moves_only_waiting_pods() {
    let f = fixture(Blocking::default(), 1).await;
    let key = f.preemptor.pod_info.key.clone();
    requeue(&f);
    assert_eq!(f.queue.queue_of(&key), Some(QueueName::Unschedulable));
    f.queue.activate(&key);
    assert_eq!(f.queue.queue_of(&key), Some(QueueName::Active));
    f.queue.activate("default/unknown");
    assert_eq!(f.queue.queue_of("default/unknown"), None);
}

/// Whether `other`, nominated to n1, may preempt again while n1 holds the
/// fixture's victims (none terminating as far as the snapshot shows).
fn may_preempt_again(f: &Fixture, other: &PodInfo) -> Result<(), &'static str> {
    let pods = (0..f.victims)
        .map(|i| p(&format!("v{i}"), "1", 0, Some("n1"), Some(1)))
        .collect();
    let fwk = framework();
    let snap = snapshot(vec![n("n1", &f.victims.to_string(), pods)]);
    let handle = bare_handle(&fwk, &snap);
    let status = Status::unschedulable("Insufficient cpu");
    f.plugin
        .pod_eligible_to_preempt_others(&handle, other, Some("n1"), Some(&status))
}

#[tokio::test(start_paused = true)]
async fn victims_being_evicted_count_as_terminating_for_other_preemptors() {
    // "other" was nominated to n1 earlier; "pre" has just chosen n1 too and
    // its victims' evictions are under way, not yet seen by any watch.
    let f = fixture(Blocking::failing(&["v0"]), 2).await;
    let other = {
        let mut pod = (*p("other", "1", 100, None, None).pod).clone();
        pod.status.get_or_insert_default().nominated_node_name = Some("n1".to_owned());
        PodInfo::new(Arc::new(pod))
    };
    assert!(may_preempt_again(&f, &other).is_ok());
    post_filter(&f).await;
    settle().await;
    assert_eq!(
        may_preempt_again(&f, &other),
        Err("not eligible due to a terminating pod on the nominated node.")
    );
    // v0's eviction fails, so v1 is spared: neither is a victim any more.
    f.fake.release.add_permits(1);
    f.plugin.wait_for_preemptions().await;
    assert_eq!(f.fake.started(), 1);
    assert!(may_preempt_again(&f, &other).is_ok());
}

#[tokio::test(start_paused = true)]
async fn evicted_victims_count_as_terminating_until_their_deletion_can_be_seen() {
    // Both evictions succeed; with no grace period the victims are gone
    // from the API, but the snapshot (fed by the watch) still shows them
    // without any sign of terminating. "other", nominated to n1, must not
    // preempt elsewhere meanwhile.
    let f = fixture(Blocking::default(), 2).await;
    let other = {
        let mut pod = (*p("other", "1", 100, None, None).pod).clone();
        pod.status.get_or_insert_default().nominated_node_name = Some("n1".to_owned());
        PodInfo::new(Arc::new(pod))
    };
    post_filter(&f).await;
    f.fake.release.add_permits(2);
    f.plugin.wait_for_preemptions().await;
    assert_eq!(f.fake.done().len(), 2);
    assert_eq!(
        may_preempt_again(&f, &other),
        Err("not eligible due to a terminating pod on the nominated node.")
    );
    // Long after, a victim still in the snapshot is no longer presumed
    // gone (the watch would have shown its deletion by then).
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(may_preempt_again(&f, &other).is_ok());
}
