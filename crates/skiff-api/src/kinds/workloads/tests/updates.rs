//! Update rules: what may change in a pod, immutable selectors, the
//! StatefulSet and Job restrictions, and update-time strategies.

use serde_json::{Value, json};

use super::{create, messages, nginx_pod, update};

fn created(kind: &str, obj: Value) -> Value {
    let (obj, errs) = create(kind, obj);
    assert!(errs.is_empty(), "{errs}");
    obj
}

const POD_UPDATE_PREFIX: &str = "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n";

#[test]
fn pod_updates_may_change_images_but_not_names() {
    let old = created("Pod", nginx_pod());

    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    let (new, errs) = update("Pod", new, &old);
    assert!(errs.is_empty(), "{errs}");
    assert_eq!(new["spec"]["containers"][0]["image"], "nginx:1.27");

    let mut new = old.clone();
    new["spec"]["containers"][0]["name"] = json!("web");
    let msgs = messages(&update("Pod", new, &old).1);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].starts_with(POD_UPDATE_PREFIX), "{}", msgs[0]);
    assert!(msgs[0].contains("spec.containers[0].name"), "{}", msgs[0]);

    // A body that leaves out defaulted fields is defaulted again, so it
    // is not a change.
    let mut sparse = nginx_pod();
    sparse["metadata"] = old["metadata"].clone();
    sparse["spec"]["tolerations"] = old["spec"]["tolerations"].clone();
    let (_, errs) = update("Pod", sparse, &old);
    assert!(errs.is_empty(), "{errs}");
}

#[test]
fn pod_update_special_fields() {
    let mut pod = nginx_pod();
    pod["spec"]["activeDeadlineSeconds"] = json!(100);
    let old = created("Pod", pod);

    let mut new = old.clone();
    new["spec"]["activeDeadlineSeconds"] = json!(50);
    assert!(update("Pod", new, &old).1.is_empty());

    let mut new = old.clone();
    new["spec"]["activeDeadlineSeconds"] = json!(200);
    assert_eq!(
        messages(&update("Pod", new, &old).1),
        [
            "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"
        ]
    );

    let mut new = old.clone();
    new["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "side", "image": "busybox"}));
    assert_eq!(
        messages(&update("Pod", new, &old).1),
        ["spec.containers: Forbidden: pod updates may not add or remove containers"]
    );

    let mut new = old.clone();
    new["spec"]["tolerations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "dedicated", "operator": "Exists"}));
    assert!(update("Pod", new, &old).1.is_empty());

    let mut new = old.clone();
    new["spec"]["tolerations"] = json!([]);
    let msgs = messages(&update("Pod", new, &old).1);
    // The admission defaults come back, so removing them is a no-op.
    assert!(msgs.is_empty(), "{msgs:?}");

    let mut with_extra = old.clone();
    with_extra["spec"]["tolerations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "dedicated", "operator": "Exists"}));
    let mut new = with_extra.clone();
    new["spec"]["tolerations"].as_array_mut().unwrap().pop();
    assert_eq!(
        messages(&update("Pod", new, &with_extra).1),
        [
            "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
        ]
    );
}

fn deployment() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}
            }
        }
    })
}

#[test]
fn selectors_are_immutable_in_apps() {
    for kind in ["Deployment", "ReplicaSet", "DaemonSet"] {
        let old = created(kind, deployment());
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "tier": "x"}});
        new["spec"]["template"]["metadata"]["labels"] = json!({"app": "web", "tier": "x"});
        assert_eq!(
            messages(&update(kind, new, &old).1),
            [
                "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{app: web,tier: x,},MatchExpressions:[]LabelSelectorRequirement{},}: field is immutable"
            ],
            "{kind}"
        );
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert!(update(kind, new, &old).1.is_empty(), "{kind}");
    }
}

#[test]
fn stateful_set_updates_are_limited() {
    let mut s = deployment();
    s["spec"]["serviceName"] = json!("web");
    let old = created("StatefulSet", s);
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(3);
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    assert!(update("StatefulSet", new, &old).1.is_empty());
    let mut new = old.clone();
    new["spec"]["serviceName"] = json!("other");
    assert_eq!(
        messages(&update("StatefulSet", new, &old).1),
        [
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );
}

#[test]
fn job_templates_are_immutable_unless_suspended() {
    let job = json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                 "containers": [{"name": "pi", "image": "perl"}]}}}
    });
    let old = created("Job", job);
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:2");
    let msgs = messages(&update("Job", new, &old).1);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].starts_with("spec.template: Invalid value: "),
        "{}",
        msgs[0]
    );
    assert!(msgs[0].ends_with(": field is immutable"), "{}", msgs[0]);

    let mut suspended = old.clone();
    suspended["spec"]["suspend"] = json!(true);
    let mut new = suspended.clone();
    new["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
    assert!(update("Job", new, &suspended).1.is_empty());

    let mut new = old.clone();
    new["spec"]["completions"] = json!(5);
    assert_eq!(
        messages(&update("Job", new, &old).1),
        ["spec.completions: Invalid value: 5: field is immutable"]
    );
}

#[test]
fn daemon_set_template_generation_follows_template_changes() {
    let old = created("DaemonSet", deployment());
    let mut new = old.clone();
    new["spec"]["minReadySeconds"] = json!(5);
    let (same, _) = update("DaemonSet", new, &old);
    assert_eq!(
        same["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
        "1"
    );
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let (bumped, _) = update("DaemonSet", new, &old);
    assert_eq!(
        bumped["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
        "2"
    );
}

#[test]
fn deployment_annotation_changes_bump_generation() {
    let old = created("Deployment", deployment());
    let mut new = old.clone();
    new["metadata"]["annotations"] = json!({"note": "x"});
    let (new, _) = update("Deployment", new, &old);
    assert_eq!(new["metadata"]["generation"], 2);
}

#[test]
fn status_updates() {
    let old = created("Pod", nginx_pod());
    let mut new = old.clone();
    new["status"]["podIPs"] = json!([{"ip": "10.0.0.300"}]);
    new["status"]["qosClass"] = json!("Guaranteed");
    assert_eq!(
        messages(&super::super::validate_status_update("Pod", &new, &old)),
        [
            "status.qosClass: Invalid value: \"Guaranteed\": field is immutable",
            "status.podIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ]
    );
    let mut never = nginx_pod();
    never["spec"]["restartPolicy"] = json!("Never");
    let mut old = created("Pod", never);
    old["status"]["containerStatuses"] =
        json!([{"name": "nginx", "state": {"terminated": {"exitCode": 0}}}]);
    let mut new = old.clone();
    new["status"]["containerStatuses"] = json!([{"name": "nginx", "state": {"running": {}}}]);
    assert_eq!(
        messages(&super::super::validate_status_update("Pod", &new, &old)),
        [
            "status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"
        ]
    );
    let old = created("Deployment", deployment());
    let mut new = old.clone();
    new["status"] = json!({"replicas": -1});
    assert_eq!(
        messages(&super::super::validate_status_update(
            "Deployment",
            &new,
            &old
        )),
        ["status.replicas: Invalid value: -1: must be greater than or equal to 0"]
    );
}
