#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::plugins::testing::{handle, node, pod, run_filter, run_score, snapshot, verdict};
use serde_json::{Value, json};

fn labelled(name: &str, labels: Value) -> NodeInfo {
    node(json!({"metadata": {"name": name, "labels": labels}}))
}

fn required(terms: Value) -> Value {
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}})
}

#[test]
fn filter_table() {
    let plugin = new(None, &handle()).unwrap();
    let n = || labelled("node1", json!({"foo": "bar", "zone": "a", "gpus": "4"}));
    // (pod spec fields, fits)
    let cases = [
        (json!({}), true),
        (json!({"nodeSelector": {"foo": "bar"}}), true),
        (json!({"nodeSelector": {"foo": "baz"}}), false),
        (json!({"nodeSelector": {"foo": "bar", "zone": "b"}}), false),
        (
            json!({"affinity": required(json!([
            {"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar", "value2"]}]}]))}),
            true,
        ),
        (
            json!({"affinity": required(json!([
            {"matchExpressions": [{"key": "gpus", "operator": "Gt", "values": ["3"]}]}]))}),
            true,
        ),
        (
            json!({"affinity": required(json!([
            {"matchExpressions": [{"key": "gpus", "operator": "Lt", "values": ["3"]}]}]))}),
            false,
        ),
        (
            json!({"affinity": required(json!([
            {"matchExpressions": [{"key": "foo", "operator": "NotIn", "values": ["bar"]}]}]))}),
            false,
        ),
        (
            json!({"affinity": required(json!([
            {"matchExpressions": [{"key": "kernel", "operator": "DoesNotExist"}]}]))}),
            true,
        ),
        (
            json!({"affinity": required(json!([
            {"matchExpressions": [{"key": "kernel", "operator": "Exists"}]}]))}),
            false,
        ),
        // Terms are ORed.
        (
            json!({"affinity": required(json!([
            {"matchExpressions": [{"key": "kernel", "operator": "Exists"}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]))}),
            true,
        ),
        // Expressions of one term are ANDed.
        (
            json!({"affinity": required(json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                  {"key": "kernel", "operator": "Exists"}]}]))}),
            false,
        ),
        // An empty term matches nothing.
        (json!({"affinity": required(json!([{}]))}), false),
        // nodeSelector and affinity must both hold.
        (
            json!({"nodeSelector": {"foo": "baz"}, "affinity": required(json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]))}),
            false,
        ),
        (
            json!({"affinity": required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node1"]}]}]))}),
            true,
        ),
        (
            json!({"affinity": required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node1"]}]}]))}),
            false,
        ),
    ];
    for (extra, fits) in cases {
        let mut spec = json!({"containers": []});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let p = pod(json!({"spec": spec}));
        let (_, s, statuses) = run_filter(plugin.as_ref(), &p, &snapshot(vec![n()]));
        if s.is_skip() {
            assert!(fits, "{extra}");
            continue;
        }
        assert!(s.is_success(), "{extra}: {s:?}");
        if fits {
            assert!(statuses[0].is_success(), "{extra}");
        } else {
            assert_eq!(
                verdict(&statuses[0]),
                (
                    Code::UnschedulableAndUnresolvable,
                    vec![ERR_REASON_POD.to_owned()]
                ),
                "{extra}"
            );
        }
    }
}

#[test]
fn pre_filter_skips_and_narrows() {
    let plugin = new(None, &handle()).unwrap();
    let snap = snapshot(vec![
        labelled("node1", json!({})),
        labelled("node2", json!({})),
    ]);
    let (_, s, _) = run_filter(
        plugin.as_ref(),
        &pod(json!({"spec": {"containers": []}})),
        &snap,
    );
    assert!(s.is_skip());

    let p = pod(
        json!({"spec": {"containers": [], "affinity": required(json!([
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node1"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node2"]}]}]))}}),
    );
    let (r, s, _) = run_filter(plugin.as_ref(), &p, &snap);
    assert!(s.is_success());
    assert_eq!(
        r.unwrap().node_names.unwrap(),
        BTreeSet::from(["node1".to_owned(), "node2".to_owned()])
    );

    // A term without a name restriction allows every node.
    let p = pod(
        json!({"spec": {"containers": [], "affinity": required(json!([
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node1"]}]},
        {"matchExpressions": [{"key": "x", "operator": "Exists"}]}]))}}),
    );
    let (r, s, _) = run_filter(plugin.as_ref(), &p, &snap);
    assert!(s.is_success() && r.is_none());

    // Disjoint names within one term conflict.
    let p = pod(
        json!({"spec": {"containers": [], "affinity": required(json!([
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node1"]},
                         {"key": "metadata.name", "operator": "In", "values": ["node2"]}]}]))}}),
    );
    let (_, s, _) = run_filter(plugin.as_ref(), &p, &snap);
    assert_eq!(
        verdict(&s),
        (
            Code::UnschedulableAndUnresolvable,
            vec![ERR_REASON_CONFLICT.to_owned()]
        )
    );
}

#[test]
fn added_affinity_is_enforced_and_scored() {
    let args = json!({"addedAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["b"]}]}}]}});
    let plugin = new(Some(&args), &handle()).unwrap();
    let snap = snapshot(vec![
        labelled("n1", json!({"zone": "a"})),
        labelled("n2", json!({"zone": "b"})),
        labelled("n3", json!({"zone": "c"})),
    ]);
    let p = pod(json!({"spec": {"containers": []}}));
    let (_, s, statuses) = run_filter(plugin.as_ref(), &p, &snap);
    assert!(s.is_success(), "no skip with addedAffinity");
    assert!(statuses[0].is_success() && statuses[1].is_success());
    assert_eq!(statuses[2].reasons(), [ERR_REASON_ENFORCED]);
    assert_eq!(run_score(plugin.as_ref(), &p, &snap), vec![0, 100, 0]);
}

#[test]
fn args_errors_name_the_field() {
    let args = json!({"addedAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}]}}});
    let err = new(Some(&args), &handle()).err().unwrap();
    assert!(
        err.starts_with("addedAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Near\""),
        "{err}"
    );
    let args = json!({"addedAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}}]}});
    let err = new(Some(&args), &handle()).err().unwrap();
    assert!(
        err.starts_with("addedAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchFields[0].values: Invalid value"),
        "{err}"
    );
}

#[test]
fn preferred_terms_score_by_weight_sum() {
    let plugin = new(None, &handle()).unwrap();
    let snap = snapshot(vec![
        labelled("n1", json!({"foo": "bar"})),
        labelled("n2", json!({"foo": "bar", "key": "value"})),
        labelled("n3", json!({"az": "az1"})),
    ]);
    let p = pod(
        json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 2, "preference": {"matchExpressions": [
                {"key": "foo", "operator": "In", "values": ["bar"]}]}},
            {"weight": 4, "preference": {"matchExpressions": [
                {"key": "key", "operator": "In", "values": ["value"]}]}},
            {"weight": 5, "preference": {"matchExpressions": [
                {"key": "az", "operator": "In", "values": ["az1"]}]}}]}}}}),
    );
    // Raw 2, 6, 5; max 6 → 33, 100, 83.
    assert_eq!(run_score(plugin.as_ref(), &p, &snap), vec![33, 100, 83]);
    // Without preferences (and no added terms) PreScore skips.
    assert!(
        run_score(
            plugin.as_ref(),
            &pod(json!({"spec": {"containers": []}})),
            &snap
        )
        .is_empty()
    );
}
