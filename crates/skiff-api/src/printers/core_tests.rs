//! Core kinds other than pods: columns, default and wide rows.

use serde_json::{Value, json};

use super::testutil::{ago, default_cells, header, res, wide_cells};
use crate::cells;

fn meta(name: &str, age_secs: i64) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(age_secs)})
}

#[test]
fn node_rows() {
    let r = res("", "Node");
    assert_eq!(
        header(r, true),
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ]
    );
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-a", "creationTimestamp": ago(2 * 86400 + 5 * 3600),
            "labels": {
                "kubernetes.io/hostname": "node-a",
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/master": "true",
                "node-role.kubernetes.io/": "",
                "kubernetes.io/role": "etcd"}},
        "spec": {"podCIDR": "10.42.0.0/24"},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [
                {"type": "Hostname", "address": "node-a"},
                {"type": "InternalIP", "address": "192.168.1.10"},
                {"type": "InternalIP", "address": "192.168.1.11"}],
            "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "skiff://0.1.0"}}
    });
    assert_eq!(
        wide_cells(r, &node),
        cells![
            "node-a",
            "Ready",
            "control-plane,etcd,master",
            "2d5h",
            "v1.33.1",
            "192.168.1.10",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0-18-amd64",
            "skiff://0.1.0"
        ]
    );

    let cordoned = json!({
        "metadata": {"name": "node-b", "creationTimestamp": ago(600)},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
            "addresses": [{"type": "ExternalIP", "address": "203.0.113.5"}]}
    });
    assert_eq!(
        wide_cells(r, &cordoned),
        cells![
            "node-b",
            "NotReady,SchedulingDisabled",
            "<none>",
            "10m",
            "",
            "<none>",
            "203.0.113.5",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ]
    );
    let fresh = json!({"metadata": {"name": "node-c", "creationTimestamp": ago(5)}});
    assert_eq!(
        default_cells(r, &fresh),
        cells!["node-c", "Unknown", "<none>", "5s", ""]
    );
}

#[test]
fn namespace_configmap_secret_serviceaccount_rows() {
    let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(45 * 86400)},
        "status": {"phase": "Active"}});
    assert_eq!(
        header(res("", "Namespace"), true),
        ["NAME", "STATUS", "AGE"]
    );
    assert_eq!(
        wide_cells(res("", "Namespace"), &ns),
        cells!["kube-system", "Active", "45d"]
    );

    let cm = json!({"metadata": meta("settings", 130),
        "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AAEC"}});
    assert_eq!(header(res("", "ConfigMap"), true), ["NAME", "DATA", "AGE"]);
    assert_eq!(
        wide_cells(res("", "ConfigMap"), &cm),
        cells!["settings", 3, "2m10s"]
    );

    let secret = json!({"metadata": meta("tls", 3600), "type": "kubernetes.io/tls",
        "data": {"tls.crt": "LS0t", "tls.key": "LS0t"}});
    assert_eq!(
        header(res("", "Secret"), true),
        ["NAME", "TYPE", "DATA", "AGE"]
    );
    assert_eq!(
        wide_cells(res("", "Secret"), &secret),
        cells!["tls", "kubernetes.io/tls", 2, "60m"]
    );

    let sa = json!({"metadata": meta("default", 86400)});
    assert_eq!(
        header(res("", "ServiceAccount"), true),
        ["NAME", "SECRETS", "AGE"]
    );
    assert_eq!(
        wide_cells(res("", "ServiceAccount"), &sa),
        cells!["default", 0, "24h"]
    );
}

#[test]
fn service_rows() {
    let r = res("", "Service");
    assert_eq!(
        header(r, true),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ]
    );
    let svc = |spec: Value, status: Value| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("web", 300),
            "spec": spec, "status": status})
    };
    let cases = vec![
        (
            svc(
                json!({"type": "ClusterIP", "clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}),
                json!({}),
            ),
            cells![
                "web",
                "ClusterIP",
                "10.43.0.1",
                "<none>",
                "443/TCP",
                "5m",
                "<none>"
            ],
        ),
        (
            svc(
                json!({"type": "NodePort", "clusterIP": "10.43.12.7",
                "selector": {"app": "web", "tier": "front"},
                "externalIPs": ["198.51.100.7"],
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080},
                          {"port": 443, "protocol": "TCP", "nodePort": 30443},
                          {"port": 53, "protocol": "UDP"}]}),
                json!({}),
            ),
            cells![
                "web",
                "NodePort",
                "10.43.12.7",
                "198.51.100.7",
                "80:30080/TCP,443:30443/TCP,53/UDP",
                "5m",
                "app=web,tier=front"
            ],
        ),
        (
            svc(
                json!({"type": "LoadBalancer", "clusterIP": "10.43.3.3",
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31000}]}),
                json!({}),
            ),
            cells![
                "web",
                "LoadBalancer",
                "10.43.3.3",
                "<pending>",
                "80:31000/TCP",
                "5m",
                "<none>"
            ],
        ),
        (
            svc(
                json!({"type": "LoadBalancer", "clusterIP": "10.43.3.3",
                "externalIPs": ["198.51.100.1"],
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31000}]}),
                json!({"loadBalancer": {"ingress": [
                {"ip": "203.0.113.20"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.10"}]}}),
            ),
            // Unclipped: the server prints the wide form.
            cells![
                "web",
                "LoadBalancer",
                "10.43.3.3",
                "203.0.113.10,203.0.113.20,lb.example.com,198.51.100.1",
                "80:31000/TCP",
                "5m",
                "<none>"
            ],
        ),
        (
            svc(
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
                json!({}),
            ),
            cells![
                "web",
                "ExternalName",
                "<none>",
                "db.example.com",
                "<none>",
                "5m",
                "<none>"
            ],
        ),
        (
            svc(
                json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"],
                "selector": {"app": "db"}}),
                json!({}),
            ),
            cells![
                "web",
                "ClusterIP",
                "None",
                "<none>",
                "<none>",
                "5m",
                "app=db"
            ],
        ),
        (
            svc(json!({"clusterIPs": ["fd00::10", "10.43.0.10"]}), json!({})),
            cells!["web", "", "fd00::10", "<unknown>", "<none>", "5m", "<none>"],
        ),
    ];
    for (svc, want) in cases {
        assert_eq!(wide_cells(r, &svc), want, "{svc}");
    }
}

#[test]
fn pod_template_and_quota_rows() {
    let r = res("", "PodTemplate");
    assert_eq!(
        header(r, true),
        ["NAME", "CONTAINERS", "IMAGES", "POD LABELS"]
    );
    let pt = json!({"metadata": meta("tmpl", 60), "template": {
        "metadata": {"labels": {"run": "x", "app": "y"}},
        "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "redis:7"}]}}});
    assert_eq!(
        wide_cells(r, &pt),
        cells!["tmpl", "a,b", "nginx,redis:7", "app=y,run=x"]
    );

    let r = res("", "ResourceQuota");
    assert_eq!(header(r, true), ["NAME", "REQUEST", "LIMIT", "AGE"]);
    let quota = json!({"metadata": meta("compute", 600), "status": {
        "hard": {"requests.cpu": "4", "limits.memory": "8Gi", "pods": "10", "limits.cpu": "8",
                 "limits": "1"},
        "used": {"requests.cpu": "500m", "limits.memory": "1Gi", "pods": "3"}}});
    assert_eq!(
        wide_cells(r, &quota),
        cells![
            "compute",
            "limits: 0/1, pods: 3/10, requests.cpu: 500m/4",
            "limits.cpu: 0/8, limits.memory: 1Gi/8Gi",
            "10m"
        ]
    );
}

#[test]
fn persistent_volume_rows() {
    let r = res("", "PersistentVolume");
    assert_eq!(
        header(r, false),
        [
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ]
    );
    let pv = json!({"metadata": {"name": "pv-1", "creationTimestamp": ago(3600),
            "annotations": {"volume.beta.kubernetes.io/storage-class": "slow"}},
        "spec": {"capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "fast",
            "volumeMode": "Filesystem",
            "claimRef": {"namespace": "default", "name": "data"}, "hostPath": {"path": "/d"}},
        "status": {"phase": "Bound"}});
    assert_eq!(
        wide_cells(r, &pv),
        cells![
            "pv-1",
            "10Gi",
            "RWO,RWX",
            "Retain",
            "Bound",
            "default/data",
            "slow",
            "<unset>",
            "",
            "60m",
            "Filesystem"
        ]
    );
    let mut released = json!({"metadata": {"name": "pv-2", "creationTimestamp": ago(60)},
        "spec": {"accessModes": ["ReadWriteOncePod"], "storageClassName": "fast",
            "volumeAttributesClassName": "gold"},
        "status": {"phase": "Failed", "reason": "VolumeFailedRecycle"}});
    assert_eq!(
        wide_cells(r, &released),
        cells![
            "pv-2",
            "0",
            "RWOP",
            "",
            "Failed",
            "",
            "fast",
            "gold",
            "VolumeFailedRecycle",
            "60s",
            "<unset>"
        ]
    );
    released["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(wide_cells(r, &released)[4], "Terminating");

    let r = res("", "PersistentVolumeClaim");
    assert_eq!(
        header(r, true),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE",
            "VOLUMEMODE"
        ]
    );
    let bound = json!({"metadata": meta("data", 300),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}},
            "storageClassName": "local-path", "volumeName": "pv-1", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "10Gi"}}});
    assert_eq!(
        wide_cells(r, &bound),
        cells![
            "data",
            "Bound",
            "pv-1",
            "10Gi",
            "RWO",
            "local-path",
            "<unset>",
            "5m",
            "Filesystem"
        ]
    );
    let pending = json!({"metadata": meta("scratch", 20),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"}});
    assert_eq!(
        default_cells(r, &pending),
        cells!["scratch", "Pending", "", "", "", "", "<unset>", "20s"]
    );
}

#[test]
fn core_event_rows() {
    let r = res("", "Event");
    assert_eq!(
        header(r, false),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert_eq!(
        header(r, true),
        [
            "LAST SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "SUBOBJECT",
            "SOURCE",
            "MESSAGE",
            "FIRST SEEN",
            "COUNT",
            "NAME"
        ]
    );
    let cols = super::columns(r);
    assert_eq!((cols[9].format, cols[9].priority), ("name", 1));

    let ev = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-0.17f3a", "namespace": "default", "creationTimestamp": ago(600)},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-0",
            "fieldPath": "spec.containers{app}"},
        "reason": "BackOff", "message": "Back-off restarting failed container\n", "type": "Warning",
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 7});
    assert_eq!(
        wide_cells(r, &ev),
        cells![
            "30s",
            "Warning",
            "BackOff",
            "pod/web-0",
            "spec.containers{app}",
            "kubelet, node-a",
            "Back-off restarting failed container",
            "10m",
            7,
            "web-0.17f3a"
        ]
    );

    // New-style event written through core/v1: eventTime, series, reporting fields.
    let series = json!({"metadata": {"name": "e2", "creationTimestamp": ago(900)},
        "involvedObject": {"kind": "Node", "name": ""},
        "reason": "Starting", "message": "Starting kubelet.", "type": "Normal",
        "eventTime": "2025-06-01T11:45:00.123456Z", "reportingComponent": "kubelet",
        "reportingController": "kubelet", "reportingInstance": "node-a",
        "series": {"count": 4, "lastObservedTime": "2025-06-01T11:58:00.000000Z"}});
    assert_eq!(
        wide_cells(r, &series),
        cells![
            "2m",
            "Normal",
            "Starting",
            "node",
            "",
            "kubelet, node-a",
            "Starting kubelet.",
            "14m",
            4,
            "e2"
        ]
    );

    // No timestamps, no count: unknown times and a count of one.
    let bare = json!({"metadata": {"name": "e3"}, "involvedObject": {"kind": "Pod", "name": "p"},
        "source": {"component": "scheduler"}});
    assert_eq!(
        wide_cells(r, &bare),
        cells![
            "<unknown>",
            "",
            "",
            "pod/p",
            "",
            "scheduler",
            "",
            "<unknown>",
            1,
            "e3"
        ]
    );
}

#[test]
fn events_v1_rows_use_the_new_field_names() {
    let r = res("events.k8s.io", "Event");
    assert_eq!(super::columns(r), super::columns(res("", "Event")));
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default", "creationTimestamp": ago(120)},
        "eventTime": ago(120), "reportingController": "deployment-controller",
        "reportingInstance": "", "action": "Scale", "reason": "ScalingReplicaSet",
        "regarding": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
        "note": "Scaled up replica set web-5d4f to 3", "type": "Normal",
        "deprecatedCount": 2, "deprecatedLastTimestamp": ago(61),
        "deprecatedSource": {"component": "deployment-controller"}});
    assert_eq!(
        wide_cells(r, &ev),
        cells![
            "61s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller",
            "Scaled up replica set web-5d4f to 3",
            "2m",
            2,
            "web.1"
        ]
    );
}
