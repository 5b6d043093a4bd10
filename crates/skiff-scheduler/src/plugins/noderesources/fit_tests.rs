#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::plugins::testing::{
    handle, node_with_pods, pod, run_filter, run_score, snapshot, verdict,
};
use serde_json::json;

fn requesting(name: &str, requests: Value) -> PodInfo {
    pod(json!({"metadata": {"name": name}, "spec": {"containers": [
        {"name": "c", "resources": {"requests": requests}}]}}))
}

fn machine(name: &str, allocatable: Value, pods: Vec<PodInfo>) -> NodeInfo {
    node_with_pods(
        json!({"metadata": {"name": name}, "status": {"allocatable": allocatable}}),
        pods,
    )
}

fn filter_with(args: Value, pod: &PodInfo, node: NodeInfo) -> Status {
    let plugin = new(Some(&args), &handle()).unwrap();
    let (_, s, statuses) = run_filter(plugin.as_ref(), pod, &snapshot(vec![node]));
    assert!(s.is_success());
    statuses.into_iter().next().unwrap()
}

#[test]
fn filter_table() {
    let alloc = json!({"cpu": "10", "memory": "20", "ephemeral-storage": "20", "pods": "32"});
    let full = || requesting("e", json!({"cpu": "10", "memory": "20"}));
    let half = || requesting("e", json!({"cpu": "5", "memory": "10"}));
    let u = Code::Unschedulable;
    let uu = Code::UnschedulableAndUnresolvable;
    // (pod requests, existing pods, args, expected (code, reasons) or None)
    type Case<'a> = (Value, Vec<PodInfo>, Value, Option<(Code, Vec<&'a str>)>);
    let cases: Vec<Case> = vec![
        (json!({}), vec![full()], json!({}), None),
        (
            json!({"cpu": "1", "memory": "1"}),
            vec![half()],
            json!({}),
            None,
        ),
        (
            json!({"cpu": "1", "memory": "1"}),
            vec![full()],
            json!({}),
            Some((u, vec!["Insufficient cpu", "Insufficient memory"])),
        ),
        (
            json!({"cpu": "6"}),
            vec![half()],
            json!({}),
            Some((u, vec!["Insufficient cpu"])),
        ),
        // Asking for more than the node has at all cannot be fixed by preemption.
        (
            json!({"cpu": "11"}),
            vec![],
            json!({}),
            Some((uu, vec!["Insufficient cpu"])),
        ),
        (
            json!({"cpu": "11", "memory": "1"}),
            vec![full()],
            json!({}),
            Some((uu, vec!["Insufficient cpu", "Insufficient memory"])),
        ),
        (
            json!({"ephemeral-storage": "25"}),
            vec![],
            json!({}),
            Some((uu, vec!["Insufficient ephemeral-storage"])),
        ),
        (
            json!({"example.com/aaa": "1"}),
            vec![],
            json!({}),
            Some((uu, vec!["Insufficient example.com/aaa"])),
        ),
        (
            json!({"example.com/aaa": "1"}),
            vec![],
            json!({"ignoredResources": ["example.com/aaa"]}),
            None,
        ),
        (
            json!({"example.com/aaa": "1"}),
            vec![],
            json!({"ignoredResourceGroups": ["example.com"]}),
            None,
        ),
        // Hugepages are not extended resources and cannot be ignored.
        (
            json!({"hugepages-2Mi": "2Mi"}),
            vec![],
            json!({"ignoredResourceGroups": ["hugepages-2Mi"]}),
            Some((uu, vec!["Insufficient hugepages-2Mi"])),
        ),
    ];
    for (i, (reqs, existing, args, want)) in cases.into_iter().enumerate() {
        let s = filter_with(
            args,
            &requesting("p", reqs),
            machine("n", alloc.clone(), existing),
        );
        match want {
            None => assert!(s.is_success(), "case {i}: {s:?}"),
            Some((code, reasons)) => assert_eq!(
                verdict(&s),
                (code, reasons.into_iter().map(str::to_owned).collect()),
                "case {i}"
            ),
        }
    }
}

#[test]
fn too_many_pods() {
    let alloc = json!({"cpu": "10", "memory": "20", "pods": "1"});
    let s = filter_with(
        json!({}),
        &requesting("p", json!({})),
        machine("n", alloc.clone(), vec![requesting("e", json!({}))]),
    );
    assert_eq!(
        verdict(&s),
        (Code::Unschedulable, vec!["Too many pods".to_owned()])
    );
    let s = filter_with(
        json!({}),
        &requesting("p", json!({"cpu": "1"})),
        machine("n", alloc, vec![requesting("e", json!({"cpu": "10"}))]),
    );
    assert_eq!(
        verdict(&s),
        (
            Code::Unschedulable,
            vec!["Too many pods".to_owned(), "Insufficient cpu".to_owned()]
        )
    );
}

fn score_with(args: Value, pod: &PodInfo, nodes: Vec<NodeInfo>) -> Vec<i64> {
    let plugin = new(Some(&args), &handle()).unwrap();
    run_score(plugin.as_ref(), pod, &snapshot(nodes))
}

fn two_nodes() -> Vec<NodeInfo> {
    vec![
        machine(
            "n1",
            json!({"cpu": "4", "memory": "10000", "pods": "110"}),
            vec![],
        ),
        machine(
            "n2",
            json!({"cpu": "6", "memory": "10000", "pods": "110"}),
            vec![],
        ),
    ]
}

#[test]
fn least_allocated_scores() {
    let p = requesting("p", json!({"cpu": "3", "memory": "5000"}));
    // n1: cpu (4000-3000)*100/4000 = 25, mem 50 → 37; n2: 50, 50 → 50.
    assert_eq!(score_with(json!({}), &p, two_nodes()), vec![37, 50]);
    // Weights cpu 1, memory 3 on n1: (25 + 150) / 4 = 43.
    let args = json!({"scoringStrategy": {"type": "LeastAllocated", "resources": [
        {"name": "cpu", "weight": 1}, {"name": "memory", "weight": 3}]}});
    assert_eq!(score_with(args, &p, two_nodes())[0], 43);
    // Existing pods count; a pod without requests counts 100m / 200Mi:
    // cpu (1000-100-100)*100/1000 = 80, mem (1Gi-400Mi)*100/1Gi = 60 → 70.
    let n = machine(
        "n",
        json!({"cpu": "1", "memory": "1Gi", "pods": "110"}),
        vec![requesting("e", json!({}))],
    );
    assert_eq!(
        score_with(json!({}), &requesting("p", json!({})), vec![n]),
        vec![70]
    );
}

#[test]
fn most_allocated_scores() {
    let p = requesting("p", json!({"cpu": "3", "memory": "5000"}));
    let args = json!({"scoringStrategy": {"type": "MostAllocated"}});
    // n1: cpu 75, mem 50 → 62; n2: 50, 50 → 50.
    assert_eq!(score_with(args.clone(), &p, two_nodes()), vec![62, 50]);
    // Requests beyond capacity count as full.
    let big = requesting("p", json!({"cpu": "8", "memory": "5000"}));
    assert_eq!(score_with(args, &big, two_nodes()), vec![75, 75]);
}

#[test]
fn requested_to_capacity_ratio_scores() {
    let p = requesting("p", json!({"cpu": "3", "memory": "5000"}));
    let up = json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
        "requestedToCapacityRatio": {"shape": [
            {"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]}}});
    // n1: cpu 75%, mem 50% → 75, 50 → round(62.5) = 63; n2 → 50.
    assert_eq!(score_with(up, &p, two_nodes()), vec![63, 50]);
    let down = json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
        "requestedToCapacityRatio": {"shape": [
            {"utilization": 0, "score": 10}, {"utilization": 100, "score": 0}]}}});
    // n1: 25, 50 → round(37.5) = 38; n2: 50.
    assert_eq!(score_with(down, &p, two_nodes()), vec![38, 50]);
    // A resource scoring 0 does not dilute the others: cpu 0% → 0 is left
    // out, memory 50% → 50.
    let bump = json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
        "requestedToCapacityRatio": {"shape": [
            {"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]}}});
    let memory_only = requesting("p", json!({"cpu": "0", "memory": "5000"}));
    let n = machine(
        "n",
        json!({"cpu": "4", "memory": "10000", "pods": "110"}),
        vec![],
    );
    assert_eq!(score_with(bump, &memory_only, vec![n]), vec![50]);
}

#[test]
fn extended_resources_score_only_when_requested() {
    let args = json!({"scoringStrategy": {"type": "MostAllocated", "resources": [
        {"name": "example.com/gpu", "weight": 1}, {"name": "cpu", "weight": 1}]}});
    let n = || {
        machine(
            "n",
            json!({"cpu": "4", "memory": "10000", "example.com/gpu": "4",
        "pods": "110"}),
            vec![],
        )
    };
    // gpu 1/4 → 25, cpu 2000/4000 → 50 → 37.
    let p = requesting("p", json!({"cpu": "2", "example.com/gpu": "1"}));
    assert_eq!(score_with(args.clone(), &p, vec![n()]), vec![37]);
    // Not requested: only cpu counts.
    let p = requesting("p", json!({"cpu": "2"}));
    assert_eq!(score_with(args, &p, vec![n()]), vec![50]);
}

#[test]
fn args_validation() {
    let cases = [
        (
            json!({"scoringStrategy": {"type": "X"}}),
            "scoringStrategy.type: Unsupported value: \"X\": supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\"",
        ),
        (
            json!({"scoringStrategy": {"resources": [{"name": "cpu", "weight": -1}]}}),
            "scoringStrategy.resources[0].weight: Invalid value: -1: resource weight of cpu not in valid range (0, 100]",
        ),
        (
            json!({"scoringStrategy": {"resources": [{"name": "gpu", "weight": 101}]}}),
            "scoringStrategy.resources[0].weight: Invalid value: 101: resource weight of gpu not in valid range (0, 100]",
        ),
        (
            json!({"scoringStrategy": {"type": "RequestedToCapacityRatio"}}),
            "scoringStrategy.shape: Required value: at least one point must be specified",
        ),
        (
            json!({"scoringStrategy": {"type": "RequestedToCapacityRatio", "requestedToCapacityRatio":
            {"shape": [{"utilization": 50, "score": 1}, {"utilization": 40, "score": 11}]}}}),
            "[scoringStrategy.shape[1].utilization: Invalid value: 40: utilization values must be sorted in increasing order, scoringStrategy.shape[1].score: Invalid value: 11: not in valid range [0, 10]]",
        ),
        (
            json!({"ignoredResourceGroups": ["example.com/aa"]}),
            "ignoredResourceGroups[0]: Invalid value: \"example.com/aa\": resource group name can't contain '/'",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(
            new(Some(&args), &handle()).err().as_deref(),
            Some(want),
            "{args}"
        );
    }
    assert!(new(Some(&json!({"ignoredResources": ["bad name!"]})), &handle()).is_err());
    assert!(new(None, &handle()).is_ok());
    // A zero weight is defaulted to 1, as upstream's v1 defaulting does.
    let args = json!({"scoringStrategy": {"resources": [{"name": "cpu", "weight": 0}]}});
    let fit = Fit::from_args(Some(&args)).unwrap();
    assert_eq!(fit.scorer().resources[0].weight, 1);
}

#[test]
fn extended_resource_names() {
    assert!(is_extended_resource_name("example.com/gpu"));
    assert!(!is_extended_resource_name("kubernetes.io/foo"));
    assert!(!is_extended_resource_name("cpu"));
    assert!(!is_extended_resource_name("hugepages-2Mi"));
}
