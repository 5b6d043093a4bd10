#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]

use k8s_openapi::api::core::v1::EnvVar;
use serde_json::{Value, json};

use super::super::tests::{World, first, pod};
use super::*;

/// The environment of a container with these env/envFrom entries.
fn run(container: Value, world: &World) -> Result<Environment, ConfigError> {
    let mut c = json!({"name": "c", "image": "busybox"});
    if let (Value::Object(c), Value::Object(extra)) = (&mut c, container) {
        c.extend(extra);
    }
    let p = pod(json!({
        "metadata": {"labels": {"app": "web", "tier": "fe"}, "annotations": {"note": "a \"q\"\nline"}},
        "spec": {"containers": [c], "nodeName": "node-1", "serviceAccountName": "sa",
                 "initContainers": [
                     {"name": "init", "resources": {"limits": {"memory": "32Mi"}}},
                     {"name": "zero", "resources": {"limits": {"ephemeral-storage": "0"}}}
                 ]}
    }));
    make_environment_variables(&p, first(&p), &world.env())
}

fn vars(env: &Environment) -> Vec<(&str, &str)> {
    env.vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn values_expand_earlier_variables_and_service_env() {
    let mut w = World::default();
    w.service_env = vec![
        EnvVar {
            name: "SVC_HOST".into(),
            value: Some("10.43.0.9".into()),
            value_from: None,
        },
        EnvVar {
            name: "OVERRIDDEN".into(),
            value: Some("svc".into()),
            value_from: None,
        },
    ];
    let env = run(
        json!({"env": [
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-b"},
            {"name": "C", "value": "$(LATER)-$(SVC_HOST)-$$(A)"},
            {"name": "LATER", "value": "l"},
            {"name": "EMPTY"},
            {"name": "OVERRIDDEN", "value": "mine"}
        ]}),
        &w,
    )
    .unwrap();
    assert_eq!(
        vars(&env),
        [
            ("A", "a"),
            ("B", "a-b"),
            ("C", "$(LATER)-10.43.0.9-$(A)"),
            ("EMPTY", ""),
            ("LATER", "l"),
            ("OVERRIDDEN", "mine"),
            ("SVC_HOST", "10.43.0.9"),
        ]
    );
}

#[test]
fn field_refs() {
    let mut w = World::default();
    w.pod_ips = vec!["10.42.0.7".into(), "fd00::7".into()];
    let cases = [
        ("metadata.name", "p"),
        ("metadata.namespace", "ns"),
        ("metadata.uid", "u-1"),
        ("metadata.labels['app']", "web"),
        ("metadata.labels['missing']", ""),
        ("metadata.annotations['note']", "a \"q\"\nline"),
        ("metadata.labels", "app=\"web\"\ntier=\"fe\""),
        ("metadata.annotations", "note=\"a \\\"q\\\"\\nline\""),
        ("spec.nodeName", "node-1"),
        ("spec.serviceAccountName", "sa"),
        ("status.hostIP", "192.168.1.10"),
        ("status.hostIPs", "192.168.1.10"),
        ("status.podIP", "10.42.0.7"),
        ("status.podIPs", "10.42.0.7,fd00::7"),
    ];
    for (path, want) in cases {
        let env = run(
            json!({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": path}}}]}),
            &w,
        )
        .unwrap();
        assert_eq!(env.get("X"), Some(want), "{path}");
    }
    // Before the sandbox has an IP.
    let env = run(
        json!({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}),
        &World::default(),
    )
    .unwrap();
    assert_eq!(env.get("X"), Some(""));
}

#[test]
fn field_ref_errors() {
    let cases = [
        (
            json!({"fieldPath": "metadata.name", "apiVersion": "v2"}),
            "unsupported pod version: v2",
        ),
        (
            json!({"fieldPath": "spec.bogus"}),
            "field label not supported: spec.bogus",
        ),
        (
            json!({"fieldPath": "spec.nodeName['x']"}),
            "field label does not support subscript: spec.nodeName['x']",
        ),
        (
            json!({"fieldPath": "status.phase"}),
            "unsupported fieldPath: status.phase",
        ),
    ];
    for (fs, want) in cases {
        let err = run(
            json!({"env": [{"name": "X", "valueFrom": {"fieldRef": fs}}]}),
            &World::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    let w = World::default();
    let mut env = w.env();
    env.host_ip = None;
    let p = pod(
        json!({"spec": {"containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]}]}}),
    );
    let err = make_environment_variables(&p, first(&p), &env).unwrap_err();
    assert_eq!(err, ConfigError::HostIpUnknown);
}

#[test]
fn resource_field_refs_round_up_and_default_limits_to_allocatable() {
    let mut w = World::default();
    w.allocatable = Some(
        [
            ("cpu", "4"),
            ("memory", "8Gi"),
            ("ephemeral-storage", "100Gi"),
        ]
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_owned(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.into()),
            )
        })
        .collect(),
    );
    let resources =
        json!({"requests": {"cpu": "250m", "memory": "100Mi"}, "limits": {"cpu": "1500m"}});
    let cases: &[(&str, Option<&str>, Option<&str>, &str)] = &[
        ("requests.cpu", None, None, "1"),
        ("requests.cpu", Some("1m"), None, "250"),
        ("requests.cpu", Some("100m"), None, "3"),
        ("limits.cpu", None, None, "2"),
        ("limits.cpu", Some("1m"), None, "1500"),
        ("requests.memory", None, None, "104857600"),
        ("requests.memory", Some("1Mi"), None, "100"),
        ("requests.memory", Some("1M"), None, "105"),
        // No memory limit: node allocatable.
        ("limits.memory", Some("1Gi"), None, "8"),
        // A zero limit counts as none.
        ("limits.ephemeral-storage", Some("1Gi"), Some("zero"), "100"),
        ("limits.ephemeral-storage", Some("1Gi"), None, "100"),
        ("requests.ephemeral-storage", None, None, "0"),
        ("requests.divisor-zero", None, None, ""),
        // Another container's limit.
        ("limits.memory", Some("1Mi"), Some("init"), "32"),
    ];
    for (resource, divisor, container, want) in cases {
        let mut sel = json!({"resource": resource});
        if let Some(d) = divisor {
            sel["divisor"] = json!(d);
        }
        if let Some(c) = container {
            sel["containerName"] = json!(c);
        }
        let got = run(
            json!({"resources": resources, "env": [{"name": "X", "valueFrom": {"resourceFieldRef": sel}}]}),
            &w,
        );
        if want.is_empty() {
            assert_eq!(
                got.unwrap_err().to_string(),
                format!("unsupported container resource : {resource}")
            );
        } else {
            assert_eq!(
                got.unwrap().get("X"),
                Some(*want),
                "{resource} / {divisor:?}"
            );
        }
    }
    // Without allocatable a missing limit reads as 0.
    let got = run(json!({"env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}]}), &World::default()).unwrap();
    assert_eq!(got.get("X"), Some("0"));
    let err = run(json!({"env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "containerName": "ghost"}}}]}), &World::default()).unwrap_err();
    assert_eq!(err.to_string(), "container ghost not found");
}

#[test]
fn key_refs_required_and_optional() {
    let w = World::default()
        .configmap("cm", json!({"k": "cm-value"}))
        .secret("s", &[("k", "s-value")]);
    let ok = run(json!({"env": [
        {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "OPT_CM", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
        {"name": "OPT_KEY", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nokey", "optional": true}}},
        {"name": "OPT_S", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
        {"name": "OPT_SKEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nokey", "optional": true}}}
    ]}), &w).unwrap();
    assert_eq!(vars(&ok), [("CM", "cm-value"), ("S", "s-value")]);

    let cases = [
        (
            json!({"configMapKeyRef": {"name": "gone", "key": "k"}}),
            "configmap \"gone\" not found",
        ),
        (
            json!({"configMapKeyRef": {"name": "cm", "key": "x"}}),
            "couldn't find key x in ConfigMap ns/cm",
        ),
        (
            json!({"secretKeyRef": {"name": "gone", "key": "k"}}),
            "secret \"gone\" not found",
        ),
        (
            json!({"secretKeyRef": {"name": "s", "key": "x"}}),
            "couldn't find key x in Secret ns/s",
        ),
    ];
    for (from, want) in cases {
        let err = run(json!({"env": [{"name": "X", "valueFrom": from}]}), &w).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn env_from_prefix_optional_any_key_and_env_override() {
    let w = World::default()
        .configmap(
            "cm",
            json!({"A": "cm-a", "B": "cm-b", "1bad": "x", "also bad": "y"}),
        )
        .secret("s", &[("TOKEN", "t"), ("9lives", "z")]);
    let env = run(
        json!({
            "envFrom": [
                {"configMapRef": {"name": "cm"}},
                {"secretRef": {"name": "s"}, "prefix": "S_"},
                {"secretRef": {"name": "s"}},
                {"configMapRef": {"name": "gone", "optional": true}},
                {"secretRef": {"name": "gone", "optional": true}}
            ],
            "env": [{"name": "B", "value": "env-b $(A)"}]
        }),
        &w,
    )
    .unwrap();
    assert_eq!(
        vars(&env),
        [
            // Keys that are not C identifiers are kept (relaxed validation).
            ("1bad", "x"),
            ("9lives", "z"),
            ("A", "cm-a"),
            ("B", "env-b cm-a"),
            ("S_9lives", "z"),
            ("S_TOKEN", "t"),
            ("TOKEN", "t"),
            ("also bad", "y"),
        ]
    );

    let err = run(json!({"envFrom": [{"secretRef": {"name": "gone"}}]}), &w).unwrap_err();
    assert_eq!(err.to_string(), "secret \"gone\" not found");
    let err = run(json!({"envFrom": [{"configMapRef": {"name": "gone"}}]}), &w).unwrap_err();
    assert_eq!(err.to_string(), "configmap \"gone\" not found");
}
