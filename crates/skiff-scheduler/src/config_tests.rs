#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn registered() -> BTreeSet<&'static str> {
    DEFAULT_MULTI_POINT
        .iter()
        .map(|(n, _)| *n)
        .chain(["Foo"])
        .collect()
}

const HEAD: &str = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";

fn parse(body: &str) -> Result<KubeSchedulerConfiguration, ConfigError> {
    KubeSchedulerConfiguration::parse(&format!("{HEAD}{body}"), &registered())
}

#[test]
fn defaults_are_upstreams() {
    let c = parse("").unwrap();
    assert_eq!(c.parallelism, 16);
    assert_eq!(c.percentage_of_nodes_to_score, None);
    assert_eq!(
        (c.pod_initial_backoff_seconds, c.pod_max_backoff_seconds),
        (1, 10)
    );
    assert!(c.leader_election.leader_elect);
    assert_eq!(c.profiles.len(), 1);
    let p = &c.profiles[0];
    assert_eq!(p.scheduler_name, "default-scheduler");
    let weight = |n: &str| {
        p.multi_point
            .enabled
            .iter()
            .find(|r| r.name == n)
            .unwrap()
            .weight
    };
    assert_eq!(weight("TaintToleration"), Some(3));
    assert_eq!(weight("NodeAffinity"), Some(2));
    assert_eq!(weight("PodTopologySpread"), Some(2));
    assert_eq!(weight("InterPodAffinity"), Some(2));
    assert_eq!(weight("NodeResourcesFit"), Some(1));
    assert_eq!(p.multi_point.enabled.len(), DEFAULT_MULTI_POINT.len());
}

#[test]
fn multi_point_merge_replaces_in_place_and_appends() {
    let c = parse(
        "profiles:\n- plugins:\n    multiPoint:\n      enabled:\n      - name: Foo\n      - name: NodeAffinity\n        weight: 7\n      disabled:\n      - name: ImageLocality\n",
    )
    .unwrap();
    let mp = &c.profiles[0].multi_point;
    let names: Vec<&str> = mp.enabled.iter().map(|r| r.name.as_str()).collect();
    let na = names.iter().position(|n| *n == "NodeAffinity").unwrap();
    assert_eq!(na, 5, "replaced in the default's place");
    assert_eq!(mp.enabled[na].weight, Some(7));
    assert_eq!(names.last(), Some(&"Foo"));
    assert!(!names.contains(&"ImageLocality"));
    let all_off = parse("profiles:\n- plugins:\n    multiPoint:\n      disabled:\n      - name: '*'\n      enabled:\n      - name: Foo\n").unwrap();
    let names: Vec<&str> = all_off.profiles[0]
        .multi_point
        .enabled
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, vec!["Foo"]);
}

#[test]
fn errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "profiles:\n- plugins:\n    score:\n      enabled:\n      - name: NodeAffinity\n      - name: Bar\n",
            "profiles[0].plugins.score.enabled[1].name: Invalid value: \"Bar\": not a registered plugin",
        ),
        (
            "profiles:\n- schedulerName: a\n- schedulerName: a\n",
            "profiles[1].schedulerName: Duplicate value: \"a\"",
        ),
        (
            "profiles:\n- schedulerName: a\n- {}\n",
            "profiles[1].schedulerName: Required value",
        ),
        (
            "percentageOfNodesToScore: 101\n",
            "percentageOfNodesToScore: Invalid value: 101: not in valid range [0-100]",
        ),
        (
            "profiles:\n- percentageOfNodesToScore: -1\n",
            "profiles[0].percentageOfNodesToScore: Invalid value: -1: not in valid range [0-100]",
        ),
        (
            "parallelism: 0\n",
            "parallelism: Invalid value: 0: should be greater than 0",
        ),
        (
            "profiles:\n- plugins:\n    scor: {}\n",
            "strict decoding error: unknown field \"profiles[0].plugins.scor\"",
        ),
        (
            "bogus: 1\n",
            "strict decoding error: unknown field \"bogus\"",
        ),
        (
            "profiles:\n- plugins:\n    score:\n      enabled:\n      - name: Foo\n        weight: -1\n",
            "profiles[0].plugins.score.enabled[0].weight: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            "profiles:\n- pluginConfig:\n  - name: Foo\n  - name: Foo\n",
            "profiles[0].pluginConfig[1].name: Duplicate value: \"Foo\"",
        ),
        (
            "profiles:\n- pluginConfig:\n  - name: Nope\n",
            "profiles[0].pluginConfig[0].name: Invalid value: \"Nope\": not a registered plugin",
        ),
        (
            "profiles:\n- schedulerName: a\n- schedulerName: b\n  plugins:\n    queueSort:\n      enabled:\n      - name: Foo\n",
            "profiles[1].plugins.queueSort: Invalid value: has to match for all profiles",
        ),
    ];
    for (body, want) in cases {
        let err = parse(body).unwrap_err();
        assert_eq!(err.0, *want, "{body}");
    }
    let err =
        KubeSchedulerConfiguration::parse("kind: KubeSchedulerConfiguration\n", &registered())
            .unwrap_err();
    assert!(
        err.0.starts_with("apiVersion: Unsupported value"),
        "{}",
        err.0
    );
}

#[test]
fn plugin_args_and_leader_election() {
    let c = parse(
        "leaderElection:\n  leaderElect: false\n  resourceName: other\nprofiles:\n- schedulerName: s\n  pluginConfig:\n  - name: Foo\n    args:\n      apiVersion: kubescheduler.config.k8s.io/v1\n      kind: FooArgs\n      x: 1\n",
    )
    .unwrap();
    assert!(!c.leader_election.leader_elect);
    assert_eq!(c.leader_election.resource_name, "other");
    assert_eq!(
        c.profiles[0].args("Foo"),
        Some(&serde_json::json!({"x": 1}))
    );
}
