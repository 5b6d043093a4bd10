use super::*;

/// `kubectl api-resources` rows as a v1.33 cluster prints them for the resources
/// we serve: NAME, SHORTNAMES, APIVERSION, NAMESPACED, KIND.
const API_RESOURCES: &[(&str, &str, &str, bool, &str)] = &[
    ("configmaps", "cm", "v1", true, "ConfigMap"),
    ("endpoints", "ep", "v1", true, "Endpoints"),
    ("events", "ev", "v1", true, "Event"),
    ("limitranges", "limits", "v1", true, "LimitRange"),
    ("namespaces", "ns", "v1", false, "Namespace"),
    ("nodes", "no", "v1", false, "Node"),
    (
        "persistentvolumeclaims",
        "pvc",
        "v1",
        true,
        "PersistentVolumeClaim",
    ),
    ("persistentvolumes", "pv", "v1", false, "PersistentVolume"),
    ("pods", "po", "v1", true, "Pod"),
    ("podtemplates", "", "v1", true, "PodTemplate"),
    (
        "replicationcontrollers",
        "rc",
        "v1",
        true,
        "ReplicationController",
    ),
    ("resourcequotas", "quota", "v1", true, "ResourceQuota"),
    ("secrets", "", "v1", true, "Secret"),
    ("serviceaccounts", "sa", "v1", true, "ServiceAccount"),
    ("services", "svc", "v1", true, "Service"),
    (
        "controllerrevisions",
        "",
        "apps/v1",
        true,
        "ControllerRevision",
    ),
    ("daemonsets", "ds", "apps/v1", true, "DaemonSet"),
    ("deployments", "deploy", "apps/v1", true, "Deployment"),
    ("replicasets", "rs", "apps/v1", true, "ReplicaSet"),
    ("statefulsets", "sts", "apps/v1", true, "StatefulSet"),
    ("cronjobs", "cj", "batch/v1", true, "CronJob"),
    ("jobs", "", "batch/v1", true, "Job"),
    (
        "certificatesigningrequests",
        "csr",
        "certificates.k8s.io/v1",
        false,
        "CertificateSigningRequest",
    ),
    ("leases", "", "coordination.k8s.io/v1", true, "Lease"),
    (
        "endpointslices",
        "",
        "discovery.k8s.io/v1",
        true,
        "EndpointSlice",
    ),
    ("events", "ev", "events.k8s.io/v1", true, "Event"),
    (
        "ingressclasses",
        "",
        "networking.k8s.io/v1",
        false,
        "IngressClass",
    ),
    ("ingresses", "ing", "networking.k8s.io/v1", true, "Ingress"),
    (
        "networkpolicies",
        "netpol",
        "networking.k8s.io/v1",
        true,
        "NetworkPolicy",
    ),
    (
        "poddisruptionbudgets",
        "pdb",
        "policy/v1",
        true,
        "PodDisruptionBudget",
    ),
    (
        "clusterrolebindings",
        "",
        "rbac.authorization.k8s.io/v1",
        false,
        "ClusterRoleBinding",
    ),
    (
        "clusterroles",
        "",
        "rbac.authorization.k8s.io/v1",
        false,
        "ClusterRole",
    ),
    (
        "rolebindings",
        "",
        "rbac.authorization.k8s.io/v1",
        true,
        "RoleBinding",
    ),
    ("roles", "", "rbac.authorization.k8s.io/v1", true, "Role"),
    (
        "priorityclasses",
        "pc",
        "scheduling.k8s.io/v1",
        false,
        "PriorityClass",
    ),
    (
        "storageclasses",
        "sc",
        "storage.k8s.io/v1",
        false,
        "StorageClass",
    ),
];

#[test]
fn table_matches_kubectl_api_resources() {
    assert_eq!(RESOURCES.len(), API_RESOURCES.len());
    for &(name, short, api_version, namespaced, kind) in API_RESOURCES {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let r = by_gvr(group, version, name).unwrap_or_else(|| panic!("{api_version} {name}"));
        assert_eq!(r.short_names.join(","), short, "{name}");
        assert_eq!(r.api_version(), api_version);
        assert_eq!(r.namespaced(), namespaced, "{name}");
        assert_eq!(r.kind, kind);
        assert_eq!(r.list_kind, format!("{kind}List"));
        assert_eq!(r.singular, kind.to_lowercase(), "{name}");
    }
}

#[test]
fn categories_all_as_upstream() {
    let mut all: Vec<String> = in_category("all")
        .iter()
        .map(|r| r.qualified_resource())
        .collect();
    all.sort();
    assert_eq!(
        all,
        [
            "cronjobs.batch",
            "daemonsets.apps",
            "deployments.apps",
            "jobs.batch",
            "pods",
            "replicasets.apps",
            "replicationcontrollers",
            "services",
            "statefulsets.apps",
        ]
    );
    assert!(
        RESOURCES
            .iter()
            .all(|r| r.categories.iter().all(|c| *c == "all"))
    );
}

#[test]
fn verbs_as_upstream() {
    let full = "create,delete,deletecollection,get,list,patch,update,watch";
    for r in RESOURCES {
        let verbs: Vec<&str> = r.verbs.iter().map(|v| v.as_str()).collect();
        let want = if r.plural == "namespaces" {
            "create,delete,get,list,patch,update,watch"
        } else {
            full
        };
        assert_eq!(verbs.join(","), want, "{}", r.plural);
        let mut sorted = r.verbs.to_vec();
        sorted.sort();
        assert_eq!(sorted, r.verbs, "{} verbs sorted", r.plural);
    }
}

fn subresource_summary(r: &ResourceInfo) -> Vec<String> {
    r.subresources
        .iter()
        .map(|s| {
            let gv = s
                .kind_group_version
                .map(|(g, v)| format!("{g}/{v} "))
                .unwrap_or_default();
            let verbs: Vec<&str> = s.verbs.iter().map(|v| v.as_str()).collect();
            format!("{} {gv}{} [{}]", s.name, s.kind, verbs.join(","))
        })
        .collect()
}

#[test]
fn subresources_as_upstream() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "",
            "pods",
            &[
                "attach PodAttachOptions [create,get]",
                "binding Binding [create]",
                "ephemeralcontainers Pod [get,patch,update]",
                "eviction policy/v1 Eviction [create]",
                "exec PodExecOptions [create,get]",
                "log Pod [get]",
                "portforward PodPortForwardOptions [create,get]",
                "proxy PodProxyOptions [create,delete,get,patch,update]",
                "resize Pod [get,patch,update]",
                "status Pod [get,patch,update]",
            ],
        ),
        (
            "",
            "namespaces",
            &[
                "finalize Namespace [update]",
                "status Namespace [get,patch,update]",
            ],
        ),
        (
            "",
            "nodes",
            &[
                "proxy NodeProxyOptions [create,delete,get,patch,update]",
                "status Node [get,patch,update]",
            ],
        ),
        (
            "",
            "services",
            &[
                "proxy ServiceProxyOptions [create,delete,get,patch,update]",
                "status Service [get,patch,update]",
            ],
        ),
        (
            "",
            "replicationcontrollers",
            &[
                "scale autoscaling/v1 Scale [get,patch,update]",
                "status ReplicationController [get,patch,update]",
            ],
        ),
        (
            "",
            "serviceaccounts",
            &["token authentication.k8s.io/v1 TokenRequest [create]"],
        ),
        (
            "",
            "resourcequotas",
            &["status ResourceQuota [get,patch,update]"],
        ),
        (
            "",
            "persistentvolumes",
            &["status PersistentVolume [get,patch,update]"],
        ),
        (
            "",
            "persistentvolumeclaims",
            &["status PersistentVolumeClaim [get,patch,update]"],
        ),
        (
            "apps",
            "deployments",
            &[
                "scale autoscaling/v1 Scale [get,patch,update]",
                "status Deployment [get,patch,update]",
            ],
        ),
        (
            "apps",
            "replicasets",
            &[
                "scale autoscaling/v1 Scale [get,patch,update]",
                "status ReplicaSet [get,patch,update]",
            ],
        ),
        (
            "apps",
            "statefulsets",
            &[
                "scale autoscaling/v1 Scale [get,patch,update]",
                "status StatefulSet [get,patch,update]",
            ],
        ),
        (
            "apps",
            "daemonsets",
            &["status DaemonSet [get,patch,update]"],
        ),
        ("apps", "controllerrevisions", &[]),
        ("batch", "jobs", &["status Job [get,patch,update]"]),
        ("batch", "cronjobs", &["status CronJob [get,patch,update]"]),
        (
            "policy",
            "poddisruptionbudgets",
            &["status PodDisruptionBudget [get,patch,update]"],
        ),
        (
            "certificates.k8s.io",
            "certificatesigningrequests",
            &[
                "approval CertificateSigningRequest [get,patch,update]",
                "status CertificateSigningRequest [get,patch,update]",
            ],
        ),
        (
            "networking.k8s.io",
            "ingresses",
            &["status Ingress [get,patch,update]"],
        ),
        ("", "configmaps", &[]),
        ("", "secrets", &[]),
    ];
    for (group, plural, want) in cases {
        let r = by_gvr(group, "v1", plural).unwrap();
        assert_eq!(subresource_summary(r), *want, "{plural}");
    }
    let pods = by_gvr("", "v1", "pods").unwrap();
    assert_eq!(pods.subresource("log").unwrap().kind, "Pod");
    assert!(pods.subresource("scale").is_none());
}

#[test]
fn table_is_sorted_and_consistent() {
    for g in GROUPS {
        for v in g.versions {
            let plurals: Vec<&str> = for_group_version(g.name, v).map(|r| r.plural).collect();
            assert!(!plurals.is_empty(), "{} has resources", g.name);
            let mut sorted = plurals.clone();
            sorted.sort_unstable();
            assert_eq!(plurals, sorted, "{}/{v} sorted by plural", g.name);
        }
    }
    for r in RESOURCES {
        assert!(group(r.group).is_some_and(|g| g.versions.contains(&r.version)));
        let names: Vec<&str> = r.subresources.iter().map(|s| s.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "{} subresources sorted", r.plural);
        assert!(r.storage_prefix.ends_with('/'));
    }
    let priorities: Vec<u32> = GROUPS.iter().map(|g| g.priority).collect();
    let mut sorted = priorities.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(priorities, sorted);
}

#[test]
fn storage_keys_follow_architecture() {
    for r in RESOURCES {
        let (group, plural) = r.shares_storage_with.unwrap_or((r.group, r.plural));
        let want = if group.is_empty() {
            format!("/registry/{plural}/")
        } else {
            format!("/registry/{group}/{plural}/")
        };
        assert_eq!(r.storage_prefix, want, "{}", r.qualified_resource());
    }
    let pods = by_gvr("", "v1", "pods").unwrap();
    assert_eq!(pods.prefix(None), "/registry/pods/");
    assert_eq!(pods.prefix(Some("default")), "/registry/pods/default/");
    assert_eq!(
        pods.key(Some("default"), "web"),
        "/registry/pods/default/web"
    );
    assert_eq!(pods.key(None, "web"), "/registry/pods//web");
    let deploy = by_gvr("apps", "v1", "deployments").unwrap();
    assert_eq!(
        deploy.key(Some("ns"), "d"),
        "/registry/apps/deployments/ns/d"
    );
    let nodes = by_gvr("", "v1", "nodes").unwrap();
    assert_eq!(nodes.prefix(Some("ignored")), "/registry/nodes/");
    assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/nodes/n1");
    let sc = by_gvr("storage.k8s.io", "v1", "storageclasses").unwrap();
    assert_eq!(
        sc.key(None, "local"),
        "/registry/storage.k8s.io/storageclasses/local"
    );
}

#[test]
fn events_share_storage() {
    let core = by_gvr("", "v1", "events").unwrap();
    let ev = by_gvr("events.k8s.io", "v1", "events").unwrap();
    assert_eq!(ev.shares_storage_with, Some(("", "events")));
    assert_eq!(core.shares_storage_with, None);
    assert_eq!(ev.key(Some("ns"), "e"), core.key(Some("ns"), "e"));
    assert_eq!(
        RESOURCES
            .iter()
            .filter(|r| r.shares_storage_with.is_some())
            .count(),
        1
    );
}

#[test]
fn lookups() {
    assert_eq!(
        by_gvk("apps", "v1", "Deployment").unwrap().plural,
        "deployments"
    );
    assert_eq!(by_gvk("", "v1", "Event").unwrap().group, "");
    assert_eq!(
        by_gvk("events.k8s.io", "v1", "Event").unwrap().group,
        "events.k8s.io"
    );
    assert!(by_gvk("apps", "v1beta1", "Deployment").is_none());
    assert_eq!(by_api_version_kind("v1", "Pod").unwrap().plural, "pods");
    assert_eq!(
        by_api_version_kind("batch/v1", "CronJob").unwrap().plural,
        "cronjobs"
    );
    assert!(by_gvr("", "v1", "bindings").is_none());
    assert_eq!(for_group_version("batch", "v1").count(), 2);
    assert_eq!(for_group_version("", "v1").count(), 15);
    assert_eq!(group("").unwrap().preferred_version(), "v1");
    assert_eq!(api_groups().count(), 11);
    assert!(api_groups().all(|g| !g.name.is_empty()));
}

#[test]
fn kubectl_like_resolution() {
    let names = |input: &str| -> Vec<String> {
        resolve(input)
            .iter()
            .map(|r| format!("{}/{}", r.api_version(), r.plural))
            .collect()
    };
    assert_eq!(names("po"), ["v1/pods"]);
    assert_eq!(names("Pods"), ["v1/pods"]);
    assert_eq!(names("pod"), ["v1/pods"]);
    assert_eq!(names("deploy"), ["apps/v1/deployments"]);
    assert_eq!(names("deployment.apps"), ["apps/v1/deployments"]);
    assert_eq!(names("deployments.v1.apps"), ["apps/v1/deployments"]);
    assert_eq!(names("ev"), ["v1/events", "events.k8s.io/v1/events"]);
    assert_eq!(names("events.events.k8s.io"), ["events.k8s.io/v1/events"]);
    assert_eq!(
        names("csr"),
        ["certificates.k8s.io/v1/certificatesigningrequests"]
    );
    assert_eq!(names("netpol"), ["networking.k8s.io/v1/networkpolicies"]);
    assert_eq!(names("endpoints"), ["v1/endpoints"]);
    assert!(names("nope").is_empty());
    assert!(names("pods.apps").is_empty());
    assert!(names("").is_empty());
    assert!(names(".").is_empty());
    assert!(names("pods.v2.").is_empty());
}
