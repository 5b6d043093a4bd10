use std::mem::size_of;

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, HostIP, Pod, PodCondition, PodIP, Toleration, Volume,
};
use serde_json::{Value, json};
use skiff_api::quota::Evaluator;

use super::*;

/// A pod with every field a controller or the pod quota evaluator reads,
/// and some they do not (env, probes, image) that the cached form drops.
fn full_pod_json() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-0", "namespace": "ns", "uid": "u-1", "resourceVersion": "42",
            "generateName": "web-", "creationTimestamp": "2026-01-01T00:00:00Z",
            "deletionTimestamp": "2026-01-01T00:05:00Z", "deletionGracePeriodSeconds": 30,
            "labels": {"app": "web"}, "annotations": {"controller.kubernetes.io/pod-deletion-cost": "5"},
            "finalizers": ["batch.kubernetes.io/job-tracking"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                 "uid": "s-1", "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "nodeName": "n1", "hostname": "web-0", "subdomain": "nginx",
            "activeDeadlineSeconds": 600, "priorityClassName": "high",
            "overhead": {"cpu": "10m"},
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [
                        {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}},
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "zone", "namespaces": ["other"],
                     "labelSelector": {"matchLabels": {"app": "db"}}}]},
            },
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
            ],
            "initContainers": [{
                "name": "proxy", "image": "envoy", "restartPolicy": "Always",
                "ports": [{"name": "admin", "containerPort": 9901, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "50m"}},
            }],
            "containers": [{
                "name": "web", "image": "nginx:1", "command": ["nginx"],
                "env": [{"name": "MODE", "value": "prod"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 80}},
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                              "limits": {"memory": "128Mi"}},
            }],
        },
        "status": {
            "phase": "Failed", "reason": "Evicted", "startTime": "2026-01-01T00:00:01Z",
            "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
            "hostIP": "172.16.0.2",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodFailed",
                 "lastTransitionTime": "2026-01-01T00:04:00Z"},
                {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                 "lastTransitionTime": "2026-01-01T00:03:00Z"},
            ],
            "initContainerStatuses": [{"name": "proxy", "image": "envoy", "imageID": "",
                "ready": true, "restartCount": 1, "started": true,
                "state": {"running": {"startedAt": "2026-01-01T00:00:02Z"}}}],
            "containerStatuses": [{"name": "web", "image": "nginx:1", "imageID": "",
                "ready": false, "restartCount": 3,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}],
            "ephemeralContainerStatuses": [{"name": "debug", "image": "busybox", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}],
        },
    })
}

#[test]
fn a_full_pod_decodes_with_every_field_the_controllers_read() {
    let p: CachedPod = serde_json::from_value(full_pod_json()).unwrap();
    let m = &p.metadata;
    assert_eq!(m.name.as_deref(), Some("web-0"));
    assert_eq!(m.resource_version.as_deref(), Some("42"));
    assert!(m.deletion_timestamp.is_some());
    assert_eq!(m.deletion_grace_period_seconds, Some(30));
    assert_eq!(
        m.finalizers.as_deref(),
        Some(&["batch.kubernetes.io/job-tracking".to_owned()][..])
    );
    let owner = &m.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("StatefulSet", Some(true))
    );
    assert_eq!(
        m.annotations.as_ref().unwrap()["controller.kubernetes.io/pod-deletion-cost"],
        "5"
    );

    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("n1"));
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    assert_eq!(spec.active_deadline_seconds, Some(600));
    assert_eq!(spec.priority_class_name.as_deref(), Some("high"));
    assert_eq!(spec.overhead.as_ref().unwrap()["cpu"].0, "10m");
    let affinity = spec.affinity.as_ref().unwrap();
    let term = &affinity
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms[0];
    assert_eq!(
        term.match_fields.as_ref().unwrap()[0]
            .values
            .as_ref()
            .unwrap()[0],
        "n1"
    );
    assert!(affinity.pod_affinity.is_some());
    let t = &spec.tolerations.as_ref().unwrap()[0];
    assert_eq!(
        (t.key.as_deref(), t.toleration_seconds),
        (Some("node.kubernetes.io/unreachable"), Some(300))
    );
    let volumes = spec.volumes.as_ref().unwrap();
    assert_eq!(volumes.len(), 3);
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data-web-0"
    );
    assert!(volumes[1].ephemeral.is_some());
    assert_eq!(volumes[2].name, "cfg");
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.restart_policy.as_deref(), Some("Always"));
    assert_eq!(init.ports.as_ref().unwrap()[0].container_port, 9901);
    let c = &spec.containers[0];
    assert_eq!(c.name, "web");
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("http"), 80)
    );
    let resources = c.resources.as_ref().unwrap();
    assert_eq!(
        resources
            .requests
            .as_ref()
            .unwrap()
            .get("memory")
            .unwrap()
            .0,
        "64Mi"
    );
    assert_eq!(
        resources.limits.as_ref().unwrap().get("memory").unwrap().0,
        "128Mi"
    );

    let status = p.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert!(status.start_time.is_some());
    assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(status.pod_ips.as_ref().unwrap()[1].ip, "fd00::5");
    let conds = status.conditions.as_ref().unwrap();
    assert_eq!(conds[1].type_, "DisruptionTarget");
    assert_eq!(conds[1].reason.as_deref(), Some("EvictionByEvictionAPI"));
    assert!(conds[0].last_transition_time.is_some());
    let cs = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        (cs.name.as_str(), cs.ready, cs.restart_count),
        ("web", false, 3)
    );
    let terminated = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(terminated.exit_code, 137);
    let init_cs = &status.init_container_statuses.as_ref().unwrap()[0];
    assert_eq!((init_cs.ready, init_cs.restart_count), (true, 1));
    assert!(init_cs.state.as_ref().unwrap().running.is_some());
    let eph = &status.ephemeral_container_statuses.as_ref().unwrap()[0];
    assert!(eph.state.as_ref().unwrap().waiting.is_some());

    // The conversion from a full pod keeps exactly what decoding keeps.
    let full: Pod = serde_json::from_value(full_pod_json()).unwrap();
    assert_eq!(CachedPod::from(full), p);
}

#[test]
fn the_quota_evaluator_sees_the_same_pod_in_either_form() {
    let cached_json = |v: &Value| {
        let full: Pod = serde_json::from_value(v.clone()).unwrap();
        serde_json::to_value(CachedPod::from(full)).unwrap()
    };
    let failed = full_pod_json();
    let mut deleting = failed.clone();
    deleting["status"]["phase"] = json!("Running");
    let mut running = deleting.clone();
    running["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("deletionTimestamp");
    let pods = Evaluator::for_resource("", "pods");
    assert!(pods.usage(&running, 0).contains_key("requests.cpu"));
    // Before and after the deletion grace period ran out.
    for now in [1_767_225_600, 1_767_226_000] {
        for full in [&failed, &deleting, &running] {
            assert_eq!(pods.usage(&cached_json(full), now), pods.usage(full, now));
        }
    }
    let running_cached = cached_json(&running);
    for scope in [
        json!({"scopes": ["Terminating"]}),
        json!({"scopes": ["NotTerminating"]}),
        json!({"scopes": ["BestEffort"]}),
        json!({"scopes": ["NotBestEffort"]}),
        json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}),
        json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "CrossNamespacePodAffinity", "operator": "Exists"}]}}),
    ] {
        let quota = json!({"spec": scope});
        assert_eq!(
            pods.matches_scopes(&quota, &running_cached),
            pods.matches_scopes(&quota, &running),
            "{quota}"
        );
    }
}

fn len<T>(v: &Option<Vec<T>>) -> usize {
    v.as_ref().map_or(0, Vec::len)
}

/// An estimate of a pod's heap: the structs it allocates (the pod itself,
/// as the store's `Arc` holds it, and the elements of its lists) plus its
/// JSON length, a stand-in for the strings and maps it holds. Nested lists
/// inside list elements (ports, commands, args) are in the JSON term only.
fn full_heap_estimate(p: &Pod) -> usize {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    size_of::<Pod>()
        + spec.map_or(0, |s| {
            (s.containers.len() + len(&s.init_containers)) * size_of::<Container>()
                + len(&s.tolerations) * size_of::<Toleration>()
                + len(&s.volumes) * size_of::<Volume>()
        })
        + status.map_or(0, |s| {
            len(&s.conditions) * size_of::<PodCondition>()
                + (len(&s.container_statuses) + len(&s.init_container_statuses))
                    * size_of::<ContainerStatus>()
                + len(&s.pod_ips) * size_of::<PodIP>()
                + len(&s.host_ips) * size_of::<HostIP>()
        })
        + serde_json::to_string(p).unwrap().len()
}

/// [`full_heap_estimate`] of the cached form.
fn cached_heap_estimate(p: &CachedPod) -> usize {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    size_of::<CachedPod>()
        + spec.map_or(0, |s| {
            (s.containers.len() + len(&s.init_containers)) * size_of::<CachedContainer>()
                + len(&s.tolerations) * size_of::<Toleration>()
                + len(&s.volumes) * size_of::<CachedVolume>()
        })
        + status.map_or(0, |s| {
            len(&s.conditions) * size_of::<CachedPodCondition>()
                + (len(&s.container_statuses) + len(&s.init_container_statuses))
                    * size_of::<CachedContainerStatus>()
                + len(&s.pod_ips) * size_of::<PodIP>()
        })
        + serde_json::to_string(p).unwrap().len()
}

/// The pod the benchmark's hollow nodes run (a ReplicaSet's, bound and
/// running), as the API server serves it.
const HOLLOW_POD: &str = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"creationTimestamp": "2026-12-01T01:19:14Z", "generateName": "web-6d46bcb789-", "labels": {"app": "web", "pod-template-hash": "6d46bcb789"}, "name": "web-6d46bcb789-6lzlm", "namespace": "default", "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true, "kind": "ReplicaSet", "name": "web-6d46bcb789", "uid": "8e12a61c-320b-4dd1-b335-6e994a12fe7b"}], "resourceVersion": "51", "uid": "846e21a7-ff89-48cd-9fff-89a6095be870"}, "spec": {"containers": [{"command": ["sleep", "1000"], "image": "busybox", "imagePullPolicy": "Always", "name": "busybox", "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}], "dnsPolicy": "ClusterFirst", "enableServiceLinks": true, "nodeName": "hollow-1", "preemptionPolicy": "PreemptLowerPriority", "priority": 0, "restartPolicy": "Always", "schedulerName": "default-scheduler", "securityContext": {}, "terminationGracePeriodSeconds": 30, "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300}, {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}]}, "status": {"conditions": [{"lastTransitionTime": "2026-12-01T01:19:14Z", "status": "True", "type": "PodReadyToStartContainers"}, {"lastTransitionTime": "2026-12-01T01:19:14Z", "status": "True", "type": "Initialized"}, {"lastTransitionTime": "2026-12-01T01:19:14Z", "status": "True", "type": "Ready"}, {"lastTransitionTime": "2026-12-01T01:19:14Z", "status": "True", "type": "ContainersReady"}, {"lastTransitionTime": "2026-12-01T01:19:14Z", "status": "True", "type": "PodScheduled"}], "containerStatuses": [{"containerID": "hollow://busybox", "image": "busybox", "imageID": "", "lastState": {}, "name": "busybox", "ready": true, "restartCount": 0, "started": true, "state": {"running": {"startedAt": "2026-12-01T01:19:14Z"}}}], "hostIP": "172.16.0.2", "hostIPs": [{"ip": "172.16.0.2"}], "phase": "Running", "podIP": "10.128.1.2", "podIPs": [{"ip": "10.128.1.2"}], "qosClass": "BestEffort", "startTime": "2026-12-01T01:19:14Z"}}"#;

#[test]
fn a_hollow_pod_costs_at_most_half_as_cached() {
    let full: Pod = serde_json::from_str(HOLLOW_POD).unwrap();
    let cached: CachedPod = serde_json::from_str(HOLLOW_POD).unwrap();
    let (f, c) = (full_heap_estimate(&full), cached_heap_estimate(&cached));
    assert!(2 * c <= f, "cached {c} bytes, full {f} bytes");
}

#[test]
fn quantity_maps_read_and_write_as_json_objects() {
    let json =
        r#"{"requests": {"memory": "16Mi", "cpu": "10m", "nvidia.com/gpu": "1"}, "limits": {}}"#;
    let r: CachedResources = serde_json::from_str(json).unwrap();
    let requests = r.requests.as_ref().unwrap();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests.get("cpu").unwrap().0, "10m");
    assert_eq!(requests.get("memory").unwrap().0, "16Mi");
    assert_eq!(requests.get("storage"), None);
    let names: Vec<&str> = requests.iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["cpu", "memory", "nvidia.com/gpu"]);
    assert!(r.limits.as_ref().unwrap().is_empty());
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::from_str::<Value>(json).unwrap()
    );
    // A name given twice keeps its last quantity, as a map would.
    let twice: QuantityMap = serde_json::from_str(r#"{"cpu": "1", "cpu": "2"}"#).unwrap();
    assert_eq!((twice.len(), &twice.get("cpu").unwrap().0[..]), (1, "2"));
    assert!(serde_json::from_str::<QuantityMap>(r#"["cpu"]"#).is_err());
}

#[test]
fn condition_words_are_shared_and_others_kept() {
    let json = r#"[{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T01:19:14Z"},
        {"type": "example.com/Custom", "status": "Maybe", "reason": "R", "message": "dropped"}]"#;
    let cs: Vec<CachedPodCondition> = serde_json::from_str(json).unwrap();
    assert!(matches!(cs[0].type_, Cow::Borrowed("Ready")));
    assert!(matches!(cs[0].status, Cow::Borrowed("True")));
    assert!(matches!(&cs[1].type_, Cow::Owned(t) if t == "example.com/Custom"));
    assert_eq!(cs[1].status, "Maybe");
    assert_eq!(cs[1].reason.as_deref(), Some("R"));
    assert_eq!(
        serde_json::to_value(&cs[1]).unwrap(),
        json!({"type": "example.com/Custom", "status": "Maybe", "reason": "R"})
    );
    let full: Vec<PodCondition> = serde_json::from_str(json).unwrap();
    let converted: Vec<CachedPodCondition> = full.into_iter().map(Into::into).collect();
    assert_eq!(converted, cs);
}

#[test]
fn only_the_annotations_a_controller_reads_are_kept() {
    let pod = json!({"metadata": {"name": "p", "annotations": {
        "controller.kubernetes.io/pod-deletion-cost": "7",
        "batch.kubernetes.io/job-completion-index": "3",
        "kubectl.kubernetes.io/restartedAt": "2026-12-01T00:00:00Z",
        "prometheus.io/scrape": "true",
    }, "managedFields": [{"manager": "m", "operation": "Update"}]}});
    let decoded: CachedPod = serde_json::from_value(pod.clone()).unwrap();
    let converted = CachedPod::from(serde_json::from_value::<Pod>(pod).unwrap());
    for p in [&decoded, &converted] {
        let kept: Vec<&str> = p
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            kept,
            [
                "batch.kubernetes.io/job-completion-index",
                "controller.kubernetes.io/pod-deletion-cost"
            ]
        );
        assert_eq!(p.metadata.managed_fields, None);
    }
    assert_eq!(crate::replicaset::ranking::deletion_cost(&decoded), 7);
    assert_eq!(crate::job::indexed::completion_index(&decoded), Some(3));
    let unread: CachedPod =
        serde_json::from_value(json!({"metadata": {"name": "p", "annotations": {"a": "b"}}}))
            .unwrap();
    assert_eq!(unread.metadata.annotations, None);
}
