#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::kinds::core::util::messages;
use crate::kinds::{default, validate, validate_update};

const RBAC: &str = "rbac.authorization.k8s.io";

#[test]
fn rules() {
    let role = json!({"rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"resources": ["pods"]},
        {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
    ]});
    assert_eq!(
        messages(&validate(RBAC, "Role", &role)),
        vec![
            "rules[1].verbs: Required value: verbs must contain at least one value",
            "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
            "rules[2].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
        ]
    );
    let cluster_role = json!({"rules": [
        {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
        {"nonResourceURLs": ["/metrics"], "resources": ["pods"], "verbs": ["get"]},
    ]});
    assert_eq!(
        messages(&validate(RBAC, "ClusterRole", &cluster_role)),
        vec![
            "rules[1].nonResourceURLs: Invalid value: []string{\"/metrics\"}: rules cannot apply to both regular resources and non-resource URLs"
        ]
    );
    let aggregated = json!({"aggregationRule": {"clusterRoleSelectors": []}});
    assert_eq!(
        messages(&validate(RBAC, "ClusterRole", &aggregated)),
        vec![
            "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
        ]
    );
}

#[test]
fn bindings_default_validate_and_keep_their_role() {
    let mut rb = json!({
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "ServiceAccount", "name": "builder", "namespace": "ci"},
        ],
    });
    default(RBAC, "RoleBinding", &mut rb);
    assert_eq!(rb["roleRef"]["apiGroup"], RBAC);
    assert_eq!(rb["subjects"][0]["apiGroup"], RBAC);
    assert!(rb["subjects"][1].get("apiGroup").is_none());
    assert!(validate(RBAC, "RoleBinding", &rb).is_empty());

    let bad = json!({
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "edit"},
        "subjects": [
            {"kind": "Robot", "name": "r2"},
            {"kind": "ServiceAccount", "name": "Bad_Name"},
            {"kind": "Group", "apiGroup": "", "name": ""},
        ],
    });
    assert_eq!(
        messages(&validate(RBAC, "ClusterRoleBinding", &bad)),
        vec![
            "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
            "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
            "subjects[1].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            "subjects[1].namespace: Required value",
            "subjects[2].name: Required value",
            "subjects[2].name: Invalid value: \"\": group name cannot be empty",
            "subjects[2].apiGroup: Unsupported value: \"\": supported values: \"rbac.authorization.k8s.io\"",
        ]
    );

    let mut changed = rb.clone();
    changed["roleRef"]["name"] = json!("edit");
    assert_eq!(
        messages(&validate_update(RBAC, "RoleBinding", &changed, &rb)),
        vec![
            "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"
        ]
    );
    let mut more_subjects = rb.clone();
    more_subjects["subjects"][0]["name"] = json!("bob");
    assert!(validate_update(RBAC, "RoleBinding", &more_subjects, &rb).is_empty());
}
