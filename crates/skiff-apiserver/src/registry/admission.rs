//! Admission that needs other objects or the requester, as upstream's
//! plugins and strategies of the same names: `Priority` (a pod's priority
//! from its PriorityClass, or from the global default class; one global
//! default at a time) and the CertificateSigningRequest requester fields.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::selector::fields::FieldSelector;
use skiff_api::selector::labels::Selector;
use skiff_api::status::ApiError;
use skiff_store::{ListOptions, Store};

use super::{Call, Registry, meta, store_error};
use crate::authn::UserInfo;

/// Whether `info` is PriorityClasses.
pub(super) fn is_priority_class(info: &ResourceInfo) -> bool {
    info.group == "scheduling.k8s.io" && info.plural == "priorityclasses"
}

/// What admission reads of a PriorityClass. Decoding only these fields
/// skips the rest (managedFields, descriptions) of every class on every
/// pod creation. Each is optional, as reading them from a `Value` was: a
/// null reads as absent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PriorityClass {
    #[serde(default)]
    metadata: Option<NameOnly>,
    #[serde(default)]
    value: Option<i64>,
    #[serde(default)]
    global_default: Option<bool>,
    #[serde(default)]
    preemption_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NameOnly {
    #[serde(default)]
    name: Option<String>,
}

/// PriorityClasses as decoded from the objects at `revisions`.
#[derive(Debug, Default)]
pub(super) struct SeenClasses {
    revisions: Vec<i64>,
    classes: Arc<[PriorityClass]>,
}

impl PriorityClass {
    fn decode(json: &[u8]) -> Result<PriorityClass, ApiError> {
        serde_json::from_slice(json).map_err(|e| {
            ApiError::InternalError(format!("a stored PriorityClass is not valid: {e}"))
        })
    }

    fn name(&self) -> &str {
        self.metadata
            .as_ref()
            .and_then(|m| m.name.as_deref())
            .unwrap_or("")
    }

    fn is_global_default(&self) -> bool {
        self.global_default == Some(true)
    }
}

/// The preemption policy of pods without a class.
const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

impl Registry {
    /// Mutating and validating admission of a new object of `info`.
    pub(super) async fn admit_create(
        &self,
        call: &Call<'_>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let info = call.info;
        match (info.group, info.plural) {
            ("", "pods") => self.admit_pod_priority(info, obj).await,
            ("", "persistentvolumeclaims") => self.admit_default_storage_class(info, obj).await,
            ("certificates.k8s.io", "certificatesigningrequests") => {
                set_requester(obj, call.user);
                Ok(())
            }
            ("scheduling.k8s.io", "priorityclasses") => {
                self.admit_global_default(info, obj, None).await
            }
            _ => Ok(()),
        }
    }

    /// Admission of an update of `info`'s main resource.
    pub(super) async fn admit_update(
        &self,
        info: &ResourceInfo,
        obj: &Value,
        old: &Value,
    ) -> Result<(), ApiError> {
        match (info.group, info.plural) {
            ("scheduling.k8s.io", "priorityclasses") => {
                self.admit_global_default(info, obj, Some(old)).await
            }
            _ => Ok(()),
        }
    }

    /// Every PriorityClass: from the watch cache (as upstream's admission
    /// reads its informer, but after this server's own latest class write)
    /// unless `fresh` or the cache is not ready.
    async fn priority_classes(&self, fresh: bool) -> Result<Arc<[PriorityClass]>, ApiError> {
        let Some(pcs) = resources::by_gvr("scheduling.k8s.io", "v1", "priorityclasses") else {
            return Ok(Arc::from([]));
        };
        let written = self
            .priority_class_written
            .load(std::sync::atomic::Ordering::Acquire);
        // A read from the store (`fresh`) needs no wait for the cache.
        let behind = !fresh
            && written > 0
            && self.store.cache().revision() < written
            && !self.store.wait_fresh(Some(written)).await;
        if !fresh && !behind {
            let everything = (Selector::everything(), FieldSelector::everything());
            let cached = self.store.cache().lock().list(
                pcs,
                &pcs.prefix(None),
                &everything.0,
                &everything.1,
                0,
            );
            if let Some(page) = cached {
                // Decoded again only when some class changed.
                let revisions: Vec<i64> = page.items.iter().map(|o| o.revision()).collect();
                let mut seen = self
                    .priority_classes_seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if seen.revisions != revisions {
                    let classes = page
                        .items
                        .iter()
                        .map(|o| PriorityClass::decode(&o.json))
                        .collect::<Result<Vec<_>, _>>()?;
                    *seen = SeenClasses {
                        revisions,
                        classes: classes.into(),
                    };
                }
                return Ok(seen.classes.clone());
            }
        }
        let page = self
            .store
            .list(&pcs.prefix(None), ListOptions::default())
            .await
            .map_err(|e| store_error(pcs, "", e))?;
        page.kvs
            .iter()
            .map(|kv| PriorityClass::decode(&kv.value))
            .collect::<Result<Vec<_>, _>>()
            .map(Arc::from)
    }

    /// Sets `spec.priority` and `spec.preemptionPolicy` from the pod's
    /// PriorityClass (or the global default class, or 0).
    async fn admit_pod_priority(
        &self,
        info: &ResourceInfo,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        let name = meta::meta_str(pod, "name").to_owned();
        let forbidden = |reason: String| ApiError::Forbidden {
            group: String::new(),
            resource: info.plural.to_owned(),
            name: name.clone(),
            reason,
        };
        let wanted = pod
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut classes = self.priority_classes(false).await?;
        if !wanted.is_empty() && !classes.iter().any(|c| c.name() == wanted) {
            // Created a moment ago and not in the cache yet?
            classes = self.priority_classes(true).await?;
        }
        let class = if wanted.is_empty() {
            classes.iter().find(|c| c.is_global_default())
        } else {
            let found = classes.iter().find(|c| c.name() == wanted);
            if found.is_none() {
                return Err(forbidden(format!(
                    "no PriorityClass with name {wanted} was found"
                )));
            }
            found
        };
        let (class_name, value, policy) = match class {
            Some(c) => (
                c.name().to_owned(),
                c.value.unwrap_or(0),
                c.preemption_policy
                    .clone()
                    .unwrap_or_else(|| DEFAULT_PREEMPTION_POLICY.to_owned()),
            ),
            None => (String::new(), 0, DEFAULT_PREEMPTION_POLICY.to_owned()),
        };
        if let Some(given) = pod.pointer("/spec/priority").and_then(Value::as_i64)
            && given != value
        {
            return Err(forbidden(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            )));
        }
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if !class_name.is_empty() {
            spec.insert("priorityClassName".into(), Value::String(class_name));
        }
        spec.insert("priority".into(), json!(value));
        if spec.get("preemptionPolicy").is_none_or(Value::is_null) {
            spec.insert("preemptionPolicy".into(), Value::String(policy));
        }
        Ok(())
    }

    /// Only one PriorityClass may be the global default.
    async fn admit_global_default(
        &self,
        info: &ResourceInfo,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        if obj.get("globalDefault").and_then(Value::as_bool) != Some(true) {
            return Ok(());
        }
        let name = meta::meta_str(obj, "name");
        if old.is_some_and(|o| o.get("globalDefault").and_then(Value::as_bool) == Some(true)) {
            return Ok(());
        }
        let classes = self.priority_classes(true).await?;
        if let Some(other) = classes
            .iter()
            .find(|c| c.is_global_default() && c.name() != name)
        {
            return Err(ApiError::Forbidden {
                group: info.group.to_owned(),
                resource: info.plural.to_owned(),
                name: name.to_owned(),
                reason: format!(
                    "PriorityClass {} is already marked as default. Only one default can exist",
                    other.name()
                ),
            });
        }
        Ok(())
    }
}

/// A new CertificateSigningRequest names who asked for it: the server sets
/// `spec.username`, `uid`, `groups` and `extra` from the requester,
/// whatever the client sent.
fn set_requester(csr: &mut Value, user: &UserInfo) {
    let Some(spec) = csr.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("username".into(), Value::String(user.name.clone()));
    for (field, present) in [
        ("uid", !user.uid.is_empty()),
        ("extra", !user.extra.is_empty()),
    ] {
        if !present {
            spec.remove(field);
        }
    }
    if !user.uid.is_empty() {
        spec.insert("uid".into(), Value::String(user.uid.clone()));
    }
    spec.insert("groups".into(), json!(user.groups));
    if !user.extra.is_empty() {
        spec.insert("extra".into(), json!(user.extra));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn priority_classes_decode_what_admission_reads_and_read_nulls_as_absent() {
        let class = PriorityClass::decode(
            br#"{"apiVersion":"scheduling.k8s.io/v1","kind":"PriorityClass",
                "description":"ignored","metadata":{"name":"high","managedFields":[{}]},
                "value":1000,"globalDefault":true,"preemptionPolicy":"Never"}"#,
        )
        .unwrap();
        assert_eq!(class.name(), "high");
        assert_eq!(class.value, Some(1000));
        assert!(class.is_global_default());
        assert_eq!(class.preemption_policy.as_deref(), Some("Never"));
        let nulls = PriorityClass::decode(
            br#"{"metadata":{"name":null},"value":null,"globalDefault":null,"preemptionPolicy":null}"#,
        )
        .unwrap();
        assert_eq!(nulls.name(), "");
        let nulls = PriorityClass::decode(
            br#"{"metadata":null,"value":null,"globalDefault":null,"preemptionPolicy":null}"#,
        )
        .unwrap();
        assert_eq!(nulls.name(), "");
        assert_eq!(nulls.value, None);
        assert!(!nulls.is_global_default());
        assert_eq!(nulls.preemption_policy, None);
        let err = PriorityClass::decode(br#"{"value":"high"}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("a stored PriorityClass is not valid"),
            "{err}"
        );
    }
}
