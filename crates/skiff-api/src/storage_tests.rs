#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

/// A volume: name, capacity, access modes, class, then `extra` merged
/// into it (labels, claimRef, volumeMode, phase...). Available unless
/// `extra` says otherwise.
fn pv(name: &str, size: &str, modes: &[&str], class: &str, extra: Value) -> Arc<PersistentVolume> {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": modes, "hostPath": {"path": "/x"}},
        "status": {"phase": "Available"},
    });
    if !class.is_empty() {
        v["spec"]["storageClassName"] = json!(class);
    }
    merge(&mut v, extra);
    Arc::new(serde_json::from_value(v).unwrap())
}

fn pvc(size: &str, modes: &[&str], class: Option<&str>, extra: Value) -> PersistentVolumeClaim {
    let mut v = json!({
        "metadata": {"name": "claim", "namespace": "ns", "uid": "uid-1"},
        "spec": {"accessModes": modes, "resources": {"requests": {"storage": size}}},
    });
    if let Some(c) = class {
        v["spec"]["storageClassName"] = json!(c);
    }
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn best(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    delay: bool,
) -> Option<String> {
    find_best_match(claim, volumes, delay)
        .unwrap()
        .map(|v| v.metadata.name.clone().unwrap())
}

/// (what, claim, volumes, delay binding, expected volume).
type MatchCase = (
    &'static str,
    PersistentVolumeClaim,
    Vec<Arc<PersistentVolume>>,
    bool,
    Option<&'static str>,
);
type Classes = Vec<Arc<StorageClass>>;

const RWO: &str = "ReadWriteOnce";
const ROX: &str = "ReadOnlyMany";
const RWX: &str = "ReadWriteMany";

#[test]
fn best_match_table() {
    let pre_bound = |uid: Option<&str>| {
        let mut r = json!({"namespace": "ns", "name": "claim"});
        if let Some(u) = uid {
            r["uid"] = json!(u);
        }
        json!({"spec": {"claimRef": r}})
    };
    // (what, claim, volumes, delay binding, expected)
    let cases: Vec<MatchCase> = vec![
        (
            "smallest that fits wins",
            pvc("5Gi", &[RWO], Some(""), json!({})),
            vec![
                pv("big", "20Gi", &[RWO], "", json!({})),
                pv("small", "1Gi", &[RWO], "", json!({})),
                pv("fit", "8Gi", &[RWO], "", json!({})),
                pv("exact", "5Gi", &[RWO], "", json!({})),
            ],
            false,
            Some("exact"),
        ),
        (
            "sizes compare as numbers, not strings",
            pvc("3Gi", &[RWO], None, json!({})),
            vec![
                pv("small", "1Gi", &[RWO], "", json!({})),
                pv("big", "10Gi", &[RWO], "", json!({})),
                pv("fit", "5Gi", &[RWO], "", json!({})),
                pv("rox", "4Gi", &[ROX], "", json!({})),
                pv("classy", "5Gi", &[RWO], "fast", json!({})),
            ],
            false,
            Some("fit"),
        ),
        (
            "units compare by value",
            pvc("1G", &[RWO], Some(""), json!({})),
            vec![
                pv("mi", "900Mi", &[RWO], "", json!({})),
                pv("gi", "1Gi", &[RWO], "", json!({})),
            ],
            false,
            Some("gi"),
        ),
        (
            "nothing large enough",
            pvc("5Gi", &[RWO], Some(""), json!({})),
            vec![pv("small", "1Gi", &[RWO], "", json!({}))],
            false,
            None,
        ),
        (
            "class must be equal; \"\" matches only classless volumes",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![pv("fast", "1Gi", &[RWO], "fast", json!({}))],
            false,
            None,
        ),
        (
            "a named class matches that class only",
            pvc("1Gi", &[RWO], Some("fast"), json!({})),
            vec![
                pv("none", "1Gi", &[RWO], "", json!({})),
                pv("slow", "1Gi", &[RWO], "slow", json!({})),
                pv("fast", "2Gi", &[RWO], "fast", json!({})),
            ],
            false,
            Some("fast"),
        ),
        (
            "the beta class annotation wins over the field",
            pvc(
                "1Gi",
                &[RWO],
                Some("fast"),
                json!({"metadata": {"annotations": {ANN_BETA_STORAGE_CLASS: "slow"}}}),
            ),
            vec![
                pv("fast", "1Gi", &[RWO], "fast", json!({})),
                pv("slow", "1Gi", &[RWO], "slow", json!({})),
            ],
            false,
            Some("slow"),
        ),
        (
            "access modes must be a superset",
            pvc("1Gi", &[RWO, RWX], Some(""), json!({})),
            vec![
                pv("rwo", "1Gi", &[RWO], "", json!({})),
                pv("rwx", "1Gi", &[RWX], "", json!({})),
                pv("both", "9Gi", &[RWO, ROX, RWX], "", json!({})),
            ],
            false,
            Some("both"),
        ),
        (
            "fewest extra modes before smallest size",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![
                pv("many-small", "1Gi", &[RWO, ROX], "", json!({})),
                pv("exact-big", "9Gi", &[RWO], "", json!({})),
            ],
            false,
            Some("exact-big"),
        ),
        (
            "volume mode defaults to Filesystem on both sides",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![
                pv(
                    "block",
                    "1Gi",
                    &[RWO],
                    "",
                    json!({"spec": {"volumeMode": "Block"}}),
                ),
                pv(
                    "fs",
                    "2Gi",
                    &[RWO],
                    "",
                    json!({"spec": {"volumeMode": "Filesystem"}}),
                ),
            ],
            false,
            Some("fs"),
        ),
        (
            "a Block claim wants a Block volume",
            pvc(
                "1Gi",
                &[RWO],
                Some(""),
                json!({"spec": {"volumeMode": "Block"}}),
            ),
            vec![
                pv("fs", "1Gi", &[RWO], "", json!({})),
                pv(
                    "block",
                    "2Gi",
                    &[RWO],
                    "",
                    json!({"spec": {"volumeMode": "Block"}}),
                ),
            ],
            false,
            Some("block"),
        ),
        (
            "selector: matchLabels and matchExpressions",
            pvc(
                "1Gi",
                &[RWO],
                Some(""),
                json!({"spec": {"selector": {
                    "matchLabels": {"tier": "db"},
                    "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}],
                }}}),
            ),
            vec![
                pv("nolabels", "1Gi", &[RWO], "", json!({})),
                pv(
                    "wrongzone",
                    "1Gi",
                    &[RWO],
                    "",
                    json!({"metadata": {"labels": {"tier": "db", "zone": "c"}}}),
                ),
                pv(
                    "web",
                    "1Gi",
                    &[RWO],
                    "",
                    json!({"metadata": {"labels": {"tier": "web", "zone": "a"}}}),
                ),
                pv(
                    "db",
                    "3Gi",
                    &[RWO],
                    "",
                    json!({"metadata": {"labels": {"tier": "db", "zone": "b"}}}),
                ),
            ],
            false,
            Some("db"),
        ),
        (
            "only Available volumes are bound",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![
                pv(
                    "pending",
                    "1Gi",
                    &[RWO],
                    "",
                    json!({"status": {"phase": "Pending"}}),
                ),
                pv(
                    "released",
                    "1Gi",
                    &[RWO],
                    "",
                    json!({"status": {"phase": "Released"}}),
                ),
            ],
            false,
            None,
        ),
        (
            "volumes being deleted never match",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![pv(
                "gone",
                "1Gi",
                &[RWO],
                "",
                json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}),
            )],
            false,
            None,
        ),
        (
            "a volume pre-bound to the claim wins over a smaller one",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![
                pv("small", "1Gi", &[RWO], "", json!({})),
                pv("mine", "5Gi", &[RWO], "other-class", pre_bound(None)),
            ],
            false,
            Some("mine"),
        ),
        (
            "pre-bound with the claim's uid",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![pv("mine", "5Gi", &[RWO], "", pre_bound(Some("uid-1")))],
            false,
            Some("mine"),
        ),
        (
            "pre-bound to an older claim of that name (other uid)",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![pv("old", "5Gi", &[RWO], "", pre_bound(Some("uid-0")))],
            false,
            None,
        ),
        (
            "pre-bound but too small",
            pvc("9Gi", &[RWO], Some(""), json!({})),
            vec![pv("mine", "5Gi", &[RWO], "", pre_bound(None))],
            false,
            None,
        ),
        (
            "volumes pre-bound to other claims never match",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![pv(
                "theirs",
                "1Gi",
                &[RWO],
                "",
                json!({"spec": {"claimRef": {"namespace": "ns", "name": "other"}}}),
            )],
            false,
            None,
        ),
        (
            "delayed binding takes pre-bound volumes only",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![pv("free", "1Gi", &[RWO], "", json!({}))],
            true,
            None,
        ),
        (
            "delayed binding still takes a pre-bound volume",
            pvc("1Gi", &[RWO], Some(""), json!({})),
            vec![
                pv("free", "1Gi", &[RWO], "", json!({})),
                pv("mine", "1Gi", &[RWO], "", pre_bound(None)),
            ],
            true,
            Some("mine"),
        ),
    ];
    for (what, claim, volumes, delay, want) in cases {
        assert_eq!(best(&claim, &volumes, delay).as_deref(), want, "{what}");
    }
}

#[test]
fn a_bad_selector_is_an_error() {
    let claim = pvc(
        "1Gi",
        &[RWO],
        Some(""),
        json!({"spec": {"selector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}}),
    );
    let volumes = vec![pv("v", "1Gi", &[RWO], "", json!({}))];
    let err = find_best_match(&claim, &volumes, false).unwrap_err();
    assert!(
        err.0
            .starts_with("error creating internal label selector for claim: ns/claim: "),
        "{}",
        err.0
    );
}

#[test]
fn a_named_volume_is_checked_as_upstream() {
    let claim = pvc("2Gi", &[RWO, RWX], Some("fast"), json!({}));
    let cases = [
        (pv("ok", "2Gi", &[RWO, RWX], "fast", json!({})), Ok(())),
        (
            pv(
                "d",
                "2Gi",
                &[RWO, RWX],
                "fast",
                json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}),
            ),
            Err("the volume is marked for deletion \"d\"".to_owned()),
        ),
        (
            pv("s", "1Gi", &[RWO, RWX], "fast", json!({})),
            Err("requested PV is too small".to_owned()),
        ),
        (
            pv("c", "2Gi", &[RWO, RWX], "", json!({})),
            Err("storageClassName does not match".to_owned()),
        ),
        (
            pv(
                "m",
                "2Gi",
                &[RWO, RWX],
                "fast",
                json!({"spec": {"volumeMode": "Block"}}),
            ),
            Err("incompatible volumeMode".to_owned()),
        ),
        (
            pv("a", "2Gi", &[RWO], "fast", json!({})),
            Err("incompatible accessMode".to_owned()),
        ),
    ];
    for (volume, want) in cases {
        assert_eq!(check_volume_satisfies_claim(&volume, &claim), want);
    }
}

#[test]
fn classes_and_pod_claims() {
    assert!(!claim_has_class(&pvc("1Gi", &[RWO], None, json!({}))));
    assert!(claim_has_class(&pvc("1Gi", &[RWO], Some(""), json!({}))));
    assert_eq!(claim_class(&pvc("1Gi", &[RWO], None, json!({}))), "");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [], "volumes": [
            {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "b", "emptyDir": {}},
            {"name": "c", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        ]},
    }))
    .unwrap();
    assert_eq!(
        pod_claims(&pod),
        [("data".to_owned(), false), ("p-c".to_owned(), true)]
    );
}

#[test]
fn the_newest_default_class_wins() {
    let class = |name: &str, created: &str, annotations: Value| -> Arc<StorageClass> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created, "annotations": annotations},
                "provisioner": "p",
            }))
            .unwrap(),
        )
    };
    let default = json!({ANN_IS_DEFAULT_CLASS: "true"});
    let beta = json!({ANN_BETA_IS_DEFAULT_CLASS: "true"});
    let cases: Vec<(&str, Classes, Option<&str>)> = vec![
        ("no classes", vec![], None),
        (
            "no default",
            vec![
                class("a", "2025-01-01T00:00:00Z", json!({})),
                class(
                    "b",
                    "2025-01-02T00:00:00Z",
                    json!({ANN_IS_DEFAULT_CLASS: "false"}),
                ),
            ],
            None,
        ),
        (
            "one default",
            vec![
                class("a", "2025-01-03T00:00:00Z", json!({})),
                class("b", "2025-01-02T00:00:00Z", default.clone()),
            ],
            Some("b"),
        ),
        (
            "the newest of several",
            vec![
                class("old", "2025-01-01T00:00:00Z", default.clone()),
                class("new", "2025-03-01T00:00:00Z", beta.clone()),
                class("mid", "2025-02-01T00:00:00Z", default.clone()),
            ],
            Some("new"),
        ),
        (
            "same age: first by name",
            vec![
                class("zeta", "2025-01-01T00:00:00Z", default.clone()),
                class("alpha", "2025-01-01T00:00:00Z", default.clone()),
            ],
            Some("alpha"),
        ),
    ];
    for (what, classes, want) in cases {
        let got = default_class(classes.iter().map(AsRef::as_ref))
            .and_then(|c| c.metadata.name.as_deref());
        assert_eq!(got, want, "{what}");
    }
}
