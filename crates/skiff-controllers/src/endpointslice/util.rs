//! What the Endpoints, EndpointSlice and mirroring controllers share
//! (upstream's `endpointslice/util` and `endpoint/util`): which pods belong
//! in endpoints, port lookup by name, the services a pod change concerns,
//! the last-change trigger time and the stale-cache tracker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::cached_pod::{CachedContainer, CachedPod};
use crate::podutil::{is_pod_ready, ready_condition};

/// The label naming a slice's Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming a slice's managing controller.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Endpoints labelled `true` are not mirrored into slices.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Set (empty) on the endpoints of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// When the change behind an Endpoints/EndpointSlice write happened.
pub const ANNOTATION_LAST_CHANGE_TRIGGER_TIME: &str =
    "endpoints.kubernetes.io/last-change-trigger-time";
/// Client-go's leader-election record on old Endpoints locks.
pub const ANNOTATION_LEADER: &str = "control-plane.alpha.kubernetes.io/leader";

/// The Service's selector, `None` when it has none (an empty selector is
/// treated as none, as it reads back after a protobuf round trip upstream).
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Whether `labels` carry every `selector` pair.
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// `spec.type == ExternalName`.
pub fn is_external_name(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// Whether the Service has a cluster IP (not headless).
pub fn is_service_ip_set(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// `spec.publishNotReadyAddresses`.
pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The pod's IPs (`status.podIPs`, else `status.podIP`).
pub fn pod_ips(pod: &CachedPod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    status
        .pod_ip
        .iter()
        .filter(|ip| !ip.is_empty())
        .cloned()
        .collect()
}

/// Upstream's `ShouldPodBeInEndpoints`: not terminal, has an IP, and not
/// terminating unless `include_terminating`.
pub fn should_pod_be_in_endpoints(pod: &CachedPod, include_terminating: bool) -> bool {
    let phase = crate::podutil::phase(pod);
    if phase == "Succeeded" || phase == "Failed" {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Upstream's `ShouldSetHostname`: the pod's hostname is published when its
/// subdomain names this Service in the same namespace.
pub fn should_set_hostname(pod: &CachedPod, svc: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.hostname.as_deref().is_some_and(|h| !h.is_empty())
        && spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace
}

fn protocol(p: Option<&str>) -> &str {
    p.unwrap_or("TCP")
}

/// Upstream's `FindPort`: the container port a Service port's targetPort
/// names (by name and protocol, in containers and sidecar init
/// containers), or the number it gives.
pub fn find_port(pod: &CachedPod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            let all = spec.containers.iter().chain(sidecars);
            let want = protocol(port.protocol.as_deref());
            all.flat_map(|c: &CachedContainer| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name) && protocol(p.protocol.as_deref()) == want
                })
                .map(|p| p.container_port)
        }
    }
}

/// The parts of a pod that endpoints are computed from.
fn endpoint_view(pod: &CachedPod) -> impl PartialEq + '_ {
    let spec = pod.spec.as_ref();
    (
        pod_ips(pod),
        is_pod_ready(pod),
        pod.metadata.deletion_timestamp.is_some(),
        crate::podutil::phase(pod),
        spec.and_then(|s| s.node_name.as_deref()),
        spec.and_then(|s| s.hostname.as_deref()),
        spec.and_then(|s| s.subdomain.as_deref()),
        spec.map(|s| (&s.containers, &s.init_containers)),
    )
}

/// Keys (`namespace/name`) of the Services a pod change concerns (upstream's
/// `GetServicesToUpdateOnPodChange`): none when nothing endpoints depend on
/// changed; those selecting the new labels, and on a label change also
/// those that selected the old ones (all of them when the pod changed too,
/// else only those whose membership changed).
pub fn services_to_update_on_pod_change(
    services: &[Arc<Service>],
    old: &CachedPod,
    cur: &CachedPod,
) -> HashSet<String> {
    if old.metadata.resource_version == cur.metadata.resource_version {
        return HashSet::new();
    }
    let labels_changed = old.metadata.labels != cur.metadata.labels;
    let pod_changed = endpoint_view(old) != endpoint_view(cur);
    if !labels_changed && !pod_changed {
        return HashSet::new();
    }
    let now = services_selecting(services, cur);
    if !labels_changed {
        return now;
    }
    let before = services_selecting(services, old);
    if pod_changed {
        now.union(&before).cloned().collect()
    } else {
        now.symmetric_difference(&before).cloned().collect()
    }
}

/// Keys of the Services in the pod's namespace whose selector matches it.
pub fn services_selecting(services: &[Arc<Service>], pod: &CachedPod) -> HashSet<String> {
    services
        .iter()
        .filter(|s| s.metadata.namespace == pod.metadata.namespace)
        .filter(|s| {
            service_selector(s)
                .is_some_and(|sel| selector_matches(sel, pod.metadata.labels.as_ref()))
        })
        .map(|s| crate::podutil::key_of(&s.metadata))
        .collect()
}

#[derive(Debug, Default)]
struct ServiceTriggerState {
    pods: HashMap<String, Timestamp>,
    service: Option<Timestamp>,
}

/// Upstream's `TriggerTimeTracker`: per Service, the trigger times (pod
/// Ready transitions, Service creation) seen at the last sync, so a sync
/// reports the earliest one that changed since.
#[derive(Debug, Default)]
pub struct TriggerTimeTracker(Mutex<HashMap<String, ServiceTriggerState>>);

impl TriggerTimeTracker {
    /// The earliest trigger time that changed since the last call for this
    /// Service; `None` for a Service seen for the first time or when
    /// nothing changed.
    pub fn compute(&self, key: &str, svc: &Service, pods: &[&CachedPod]) -> Option<Timestamp> {
        let mut states = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let known = states.contains_key(key);
        let state = states.entry(key.to_owned()).or_default();
        let mut min: Option<Timestamp> = None;
        let mut seen = HashMap::new();
        for pod in pods {
            let Some(t) = ready_condition(pod).and_then(|c| c.last_transition_time.as_ref()) else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if state.pods.get(&name).is_none_or(|last| t.0 > *last) {
                min = Some(min.map_or(t.0, |m| m.min(t.0)));
            }
            seen.insert(name, t.0);
        }
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(c) = created
            && state.service.is_none_or(|last| c > last)
        {
            min = Some(min.map_or(c, |m| m.min(c)));
        }
        state.pods = seen;
        state.service = created;
        if known { min } else { None }
    }

    /// Forgets a deleted Service.
    pub fn delete(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[derive(Debug, Default)]
struct ServiceSlices {
    /// Slice name → the resourceVersion our last write returned.
    written: HashMap<String, String>,
    /// (slice name, resourceVersion) we replaced: seeing one means the
    /// cache is behind.
    replaced: HashSet<(String, String)>,
    /// Names we created and have not yet seen in the cache.
    created: HashSet<String>,
    /// UIDs we deleted and still see.
    deleted: HashSet<String>,
}

/// Upstream's `EndpointSliceTracker`, by resourceVersion instead of
/// generation (our API server does not count EndpointSlice generations):
/// what this controller wrote, so a sync on a cache that has not caught up
/// is retried, and the controller's own writes do not requeue its Service.
#[derive(Debug, Default)]
pub struct SliceTracker(Mutex<HashMap<String, ServiceSlices>>);

fn rv(slice: &EndpointSlice) -> String {
    slice.metadata.resource_version.clone().unwrap_or_default()
}

fn name(slice: &EndpointSlice) -> String {
    slice.metadata.name.clone().unwrap_or_default()
}

impl SliceTracker {
    fn with<T>(&self, key: &str, f: impl FnOnce(&mut ServiceSlices) -> T) -> T {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry(key.to_owned()).or_default())
    }

    /// Records a slice this controller created.
    pub fn created(&self, key: &str, slice: &EndpointSlice) {
        self.with(key, |s| {
            s.created.insert(name(slice));
            s.written.insert(name(slice), rv(slice));
        });
    }

    /// Records an update from `before` to `after`.
    pub fn updated(&self, key: &str, before: &EndpointSlice, after: &EndpointSlice) {
        self.with(key, |s| {
            if rv(before) != rv(after) {
                s.replaced.insert((name(before), rv(before)));
            }
            s.written.insert(name(after), rv(after));
        });
    }

    /// Records a deletion.
    pub fn deleted(&self, key: &str, slice: &EndpointSlice) {
        self.with(key, |s| {
            s.written.remove(&name(slice));
            if let Some(uid) = &slice.metadata.uid {
                s.deleted.insert(uid.clone());
            }
        });
    }

    /// Whether `cached` (the cache's slices of the Service) predates this
    /// controller's writes; also drops what the cache has caught up with.
    pub fn stale(&self, key: &str, cached: &[Arc<EndpointSlice>]) -> bool {
        self.with(key, |s| {
            let names: HashSet<String> = cached.iter().map(|c| name(c)).collect();
            let uids: HashSet<&str> = cached
                .iter()
                .filter_map(|c| c.metadata.uid.as_deref())
                .collect();
            s.created.retain(|n| !names.contains(n));
            s.deleted.retain(|u| uids.contains(u.as_str()));
            let current: HashSet<(String, String)> =
                cached.iter().map(|c| (name(c), rv(c))).collect();
            s.replaced.retain(|r| current.contains(r));
            !s.created.is_empty() || !s.deleted.is_empty() || !s.replaced.is_empty()
        })
    }

    /// Whether an informer event for `slice` is news to this controller
    /// (not the echo of its own last write or deletion).
    pub fn should_sync(&self, key: &str, slice: &EndpointSlice, deleted: bool) -> bool {
        self.with(key, |s| {
            if deleted {
                let ours = slice
                    .metadata
                    .uid
                    .as_ref()
                    .is_some_and(|u| s.deleted.remove(u));
                s.created.remove(&name(slice));
                return !ours;
            }
            s.written.get(&name(slice)) != Some(&rv(slice))
        })
    }

    /// Forgets a deleted Service.
    pub fn delete_service(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}
