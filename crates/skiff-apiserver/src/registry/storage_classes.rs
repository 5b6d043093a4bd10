//! Upstream's `DefaultStorageClass` admission plugin: a claim created
//! without a class gets the default StorageClass (the newest one when
//! several are marked default, ties broken by name, as upstream since
//! 1.26: [`storage::default_class`]); with no default class the claim is
//! left as it is.

use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::Value;
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::status::ApiError;
use skiff_api::storage;
use skiff_store::{ListOptions, Store};

use super::{Registry, decode, meta};

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
        // Stored classes are valid ones; one that does not read cannot be
        // the default.
        let classes: Vec<StorageClass> = listed
            .into_iter()
            .filter_map(|c| serde_json::from_value(c).ok())
            .collect();
        if let Some(name) = storage::default_class(&classes).and_then(|c| c.metadata.name.clone())
            && let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("storageClassName".into(), Value::String(name));
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
            .and_then(|a| a.get(storage::ANN_BETA_STORAGE_CLASS))
            .is_some()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_naming_a_class_keep_it() {
        let cases = [
            (json!({"spec": {}}), false),
            (json!({"spec": {"storageClassName": null}}), false),
            (json!({"spec": {"storageClassName": ""}}), true),
            (json!({"spec": {"storageClassName": "fast"}}), true),
            (
                json!({"metadata": {"annotations": {storage::ANN_BETA_STORAGE_CLASS: ""}}, "spec": {}}),
                true,
            ),
        ];
        for (claim, want) in cases {
            assert_eq!(has_class(&claim), want, "{claim}");
        }
    }
}
