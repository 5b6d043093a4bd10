//! Adoption and release of ControllerRevisions (upstream's
//! `ControllerRevisionControllerRefManager.ClaimControllerRevisions`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use skiff_api::selector::labels::Selector;

use super::History;
use crate::podutil::controller_of;

/// The revisions `owner` controls after adopting matching orphans and
/// releasing its revisions that stopped matching `selector`. `can_adopt`
/// (a fresh read of the owner) runs once, before the first adoption. The
/// error joins every failure's message.
pub async fn claim_controller_revisions<F, Fut>(
    history: &History,
    owner: &ObjectMeta,
    controller_ref: &OwnerReference,
    selector: &Selector,
    revisions: Vec<Arc<ControllerRevision>>,
    can_adopt: F,
) -> Result<Vec<Arc<ControllerRevision>>, String>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let uid = owner.uid.clone().unwrap_or_default();
    let deleting = owner.deletion_timestamp.is_some();
    let empty = BTreeMap::new();
    let mut claimed = Vec::new();
    let mut errors = Vec::new();
    let mut can_adopt = Some(can_adopt);
    let mut adopt_check: Option<Result<(), String>> = None;
    for r in revisions {
        let labels = r.metadata.labels.as_ref().unwrap_or(&empty);
        let matches = selector.matches(labels);
        if let Some(c) = controller_of(&r.metadata) {
            if c.uid != uid {
                continue;
            }
            if matches {
                claimed.push(r);
            } else if !deleting && let Err(e) = history.release_controller_revision(&uid, &r).await
            {
                errors.push(crate::replicaset::sync_api_message(&e));
            }
            continue;
        }
        if deleting
            || !matches
            || r.metadata.deletion_timestamp.is_some()
            || r.metadata.namespace != owner.namespace
        {
            continue;
        }
        if adopt_check.is_none() {
            adopt_check = Some(match can_adopt.take() {
                Some(f) => f().await,
                None => Ok(()),
            });
        }
        if let Some(Err(e)) = &adopt_check {
            errors.push(format!(
                "can't adopt ControllerRevision {}/{} ({}): {e}",
                r.metadata.namespace.as_deref().unwrap_or(""),
                r.metadata.name.as_deref().unwrap_or(""),
                r.metadata.uid.as_deref().unwrap_or("")
            ));
            continue;
        }
        match history.adopt_controller_revision(controller_ref, &r).await {
            Ok(adopted) => claimed.push(Arc::new(adopted)),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => errors.push(crate::replicaset::sync_api_message(&e)),
        }
    }
    if errors.is_empty() {
        Ok(claimed)
    } else if errors.len() == 1 {
        Err(errors.remove(0))
    } else {
        Err(format!("[{}]", errors.join(", ")))
    }
}
