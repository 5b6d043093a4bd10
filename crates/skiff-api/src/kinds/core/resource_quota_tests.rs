#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::kinds::core::util::messages;
use crate::kinds::{prepare_create, validate, validate_status_update, validate_update};

#[test]
fn resource_quota_validation_and_create() {
    let rq = json!({"spec": {"hard": {"pods": "10", "requests.cpu": "4", "count/deployments.apps": "2", "bananas": "1", "memory": "-1", "services": "1500m"}, "scopes": ["BestEffort", "Sometimes"]}});
    assert_eq!(
        messages(&validate("", "ResourceQuota", &rq)),
        vec![
            "spec.hard[bananas]: Invalid value: \"bananas\": must be a standard resource type or fully qualified",
            "spec.hard[bananas]: Invalid value: \"bananas\": must be a standard resource for quota",
            "spec.hard[memory]: Invalid value: -1: must be greater than or equal to 0",
            "spec.hard[services]: Invalid value: 1500m: must be an integer",
            // One per resource BestEffort cannot limit, as upstream lists them
            // (the aggregate message shows each once).
            "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"Sometimes\"}: unsupported scope applied to resource",
            "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"Sometimes\"}: unsupported scope applied to resource",
            "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"Sometimes\"}: unsupported scope applied to resource",
            "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"Sometimes\"}: unsupported scope",
        ]
    );
    let mut created = json!({"spec": {"hard": {"pods": "1"}}, "status": {"used": {"pods": "5"}}});
    prepare_create("", "ResourceQuota", &mut created);
    assert_eq!(created["status"], json!({}));
}

#[test]
fn scopes_must_fit_the_resources_and_stay_fixed() {
    let rq = json!({"spec": {"hard": {"pods": "1", "configmaps": "2"}, "scopes": ["BestEffort", "NotBestEffort"]}});
    assert_eq!(
        messages(&validate("", "ResourceQuota", &rq)),
        vec![
            "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"NotBestEffort\"}: unsupported scope applied to resource",
            "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"NotBestEffort\"}: unsupported scope applied to resource",
            "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"NotBestEffort\"}: conflicting scopes",
        ]
    );
    let selector = json!({"spec": {"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In"},
        {"scopeName": "Terminating", "operator": "In", "values": ["x"]},
    ]}}});
    assert_eq!(
        messages(&validate("", "ResourceQuota", &selector)),
        vec![
            "spec.scopeSelector.matchExpressions.values: Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            "spec.scopeSelector.matchExpressions.operator: Invalid value: \"In\": must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
        ]
    );
    let old = json!({"spec": {"hard": {"pods": "1"}, "scopes": ["NotTerminating"]}});
    let new = json!({"spec": {"hard": {"pods": "2"}, "scopes": ["Terminating"]}});
    assert_eq!(
        messages(&validate_update("", "ResourceQuota", &new, &old)),
        vec![
            "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"Terminating\"}: field is immutable"
        ]
    );
    // The main resource's update does not look at the status; /status does.
    let bad_status = json!({"spec": {"hard": {"pods": "1"}, "scopes": ["NotTerminating"]}, "status": {"used": {"pods": "-1"}}});
    assert!(validate_update("", "ResourceQuota", &bad_status, &old).is_empty());
    assert_eq!(
        messages(&validate_status_update(
            "",
            "ResourceQuota",
            &bad_status,
            &old
        )),
        vec!["status.used[pods]: Invalid value: -1: must be greater than or equal to 0"]
    );
}
