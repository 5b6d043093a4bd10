//! The periodic passes: node health (`monitorNodeHealth`), zone disruption
//! (`handleDisruption`) and NoExecute tainting
//! (`doNoExecuteTaintingPass`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use super::health::{self, GracePeriods, HealthUpdate};
use super::taints::{self, NO_EXECUTE, TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE};
use super::zone::{self, RateLimitedTimedQueue, ZoneState};
use super::{
    LABEL_EXCLUDE_DISRUPTION, NODE_LEASE_NAMESPACE, NodeLifecycleController, UPDATE_RETRIES,
};

fn unreachable_taint() -> k8s_openapi::api::core::v1::Taint {
    taints::taint(TAINT_NODE_UNREACHABLE, NO_EXECUTE)
}

fn not_ready_taint() -> k8s_openapi::api::core::v1::Taint {
    taints::taint(TAINT_NODE_NOT_READY, NO_EXECUTE)
}

impl NodeLifecycleController {
    fn grace(&self) -> GracePeriods {
        GracePeriods {
            monitor: self.opts.node_monitor_grace_period,
            startup: self.opts.node_startup_grace_period,
        }
    }

    fn lease_renew_time(&self, node: &str) -> Option<Timestamp> {
        self.leases
            .get(&ObjectRef::new(node).within(NODE_LEASE_NAMESPACE))
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0))
    }

    fn add_zone(&self, node: &Node, now: Instant) {
        let key = zone::zone_key(node);
        let mut st = self.lock();
        if !st.zone_states.contains_key(&key) {
            st.zone_states.insert(key.clone(), ZoneState::Initial);
            st.tainters.insert(
                key,
                RateLimitedTimedQueue::new(self.opts.node_eviction_rate, now),
            );
        }
    }

    /// One pass over every node (upstream's `monitorNodeHealth`).
    pub(crate) async fn monitor_node_health(&self) {
        let nodes = self.nodes.state();
        let now = Instant::now();
        let (added, deleted) = {
            let st = self.lock();
            let added: Vec<Arc<Node>> = nodes
                .iter()
                .filter(|n| {
                    !st.known
                        .contains_key(n.metadata.name.as_deref().unwrap_or(""))
                })
                .cloned()
                .collect();
            let present: std::collections::HashSet<&str> = nodes
                .iter()
                .filter_map(|n| n.metadata.name.as_deref())
                .collect();
            let deleted: Vec<(String, String)> = st
                .known
                .iter()
                .filter(|(n, _)| !present.contains(n.as_str()))
                .map(|(n, u)| (n.clone(), u.clone()))
                .collect();
            (added, deleted)
        };
        for n in &nodes {
            self.add_zone(n, now);
        }
        for n in &added {
            let name = n.metadata.name.clone().unwrap_or_default();
            self.node_event(
                n,
                true,
                "RegisteredNode",
                format!("Registered Node {name} in Controller"),
            );
            self.lock()
                .known
                .insert(name, n.metadata.uid.clone().unwrap_or_default());
            if let Err(e) = self.mark_node_as_reachable(n).await {
                tracing::warn!(node = ?n.metadata.name, error = %e, "cannot remove taints from node");
            }
        }
        for (name, uid) in &deleted {
            let gone = Node {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(name.clone()),
                    uid: Some(uid.clone()),
                    ..Default::default()
                },
                ..Node::default()
            };
            self.node_event(
                &gone,
                true,
                "RemovingNode",
                format!("Removing Node {name} from Controller"),
            );
            let mut st = self.lock();
            st.known.remove(name);
            st.health.remove(name);
            st.nodes_to_retry.remove(name);
        }
        let mut zone_ready: HashMap<String, Vec<Option<String>>> = HashMap::new();
        for node in &nodes {
            let Some(update) = self.update_node_health(node).await else {
                continue;
            };
            let excluded = node
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(LABEL_EXCLUDE_DISRUPTION));
            if !excluded {
                zone_ready
                    .entry(zone::zone_key(node))
                    .or_default()
                    .push(update.current_ready.as_ref().map(|c| c.status.clone()));
            }
            self.after_health_update(node, &update).await;
        }
        self.handle_disruption(&zone_ready, &nodes).await;
    }

    /// Runs the health state machine for `node`, writing its conditions
    /// when they change (re-reading it on a failed write).
    async fn update_node_health(&self, node: &Arc<Node>) -> Option<HealthUpdate> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node: Node = (**node).clone();
        for _ in 0..UPDATE_RETRIES {
            let now = Instant::now();
            let lease = self.lease_renew_time(&name);
            let (mut data, update) = {
                let st = self.lock();
                health::update_node_health(
                    st.health.get(&name),
                    &node,
                    lease,
                    self.grace(),
                    now,
                    Timestamp::now(),
                )
            };
            let Some(conds) = update.new_conditions.clone() else {
                self.lock().health.insert(name, data);
                return Some(update);
            };
            let mut new = node.clone();
            new.status.get_or_insert_default().conditions = Some(conds);
            match api
                .replace_status(&name, &PostParams::default(), &new)
                .await
            {
                Ok(_) => {
                    health::status_written(&mut data, &update, now);
                    self.lock().health.insert(name, data);
                    return Some(update);
                }
                Err(e) => {
                    tracing::info!(node = %name, error = %e, "cannot update node status; retrying");
                    self.lock().health.insert(name.clone(), data);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    match api.get(&name).await {
                        Ok(n) => node = n,
                        Err(_) => return None,
                    }
                }
            }
        }
        tracing::warn!(node = %name, "cannot update node health; no pods will be evicted");
        None
    }

    /// Taints (or untaints) the node and marks its pods not ready once it
    /// stops being ready.
    async fn after_health_update(&self, node: &Node, update: &HealthUpdate) {
        let Some(current) = &update.current_ready else {
            return;
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        self.process_taint_based_eviction(node, &update.observed_ready)
            .await;
        let needs_retry = self.lock().nodes_to_retry.contains(&name);
        let became_not_ready = current.status != "True" && update.observed_ready.status == "True";
        if became_not_ready {
            self.node_event(
                node,
                true,
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
        }
        if became_not_ready || (needs_retry && update.observed_ready.status != "True") {
            let pods = self.pods_on(&name);
            if let Err(e) = self.mark_pods_not_ready(&pods, &name).await {
                tracing::info!(node = %name, error = %e, "cannot mark pods not ready; will retry");
                self.lock().nodes_to_retry.insert(name);
                return;
            }
        }
        self.lock().nodes_to_retry.remove(&name);
    }

    /// Queues the node for a NoExecute taint, swaps one for the other at
    /// once, or removes them when it is ready (upstream's
    /// `processTaintBaseEviction`).
    async fn process_taint_based_eviction(&self, node: &Node, observed: &NodeCondition) {
        let current = taints::node_taints(node);
        let (this, other) = match observed.status.as_str() {
            "False" => (not_ready_taint(), unreachable_taint()),
            "Unknown" => (unreachable_taint(), not_ready_taint()),
            "True" => {
                if let Err(e) = self.mark_node_as_reachable(node).await {
                    tracing::info!(node = ?node.metadata.name, error = %e, "cannot remove taints; will retry");
                }
                return;
            }
            _ => return,
        };
        if taints::taint_exists(current, &other) {
            let now = Timestamp::now();
            let r = self
                .update_node_taints(node, |n| {
                    taints::swap_taints(
                        taints::node_taints(n),
                        std::slice::from_ref(&this),
                        std::slice::from_ref(&other),
                        Some(now),
                    )
                })
                .await;
            if let Err(e) = r {
                tracing::info!(node = ?node.metadata.name, error = %e, "cannot swap NoExecute taints; will retry");
            }
            return;
        }
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let uid = node.metadata.uid.as_deref().unwrap_or_default();
        let mut st = self.lock();

        if let Some(q) = st.tainters.get_mut(&zone::zone_key(node)) {
            if !taints::taint_exists(current, &this) {
                // Not tainted yet: queue afresh even if processed before.
                q.remove(name);
            }
            q.add(name, uid, Instant::now());
        }
    }

    /// Sets each zone's tainting rate from its state (upstream's
    /// `handleDisruption`).
    async fn handle_disruption(
        &self,
        zone_ready: &HashMap<String, Vec<Option<String>>>,
        nodes: &[Arc<Node>],
    ) {
        let now = Instant::now();
        let mut new_states: HashMap<String, ZoneState> = HashMap::new();
        let mut all_fully = true;
        for (zone, ready) in zone_ready {
            let ready: Vec<Option<&str>> = ready.iter().map(|s| s.as_deref()).collect();
            let (_, state) = zone::compute_zone_state(&ready, self.opts.unhealthy_zone_threshold);
            if state != ZoneState::FullDisruption {
                all_fully = false;
            }
            new_states.insert(zone.clone(), state);
        }
        let all_were_fully = {
            let mut st = self.lock();
            for z in zone_ready.keys() {
                st.zone_states
                    .entry(z.clone())
                    .or_insert(ZoneState::Initial);
            }
            st.zone_states.retain(|z, _| zone_ready.contains_key(z));
            st.zone_states
                .values()
                .all(|s| *s == ZoneState::FullDisruption)
        };
        if all_fully && all_were_fully {
            return;
        }
        if all_fully {
            tracing::info!(
                "Controller detected that all Nodes are not-Ready. Entering master disruption mode"
            );
            for n in nodes {
                if let Err(e) = self.mark_node_as_reachable(n).await {
                    tracing::info!(node = ?n.metadata.name, error = %e, "cannot remove taints");
                }
            }
            let mut st = self.lock();
            let st = &mut *st;
            for (z, s) in st.zone_states.iter_mut() {
                if let Some(q) = st.tainters.get_mut(z) {
                    q.swap_limiter(0.0, now);
                }
                *s = ZoneState::FullDisruption;
            }
            return;
        }
        let mut st = self.lock();
        let st = &mut *st;
        if all_were_fully {
            tracing::info!(
                "Controller detected that some Nodes are Ready. Exiting master disruption mode"
            );
            for h in st.health.values_mut() {
                h.probe_timestamp = now;
                h.ready_transition_timestamp = now;
            }
        }
        for (z, s) in st.zone_states.iter_mut() {
            let new = new_states.get(z).copied().unwrap_or(ZoneState::Normal);
            if *s == new && !all_were_fully {
                continue;
            }
            if *s != new {
                tracing::info!(zone = %z, state = ?new, "Controller detected that zone is now in new state");
            }
            let size = zone_ready.get(z).map_or(0, Vec::len);
            if let Some(q) = st.tainters.get_mut(z) {
                q.swap_limiter(self.opts.zone_rate(size, new), now);
            }
            *s = new;
        }
    }

    /// Taints the nodes each zone's limiter lets through.
    pub(crate) async fn do_no_execute_tainting_pass(&self) {
        let now = Instant::now();
        let due: Vec<(String, zone::TimedValue)> = {
            let mut st = self.lock();
            st.tainters
                .iter_mut()
                .flat_map(|(z, q)| {
                    q.take_due(now)
                        .into_iter()
                        .map(|v| (z.clone(), v))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (z, v) in due {
            let ok = self.taint_node(&v.value).await;
            let mut st = self.lock();
            if let Some(q) = st.tainters.get_mut(&z) {
                q.done(v, ok, Duration::ZERO, Instant::now());
            }
        }
    }

    /// Puts the NoExecute taint matching the node's Ready condition on it;
    /// false when the write failed.
    async fn taint_node(&self, name: &str) -> bool {
        let Some(node) = self.nodes.get(&ObjectRef::new(name)) else {
            return true;
        };
        let Some(ready) = taints::node_condition(&node, "Ready") else {
            return true;
        };
        let (add, remove) = match ready.status.as_str() {
            "False" => (not_ready_taint(), unreachable_taint()),
            "Unknown" => (unreachable_taint(), not_ready_taint()),
            // Ready again meanwhile.
            _ => return true,
        };
        let now = Timestamp::now();
        self.update_node_taints(&node, |n| {
            taints::swap_taints(
                taints::node_taints(n),
                std::slice::from_ref(&add),
                std::slice::from_ref(&remove),
                Some(now),
            )
        })
        .await
        .inspect_err(|e| tracing::warn!(node = %name, error = %e, "cannot taint node; will retry"))
        .is_ok()
    }
}
