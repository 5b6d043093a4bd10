//! Validation of the template-owning kinds of apps/v1 and core/v1
//! (Deployment, ReplicaSet, DaemonSet, StatefulSet, ReplicationController)
//! and of ControllerRevisions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::containers::nonnegative;
use super::json::{at, has, int_of, list_of, semantic_eq, str_of, string_map};
use super::podspec::validate_template;
use super::render;
use super::rolling::{
    int_or_percent, not_more_than_100, positive_int_or_percent, validate_rolling_update_daemon_set,
    validate_rolling_update_deployment,
};
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::selector::labels::{Selector, from_label_selector, from_map};
use crate::validation::{validate_annotations, validate_labels};

fn spec_of(obj: &Value) -> Value {
    obj.get("spec").cloned().unwrap_or(Value::Null)
}

/// Upstream's `ValidateLabelSelector` (metav1), strict label values: the
/// one validator the core kinds use too.
pub(super) fn validate_label_selector(sel: &Value, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    crate::kinds::core::util::label_selector(&mut errs, path, sel);
    errs
}

/// `LabelSelectorAsSelector` of a JSON selector; `None` when it is invalid.
pub(super) fn selector_of(sel: Option<&Value>) -> Option<Selector> {
    let Some(v) = sel.filter(|v| !v.is_null()) else {
        return from_label_selector(None).ok();
    };
    let parsed: LabelSelector = serde_json::from_value(v.clone()).ok()?;
    from_label_selector(Some(&parsed)).ok()
}

fn is_empty_selector(sel: &Value) -> bool {
    string_map(sel.get("matchLabels")).is_empty() && list_of(sel, "matchExpressions").is_empty()
}

/// Template labels must match `selector` (when it selects something).
fn check_selector_matches(
    selector: &Selector,
    template: Option<&Value>,
    path: &Path,
    errs: &mut ErrorList,
) {
    let labels = template.and_then(|t| at(t, &["metadata", "labels"]));
    let map = labels
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !selector.is_empty() && !selector.matches(&map) {
        errs.push(Error::invalid(
            &path.child("metadata").child("labels"),
            BadValue::Raw(render::go_string_map(labels)),
            "`selector` does not match template `labels`",
        ));
    }
}

/// The selector block shared by Deployments, ReplicaSets and StatefulSets.
fn validate_spec_selector(
    spec: &Value,
    path: &Path,
    what: &str,
    errs: &mut ErrorList,
) -> Option<Selector> {
    let sel = spec.get("selector").filter(|v| !v.is_null());
    match sel {
        None => errs.push(Error::required(&path.child("selector"), "")),
        Some(s) => {
            errs.extend(validate_label_selector(s, &path.child("selector")));
            if is_empty_selector(s) {
                errs.push(Error::invalid(
                    &path.child("selector"),
                    BadValue::Raw(render::label_selector(Some(s))),
                    &format!("empty selector is invalid for {what}"),
                ));
            }
        }
    }
    let parsed = selector_of(sel);
    if parsed.is_none() {
        errs.push(Error::invalid(
            &path.child("selector"),
            BadValue::Raw(render::label_selector(sel)),
            "invalid label selector",
        ));
    }
    parsed
}

/// Rules on the pod template of a replicated workload.
fn template_for_replicas(
    spec: &Value,
    selector: &Selector,
    path: &Path,
    owner: &str,
    forbid_deadline: bool,
    errs: &mut ErrorList,
) {
    let template = spec.get("template").filter(|t| !t.is_null());
    let tp = path.child("template");
    if template.is_none() {
        errs.push(Error::required(&tp, ""));
        return;
    }
    check_selector_matches(selector, template, &tp, errs);
    errs.extend(validate_template(template, &tp));
    restart_always(template, &tp, errs);
    if forbid_deadline && template.is_some_and(has_deadline) {
        errs.push(Error::forbidden(
            &tp.child("spec").child("activeDeadlineSeconds"),
            &format!("activeDeadlineSeconds in {owner} is not Supported"),
        ));
    }
}

fn has_deadline(template: &Value) -> bool {
    at(template, &["spec", "activeDeadlineSeconds"]).is_some_and(|v| !v.is_null())
}

fn restart_always(template: Option<&Value>, tp: &Path, errs: &mut ErrorList) {
    let policy = template
        .and_then(|t| at(t, &["spec", "restartPolicy"]))
        .and_then(Value::as_str)
        .unwrap_or("");
    if policy != "Always" {
        errs.push(Error::not_supported(
            &tp.child("spec").child("restartPolicy"),
            policy,
            &["Always"],
        ));
    }
}

/// `ValidateReplicationController` (spec part).
pub(super) fn validate_rc(obj: &Value) -> ErrorList {
    let spec = spec_of(obj);
    let path = Path::new("spec");
    let mut errs = ErrorList::new();
    nonnegative(&spec, "minReadySeconds", &path, &mut errs);
    let selector = string_map(spec.get("selector"));
    if selector.is_empty() {
        errs.push(Error::required(&path.child("selector"), ""));
    }
    nonnegative(&spec, "replicas", &path, &mut errs);
    template_for_replicas(
        &spec,
        &from_map(&selector),
        &path,
        "ReplicationController",
        true,
        &mut errs,
    );
    errs
}

/// `ValidateReplicaSet` (spec part).
pub(super) fn validate_replica_set(obj: &Value) -> ErrorList {
    let spec = spec_of(obj);
    let path = Path::new("spec");
    let mut errs = ErrorList::new();
    nonnegative(&spec, "replicas", &path, &mut errs);
    nonnegative(&spec, "minReadySeconds", &path, &mut errs);
    if let Some(sel) = validate_spec_selector(&spec, &path, "deployment", &mut errs) {
        template_for_replicas(&spec, &sel, &path, "ReplicaSet", true, &mut errs);
    }
    errs
}

/// `ValidateDeployment` (spec part).
pub(super) fn validate_deployment(obj: &Value) -> ErrorList {
    let spec = spec_of(obj);
    let path = Path::new("spec");
    let mut errs = ErrorList::new();
    nonnegative(&spec, "replicas", &path, &mut errs);
    if let Some(sel) = validate_spec_selector(&spec, &path, "deployment", &mut errs) {
        template_for_replicas(&spec, &sel, &path, "ReplicaSet", true, &mut errs);
    }
    let strategy = spec.get("strategy").cloned().unwrap_or(Value::Null);
    let sp = path.child("strategy");
    match str_of(&strategy, "type") {
        "Recreate" => {
            if has(&strategy, "rollingUpdate") {
                errs.push(Error::forbidden(
                    &sp.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
            None => errs.push(Error::required(
                &sp.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => errs.extend(validate_rolling_update_deployment(
                ru,
                &sp.child("rollingUpdate"),
            )),
        },
        other => errs.push(Error::not_supported(
            &sp,
            BadValue::Raw(render::strategy(
                "DeploymentStrategy",
                "RollingUpdateDeployment",
                other,
                &strategy,
            )),
            &["Recreate", "RollingUpdate"],
        )),
    }
    nonnegative(&spec, "minReadySeconds", &path, &mut errs);
    nonnegative(&spec, "revisionHistoryLimit", &path, &mut errs);
    if let Some(pds) = int_of(&spec, "progressDeadlineSeconds") {
        let pp = path.child("progressDeadlineSeconds");
        if pds < 0 {
            errs.push(Error::invalid(
                &pp,
                pds,
                "must be greater than or equal to 0",
            ));
        }
        if pds <= int_of(&spec, "minReadySeconds").unwrap_or(0) {
            errs.push(Error::invalid(
                &pp,
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// `ValidateDaemonSet` (spec part).
pub(super) fn validate_daemon_set(obj: &Value) -> ErrorList {
    let spec = spec_of(obj);
    let path = Path::new("spec");
    let mut errs = ErrorList::new();
    let sel = spec.get("selector").filter(|v| !v.is_null());
    if let Some(s) = sel {
        errs.extend(validate_label_selector(s, &path.child("selector")));
    }
    let template = spec.get("template").filter(|t| !t.is_null());
    let tp = path.child("template");
    if let Some(selector) = selector_of(sel) {
        check_selector_matches(&selector, template, &tp, &mut errs);
    }
    if let Some(s) = sel
        && is_empty_selector(s)
    {
        errs.push(Error::invalid(
            &path.child("selector"),
            BadValue::Raw(render::label_selector(Some(s))),
            "empty selector is invalid for daemonset",
        ));
    }
    errs.extend(validate_template(template, &tp));
    restart_always(template, &tp, &mut errs);
    if let Some(n) = template
        .and_then(|t| at(t, &["spec", "activeDeadlineSeconds"]))
        .and_then(Value::as_i64)
    {
        errs.push(Error::invalid(
            &tp.child("spec").child("activeDeadlineSeconds"),
            n,
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    nonnegative(&spec, "minReadySeconds", &path, &mut errs);
    let strategy = spec.get("updateStrategy").cloned().unwrap_or(Value::Null);
    let sp = path.child("updateStrategy");
    match str_of(&strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
            None => errs.push(Error::required(&sp.child("rollingUpdate"), "")),
            Some(ru) => errs.extend(validate_rolling_update_daemon_set(
                ru,
                &sp.child("rollingUpdate"),
            )),
        },
        other => errs.push(Error::not_supported(
            &sp,
            BadValue::Raw(render::strategy(
                "DaemonSetUpdateStrategy",
                "RollingUpdateDaemonSet",
                other,
                &strategy,
            )),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    nonnegative(&spec, "revisionHistoryLimit", &path, &mut errs);
    errs
}

/// `ValidateStatefulSet` (spec part).
pub(super) fn validate_stateful_set(obj: &Value) -> ErrorList {
    let spec = spec_of(obj);
    let path = Path::new("spec");
    let mut errs = ErrorList::new();
    match str_of(&spec, "podManagementPolicy") {
        "OrderedReady" | "Parallel" => {}
        "" => errs.push(Error::required(&path.child("podManagementPolicy"), "")),
        other => errs.push(Error::invalid(
            &path.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.get("updateStrategy").cloned().unwrap_or(Value::Null);
    let sp = path.child("updateStrategy");
    match str_of(&strategy, "type") {
        "" => errs.push(Error::required(&sp, "")),
        "OnDelete" => {
            if has(&strategy, "rollingUpdate") {
                errs.push(Error::invalid(
                    &sp.child("rollingUpdate"),
                    BadValue::Raw("&apps.RollingUpdateStatefulSetStrategy{...}".into()),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
                let rp = sp.child("rollingUpdate");
                nonnegative(ru, "partition", &rp, &mut errs);
                if let Some(mu) = ru.get("maxUnavailable").filter(|v| !v.is_null()) {
                    let mp = rp.child("maxUnavailable");
                    positive_int_or_percent(Some(mu), &mp, &mut errs);
                    if int_or_percent(Some(mu)).0 == 0 {
                        errs.push(Error::invalid(
                            &mp,
                            BadValue::Raw(render::int_or_string(Some(mu))),
                            "cannot be 0",
                        ));
                    }
                    not_more_than_100(Some(mu), &mp, &mut errs);
                }
            }
        }
        other => errs.push(Error::invalid(
            &sp,
            BadValue::Raw(format!(
                "apps.StatefulSetUpdateStrategy{{Type:{}}}",
                crate::go_quote(other)
            )),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = spec.get("persistentVolumeClaimRetentionPolicy") {
        let pp = path.child("persistentVolumeClaimRetentionPolicy");
        for key in ["whenDeleted", "whenScaled"] {
            let v = str_of(policy, key);
            if v != "Retain" && v != "Delete" {
                errs.push(Error::not_supported(
                    &pp.child(key),
                    v,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    nonnegative(&spec, "replicas", &path, &mut errs);
    nonnegative(&spec, "minReadySeconds", &path, &mut errs);
    if let Some(ordinals) = spec.get("ordinals") {
        nonnegative(ordinals, "start", &path.child("ordinals"), &mut errs);
    }
    if let Some(sel) = validate_spec_selector(&spec, &path, "statefulset", &mut errs) {
        let template = spec.get("template").filter(|t| !t.is_null());
        let tp = path.child("template");
        check_selector_matches(&sel, template, &tp, &mut errs);
        // Upstream checks only the template's metadata here: volume mounts
        // may name volume claim templates, which a pod spec check rejects.
        let meta = template.and_then(|t| t.get("metadata"));
        errs.extend(validate_labels(
            &string_map(meta.and_then(|m| m.get("labels"))),
            &tp.child("labels"),
        ));
        errs.extend(validate_annotations(
            &string_map(meta.and_then(|m| m.get("annotations"))),
            &tp.child("annotations"),
        ));
    }
    let template = spec.get("template");
    let tp = path.child("template");
    restart_always(template, &tp, &mut errs);
    if template.is_some_and(has_deadline) {
        errs.push(Error::forbidden(
            &tp.child("spec").child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    errs
}

/// The apps/v1 rule that a selector never changes.
pub(super) fn validate_selector_immutable(new: &Value, old: &Value) -> ErrorList {
    let (ns, os) = (
        at(new, &["spec", "selector"]),
        at(old, &["spec", "selector"]),
    );
    let mut errs = ErrorList::new();
    if !semantic_eq(ns, os) {
        errs.push(Error::invalid(
            &Path::new("spec").child("selector"),
            BadValue::Raw(render::label_selector(ns)),
            "field is immutable",
        ));
    }
    errs
}

/// `ValidateStatefulSetUpdate`: only some spec fields may change.
pub(super) fn validate_stateful_set_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut clone = spec_of(new);
    let old_spec = spec_of(old);
    if let Some(m) = clone.as_object_mut() {
        for key in [
            "replicas",
            "template",
            "updateStrategy",
            "minReadySeconds",
            "ordinals",
            "persistentVolumeClaimRetentionPolicy",
        ] {
            match old_spec.get(key) {
                Some(v) => {
                    m.insert(key.to_owned(), v.clone());
                }
                None => {
                    m.remove(key);
                }
            }
        }
    }
    if !semantic_eq(Some(&clone), Some(&old_spec)) {
        errs.push(Error::forbidden(
            &Path::new("spec"),
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
    errs
}
