//! Defaulting of pod specs (`SetDefaults_PodSpec`, `SetDefaults_Container`,
//! probes, volumes, ...), of pods only (`SetDefaults_Pod`), and the
//! `DefaultTolerationSeconds` admission plugin.

use serde_json::{Map, Value, json};

use super::json::{child_mut, each_object_mut, object_entry, set_default};

/// Upstream's `DefaultTerminationGracePeriodSeconds`.
const TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// `0644`, the default mode of projected files.
const DEFAULT_MODE: i64 = 0o644;
/// The toleration seconds the admission plugin adds for unready nodes.
const DEFAULT_TOLERATION_SECONDS: i64 = 300;
/// Default lifetime of a projected service account token.
const TOKEN_EXPIRATION_SECONDS: i64 = 3600;

type Obj = Map<String, Value>;

/// Defaults of every pod spec, in pods and in templates.
pub(super) fn default_pod_spec(spec: &mut Obj) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "securityContext", json!({}));
    set_default(
        spec,
        "terminationGracePeriodSeconds",
        json!(TERMINATION_GRACE_PERIOD_SECONDS),
    );
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        each_object_mut(spec, key, default_container);
    }
    each_object_mut(spec, "volumes", default_volume);
}

/// Defaults only pods get, not templates (`SetDefaults_Pod`).
pub(super) fn default_pod_only(spec: &mut Obj) {
    for key in ["containers", "initContainers"] {
        each_object_mut(spec, key, requests_from_limits);
    }
    set_default(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["containers", "initContainers"] {
            each_object_mut(spec, key, |c| {
                each_object_mut(c, "ports", |p| {
                    let host = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                    if host == 0
                        && let Some(port) = p.get("containerPort").cloned()
                    {
                        p.insert("hostPort".into(), port);
                    }
                });
            });
        }
    }
}

/// The `DefaultTolerationSeconds` admission plugin: pods tolerate unready
/// and unreachable nodes for 300s unless they already tolerate them.
pub(super) fn default_toleration_seconds(spec: &mut Obj) {
    let tolerations: &[Value] = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let tolerates = |taint: &str| {
        tolerations.iter().any(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let missing: Vec<&str> = [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    .into_iter()
    .filter(|taint| !tolerates(taint))
    .collect();
    if missing.is_empty() {
        return;
    }
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Value::Array(items) = list {
        for key in missing {
            items.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

fn requests_from_limits(c: &mut Obj) {
    let Some(resources) = child_mut(c, "resources") else {
        return;
    };
    let limits = match resources.get("limits") {
        Some(Value::Object(l)) if !l.is_empty() => l.clone(),
        _ => return,
    };
    if let Some(requests) = object_entry(resources, "requests") {
        for (k, v) in limits {
            requests.entry(k).or_insert(v);
        }
    }
}

/// The tag of an image reference, `latest` when it has neither tag nor
/// digest; `None` when the reference does not parse.
fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() || image.trim() != image {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    // The path (after a registry host) must be lowercase.
    let path = match repo.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => repo,
    };
    if path.is_empty() || path.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) => Some(t.to_owned()),
        (None, Some(_)) => Some(String::new()),
        (None, None) => Some("latest".to_owned()),
    }
}

/// `SetDefaults_Container` plus the generated defaults of its members.
fn default_container(c: &mut Obj) {
    if c.get("imagePullPolicy")
        .is_none_or(|v| v.as_str() == Some("") || v.is_null())
    {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag(image).as_deref() == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    set_default_str(c, "terminationMessagePath", "/dev/termination-log");
    set_default_str(c, "terminationMessagePolicy", "File");
    each_object_mut(c, "ports", |p| set_default_str(p, "protocol", "TCP"));
    each_object_mut(c, "env", |e| {
        if let Some(from) = child_mut(e, "valueFrom")
            && let Some(field) = child_mut(from, "fieldRef")
        {
            set_default_str(field, "apiVersion", "v1");
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child_mut(c, probe) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            default_handler(p);
        }
    }
    if let Some(lifecycle) = child_mut(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child_mut(lifecycle, hook) {
                default_handler(h);
            }
        }
    }
}

fn default_handler(h: &mut Obj) {
    if let Some(get) = child_mut(h, "httpGet") {
        set_default_str(get, "path", "/");
        set_default_str(get, "scheme", "HTTP");
    }
    if let Some(grpc) = child_mut(h, "grpc") {
        set_default(grpc, "service", json!(""));
    }
}

/// Sets a string field when missing, null or empty (Go's zero value).
fn set_default_str(m: &mut Obj, key: &str, value: &str) {
    if m.get(key)
        .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
    {
        m.insert(key.to_owned(), json!(value));
    }
}

/// The volume sources of `VolumeSource`, in the order upstream's
/// validation checks them.
const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flexVolume",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flocker",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "configMap",
    "csi",
    "ephemeral",
    "image",
];

/// The volume source fields set on a volume, in validation order.
pub(super) fn volume_sources(v: &Obj) -> Vec<&'static str> {
    VOLUME_SOURCES
        .iter()
        .copied()
        .filter(|s| v.get(*s).is_some_and(|x| !x.is_null()))
        .collect()
}

fn default_volume(v: &mut Obj) {
    if volume_sources(v).is_empty() {
        v.insert("emptyDir".into(), json!({}));
    }
    if let Some(h) = child_mut(v, "hostPath") {
        set_default(h, "type", json!(""));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = child_mut(v, source) {
            set_default(s, "defaultMode", json!(DEFAULT_MODE));
        }
    }
    if let Some(d) = child_mut(v, "downwardAPI") {
        default_downward_items(d);
    }
    if let Some(p) = child_mut(v, "projected") {
        each_object_mut(p, "sources", |s| {
            if let Some(t) = child_mut(s, "serviceAccountToken") {
                set_default(t, "expirationSeconds", json!(TOKEN_EXPIRATION_SECONDS));
            }
            if let Some(d) = child_mut(s, "downwardAPI") {
                default_downward_items(d);
            }
        });
    }
    if let Some(i) = child_mut(v, "iscsi") {
        set_default_str(i, "iscsiInterface", "default");
    }
    if let Some(r) = child_mut(v, "rbd") {
        set_default_str(r, "pool", "rbd");
        set_default_str(r, "user", "admin");
        set_default_str(r, "keyring", "/etc/ceph/keyring");
    }
    if let Some(a) = child_mut(v, "azureDisk") {
        set_default(a, "cachingMode", json!("ReadWrite"));
        set_default(a, "fsType", json!("ext4"));
        set_default(a, "readOnly", json!(false));
        set_default(a, "kind", json!("Shared"));
    }
    if let Some(s) = child_mut(v, "scaleIO") {
        set_default_str(s, "storageMode", "ThinProvisioned");
        set_default_str(s, "fsType", "xfs");
    }
    if let Some(e) = child_mut(v, "ephemeral")
        && let Some(t) = child_mut(e, "volumeClaimTemplate")
        && let Some(s) = child_mut(t, "spec")
    {
        set_default(s, "volumeMode", json!("Filesystem"));
    }
}

fn default_downward_items(d: &mut Obj) {
    each_object_mut(d, "items", |item| {
        if let Some(f) = child_mut(item, "fieldRef") {
            set_default_str(f, "apiVersion", "v1");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::image_tag;

    #[test]
    fn image_tags_decide_the_pull_policy() {
        for (image, want) in [
            ("nginx", Some("latest")),
            ("nginx:latest", Some("latest")),
            ("nginx:1.27", Some("1.27")),
            ("localhost:5000/app", Some("latest")),
            ("localhost:5000/app:v1", Some("v1")),
            ("registry.k8s.io/pause:3.10", Some("3.10")),
            ("nginx@sha256:abc", Some("")),
            ("nginx:1.2@sha256:abc", Some("1.2")),
            ("NGINX", None),
            ("", None),
        ] {
            assert_eq!(image_tag(image).as_deref(), want, "{image}");
        }
    }
}
