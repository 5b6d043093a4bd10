//! The encoder: Go's bytes, round trips, and errors for ill-typed JSON.

use serde_json::{Value, json};

use super::round_trip;
use crate::ProtoError;

#[test]
fn config_map_bytes_match_what_kubectl_sends() {
    // kubectl 1.33 `create configmap c --from-literal=a=b`, as captured.
    let want: &[u8] = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x1b\
        \x0a\x11\x0a\x01c\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\
        \x12\x06\x0a\x01a\x12\x01b\x1a\x00\x22\x00";
    let obj = json!({"kind": "ConfigMap", "apiVersion": "v1",
                     "metadata": {"name": "c", "creationTimestamp": null},
                     "data": {"a": "b"}});
    assert_eq!(crate::encode(&obj).expect("encodes"), want);
    assert_eq!(crate::decode(want).expect("decodes"), obj);
}

#[test]
fn map_entries_are_sorted_by_key() {
    let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                   "data": {"b": "2", "a": "1", "c": "3"}});
    let bytes = crate::encode(&a).expect("encodes");
    let text = String::from_utf8_lossy(&bytes);
    let entry = |k: &str| text.find(&format!("\x06\x0a\x01{k}\x12"));
    let (ia, ib, ic) = (entry("a"), entry("b"), entry("c"));
    assert!(ia.is_some());
    assert!(ia < ib && ib < ic, "{text:?}");
}

/// A pod in Go's canonical JSON form: decode(encode(pod)) must give it back.
fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "0b6e7a4e-7a55-4f34-a0a4-1f0b7a7d1c11",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2024-02-29T23:59:59Z",
            "deletionTimestamp": "2024-03-01T00:00:30Z",
            "deletionGracePeriodSeconds": 30,
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": "ünïcode ✓"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                                 "uid": "u", "controller": true, "blockOwnerDeletion": false}],
            "finalizers": ["example.com/f"],
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                               "time": "2024-02-29T23:59:59Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:spec": {"f:containers": {}}}}]
        },
        "spec": {
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}],
                                              "defaultMode": 420, "optional": false}},
                {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                {"name": "tok", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "api", "expirationSeconds": 3600, "path": "token"}},
                    {"secret": {"name": "s", "optional": true}}]}}
            ],
            "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"],
                                "resources": {}, "restartPolicy": "Always"}],
            "containers": [{
                "name": "web",
                "image": "nginx:1.25",
                "args": ["-g", "daemon off;"],
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                          {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"}],
                "env": [{"name": "X", "value": "1"},
                        {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": false}}}],
                "envFrom": [{"prefix": "P_", "configMapRef": {"name": "cfg"}}],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
                "volumeMounts": [{"name": "cfg", "readOnly": true, "mountPath": "/etc/cfg"}],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                  "initialDelaySeconds": 3, "timeoutSeconds": 1, "periodSeconds": 10,
                                  "successThreshold": 1, "failureThreshold": 3},
                "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 5},
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "securityContext": {"capabilities": {"drop": ["ALL"]}, "privileged": false,
                                    "runAsUser": 0, "runAsNonRoot": false,
                                    "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false},
                "stdin": true
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 0,
            "activeDeadlineSeconds": 600,
            "dnsPolicy": "ClusterFirst",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "serviceAccountName": "default",
            "automountServiceAccountToken": false,
            "nodeName": "n1",
            "hostNetwork": true,
            "securityContext": {"fsGroup": 2000, "sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}]},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}},
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}],
            "priority": 0,
            "enableServiceLinks": false,
            "preemptionPolicy": "PreemptLowerPriority",
            "overhead": {"cpu": "10m"}
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null,
                            "lastTransitionTime": "2024-03-01T00:00:00Z"}],
            "hostIP": "10.0.0.1",
            "hostIPs": [{"ip": "10.0.0.1"}],
            "podIP": "10.1.0.5",
            "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
            "startTime": "2024-03-01T00:00:00Z",
            "containerStatuses": [{"name": "web", "state": {"running": {"startedAt": "2024-03-01T00:00:01Z"}},
                                   "lastState": {}, "ready": true, "restartCount": 0, "image": "nginx:1.25",
                                   "imageID": "", "started": true}],
            "qosClass": "Burstable"
        }
    })
}

#[test]
fn a_rich_pod_round_trips() {
    let pod = pod();
    assert_eq!(round_trip(&pod), pod);
}

#[test]
fn objects_of_every_group_round_trip() {
    let objects = [
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "d", "creationTimestamp": null},
               "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}},
                        "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "d"}},
                                     "spec": {"containers": [{"name": "c", "image": "i", "resources": {}}]}},
                        "strategy": {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
                        "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
               "status": {}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
               "metadata": {"name": "cj", "creationTimestamp": null},
               "spec": {"schedule": "*/1 * * * *", "timeZone": "UTC", "suspend": false,
                        "jobTemplate": {"metadata": {"creationTimestamp": null},
                                        "spec": {"backoffLimit": 0, "template": {
                                            "metadata": {"creationTimestamp": null},
                                            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {}}],
                                                     "restartPolicy": "OnFailure"}}}}},
               "status": {"lastScheduleTime": "2024-01-01T00:00:00Z"}}),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "l", "creationTimestamp": null},
               "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15,
                        "acquireTime": "2024-01-01T00:00:00.000000Z",
                        "renewTime": "2024-01-01T00:00:10.123456Z", "leaseTransitions": 0}}),
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
               "metadata": {"name": "e", "creationTimestamp": null},
               "eventTime": "2024-01-01T00:00:00.500000Z",
               "series": {"count": 2, "lastObservedTime": "2024-01-01T00:00:01.000001Z"},
               "reportingController": "c", "reportingInstance": "i", "action": "A", "reason": "R",
               "regarding": {"kind": "Pod", "name": "p"}, "note": "n", "type": "Normal",
               "deprecatedSource": {}, "deprecatedFirstTimestamp": null, "deprecatedLastTimestamp": null}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "s", "creationTimestamp": null}, "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": false}}],
               "ports": [{"name": "", "protocol": "TCP", "port": 80}]}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
               "metadata": {"name": "pdb", "creationTimestamp": null},
               "spec": {"minAvailable": "50%", "selector": {"matchExpressions": [
                   {"key": "a", "operator": "Exists"}]}},
               "status": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                          "expectedPods": 0}}),
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
               "metadata": {"name": "pc", "creationTimestamp": null}, "value": 100,
               "globalDefault": true, "preemptionPolicy": "Never"}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "b", "creationTimestamp": null},
               "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "u"}],
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
               "metadata": {"name": "sc", "creationTimestamp": null}, "provisioner": "p",
               "parameters": {"type": "fast"}, "reclaimPolicy": "Delete", "allowVolumeExpansion": false,
               "volumeBindingMode": "WaitForFirstConsumer"}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "np", "creationTimestamp": null},
               "spec": {"podSelector": {}, "ingress": [{"ports": [{"protocol": "TCP", "port": 80, "endPort": 90}],
                                                        "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
                        "policyTypes": ["Ingress"]}}),
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
               "metadata": {"name": "csr", "creationTimestamp": null},
               "spec": {"request": "AAEC", "signerName": "kubernetes.io/kube-apiserver-client",
                        "expirationSeconds": 600, "usages": ["client auth"], "username": "u",
                        "extra": {"k": ["a", "b"]}},
               "status": {"conditions": [{"type": "Approved", "status": "True",
                                          "lastUpdateTime": null, "lastTransitionTime": null}]}}),
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
               "metadata": {"name": "d", "creationTimestamp": null},
               "spec": {"replicas": 3}, "status": {"replicas": 1, "selector": "app=d"}}),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "metadata": {"name": "sa", "creationTimestamp": null},
               "spec": {"audiences": ["api"], "expirationSeconds": 600,
                        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "1"}},
               "status": {"token": "t", "expirationTimestamp": "2024-01-01T00:10:00Z"}}),
        json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
               "preconditions": {"uid": "u", "resourceVersion": "1"}, "propagationPolicy": "Foreground",
               "dryRun": ["All"]}),
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
               "message": "m", "reason": "Conflict",
               "details": {"name": "n", "kind": "pods", "causes": [{"reason": "FieldValueInvalid",
                            "message": "x", "field": "spec"}], "retryAfterSeconds": 1},
               "code": 409}),
    ];
    for obj in objects {
        assert_eq!(round_trip(&obj), obj, "{}", obj["kind"]);
    }
}

#[test]
fn go_zero_values_normalise_like_go() {
    // JSON a Go client could send, and what kube-apiserver would print back.
    let sent = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "c", "namespace": "", "generation": 0,
                                   "labels": {}, "finalizers": []},
                      "immutable": false, "data": null});
    let printed = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "c", "creationTimestamp": null},
                         "immutable": false});
    assert_eq!(round_trip(&sent), printed);
}

fn encode_err(obj: Value) -> ProtoError {
    crate::encode(&obj).expect_err("must not encode")
}

#[test]
fn ill_typed_json_is_refused() {
    let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "data": data});
    assert!(matches!(
        encode_err(cm(json!("x"))),
        ProtoError::InvalidValue { .. }
    ));
    assert!(matches!(
        encode_err(cm(json!({"a": 1}))),
        ProtoError::InvalidValue { .. }
    ));
    let pod = |spec: Value| json!({"apiVersion": "v1", "kind": "Pod", "spec": spec});
    let e = encode_err(pod(json!({"activeDeadlineSeconds": 1.5})));
    assert!(e.to_string().contains("expected an integer"), "{e}");
    let e = encode_err(pod(json!({"priority": 4_294_967_296u64})));
    assert!(e.to_string().contains("out of range"), "{e}");
    let e = encode_err(pod(json!({"hostNetwork": "yes"})));
    assert!(e.to_string().contains("expected a boolean"), "{e}");
    let e = encode_err(json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "!!"}}));
    assert!(e.to_string().contains("base64"), "{e}");
    let e = encode_err(json!({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"creationTimestamp": "yesterday"}}));
    assert!(e.to_string().contains("RFC 3339"), "{e}");
    let e = encode_err(json!({"apiVersion": "v1", "kind": "Service",
                              "spec": {"ports": [{"targetPort": true}]}}));
    assert!(e.to_string().contains("int32 or a string"), "{e}");
    assert_eq!(
        encode_err(json!({"apiVersion": "v1", "kind": "Widget"})),
        ProtoError::UnknownKind {
            api_version: "v1".into(),
            kind: "Widget".into()
        }
    );
    assert!(matches!(
        encode_err(json!({"apiVersion": "v1"})),
        ProtoError::MissingKind(_)
    ));
}

#[test]
fn unknown_json_fields_are_dropped() {
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                     "data": {"a": "b"}, "frobnicate": true});
    let back = round_trip(&obj);
    assert!(back.get("frobnicate").is_none());
    assert_eq!(back["data"], json!({"a": "b"}));
}
