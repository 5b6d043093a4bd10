#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::*;

const NOW: &str = "2026-01-01T00:00:00Z";
const LATER: &str = "2026-01-01T00:01:00Z";

fn deployments(now: &str) -> Scope<'_> {
    Scope {
        schema: PatchSchema::for_kind("apps", "v1", "Deployment").unwrap(),
        api_version: "apps/v1",
        subresource: None,
        has_status: true,
        now,
    }
}

fn configmaps(now: &str) -> Scope<'_> {
    Scope {
        schema: PatchSchema::for_kind("", "v1", "ConfigMap").unwrap(),
        api_version: "v1",
        subresource: None,
        has_status: false,
        now,
    }
}

fn deployment(image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                "name": "web", "image": image,
                "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                "env": [{"name": "A", "value": "1"}],
            }]}},
        },
    })
}

fn changed(a: Applied) -> Value {
    match a {
        Applied::Changed(v) => v,
        Applied::Unchanged => panic!("expected a change"),
    }
}

fn entries(obj: &Value) -> Vec<(String, String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_owned(),
                        e["operation"].as_str().unwrap().to_owned(),
                        e["subresource"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fields_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    &obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no {manager} in {obj}"))["fieldsV1"]
}

#[test]
fn field_sets_key_map_lists_and_encode_as_fields_v1() {
    let scope = deployments(NOW);
    let set = scope.tracked(&walk::field_set(&deployment("nginx", 2), scope.ctx()).unwrap());
    let container = json!({
        ".": {}, "f:name": {}, "f:image": {},
        "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
        "f:ports": {
            "k:{\"containerPort\":53,\"protocol\":\"UDP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}},
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}},
        },
    });
    assert_eq!(
        set.to_fields_v1(),
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {"f:matchLabels": {"f:app": {}}},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": container}},
                },
            },
        })
    );
    let back = FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap();
    assert_eq!(back, set);
    let image: Path = vec![
        PathElement::Field("spec".into()),
        PathElement::Field("template".into()),
        PathElement::Field("spec".into()),
        PathElement::Field("containers".into()),
        PathElement::Key(r#"{"name":"web"}"#.into()),
        PathElement::Field("image".into()),
    ];
    assert!(set.contains(&image));
    assert_eq!(
        path_string(&image),
        r#".spec.template.spec.containers[name="web"].image"#
    );
    let port = PathElement::decode(r#"k:{"protocol":"TCP","containerPort":80}"#).unwrap();
    assert_eq!(port.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
    assert_eq!(
        PathElement::decode(r#"v:"x""#).unwrap().to_string(),
        r#"[="x"]"#
    );
    assert_eq!(PathElement::decode("i:3").unwrap().to_string(), "[3]");
}

#[test]
fn tracked_sets_drop_whole_subtrees_by_their_top_fields() {
    let mut obj = deployment("nginx", 2);
    obj["status"] = json!({"replicas": 2, "conditions": [{"type": "Available"}]});
    obj["metadata"]["uid"] = json!("u-1");
    obj["metadata"]["labels"] = json!({"app": "web"});
    let all = walk::field_set(&obj, deployments(NOW).ctx()).unwrap();
    // Judged path by path, the old way, for comparison.
    let scope = deployments(NOW);
    let members: Vec<Path> = all.iter().filter(|p| scope.tracks(p)).collect();
    let tracked = scope.tracked(&all);
    assert_eq!(tracked, members.into_iter().collect::<FieldSet>());
    let field = |names: &[&str]| -> Path {
        names
            .iter()
            .map(|n| PathElement::Field((*n).into()))
            .collect()
    };
    assert!(tracked.contains(&field(&["metadata", "labels", "app"])));
    assert!(tracked.contains(&field(&["spec", "replicas"])));
    assert!(!tracked.contains(&field(&["metadata", "uid"])));
    assert!(!tracked.contains(&field(&["status", "replicas"])));
    assert!(!tracked.contains(&field(&["kind"])));
    // On /status, only status.
    let status = Scope {
        subresource: Some("status"),
        ..deployments(NOW)
    };
    let on_status = status.tracked(&all);
    assert!(on_status.contains(&field(&["status", "replicas"])));
    assert!(!on_status.contains(&field(&["spec", "replicas"])));
    assert!(!on_status.contains(&field(&["metadata", "labels", "app"])));
}

#[test]
fn bad_fields_v1_and_bad_configurations_are_errors() {
    for bad in [
        json!([]),
        json!({"x:y": {}}),
        json!({"k:[1]": {}}),
        json!({"k:{}": {}}),
        json!({"i:z": {}}),
        json!({"f:a": 3}),
        json!({"v:{": {}}),
    ] {
        assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
    }
    let scope = deployments(NOW);
    let mut dup = deployment("nginx", 1);
    dup["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    let err = apply(None, &dup, "m", false, &scope).unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"duplicate entries for key [name="a"]"#),
        "{err}"
    );
    let mut keyless = deployment("nginx", 1);
    keyless["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
    assert!(matches!(
        apply(None, &keyless, "m", false, &scope),
        Err(ApplyError::Invalid(_))
    ));
    let mut with_mf = deployment("nginx", 1);
    with_mf["metadata"]["managedFields"] = json!([]);
    assert!(matches!(
        apply(None, &with_mf, "m", false, &scope),
        Err(ApplyError::BadRequest(_))
    ));
    let mut deep = json!("x");
    for _ in 0..200 {
        deep = json!({"a": deep});
    }
    assert!(apply(None, &json!({"data": deep}), "m", false, &configmaps(NOW)).is_err());
}

#[test]
fn apply_creates_then_reapply_is_a_no_op() {
    let scope = deployments(NOW);
    let config = deployment("nginx", 2);
    let created = changed(apply(None, &config, "kubectl", false, &scope).unwrap());
    assert_eq!(
        entries(&created),
        [("kubectl".into(), "Apply".into(), String::new())]
    );
    assert_eq!(created["metadata"]["managedFields"][0]["time"], NOW);
    assert_eq!(
        created["metadata"]["managedFields"][0]["apiVersion"],
        "apps/v1"
    );
    assert_eq!(created["spec"], config["spec"]);
    let later = deployments(LATER);
    assert_eq!(
        apply(Some(&created), &config, "kubectl", false, &later).unwrap(),
        Applied::Unchanged
    );
}

#[test]
fn conflicts_with_other_managers_and_force_takes_ownership() {
    let cms = configmaps(NOW);
    let live = changed(
        apply(
            None,
            &json!({"data": {"a": "1", "b": "1"}}),
            "one",
            false,
            &cms,
        )
        .unwrap(),
    );
    // Same value: shared ownership, no conflict.
    let shared = changed(
        apply(
            Some(&live),
            &json!({"data": {"a": "1"}}),
            "two",
            false,
            &cms,
        )
        .unwrap(),
    );
    assert_eq!(
        fields_of(&shared, "one"),
        &json!({"f:data": {"f:a": {}, "f:b": {}}})
    );
    assert_eq!(fields_of(&shared, "two"), &json!({"f:data": {"f:a": {}}}));
    // Different values: one conflict per field.
    let err = apply(
        Some(&shared),
        &json!({"data": {"a": "2", "b": "2"}}),
        "two",
        false,
        &cms,
    )
    .unwrap_err();
    let ApplyError::Conflicts(c) = err else {
        panic!("{err}")
    };
    assert_eq!(
        c.message(),
        "Apply failed with 2 conflicts: conflicts with \"one\":\n- .data.a\n- .data.b"
    );
    let status = c.status();
    assert_eq!(status["code"], 409);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["details"]["causes"][1],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"one\"", "field": ".data.b"})
    );
    let forced = changed(
        apply(
            Some(&shared),
            &json!({"data": {"a": "2", "b": "2"}}),
            "two",
            true,
            &cms,
        )
        .unwrap(),
    );
    assert_eq!(forced["data"], json!({"a": "2", "b": "2"}));
    assert_eq!(
        entries(&forced),
        [("two".into(), "Apply".into(), String::new())]
    );
}

#[test]
fn update_managers_conflict_with_their_api_version() {
    let scope = deployments(NOW);
    let live = changed(apply(None, &deployment("nginx", 2), "kubectl", false, &scope).unwrap());
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    update(Some(&live), &mut scaled, "kubectl-scale", &scope).unwrap();
    assert_eq!(
        fields_of(&scaled, "kubectl-scale"),
        &json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(
        fields_of(&scaled, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_none()
    );
    let err = apply(
        Some(&scaled),
        &deployment("nginx:2", 3),
        "kubectl",
        false,
        &scope,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: .spec.replicas"#
    );
    // The image is the applier's own field: no conflict there.
    let ok = changed(
        apply(
            Some(&scaled),
            &deployment("nginx:2", 5),
            "kubectl",
            false,
            &scope,
        )
        .unwrap(),
    );
    assert_eq!(
        ok["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    assert_eq!(ok["spec"]["replicas"], 5);
}

#[test]
fn dropped_fields_are_removed_unless_someone_else_owns_them() {
    let cms = configmaps(NOW);
    let live = changed(
        apply(
            None,
            &json!({"data": {"a": "1", "b": "1", "c": "1"}}),
            "one",
            false,
            &cms,
        )
        .unwrap(),
    );
    let live = changed(
        apply(
            Some(&live),
            &json!({"data": {"c": "1"}}),
            "two",
            false,
            &cms,
        )
        .unwrap(),
    );
    let out = changed(
        apply(
            Some(&live),
            &json!({"data": {"a": "1"}}),
            "one",
            false,
            &cms,
        )
        .unwrap(),
    );
    assert_eq!(
        out["data"],
        json!({"a": "1", "c": "1"}),
        "b goes, c stays with two"
    );
    assert_eq!(fields_of(&out, "one"), &json!({"f:data": {"f:a": {}}}));

    // Map-list elements: a dropped container goes, with its fields.
    let scope = deployments(NOW);
    let mut two = deployment("nginx", 1);
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "side", "image": "busybox"}));
    let live = changed(apply(None, &two, "m", false, &scope).unwrap());
    let mut one = deployment("nginx", 1);
    one["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("env");
    let out = changed(apply(Some(&live), &one, "m", false, &scope).unwrap());
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 1);
    assert!(containers[0].get("env").is_none(), "{containers}");
    assert_eq!(containers[0]["ports"].as_array().unwrap().len(), 2);
}

#[test]
fn sets_merge_by_value() {
    let scope = Scope {
        schema: PatchSchema::for_kind("", "v1", "Namespace").unwrap(),
        api_version: "v1",
        subresource: None,
        has_status: true,
        now: NOW,
    };
    let live = changed(
        apply(
            None,
            &json!({"metadata": {"finalizers": ["a/x"]}}),
            "one",
            false,
            &scope,
        )
        .unwrap(),
    );
    let out = changed(
        apply(
            Some(&live),
            &json!({"metadata": {"finalizers": ["b/y"]}}),
            "two",
            false,
            &scope,
        )
        .unwrap(),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["a/x", "b/y"]));
    assert_eq!(
        fields_of(&out, "two"),
        &json!({"f:metadata": {"f:finalizers": {"v:\"b/y\"": {}}}})
    );
}

#[test]
fn updates_move_changed_fields_to_the_writer() {
    let cms = configmaps(NOW);
    let mut created = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "c", "uid": "u", "labels": {"l": "1"}},
                             "data": {"a": "1", "b": "1"}});
    update(None, &mut created, "kubectl-create", &cms).unwrap();
    assert_eq!(
        entries(&created),
        [("kubectl-create".into(), "Update".into(), String::new())]
    );
    assert_eq!(
        fields_of(&created, "kubectl-create"),
        &json!({"f:data": {".": {}, "f:a": {}, "f:b": {}},
                "f:metadata": {"f:labels": {".": {}, "f:l": {}}}}),
        "as upstream, the writer owns the maps it added, not metadata itself"
    );
    let mut next = created.clone();
    next["data"] = json!({"a": "2", "c": "3"});
    update(Some(&created), &mut next, "editor", &configmaps(LATER)).unwrap();
    assert_eq!(
        fields_of(&next, "kubectl-create"),
        &json!({"f:data": {}, "f:metadata": {"f:labels": {".": {}, "f:l": {}}}}),
        "a was taken, b removed"
    );
    assert_eq!(
        fields_of(&next, "editor"),
        &json!({"f:data": {"f:a": {}, "f:c": {}}})
    );
    let editor = next["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "editor")
        .unwrap();
    assert_eq!(editor["time"], LATER);

    // An update that changes nothing leaves managedFields as they were.
    let mut same = next.clone();
    update(Some(&next), &mut same, "other", &configmaps(LATER)).unwrap();
    assert_eq!(same, next);

    // Clients that drop managedFields keep the live ones; `[]` resets them;
    // invalid ones fall back to the live ones.
    let mut dropped = next.clone();
    dropped["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    update(Some(&next), &mut dropped, "other", &cms).unwrap();
    assert_eq!(
        dropped["metadata"]["managedFields"],
        next["metadata"]["managedFields"]
    );
    let mut reset = next.clone();
    reset["metadata"]["managedFields"] = json!([]);
    update(Some(&next), &mut reset, "other", &cms).unwrap();
    assert!(reset["metadata"].get("managedFields").is_none(), "{reset}");
    let mut invalid = next.clone();
    invalid["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
    update(Some(&next), &mut invalid, "other", &cms).unwrap();
    assert_eq!(
        invalid["metadata"]["managedFields"],
        next["metadata"]["managedFields"]
    );
}

#[test]
fn first_apply_to_an_untracked_object_records_before_first_apply() {
    let cms = configmaps(NOW);
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    let err = apply(Some(&live), &json!({"data": {"a": "2"}}), "m", false, &cms).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "before-first-apply" using v1: .data.a"#
    );
    let out = changed(apply(Some(&live), &json!({"data": {"b": "2"}}), "m", false, &cms).unwrap());
    assert_eq!(
        entries(&out),
        [
            ("m".into(), "Apply".into(), String::new()),
            ("before-first-apply".into(), "Update".into(), String::new())
        ]
    );
}

#[test]
fn status_writes_are_scoped_to_the_subresource() {
    let scope = deployments(NOW);
    let live = changed(apply(None, &deployment("nginx", 1), "kubectl", false, &scope).unwrap());
    let status = Scope {
        subresource: Some("status"),
        ..deployments(LATER)
    };
    let mut next = live.clone();
    next["status"] = json!({"replicas": 1});
    next["spec"]["replicas"] = json!(9);
    update(Some(&live), &mut next, "controller", &status).unwrap();
    assert_eq!(
        entries(&next),
        [
            ("kubectl".into(), "Apply".into(), String::new()),
            ("controller".into(), "Update".into(), "status".into())
        ]
    );
    assert_eq!(
        fields_of(&next, "controller"),
        &json!({"f:status": {"f:replicas": {}}})
    );
    // On the main resource, status is neither owned nor a conflict.
    let mut with_status = deployment("nginx", 1);
    with_status["status"] = json!({"replicas": 7});
    let set = scope.tracked(&walk::field_set(&with_status, scope.ctx()).unwrap());
    assert!(
        set.iter()
            .all(|p| p[0] != PathElement::Field("status".into()))
    );
}

#[test]
fn update_managers_are_capped_into_ancient_changes() {
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    for i in 0..12 {
        let live = obj.clone();
        obj["data"][format!("k{i}")] = json!("v");
        let now = format!("2026-01-01T00:00:{i:02}Z");
        update(
            Some(&live),
            &mut obj,
            &format!("writer-{i:02}"),
            &configmaps(&now),
        )
        .unwrap();
    }
    let list = entries(&obj);
    assert_eq!(list.len(), MAX_UPDATE_MANAGERS);
    let ancient = fields_of(&obj, ANCIENT_CHANGES);
    assert_eq!(
        ancient,
        &json!({"f:data": {".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}}}),
        "the three oldest writers were merged"
    );
    assert!(
        list.iter()
            .all(|(m, _, _)| !["writer-00", "writer-01", "writer-02"].contains(&m.as_str()))
    );
    assert!(list.iter().any(|(m, _, _)| m == "writer-11"));
}

fn scope_of<'a>(group: &str, kind: &str, api_version: &'a str, has_status: bool) -> Scope<'a> {
    let version = api_version.rsplit('/').next().unwrap();
    Scope {
        schema: PatchSchema::for_kind(group, version, kind).unwrap(),
        api_version,
        subresource: None,
        has_status,
        now: NOW,
    }
}

/// Records the create of `obj` both ways: straight from the object, and by
/// comparing with the zero value. They must agree; `direct` says whether
/// the first was meant to decide on its own.
fn created_both_ways(obj: Value, scope: &Scope<'_>, direct: bool) -> Value {
    let mut fast = obj.clone();
    assert_eq!(
        record_create(&mut fast, "creator", scope),
        direct,
        "direct path taken for {obj}"
    );
    if !direct {
        assert_eq!(fast, obj, "a declined create is left untouched");
    }
    let mut slow = obj.clone();
    update_by_comparison(None, &mut slow, "creator", scope).unwrap();
    let mut text = obj.clone();
    let list = created_managed_fields(&mut text, "creator", scope);
    let mut without = obj.clone();
    if let Some(m) = without.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    assert_eq!(list.is_some(), direct);
    let mut through = obj;
    update(None, &mut through, "creator", scope).unwrap();
    assert_eq!(through, slow);
    if direct {
        assert_eq!(fast, slow);
        // As text: the bytes serde_json writes for the list, and the object
        // as sent without any list of its own.
        let want = slow["metadata"]
            .get("managedFields")
            .map(|l| serde_json::to_vec(l).unwrap());
        assert_eq!(list.flatten(), want);
        assert_eq!(text, without);
    }
    slow
}

#[test]
fn creates_record_the_same_fields_straight_from_the_object() {
    let pods = scope_of("", "Pod", "v1", true);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
            "creationTimestamp": "2026-01-01T00:00:00Z", "generateName": "p-",
            "labels": {"app": "web", "tier": "db"}, "annotations": {"a/b": "c"},
            "finalizers": ["x/y", "x/z"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r1", "controller": true}],
        },
        "spec": {
            "containers": [
                {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                 "env": [{"name": "A", "value": "1"}, {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
                 "resources": {"requests": {"cpu": "1"}}, "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                 "command": ["sh", "-c"], "securityContext": {}},
                {"image": "no-name-is-passed-over"},
            ],
            "initContainers": [],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "nodeSelector": {"zone": "a"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["a"]}]}]}}},
            "schedulerName": "default-scheduler", "priority": 0,
        },
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]},
    });
    let created = created_both_ways(pod.clone(), &pods, true);
    let fields = fields_of(&created, "creator");
    assert_eq!(
        fields["f:metadata"]["f:labels"],
        json!({".": {}, "f:app": {}, "f:tier": {}})
    );
    assert!(
        fields.get("f:status").is_none(),
        "a pod's status is its subresource's"
    );
    assert!(fields["f:metadata"].get("f:uid").is_none());
    assert_eq!(
        fields["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
        json!({".": {}, "f:containerPort": {}})
    );
    assert_eq!(
        fields["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:env"]["k:{\"name\":\"A\"}"],
        json!({".": {}, "f:name": {}, "f:value": {}, "f:valueFrom": {".": {}, "f:fieldRef": {".": {}, "f:fieldPath": {}}}}),
        "repeated keys own the union of their elements"
    );
    let entry = &created["metadata"]["managedFields"][0];
    assert_eq!(
        (
            entry["manager"].as_str(),
            entry["operation"].as_str(),
            entry["time"].as_str()
        ),
        (Some("creator"), Some("Update"), Some(NOW))
    );

    // Kinds without a status subresource own their status; empty and
    // scalar zero structs; nothing owned at all.
    let cms = scope_of("", "ConfigMap", "v1", false);
    created_both_ways(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
               "data": {"a": "1"}, "binaryData": {}, "immutable": true, "status": {"x": {"y": 1}}, "spec": {}}),
        &cms,
        true,
    );
    created_both_ways(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "spec": "scalar", "status": 3}),
        &cms,
        true,
    );
    // Keys that JSON escapes.
    created_both_ways(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
               "data": {"q\"uote": "1", "back\\slash": "2", "tab\there": "3", "ünï": "4"}}),
        &cms,
        true,
    );
    let bare = created_both_ways(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "uid": "u"}}),
        &cms,
        true,
    );
    assert!(bare["metadata"].get("managedFields").is_none());
    created_both_ways(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}}),
        &cms,
        true,
    );

    // Nested zero structs: pod templates, strategies, job templates.
    let deploys = scope_of("apps", "Deployment", "apps/v1", true);
    created_both_ways(deployment("nginx", 3), &deploys, true);
    let mut skeleton = deployment("nginx", 3);
    skeleton["spec"] = json!({"template": {"metadata": {}, "spec": {}}, "strategy": {}});
    created_both_ways(skeleton, &deploys, true);
    let cronjobs = scope_of("batch", "CronJob", "batch/v1", true);
    created_both_ways(
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
               "spec": {"schedule": "* * * * *", "jobTemplate": {"metadata": {"labels": {"a": "b"}},
                 "spec": {"template": {"metadata": {}, "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}}}),
        &cronjobs,
        true,
    );
    let events = scope_of("", "Event", "v1", false);
    created_both_ways(
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "ns"},
               "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns", "uid": "u"},
               "reason": "Scheduled", "message": "m", "source": {"component": "s"},
               "firstTimestamp": null, "count": 1, "type": "Normal"}),
        &events,
        true,
    );

    // Cleared managedFields are replaced; sent entries take the general way.
    for reset in [json!([]), json!([{}])] {
        let mut p = pod.clone();
        p["metadata"]["managedFields"] = reset;
        created_both_ways(p, &pods, true);
        let mut bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": []}});
        bare = created_both_ways(bare, &cms, true);
        assert!(bare["metadata"].get("managedFields").is_none());
    }
    let mut sent = pod.clone();
    sent["metadata"]["managedFields"] = json!([{"manager": "m", "operation": "Update", "apiVersion": "v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}}]);
    created_both_ways(sent, &pods, false);
}

#[test]
fn creates_too_deep_for_the_direct_path_fail_as_the_comparison_words_it() {
    let cms = scope_of("", "ConfigMap", "v1", false);
    let mut deep = json!("leaf");
    for _ in 0..crate::patch::MAX_DEPTH + 2 {
        deep = json!({"n": deep});
    }
    // Deep in an owned field, and deep where nothing is owned.
    for obj in [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": deep.clone()}),
        json!({"apiVersion": "v1", "kind": deep.clone(), "metadata": {"name": "c"}}),
    ] {
        let mut fast = obj.clone();
        assert!(!record_create(&mut fast, "creator", &cms));
        let mut slow = obj.clone();
        let want = update_by_comparison(None, &mut slow, "creator", &cms);
        assert!(want.is_err(), "{want:?}");
        let mut through = obj;
        assert_eq!(update(None, &mut through, "creator", &cms), want);
    }
    let mut fine = json!("leaf");
    for _ in 0..90 {
        fine = json!({"n": fine});
    }
    created_both_ways(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": fine}),
        &cms,
        true,
    );
}
