#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

use serde_json::{Value, json};

use super::*;

fn list(pairs: &[(&str, &str)]) -> ResourceList {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity::parse(v).unwrap()))
        .collect()
}

fn printed(l: &ResourceList) -> Vec<(String, String)> {
    l.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

fn container(name: &str, requests: Value, limits: Value) -> Value {
    json!({"name": name, "image": "i", "resources": {"requests": requests, "limits": limits}})
}

fn pod(containers: Vec<Value>) -> Value {
    json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": containers}})
}

fn quota(name: &str, hard: &[(&str, &str)], used: Option<&[(&str, &str)]>) -> Value {
    let mut q = json!({
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"hard": to_json(&list(hard))},
        "status": {"hard": to_json(&list(hard))},
    });
    if let Some(u) = used {
        q["status"]["used"] = to_json(&list(u));
    }
    q
}

#[test]
fn pod_usage_sums_containers_and_takes_the_largest_init_container() {
    let sidecar = |cpu: &str| {
        let mut c = container("s", json!({"cpu": cpu}), json!({}));
        c["restartPolicy"] = json!("Always");
        c
    };
    // (pod, expected usage without count/pods and pods)
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (pod(vec![container("c", json!({}), json!({}))]), vec![]),
        (
            pod(vec![
                container(
                    "a",
                    json!({"cpu": "100m", "memory": "64Mi"}),
                    json!({"cpu": "1"}),
                ),
                container(
                    "b",
                    json!({"cpu": "200m", "memory": "64Mi"}),
                    json!({"memory": "1Gi"}),
                ),
            ]),
            vec![
                ("cpu", "300m"),
                ("limits.cpu", "1"),
                ("limits.memory", "1Gi"),
                ("memory", "128Mi"),
                ("requests.cpu", "300m"),
                ("requests.memory", "128Mi"),
            ],
        ),
        (
            {
                let mut p = pod(vec![container("a", json!({"cpu": "100m"}), json!({}))]);
                p["spec"]["initContainers"] =
                    json!([container("i", json!({"cpu": "500m"}), json!({}))]);
                p["spec"]["overhead"] = json!({"cpu": "10m"});
                p
            },
            vec![("cpu", "510m"), ("requests.cpu", "510m")],
        ),
        (
            {
                // A sidecar runs alongside later init containers and the
                // main containers.
                let mut p = pod(vec![container("a", json!({"cpu": "100m"}), json!({}))]);
                p["spec"]["initContainers"] = json!([
                    sidecar("200m"),
                    container("i", json!({"cpu": "250m"}), json!({}))
                ]);
                p
            },
            vec![("cpu", "450m"), ("requests.cpu", "450m")],
        ),
        (
            pod(vec![container(
                "a",
                json!({"ephemeral-storage": "1Gi", "example.com/gpu": "2", "hugepages-2Mi": "4Mi"}),
                json!({"ephemeral-storage": "2Gi"}),
            )]),
            vec![
                ("ephemeral-storage", "1Gi"),
                ("hugepages-2Mi", "4Mi"),
                ("limits.ephemeral-storage", "2Gi"),
                ("requests.ephemeral-storage", "1Gi"),
                ("requests.example.com/gpu", "2"),
                ("requests.hugepages-2Mi", "4Mi"),
            ],
        ),
    ];
    for (i, (p, want)) in cases.iter().enumerate() {
        let mut want = list(want);
        want.insert("pods".into(), Quantity::from_int(1));
        want.insert("count/pods".into(), Quantity::from_int(1));
        assert_eq!(printed(&pod_usage(p, 0)), printed(&want), "case {i}");
    }
}

#[test]
fn terminal_and_long_terminating_pods_only_count_as_objects() {
    let base = pod(vec![container("c", json!({"cpu": "1"}), json!({}))]);
    let at = "2024-01-01T00:00:00Z";
    let t0 = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp();
    // (status.phase, deletion grace, now, charged)
    let cases = [
        (None, None, t0, true),
        (Some("Running"), None, t0, true),
        (Some("Pending"), None, t0, true),
        (Some("Succeeded"), None, t0, false),
        (Some("Failed"), None, t0, false),
        (Some("Running"), Some(30), t0 + 30, true),
        (Some("Running"), Some(30), t0 + 31, false),
    ];
    for (i, (phase, grace, now, charged)) in cases.into_iter().enumerate() {
        let mut p = base.clone();
        if let Some(ph) = phase {
            p["status"] = json!({"phase": ph});
        }
        if let Some(g) = grace {
            p["metadata"]["deletionTimestamp"] = json!(at);
            p["metadata"]["deletionGracePeriodSeconds"] = json!(g);
        }
        let u = pod_usage(&p, now);
        assert_eq!(u.contains_key("pods"), charged, "case {i}");
        assert_eq!(u.contains_key("requests.cpu"), charged, "case {i}");
        assert_eq!(
            u.get("count/pods"),
            Some(&Quantity::from_int(1)),
            "case {i}"
        );
    }
}

#[test]
fn scopes_match_pods() {
    let best_effort = pod(vec![container("c", json!({}), json!({}))]);
    let burstable = pod(vec![container("c", json!({"memory": "1Mi"}), json!({}))]);
    let mut terminating = best_effort.clone();
    terminating["spec"]["activeDeadlineSeconds"] = json!(10);
    let mut high = burstable.clone();
    high["spec"]["priorityClassName"] = json!("high");
    let scope = |name: &str, op: &str, values: &[&str]| ScopeRequirement {
        scope_name: name.into(),
        operator: op.into(),
        values: values.iter().map(|s| (*s).to_owned()).collect(),
    };
    // (scope, pod, matches)
    let cases = [
        (scope("BestEffort", "Exists", &[]), &best_effort, true),
        (scope("BestEffort", "Exists", &[]), &burstable, false),
        (scope("NotBestEffort", "Exists", &[]), &burstable, true),
        (scope("NotBestEffort", "Exists", &[]), &best_effort, false),
        (scope("Terminating", "Exists", &[]), &terminating, true),
        (scope("Terminating", "Exists", &[]), &best_effort, false),
        (scope("NotTerminating", "Exists", &[]), &best_effort, true),
        (scope("NotTerminating", "Exists", &[]), &terminating, false),
        (scope("PriorityClass", "In", &["high", "x"]), &high, true),
        (scope("PriorityClass", "In", &["low"]), &high, false),
        (scope("PriorityClass", "In", &["high"]), &burstable, false),
        (scope("PriorityClass", "NotIn", &["low"]), &high, true),
        (scope("PriorityClass", "NotIn", &["high"]), &high, false),
        (scope("PriorityClass", "NotIn", &["high"]), &burstable, true),
        (scope("PriorityClass", "Exists", &[]), &high, true),
        (scope("PriorityClass", "Exists", &[]), &burstable, false),
        (
            scope("PriorityClass", "DoesNotExist", &[]),
            &burstable,
            false,
        ),
    ];
    for (i, (s, p, want)) in cases.iter().enumerate() {
        assert_eq!(
            Evaluator::Pods.matches_scope(s, p),
            *want,
            "case {i}: {s:?}"
        );
        // Only pods have scopes.
        assert!(!Evaluator::Services.matches_scope(s, p), "case {i}");
    }
}

#[test]
fn quota_scopes_combine_scopes_and_the_scope_selector() {
    let mut q = quota("q", &[("pods", "1")], None);
    q["spec"]["scopes"] = json!(["NotTerminating"]);
    q["spec"]["scopeSelector"] = json!({"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}
    ]});
    let got = quota_scopes(&q);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].operator, "Exists");
    assert_eq!(got[1].values, vec!["high".to_owned()]);
    let mut p = pod(vec![container("c", json!({}), json!({}))]);
    assert!(!Evaluator::Pods.matches_scopes(&q, &p));
    p["spec"]["priorityClassName"] = json!("high");
    assert!(Evaluator::Pods.matches_scopes(&q, &p));
    p["spec"]["activeDeadlineSeconds"] = json!(5);
    assert!(!Evaluator::Pods.matches_scopes(&q, &p));
}

#[test]
fn other_evaluators_count_objects() {
    let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
    let lb_no_alloc = json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
        "ports": [{"port": 80, "nodePort": 30001}, {"port": 443}]}});
    let np = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    let cip = json!({"spec": {"ports": [{"port": 80}]}});
    let pvc = json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "gold",
        "resources": {"requests": {"storage": "1Gi"}}}});
    // (group, resource, object, expected)
    let cases: Vec<(&str, &str, Value, Vec<(&str, &str)>)> = vec![
        (
            "",
            "services",
            lb,
            vec![
                ("count/services", "1"),
                ("services", "1"),
                ("services.loadbalancers", "1"),
                ("services.nodeports", "2"),
            ],
        ),
        (
            "",
            "services",
            lb_no_alloc,
            vec![
                ("count/services", "1"),
                ("services", "1"),
                ("services.loadbalancers", "1"),
                ("services.nodeports", "1"),
            ],
        ),
        (
            "",
            "services",
            np,
            vec![
                ("count/services", "1"),
                ("services", "1"),
                ("services.loadbalancers", "0"),
                ("services.nodeports", "1"),
            ],
        ),
        (
            "",
            "services",
            cip,
            vec![
                ("count/services", "1"),
                ("services", "1"),
                ("services.loadbalancers", "0"),
                ("services.nodeports", "0"),
            ],
        ),
        (
            "",
            "persistentvolumeclaims",
            pvc,
            vec![
                ("count/persistentvolumeclaims", "1"),
                (
                    "gold.storageclass.storage.k8s.io/persistentvolumeclaims",
                    "1",
                ),
                ("gold.storageclass.storage.k8s.io/requests.storage", "1Gi"),
                ("persistentvolumeclaims", "1"),
                ("requests.storage", "1Gi"),
            ],
        ),
        (
            "",
            "configmaps",
            json!({}),
            vec![("configmaps", "1"), ("count/configmaps", "1")],
        ),
        (
            "",
            "secrets",
            json!({}),
            vec![("count/secrets", "1"), ("secrets", "1")],
        ),
        (
            "apps",
            "deployments",
            json!({}),
            vec![("count/deployments.apps", "1")],
        ),
    ];
    for (i, (g, r, obj, want)) in cases.iter().enumerate() {
        let e = Evaluator::for_resource(g, r);
        let got = e.usage(obj, 0);
        assert_eq!(printed(&got), printed(&list(want)), "case {i}");
        let names: Vec<String> = got.keys().cloned().collect();
        assert_eq!(
            e.matching_resources(&names),
            names,
            "case {i} tracks its usage"
        );
    }
}

#[test]
fn matching_resources_pick_each_evaluators_names() {
    let hard: Vec<String> = [
        "pods",
        "requests.cpu",
        "limits.memory",
        "requests.example.com/gpu",
        "requests.nvidia.com/gpu",
        "configmaps",
        "count/configmaps",
        "services.nodeports",
        "requests.storage",
        "gold.storageclass.storage.k8s.io/requests.storage",
        "count/deployments.apps",
        "requests.kubernetes.io/foo",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let got = |g: &str, r: &str| Evaluator::for_resource(g, r).matching_resources(&hard);
    assert_eq!(
        got("", "pods"),
        [
            "pods",
            "requests.cpu",
            "limits.memory",
            "requests.example.com/gpu",
            "requests.nvidia.com/gpu"
        ]
    );
    assert_eq!(got("", "configmaps"), ["configmaps", "count/configmaps"]);
    assert_eq!(got("", "services"), ["services.nodeports"]);
    assert_eq!(
        got("", "persistentvolumeclaims"),
        [
            "requests.storage",
            "gold.storageclass.storage.k8s.io/requests.storage"
        ]
    );
    assert_eq!(got("apps", "deployments"), ["count/deployments.apps"]);
    assert!(got("", "secrets").is_empty());
}

#[test]
fn admission_messages_and_new_usage() {
    let cpu_pod = pod(vec![container(
        "c",
        json!({"cpu": "500m"}),
        json!({"cpu": "1"}),
    )]);
    let bare = pod(vec![container("c", json!({}), json!({}))]);
    // (quotas, object, expected: Ok(new used per quota) or Err(message))
    let cases: Vec<(
        Vec<Value>,
        &Value,
        Result<Vec<(usize, Vec<(&str, &str)>)>, &str>,
    )> = vec![
        (vec![], &bare, Ok(vec![])),
        (
            vec![quota("q", &[("pods", "2")], Some(&[("pods", "1")]))],
            &bare,
            Ok(vec![(0, vec![("pods", "2")])]),
        ),
        (
            vec![quota("q", &[("pods", "2")], Some(&[("pods", "2")]))],
            &bare,
            Err("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"),
        ),
        (
            vec![quota(
                "q",
                &[("pods", "10"), ("requests.cpu", "1")],
                Some(&[("pods", "1"), ("requests.cpu", "600m")]),
            )],
            &cpu_pod,
            Err(
                "exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1",
            ),
        ),
        (
            vec![quota(
                "q",
                &[("pods", "10"), ("requests.cpu", "1"), ("limits.cpu", "2")],
                Some(&[("pods", "1"), ("requests.cpu", "500m"), ("limits.cpu", "1")]),
            )],
            &cpu_pod,
            Ok(vec![(
                0,
                vec![("limits.cpu", "2"), ("pods", "2"), ("requests.cpu", "1")],
            )]),
        ),
        (
            vec![quota(
                "q",
                &[("requests.cpu", "1"), ("limits.cpu", "2")],
                Some(&[("requests.cpu", "0"), ("limits.cpu", "0")]),
            )],
            &bare,
            Err("failed quota: q: must specify limits.cpu for: c; requests.cpu for: c"),
        ),
        (
            vec![quota("q", &[("pods", "1")], None)],
            &bare,
            Err("status unknown for quota: q, resources: pods"),
        ),
        (
            // A quota on other resources, and one the controller has not
            // seen yet (no status.hard), do not concern the pod.
            vec![
                quota("cm", &[("configmaps", "1")], Some(&[("configmaps", "1")])),
                json!({"metadata": {"name": "new"}, "spec": {"hard": {"pods": "0"}}}),
                quota("q", &[("count/pods", "3")], Some(&[("count/pods", "0")])),
            ],
            &bare,
            Ok(vec![(2, vec![("count/pods", "1")])]),
        ),
    ];
    for (i, (quotas, obj, want)) in cases.into_iter().enumerate() {
        let got = admit(&Evaluator::Pods, &quotas, obj, 0).map(|v| {
            v.into_iter()
                .map(|(i, l)| (i, printed(&l)))
                .collect::<Vec<_>>()
        });
        let want = want
            .map(|v| {
                v.into_iter()
                    .map(|(i, l)| (i, printed(&list(&l))))
                    .collect::<Vec<_>>()
            })
            .map_err(str::to_owned);
        assert_eq!(got, want, "case {i}");
    }
}

#[test]
fn scoped_quotas_only_charge_matching_pods() {
    let mut q = quota("be", &[("pods", "1")], Some(&[("pods", "1")]));
    q["spec"]["scopes"] = json!(["BestEffort"]);
    let burstable = pod(vec![container("c", json!({"cpu": "1"}), json!({}))]);
    let best_effort = pod(vec![container("c", json!({}), json!({}))]);
    assert_eq!(
        admit(&Evaluator::Pods, std::slice::from_ref(&q), &burstable, 0),
        Ok(vec![])
    );
    assert!(admit(&Evaluator::Pods, &[q], &best_effort, 0).is_err());
}

#[test]
fn calculate_used_recounts_matching_objects() {
    let q = quota(
        "q",
        &[
            ("pods", "5"),
            ("requests.memory", "1Gi"),
            ("configmaps", "3"),
            ("example.com/unknown", "1"),
        ],
        None,
    );
    let hard = resource_list(q.pointer("/spec/hard"));
    let running = pod(vec![container("c", json!({"memory": "100Mi"}), json!({}))]);
    let mut done = running.clone();
    done["status"] = json!({"phase": "Succeeded"});
    let pods = [running.clone(), running, done];
    let cms = [json!({}), json!({})];
    let previous = list(&[("pods", "9"), ("example.com/unknown", "1"), ("gone", "1")]);
    let (pe, ce, se) = (
        Evaluator::Pods,
        Evaluator::for_resource("", "configmaps"),
        Evaluator::Services,
    );
    let evaluated: Vec<(&Evaluator, &[Value])> =
        vec![(&pe, &pods[..]), (&ce, &cms[..]), (&se, &[][..])];
    let used = calculate_used(&q, &hard, &previous, evaluated, 0);
    assert_eq!(
        printed(&used),
        printed(&list(&[
            ("configmaps", "2"),
            ("example.com/unknown", "1"),
            ("pods", "2"),
            ("requests.memory", "200Mi")
        ]))
    );
    let none: Vec<(&Evaluator, &[Value])> = vec![(&pe, &[][..])];
    let zero = calculate_used(&q, &hard, &ResourceList::new(), none, 0);
    assert_eq!(
        printed(&zero),
        printed(&list(&[("pods", "0"), ("requests.memory", "0")]))
    );
}

#[test]
fn list_helpers() {
    let a = list(&[("cpu", "100m"), ("pods", "1")]);
    let b = list(&[("cpu", "200m"), ("memory", "1Gi")]);
    assert_eq!(
        printed(&add(&a, &b)),
        printed(&list(&[("cpu", "300m"), ("memory", "1Gi"), ("pods", "1")]))
    );
    assert_eq!(less_than_or_equal(&a, &b), (true, vec![]));
    assert_eq!(less_than_or_equal(&b, &a), (false, vec!["cpu".to_owned()]));
    assert_eq!(pretty_print(&a), "cpu=100m,pods=1");
    assert!(equals(&a, &list(&[("cpu", "0.1"), ("pods", "1")])));
    assert!(!equals(&a, &b));
    assert!(is_zero(&list(&[("cpu", "0")])));
    assert_eq!(to_json(&a), json!({"cpu": "100m", "pods": "1"}));
}
