//! Upstream's `DefaultStorageClass` admission plugin: a claim created
//! without a class gets the default StorageClass (the newest one when
//! several are marked default, ties broken by name, as upstream since
//! 1.26); with no default class the claim is left as it is.

use serde_json::Value;
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::status::ApiError;
use skiff_store::{ListOptions, Store};

use super::{Registry, decode, meta};

/// The annotation that marks the default StorageClass.
const IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// Its beta spelling, still honoured upstream.
const BETA_IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The beta annotation a claim could name its class with.
const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

impl Registry {
    /// Sets `spec.storageClassName` of a new claim that names no class.
    pub(super) async fn admit_default_storage_class(
        &self,
        info: &ResourceInfo,
        claim: &mut Value,
    ) -> Result<(), ApiError> {
        if has_class(claim) {
            return Ok(());
        }
        let Some(classes) = resources::by_gvr("storage.k8s.io", "v1", "storageclasses") else {
            return Ok(());
        };
        let page = self
            .store
            .list(&classes.prefix(None), ListOptions::default())
            .await
            .map_err(|e| ApiError::Forbidden {
                group: info.group.to_owned(),
                resource: info.plural.to_owned(),
                name: meta::meta_str(claim, "name").to_owned(),
                reason: e.to_string(),
            })?;
        let listed = page.kvs.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        if let Some(name) = default_class(&listed)
            && let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("storageClassName".into(), Value::String(name.to_owned()));
        }
        Ok(())
    }
}

/// A claim names a class when `spec.storageClassName` is set (even to "",
/// which asks for no class) or it carries the beta annotation.
fn has_class(claim: &Value) -> bool {
    claim
        .pointer("/spec/storageClassName")
        .is_some_and(|c| !c.is_null())
        || claim
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(BETA_STORAGE_CLASS_ANNOTATION))
            .is_some()
}

fn is_default(class: &Value) -> bool {
    let annotation = |key: &str| {
        class
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            == Some("true")
    };
    annotation(IS_DEFAULT_CLASS_ANNOTATION) || annotation(BETA_IS_DEFAULT_CLASS_ANNOTATION)
}

/// The name of the default class among `classes`: the newest default
/// (creation timestamps order as strings), the first by name on a tie.
fn default_class(classes: &[Value]) -> Option<&str> {
    classes
        .iter()
        .filter(|c| is_default(c))
        .map(|c| {
            (
                meta::meta_str(c, "creationTimestamp"),
                meta::meta_str(c, "name"),
            )
        })
        .max_by(|(t1, n1), (t2, n2)| t1.cmp(t2).then_with(|| n2.cmp(n1)))
        .map(|(_, name)| name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, created: &str, annotations: Value) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created, "annotations": annotations}})
    }

    #[test]
    fn the_newest_default_class_wins() {
        let default = json!({IS_DEFAULT_CLASS_ANNOTATION: "true"});
        let beta = json!({BETA_IS_DEFAULT_CLASS_ANNOTATION: "true"});
        let cases: Vec<(&str, Vec<Value>, Option<&str>)> = vec![
            ("no classes", vec![], None),
            (
                "no default",
                vec![
                    class("a", "2025-01-01T00:00:00Z", json!({})),
                    class(
                        "b",
                        "2025-01-02T00:00:00Z",
                        json!({IS_DEFAULT_CLASS_ANNOTATION: "false"}),
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
            assert_eq!(default_class(&classes), want, "{what}");
        }
    }

    #[test]
    fn claims_naming_a_class_keep_it() {
        let cases = [
            (json!({"spec": {}}), false),
            (json!({"spec": {"storageClassName": null}}), false),
            (json!({"spec": {"storageClassName": ""}}), true),
            (json!({"spec": {"storageClassName": "fast"}}), true),
            (
                json!({"metadata": {"annotations": {BETA_STORAGE_CLASS_ANNOTATION: ""}}, "spec": {}}),
                true,
            ),
        ];
        for (claim, want) in cases {
            assert_eq!(has_class(&claim), want, "{claim}");
        }
    }
}
