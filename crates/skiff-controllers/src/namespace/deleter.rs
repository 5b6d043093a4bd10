//! Empties a terminating namespace (upstream's
//! `namespacedResourcesDeleter`): discovers every deletable namespaced
//! resource, deletes its objects in the namespace (deletecollection where
//! served, else list and delete each), checks what remains, reports the
//! conditions, and once nothing remains removes the `kubernetes`
//! finalizer through `namespaces/{name}/finalize`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy,
};

use super::conditions::{ConditionUpdater, ContentTotals, Gvr};
use super::discovery::{self, DeletableResource};
use crate::controller::SyncError;

/// Objects listed at once when checking what remains of a resource.
const LIST_PAGE: u32 = 500;

/// What the deleter keeps of a listed object.
#[derive(Debug)]
struct Listed {
    name: String,
    finalizers: Vec<String>,
}

/// The finalizer this controller owns on Namespaces.
pub const FINALIZER_KUBERNETES: &str = "kubernetes";

/// How long objects with finalizers are assumed to take to go away.
pub const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

/// Resources deleted at once.
const CONCURRENT_RESOURCES: usize = 8;

/// Where a namespace's deletion stands after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing (more) to do: finalized, gone, or not being deleted.
    Done,
    /// Content remains; about this many seconds until it is gone.
    Remaining(i64),
}

/// What one resource's deletion left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GvrDeletionMetadata {
    /// Seconds until the remaining objects are expected to be gone.
    pub finalizer_estimate_seconds: i64,
    /// Objects still listed.
    pub num_remaining: usize,
    /// Remaining objects per finalizer.
    pub finalizers_to_num_remaining: BTreeMap<String, usize>,
}

/// Judges the objects still listed after a resource's deletion: with a
/// grace-period `estimate` they are expected; with finalizers they wait
/// for them (a default estimate); without either they should be gone, an
/// error.
pub fn remaining_metadata(
    estimate: i64,
    remaining_finalizers: &[Vec<String>],
    namespace: &str,
    gvr: &Gvr,
) -> (GvrDeletionMetadata, Option<String>) {
    if remaining_finalizers.is_empty() {
        return (GvrDeletionMetadata::default(), None);
    }
    let mut finalizers = BTreeMap::new();
    for f in remaining_finalizers.iter().flatten() {
        *finalizers.entry(f.clone()).or_insert(0) += 1;
    }
    let num_remaining = remaining_finalizers.len();
    if estimate != 0 {
        return (
            GvrDeletionMetadata {
                finalizer_estimate_seconds: estimate,
                num_remaining,
                finalizers_to_num_remaining: finalizers,
            },
            None,
        );
    }
    if !finalizers.is_empty() {
        return (
            GvrDeletionMetadata {
                finalizer_estimate_seconds: FINALIZER_ESTIMATE_SECONDS,
                num_remaining,
                finalizers_to_num_remaining: finalizers,
            },
            None,
        );
    }
    (
        GvrDeletionMetadata {
            finalizer_estimate_seconds: 0,
            num_remaining,
            finalizers_to_num_remaining: finalizers,
        },
        Some(format!(
            "unexpected items still remain in namespace: {namespace} for gvr: {gvr}"
        )),
    )
}

/// The longest termination grace period of the pods not yet finished
/// (upstream's estimate for pods), 0 once the namespace has been deleting
/// for that long already.
pub fn estimate_pods(pods: &[PodGrace], seconds_since_deletion: i64) -> i64 {
    estimate_from(longest_grace(pods), seconds_since_deletion)
}

fn estimate_from(longest_grace: i64, seconds_since_deletion: i64) -> i64 {
    if seconds_since_deletion >= longest_grace {
        0
    } else {
        longest_grace
    }
}

/// What the estimate reads of a pod. Pages of pods decode into this and
/// skip the rest: a page of 500 full `Pod`s parses to ~5 MB.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct PodGrace {
    #[serde(default)]
    spec: Option<PodGraceSpec>,
    #[serde(default)]
    status: Option<PodGraceStatus>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodGraceSpec {
    #[serde(default)]
    termination_grace_period_seconds: Option<i64>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct PodGraceStatus {
    #[serde(default)]
    phase: Option<String>,
}

/// The longest termination grace period of the pods not yet finished.
fn longest_grace(pods: &[PodGrace]) -> i64 {
    pods.iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|p| p.spec.as_ref()?.termination_grace_period_seconds)
        .max()
        .unwrap_or(0)
}

/// Pods listed at once for the estimate: a namespace of many pods is read
/// in pages rather than held whole (10,000 pods parse to ~100 MB).
const POD_PAGE: u32 = 500;

/// The namespace's `spec.finalizers` without this controller's.
pub fn finalized_spec_finalizers(ns: &Namespace) -> Vec<String> {
    let set: BTreeSet<String> = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER_KUBERNETES)
        .collect();
    set.into_iter().collect()
}

fn is_finalized(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_none_or(|f| f.is_empty())
}

fn code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// Deletes namespaces' content; shared by the controller's workers.
pub struct Deleter {
    client: kube::Client,
    /// `(verb, resource)` the server answered 404/405 to.
    not_supported: Mutex<HashSet<(&'static str, Gvr)>>,
}

impl std::fmt::Debug for Deleter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deleter").finish_non_exhaustive()
    }
}

impl Deleter {
    /// A deleter talking through `client`.
    pub fn new(client: kube::Client) -> Self {
        Deleter {
            client,
            not_supported: Mutex::new(HashSet::new()),
        }
    }

    fn supported(&self, verb: &'static str, gvr: &Gvr) -> bool {
        !self
            .not_supported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(verb, gvr.clone()))
    }

    fn set_not_supported(&self, verb: &'static str, gvr: &Gvr) {
        self.not_supported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((verb, gvr.clone()));
    }

    /// One pass over the namespace `name`.
    pub async fn delete(&self, name: &str) -> Result<Outcome, SyncError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let Some(ns) = api.get_opt(name).await? else {
            return Ok(Outcome::Done);
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(Outcome::Done);
        }
        let Some(ns) = self.ensure_terminating(&api, ns).await? else {
            return Ok(Outcome::Done);
        };
        let Some(deleted_at) = ns.metadata.deletion_timestamp.clone() else {
            return Ok(Outcome::Done);
        };
        if is_finalized(&ns) {
            return Ok(Outcome::Done);
        }
        let estimate = self
            .delete_all_content(&api, ns.clone(), deleted_at)
            .await?;
        if estimate > 0 {
            return Ok(Outcome::Remaining(estimate));
        }
        self.finalize(&api, ns).await?;
        Ok(Outcome::Done)
    }

    /// Sets phase Terminating; `None` once the namespace is gone.
    async fn ensure_terminating(
        &self,
        api: &Api<Namespace>,
        mut ns: Namespace,
    ) -> Result<Option<Namespace>, SyncError> {
        for _ in 0..5 {
            let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase == Some("Terminating") {
                return Ok(Some(ns));
            }
            let name = ns.metadata.name.clone().unwrap_or_default();
            let mut wanted = ns.clone();
            wanted.status.get_or_insert_default().phase = Some("Terminating".to_owned());
            match api
                .replace_status(&name, &PostParams::default(), &wanted)
                .await
            {
                Ok(updated) => return Ok(Some(updated)),
                Err(e) if code(&e) == Some(404) => return Ok(None),
                Err(e) if code(&e) == Some(409) => {
                    let Some(latest) = api.get_opt(&name).await? else {
                        return Ok(None);
                    };
                    if latest.metadata.uid != ns.metadata.uid {
                        return Err("namespace uid has changed across retries".into());
                    }
                    ns = latest;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err("namespace status kept conflicting".into())
    }

    /// Drops the `kubernetes` finalizer through the finalize subresource;
    /// with no finalizer left the API server removes the namespace.
    async fn finalize(&self, api: &Api<Namespace>, mut ns: Namespace) -> Result<(), SyncError> {
        for _ in 0..5 {
            let name = ns.metadata.name.clone().unwrap_or_default();
            let mut wanted = ns.clone();
            wanted.spec.get_or_insert_default().finalizers = Some(finalized_spec_finalizers(&ns));
            match api
                .replace_subresource("finalize", &name, &PostParams::default(), &wanted)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if code(&e) == Some(404) => return Ok(()),
                Err(e) if code(&e) == Some(409) => {
                    let Some(latest) = api.get_opt(&name).await? else {
                        return Ok(());
                    };
                    if latest.metadata.uid != ns.metadata.uid {
                        return Err("namespace uid has changed across retries".into());
                    }
                    ns = latest;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err("namespace finalize kept conflicting".into())
    }

    /// Deletes everything in the namespace; the seconds until what remains
    /// is expected to be gone. Reports the conditions either way.
    async fn delete_all_content(
        &self,
        api: &Api<Namespace>,
        mut ns: Namespace,
        deleted_at: Time,
    ) -> Result<i64, SyncError> {
        let namespace = ns.metadata.name.clone().unwrap_or_default();
        let found = discovery::discover(&self.client).await;
        let now = Time(Timestamp::now());
        let mut updater = ConditionUpdater::default();
        let mut errors: Vec<String> = Vec::new();
        if let Some((msg, failed)) = &found.error {
            updater.process_discovery_error(msg, *failed, &now);
            errors.push(msg.clone());
        }
        for e in &found.group_version_errors {
            updater.process_group_version_error(e, &now);
            errors.push(e.clone());
        }
        let since = (Timestamp::now().as_second() - deleted_at.0.as_second()).max(0);
        let ns_name = namespace.as_str();
        let results: Vec<_> = futures::stream::iter(found.resources)
            .map(|r| self.delete_all_content_for(r, ns_name, since))
            .buffer_unordered(CONCURRENT_RESOURCES)
            .collect()
            .await;
        let mut estimate = 0;
        let mut totals = ContentTotals::default();
        for (gvr, meta, err) in results {
            if let Some(e) = err {
                updater.process_delete_content_error(&e);
                errors.push(e);
            }
            estimate = estimate.max(meta.finalizer_estimate_seconds);
            if meta.num_remaining > 0 {
                totals.gvr_to_num_remaining.insert(gvr, meta.num_remaining);
                for (f, n) in meta.finalizers_to_num_remaining {
                    if n > 0 {
                        *totals.finalizers_to_num_remaining.entry(f).or_insert(0) += n;
                    }
                }
            }
        }
        updater.process_content_totals(&totals, &now);
        if updater.update(ns.status.get_or_insert_default(), &now) {
            let name = namespace.clone();
            if let Err(e) = api.replace_status(&name, &PostParams::default(), &ns).await {
                tracing::info!(namespace = %name, error = %e, "couldn't update status conditions of namespace");
            }
        }
        if errors.is_empty() {
            Ok(estimate)
        } else {
            errors.sort();
            Err(errors.join(", ").into())
        }
    }

    /// Deletes one resource's objects in `namespace`: (its gvr, what
    /// remains, an error).
    async fn delete_all_content_for(
        &self,
        r: DeletableResource,
        namespace: &str,
        seconds_since_deletion: i64,
    ) -> (Gvr, GvrDeletionMetadata, Option<String>) {
        let gvr = r.gvr.clone();
        let fail = |estimate: i64, e: String| {
            (
                gvr.clone(),
                GvrDeletionMetadata {
                    finalizer_estimate_seconds: estimate,
                    ..GvrDeletionMetadata::default()
                },
                Some(e),
            )
        };
        let mut estimate = 0;
        if gvr.group.is_empty() && gvr.resource == "pods" {
            match self.longest_pod_grace(namespace).await {
                Ok(longest) => estimate = estimate_from(longest, seconds_since_deletion),
                Err(e) => return fail(0, e),
            }
        }
        let ar = ApiResource {
            group: gvr.group.clone(),
            version: gvr.version.clone(),
            api_version: gvr.api_version(),
            kind: r.kind.clone(),
            plural: gvr.resource.clone(),
        };
        // Metadata only, as upstream's deleter: names and finalizers are all
        // it reads.
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &ar);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        let mut collected = false;
        if r.delete_collection && self.supported("deletecollection", &gvr) {
            match self.delete_collection(&api, &params).await {
                Ok(()) => collected = true,
                Err(e) if matches!(code(&e), Some(404 | 405)) => {
                    self.set_not_supported("deletecollection", &gvr);
                }
                Err(e) => return fail(estimate, api_message(&e)),
            }
        }
        if !collected {
            // List and delete each.
            if let Some(list) = match self.list(&r, &api).await {
                Ok(l) => l,
                Err(e) => return fail(estimate, e),
            } {
                for obj in list {
                    match api.delete(&obj.name, &params).await {
                        Ok(_) => {}
                        Err(e) if matches!(code(&e), Some(404 | 405)) => {}
                        Err(e) => return fail(estimate, api_message(&e)),
                    }
                }
            }
        }
        let remaining = match self.list(&r, &api).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                return (
                    gvr,
                    GvrDeletionMetadata {
                        finalizer_estimate_seconds: estimate,
                        ..GvrDeletionMetadata::default()
                    },
                    None,
                );
            }
            Err(e) => return fail(estimate, e),
        };
        let finalizers: Vec<Vec<String>> = remaining.into_iter().map(|o| o.finalizers).collect();
        let (meta, err) = remaining_metadata(estimate, &finalizers, namespace, &gvr);
        (gvr, meta, err)
    }

    /// [`longest_grace`] of the namespace's pods, listed a page at a time.
    async fn longest_pod_grace(&self, namespace: &str) -> Result<i64, String> {
        let url = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .resource_url()
            .to_owned();
        let mut lp = ListParams::default().limit(POD_PAGE);
        let mut longest = 0;
        loop {
            let req = kube::core::Request::new(&url)
                .list(&lp)
                .map_err(|e| api_message(&kube::Error::BuildRequest(e)))?;
            let page: kube::core::ObjectList<PodGrace> = self
                .client
                .request(req)
                .await
                .map_err(|e| api_message(&e))?;
            longest = longest.max(longest_grace(&page.items));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => return Ok(longest),
            }
        }
    }

    /// Deletes the collection, reading the answer (every deleted object in
    /// full, whatever the Accept header says) a chunk at a time and
    /// dropping it: decoding it would hold 10,000 pods' JSON and its parse
    /// at once (upstream's client also ignores it).
    async fn delete_collection(
        &self,
        api: &Api<DynamicObject>,
        params: &DeleteParams,
    ) -> Result<(), kube::Error> {
        let req = kube::core::Request::new(api.resource_url())
            .delete_collection(params, &ListParams::default())
            .map_err(kube::Error::BuildRequest)?;
        let body = self.client.request_stream(req).await?;
        futures::io::copy_buf(body, &mut futures::io::sink())
            .await
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        Ok(())
    }

    /// The resource's objects in the namespace (names and finalizers,
    /// listed as metadata a page at a time); `None` when it cannot be
    /// listed.
    async fn list(
        &self,
        r: &DeletableResource,
        api: &Api<DynamicObject>,
    ) -> Result<Option<Vec<Listed>>, String> {
        if !r.list || !self.supported("list", &r.gvr) {
            return Ok(None);
        }
        let mut lp = ListParams::default().limit(LIST_PAGE);
        let mut out = Vec::new();
        loop {
            let page = match api.list_metadata(&lp).await {
                Ok(page) => page,
                Err(e) if matches!(code(&e), Some(404 | 405)) => {
                    self.set_not_supported("list", &r.gvr);
                    return Ok(None);
                }
                Err(e) => return Err(api_message(&e)),
            };
            out.extend(page.items.into_iter().map(|o| Listed {
                name: o.metadata.name.unwrap_or_default(),
                finalizers: o.metadata.finalizers.unwrap_or_default(),
            }));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => return Ok(Some(out)),
            }
        }
    }
}
