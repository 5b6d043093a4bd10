#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::kinds::core::util::messages;
use crate::kinds::{default, prepare_create, validate, validate_status_update, validate_update};

#[test]
fn leases() {
    let lease = json!({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 0, "leaseTransitions": -1, "preferredHolder": "b"}});
    assert_eq!(
        messages(&validate("coordination.k8s.io", "Lease", &lease)),
        vec![
            "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
            "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
        ]
    );
    let ok = json!({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
    assert!(validate("coordination.k8s.io", "Lease", &ok).is_empty());
}

#[test]
fn disruption_budgets() {
    let both = json!({"spec": {"minAvailable": 1, "maxUnavailable": "150%", "selector": {"matchLabels": {"app": "web"}}}});
    assert_eq!(
        messages(&validate("policy", "PodDisruptionBudget", &both)),
        vec![
            "spec: Invalid value: policy.PodDisruptionBudgetSpec{MinAvailable:(*intstr.IntOrString)(0xc000010000), Selector:(*v1.LabelSelector)(0xc000010020), MaxUnavailable:(*intstr.IntOrString)(0xc000010040), UnhealthyPodEvictionPolicy:(*policy.UnhealthyPodEvictionPolicyType)(nil)}: minAvailable and maxUnavailable cannot be both set",
            "spec.maxUnavailable: Invalid value: 150%: must not be greater than 100%",
        ]
    );
    let bad = json!({"spec": {"minAvailable": "half", "unhealthyPodEvictionPolicy": "Never"}});
    assert_eq!(
        messages(&validate("policy", "PodDisruptionBudget", &bad)),
        vec![
            "spec.minAvailable: Invalid value: half: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\"",
        ]
    );
    let mut created = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 9}});
    prepare_create("policy", "PodDisruptionBudget", &mut created);
    assert_eq!(created["status"]["disruptionsAllowed"], 0);
    assert_eq!(created["status"]["expectedPods"], 0);
    let negative = json!({"status": {"currentHealthy": -1}});
    assert_eq!(
        messages(&validate_status_update(
            "policy",
            "PodDisruptionBudget",
            &negative,
            &created
        )),
        vec!["status.currentHealthy: Invalid value: -1: must be greater than or equal to 0"]
    );
}

#[test]
fn priority_classes() {
    const SCHED: &str = "scheduling.k8s.io";
    let mut pc = json!({"metadata": {"name": "high"}, "value": 1000});
    default(SCHED, "PriorityClass", &mut pc);
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    assert!(validate(SCHED, "PriorityClass", &pc).is_empty());
    let too_high = json!({"metadata": {"name": "higher"}, "value": 1_000_000_001});
    assert_eq!(
        messages(&validate(SCHED, "PriorityClass", &too_high)),
        vec!["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    );
    let reserved = json!({"metadata": {"name": "system-mine"}, "value": 1});
    assert_eq!(
        messages(&validate(SCHED, "PriorityClass", &reserved)),
        vec![
            "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"
        ]
    );
    let system = json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000, "preemptionPolicy": "PreemptLowerPriority"});
    assert!(validate(SCHED, "PriorityClass", &system).is_empty());
    let mut changed = pc.clone();
    changed["value"] = json!(2000);
    changed["preemptionPolicy"] = json!("Never");
    assert_eq!(
        messages(&validate_update(SCHED, "PriorityClass", &changed, &pc)),
        vec![
            "value: Forbidden: may not be changed in an update.",
            "preemptionPolicy: Invalid value: \"Never\": field is immutable",
        ]
    );
}

#[test]
fn storage_classes() {
    const STORAGE: &str = "storage.k8s.io";
    let mut sc = json!({"provisioner": "rancher.io/local-path", "parameters": {"a": "b"}});
    default(STORAGE, "StorageClass", &mut sc);
    assert_eq!(sc["reclaimPolicy"], "Delete");
    assert_eq!(sc["volumeBindingMode"], "Immediate");
    assert!(validate(STORAGE, "StorageClass", &sc).is_empty());
    let bad = json!({"reclaimPolicy": "Recycle", "volumeBindingMode": "Later"});
    assert_eq!(
        messages(&validate(STORAGE, "StorageClass", &bad)),
        vec![
            "provisioner: Required value",
            "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
            "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
        ]
    );
    let mut changed = sc.clone();
    changed["provisioner"] = json!("example.com/other");
    changed["parameters"] = json!({"a": "c"});
    changed["volumeBindingMode"] = json!("WaitForFirstConsumer");
    assert_eq!(
        messages(&validate_update(STORAGE, "StorageClass", &changed, &sc)),
        vec![
            "parameters: Forbidden: updates to parameters are forbidden.",
            "provisioner: Forbidden: updates to provisioner are forbidden.",
            "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable",
        ]
    );
    let mut labelled = sc.clone();
    labelled["allowVolumeExpansion"] = json!(true);
    assert!(validate_update(STORAGE, "StorageClass", &labelled, &sc).is_empty());
}
