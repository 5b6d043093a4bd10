//! RBAC: roles, cluster roles and their bindings.

use serde_json::Value;

use crate::field::{BadValue, Error, ErrorList, Path};
use crate::kinds::core::util::{
    arr, default_str, invalid_each, label_selector, str_or_empty, strs,
};
use crate::validation::{is_dns1123_subdomain, is_valid_path_segment_name};

const GROUP: &str = "rbac.authorization.k8s.io";

/// `SetDefaults_*RoleBinding` and `SetDefaults_Subject`: the RBAC API
/// group on the role reference and on User and Group subjects.
pub(super) fn default_binding(binding: &mut Value) {
    if let Some(role_ref) = binding.get_mut("roleRef").filter(|r| r.is_object()) {
        default_str(role_ref, "apiGroup", GROUP);
    }
    if let Some(subjects) = binding.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects.iter_mut().filter(|s| s.is_object()) {
            if matches!(str_or_empty(s, "kind"), "User" | "Group") {
                default_str(s, "apiGroup", GROUP);
            }
        }
    }
}

fn validate_rule(rule: &Value, namespaced: bool, path: &Path, errs: &mut ErrorList) {
    if arr(rule, "verbs").is_empty() {
        errs.push(Error::required(
            &path.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = strs(rule, "nonResourceURLs");
    if !urls.is_empty() {
        let urls_bad = || BadValue::StrList(urls.iter().map(|s| (*s).to_owned()).collect());
        if namespaced {
            errs.push(Error::invalid(
                &path.child("nonResourceURLs"),
                urls_bad(),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if ["apiGroups", "resources", "resourceNames"]
            .iter()
            .any(|k| !arr(rule, k).is_empty())
        {
            errs.push(Error::invalid(
                &path.child("nonResourceURLs"),
                urls_bad(),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if arr(rule, "apiGroups").is_empty() {
        errs.push(Error::required(
            &path.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if arr(rule, "resources").is_empty() {
        errs.push(Error::required(
            &path.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

/// Upstream's `ValidateRole` / `ValidateClusterRole` (rules and, for
/// cluster roles, the aggregation rule).
pub(super) fn validate_role(role: &Value, namespaced: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, rule) in arr(role, "rules").iter().enumerate() {
        validate_rule(rule, namespaced, &Path::new("rules").index(i), &mut errs);
    }
    if !namespaced && let Some(agg) = role.get("aggregationRule").filter(|a| !a.is_null()) {
        let p = Path::new("aggregationRule").child("clusterRoleSelectors");
        let selectors = arr(agg, "clusterRoleSelectors");
        if selectors.is_empty() {
            errs.push(Error::required(
                &p,
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            ));
        }
        for (i, sel) in selectors.iter().enumerate() {
            label_selector(&mut errs, &p.index(i), sel);
        }
    }
    errs
}

fn validate_subject(subject: &Value, namespaced: bool, path: &Path, errs: &mut ErrorList) {
    let name = str_or_empty(subject, "name");
    if name.is_empty() {
        errs.push(Error::required(&path.child("name"), ""));
    }
    let api_group = str_or_empty(subject, "apiGroup");
    match str_or_empty(subject, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                invalid_each(errs, &path.child("name"), name, is_dns1123_subdomain(name));
            }
            if !api_group.is_empty() {
                errs.push(Error::not_supported(
                    &path.child("apiGroup"),
                    api_group,
                    &[""],
                ));
            }
            if !namespaced && str_or_empty(subject, "namespace").is_empty() {
                errs.push(Error::required(&path.child("namespace"), ""));
            }
        }
        kind @ ("User" | "Group") => {
            if name.is_empty() {
                let what = if kind == "User" { "user" } else { "group" };
                errs.push(Error::invalid(
                    &path.child("name"),
                    "",
                    &format!("{what} name cannot be empty"),
                ));
            }
            if api_group != GROUP {
                errs.push(Error::not_supported(
                    &path.child("apiGroup"),
                    api_group,
                    &[GROUP],
                ));
            }
        }
        other => errs.push(Error::not_supported(
            &path.child("kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

/// Upstream's `ValidateRoleBinding` / `ValidateClusterRoleBinding`.
pub(super) fn validate_binding(binding: &Value, namespaced: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let role_ref = binding.get("roleRef").unwrap_or(&null);
    let rp = Path::new("roleRef");
    let api_group = str_or_empty(role_ref, "apiGroup");
    if api_group != GROUP {
        errs.push(Error::not_supported(
            &rp.child("apiGroup"),
            api_group,
            &[GROUP],
        ));
    }
    let kind = str_or_empty(role_ref, "kind");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        errs.push(Error::not_supported(&rp.child("kind"), kind, kinds));
    }
    let name = str_or_empty(role_ref, "name");
    if name.is_empty() {
        errs.push(Error::required(&rp.child("name"), ""));
    } else {
        invalid_each(
            &mut errs,
            &rp.child("name"),
            name,
            is_valid_path_segment_name(name),
        );
    }
    for (i, s) in arr(binding, "subjects").iter().enumerate() {
        validate_subject(s, namespaced, &Path::new("subjects").index(i), &mut errs);
    }
    errs
}

/// Go's `%#v` of an `rbac.RoleRef`.
fn role_ref_repr(r: Option<&Value>) -> BadValue {
    let null = Value::Null;
    let r = r.unwrap_or(&null);
    BadValue::Raw(format!(
        "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
        crate::go_quote(str_or_empty(r, "apiGroup")),
        crate::go_quote(str_or_empty(r, "kind")),
        crate::go_quote(str_or_empty(r, "name"))
    ))
}

/// Upstream's binding update rules: the role reference is fixed.
pub(super) fn validate_binding_update(new: &Value, old: &Value, namespaced: bool) -> ErrorList {
    let mut errs = validate_binding(new, namespaced);
    let key = |v: &Value| {
        let r = v.get("roleRef");
        ["apiGroup", "kind", "name"]
            .map(|k| r.map(|r| str_or_empty(r, k).to_owned()).unwrap_or_default())
    };
    if key(new) != key(old) {
        errs.push(Error::invalid(
            &Path::new("roleRef"),
            role_ref_repr(new.get("roleRef")),
            "cannot change roleRef",
        ));
    }
    errs
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
