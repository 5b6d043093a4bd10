//! The objects the benchmark creates, as ready-to-send JSON.

use bytes::Bytes;
use serde_json::json;

/// A small ConfigMap: two short keys.
pub fn configmap(namespace: &str, name: &str) -> Bytes {
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench"}},
        "data": {"mode": "fast", "level": "3"},
    });
    Bytes::from(cm.to_string())
}

/// A Namespace.
pub fn namespace(name: &str) -> Bytes {
    Bytes::from(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).to_string(),
    )
}

/// A realistic Pod, about 2 KB of JSON as sent: an app container and a
/// sidecar with env, ports, resources, probes and volume mounts, plus a
/// ConfigMap and an emptyDir volume. Valid as upstream validates pods.
pub fn pod(namespace: &str, name: &str) -> Bytes {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "web", "tier": "frontend", "release": "stable", "bench": "pods"},
            "annotations": {"example.com/owner": "team-web", "example.com/revision": "42"},
        },
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example.com/team/web-frontend:1.27.3",
                    "imagePullPolicy": "IfNotPresent",
                    "args": ["--listen=:8080", "--metrics=:9090", "--log-level=info"],
                    "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                    ],
                    "env": [
                        {"name": "APP_ENV", "value": "production"},
                        {"name": "APP_REGION", "value": "eu-west-1"},
                        {"name": "CACHE_SIZE_MB", "value": "256"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    ],
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "256Mi"},
                        "limits": {"cpu": "1", "memory": "512Mi"},
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "initialDelaySeconds": 10,
                        "periodSeconds": 10,
                        "timeoutSeconds": 2,
                        "failureThreshold": 3,
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/ready", "port": 8080},
                        "periodSeconds": 5,
                    },
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/web", "readOnly": true},
                        {"name": "cache", "mountPath": "/var/cache/web"},
                    ],
                },
                {
                    "name": "log-shipper",
                    "image": "registry.example.com/infra/log-shipper:3.4.0",
                    "ports": [{"name": "shipper", "containerPort": 24224}],
                    "env": [
                        {"name": "SHIP_TO", "value": "logs.example.com:24224"},
                        {"name": "BUFFER", "value": "8MiB"},
                    ],
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "200m", "memory": "128Mi"},
                    },
                    "livenessProbe": {"tcpSocket": {"port": "shipper"}, "periodSeconds": 20},
                    "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/web", "readOnly": true}],
                },
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": "web-config"}},
                {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
            ],
            "terminationGracePeriodSeconds": 30,
            "nodeSelector": {"kubernetes.io/os": "linux"},
        },
    });
    Bytes::from(pod.to_string())
}

/// A merge patch setting the fan-out ConfigMap's value to carry `seq`.
pub fn fanout_patch(seq: usize) -> Bytes {
    Bytes::from(json!({"data": {"v": seq_token(seq)}}).to_string())
}

/// The fan-out ConfigMap, carrying sequence 0.
pub fn fanout_configmap(namespace: &str, name: &str) -> Bytes {
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"v": seq_token(0)},
    });
    Bytes::from(cm.to_string())
}

const SEQ_OPEN: &str = "@@seq=";
const SEQ_CLOSE: &str = "@@";

fn seq_token(seq: usize) -> String {
    format!("{SEQ_OPEN}{seq}{SEQ_CLOSE}")
}

/// The sequence number a watch event line carries, if any.
pub fn find_seq(line: &[u8]) -> Option<usize> {
    let open = SEQ_OPEN.as_bytes();
    let start = line.windows(open.len()).position(|w| w == open)? + open.len();
    let rest = &line[start..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if !rest[digits..].starts_with(SEQ_CLOSE.as_bytes()) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}
