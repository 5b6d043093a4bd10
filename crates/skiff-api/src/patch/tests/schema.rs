use super::super::schema::{kinds_for_tests, table_for_tests};
use super::super::*;

fn field(kind: (&str, &str, &str), path: &str) -> FieldInfo {
    let schema = PatchSchema::for_kind(kind.0, kind.1, kind.2)
        .unwrap_or_else(|| panic!("no schema for {kind:?}"));
    let path: Vec<&str> = path.split('.').collect();
    schema
        .field(&path)
        .unwrap_or_else(|| panic!("no field {path:?} in {kind:?}"))
}

const POD: (&str, &str, &str) = ("", "v1", "Pod");
const DEPLOYMENT: (&str, &str, &str) = ("apps", "v1", "Deployment");

#[test]
fn table_is_sorted_and_closed() {
    let types: Vec<_> = table_for_tests().collect();
    for pair in types.windows(2) {
        let (a, b) = (pair[0].name, pair[1].name);
        let same_table = a.starts_with("core.v1.") == b.starts_with("core.v1.");
        assert!(!same_table || a < b, "table not sorted: {a} before {b}");
    }
    for t in &types {
        for f in t.fields {
            if !f.ty.is_empty() {
                assert!(
                    PatchSchema::for_type(f.ty).is_some(),
                    "{}.{} -> missing {}",
                    t.name,
                    f.name,
                    f.ty
                );
            }
            assert!(
                f.list || f.merge_key.is_empty(),
                "{}.{} has a merge key",
                t.name,
                f.name
            );
            assert_eq!(
                f.list,
                f.list_type.is_some(),
                "{}.{} list type",
                t.name,
                f.name
            );
        }
    }
    for (group, version, kind, ty) in kinds_for_tests() {
        let schema = PatchSchema::for_kind(group, version, kind).expect("kind");
        assert_eq!(schema.type_name(), Some(*ty));
        // Every served kind patches metadata like any other.
        assert_eq!(
            schema
                .field(&["metadata", "ownerReferences"])
                .and_then(|f| f.merge_key),
            Some("uid"),
            "{kind}"
        );
    }
}

#[test]
fn issue_kinds_are_all_covered() {
    let kinds = [
        ("", "Pod"),
        ("", "PodTemplate"),
        ("", "ReplicationController"),
        ("", "Service"),
        ("", "Endpoints"),
        ("", "Node"),
        ("", "Namespace"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "Event"),
        ("", "LimitRange"),
        ("", "ResourceQuota"),
        ("", "PersistentVolume"),
        ("", "PersistentVolumeClaim"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ControllerRevision"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("coordination.k8s.io", "Lease"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("events.k8s.io", "Event"),
        ("policy", "PodDisruptionBudget"),
        ("policy", "Eviction"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("storage.k8s.io", "StorageClass"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("autoscaling", "Scale"),
    ];
    for (group, kind) in kinds {
        assert!(
            PatchSchema::for_kind(group, "v1", kind).is_some(),
            "{group}/{kind}"
        );
    }
    assert!(PatchSchema::for_kind("example.com", "v1", "Widget").is_none());
    assert!(PatchSchema::for_kind("", "v2", "Pod").is_none());
}

#[test]
fn pod_spec_lists() {
    // (path, merge key, list map keys, retainKeys)
    let cases: &[(&str, &str, &[&str], bool)] = &[
        ("spec.containers", "name", &["name"], false),
        ("spec.initContainers", "name", &["name"], false),
        ("spec.ephemeralContainers", "name", &["name"], false),
        (
            "spec.containers.ports",
            "containerPort",
            &["containerPort", "protocol"],
            false,
        ),
        ("spec.containers.env", "name", &["name"], false),
        (
            "spec.containers.volumeMounts",
            "mountPath",
            &["mountPath"],
            false,
        ),
        (
            "spec.containers.volumeDevices",
            "devicePath",
            &["devicePath"],
            false,
        ),
        ("spec.ephemeralContainers.env", "name", &["name"], false),
        ("spec.volumes", "name", &["name"], true),
        ("spec.imagePullSecrets", "name", &["name"], false),
        ("spec.hostAliases", "ip", &["ip"], false),
        (
            "spec.topologySpreadConstraints",
            "topologyKey",
            &["topologyKey", "whenUnsatisfiable"],
            false,
        ),
        ("spec.schedulingGates", "name", &["name"], false),
        ("spec.resourceClaims", "name", &["name"], true),
        ("status.conditions", "type", &["type"], false),
        ("status.podIPs", "ip", &["ip"], false),
        ("metadata.ownerReferences", "uid", &["uid"], false),
    ];
    for (path, key, keys, retain) in cases {
        let f = field(POD, path);
        assert_eq!(f.strategy, Some(PatchStrategy::Merge), "{path}");
        assert_eq!(f.merge_key, Some(*key), "{path}");
        assert_eq!(f.list_type, Some(ListType::Map { keys }), "{path}");
        assert_eq!(f.retain_keys, *retain, "{path}");
    }
    assert_eq!(
        field(POD, "spec.containers").type_name,
        Some("core.v1.Container")
    );
}

#[test]
fn lists_without_a_strategy_are_replaced() {
    let cases = [
        (POD, "spec.tolerations", ListType::Atomic),
        (POD, "spec.containers.args", ListType::Atomic),
        (POD, "spec.containers.envFrom", ListType::Atomic),
        (
            POD,
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
            ListType::Atomic,
        ),
        (("", "v1", "Endpoints"), "subsets", ListType::Atomic),
        (("", "v1", "Node"), "spec.taints", ListType::Atomic),
        (
            ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
            "rules",
            ListType::Atomic,
        ),
        (
            ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
            "subjects",
            ListType::Atomic,
        ),
        (
            ("discovery.k8s.io", "v1", "EndpointSlice"),
            "endpoints",
            ListType::Atomic,
        ),
        (
            ("networking.k8s.io", "v1", "Ingress"),
            "spec.rules",
            ListType::Atomic,
        ),
        (
            ("certificates.k8s.io", "v1", "CertificateSigningRequest"),
            "status.conditions",
            ListType::Map { keys: &["type"] },
        ),
        (
            ("discovery.k8s.io", "v1", "EndpointSlice"),
            "endpoints.addresses",
            ListType::Set,
        ),
    ];
    for (kind, path, list_type) in cases {
        let f = field(kind, path);
        assert_eq!(f.strategy, None, "{kind:?} {path}");
        assert_eq!(f.merge_key, None, "{kind:?} {path}");
        assert_eq!(f.list_type, Some(list_type), "{kind:?} {path}");
    }
}

#[test]
fn other_kinds() {
    let node = ("", "v1", "Node");
    assert_eq!(field(node, "status.addresses").merge_key, Some("type"));
    assert_eq!(field(node, "status.conditions").merge_key, Some("type"));
    let f = field(node, "spec.podCIDRs");
    assert_eq!(
        (f.strategy, f.merge_key, f.list_type),
        (Some(PatchStrategy::Merge), None, Some(ListType::Set))
    );
    let meta = field(("", "v1", "ConfigMap"), "metadata.finalizers");
    assert_eq!(
        (meta.strategy, meta.list_type),
        (Some(PatchStrategy::Merge), Some(ListType::Set))
    );
    assert_eq!(
        field(("", "v1", "ServiceAccount"), "secrets").merge_key,
        Some("name")
    );
    let ports = field(("", "v1", "Service"), "spec.ports");
    assert_eq!(ports.merge_key, Some("port"));
    assert_eq!(
        ports.list_type,
        Some(ListType::Map {
            keys: &["port", "protocol"]
        })
    );
    // Job conditions merge by type for strategic merge patch but are atomic
    // for server-side apply.
    let job = field(("batch", "v1", "Job"), "status.conditions");
    assert_eq!(
        (job.merge_key, job.list_type),
        (Some("type"), Some(ListType::Atomic))
    );
    let pdb = field(("policy", "v1", "PodDisruptionBudget"), "spec.selector");
    assert_eq!(pdb.strategy, Some(PatchStrategy::Replace));
    let strategy = field(DEPLOYMENT, "spec.strategy");
    assert!(strategy.retain_keys);
    assert_eq!(strategy.strategy, None);
    for kind in ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"] {
        assert_eq!(
            field(("apps", "v1", kind), "status.conditions").merge_key,
            Some("type"),
            "{kind}"
        );
    }
    assert_eq!(
        field(("", "v1", "Namespace"), "status.conditions").merge_key,
        Some("type")
    );
    assert_eq!(
        field(("", "v1", "PersistentVolumeClaim"), "status.conditions").merge_key,
        Some("type")
    );
}

#[test]
fn pod_templates_at_every_depth() {
    let cases = [
        (("", "v1", "PodTemplate"), "template.spec.containers.env"),
        (
            ("", "v1", "ReplicationController"),
            "spec.template.spec.containers.env",
        ),
        (DEPLOYMENT, "spec.template.spec.containers.env"),
        (
            ("apps", "v1", "ReplicaSet"),
            "spec.template.spec.containers.env",
        ),
        (
            ("apps", "v1", "StatefulSet"),
            "spec.template.spec.containers.env",
        ),
        (
            ("apps", "v1", "DaemonSet"),
            "spec.template.spec.containers.env",
        ),
        (("batch", "v1", "Job"), "spec.template.spec.containers.env"),
        (
            ("batch", "v1", "CronJob"),
            "spec.jobTemplate.spec.template.spec.containers.env",
        ),
    ];
    for (kind, path) in cases {
        assert_eq!(field(kind, path).merge_key, Some("name"), "{kind:?} {path}");
    }
    let claims = field(
        ("apps", "v1", "StatefulSet"),
        "spec.volumeClaimTemplates.metadata.finalizers",
    );
    assert_eq!(claims.list_type, Some(ListType::Set));
}

#[test]
fn lookups_outside_the_table() {
    let pod = PatchSchema::for_kind("", "v1", "Pod").expect("pod");
    assert_eq!(pod.field(&["spec", "nodeSelector"]), None);
    assert_eq!(pod.field(&["spec", "nope", "containers"]), None);
    assert_eq!(pod.field(&[]), None);
    assert_eq!(pod.list_type(&["spec", "containers", "name"]), None);
    assert_eq!(
        list_type("", "v1", "Pod", &["spec", "containers"]),
        Some(ListType::Map { keys: &["name"] })
    );
    assert_eq!(list_type("x", "v1", "Pod", &["spec", "containers"]), None);
    let (info, child) = pod.child("unknown");
    assert_eq!(
        (info.strategy, info.merge_key, child.type_name()),
        (None, None, None)
    );
    assert_eq!(
        PatchSchema::opaque().child("containers").1,
        PatchSchema::opaque()
    );
    assert_eq!(
        PatchSchema::for_type("core.v1.PodSpec").and_then(|s| s.type_name()),
        Some("core.v1.PodSpec")
    );
    assert!(PatchSchema::for_type("core.v1.Nope").is_none());
    assert!(PatchSchema::for_type("").is_none());
}
