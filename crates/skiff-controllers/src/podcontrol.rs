//! Pod writes on behalf of a controller object, each recorded as an event
//! on it (upstream's `PodControlInterface` / `RealPodControl`): pods from a
//! template, `SuccessfulCreate` / `FailedCreate` and `SuccessfulDelete` /
//! `FailedDelete`. Used by the ReplicaSet, ReplicationController, DaemonSet
//! and Job controllers; the StatefulSet controller has its own events
//! (upstream's `StatefulPodControl`).

use std::collections::BTreeMap;
use std::future::Future;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource};
use skiff_client::EventSink;
use skiff_client::events::PendingEvent;

use crate::apierrors::{api_message, is_namespace_terminating, is_not_found};
use crate::cached_pod::CachedPod;
use crate::controllerref::{controller_ref, object_reference};

/// Runs `count` calls of `f` in batches of 1, 2, 4, ... (starting at
/// `initial`), each batch concurrently, stopping after the first batch with
/// a failure: the number of successes and the first error. A call that
/// fails fast (quota, admission) so costs one request, not `count`
/// (upstream's `slowStartBatch`).
pub async fn slow_start_batch<F, Fut, E>(count: usize, initial: usize, f: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial.max(1));
    while batch > 0 {
        let results = futures::future::join_all((0..batch).map(|_| f())).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

/// Records an event about `obj` (upstream's `recorder.Eventf`).
pub fn record_event<O: Resource<DynamicType = ()>>(
    events: &dyn EventSink,
    obj: &O,
    normal: bool,
    reason: &str,
    action: &str,
    note: String,
) {
    events.record(PendingEvent {
        regarding: object_reference(obj),
        normal,
        reason: reason.to_owned(),
        action: action.to_owned(),
        note,
    });
}

/// `<name>-`, or the bare name when the dash would make it too long
/// (upstream's `getPodsPrefix`).
pub fn pods_prefix(name: &str) -> String {
    if name.len() < 253 {
        format!("{name}-")
    } else {
        name.to_owned()
    }
}

/// A pod for `owner` from `template`: the template's labels, annotations,
/// finalizers and spec, `owner` as controller, named from `generate_name`
/// or else from the owner's name (upstream's `GetPodFromTemplate`).
pub fn pod_from_template<O: Resource<DynamicType = ()>>(
    template: PodTemplateSpec,
    owner: &O,
    generate_name: Option<String>,
) -> Pod {
    let m = owner.meta();
    let tmeta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(
                generate_name.unwrap_or_else(|| pods_prefix(m.name.as_deref().unwrap_or(""))),
            ),
            namespace: m.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(owner)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Creates and deletes pods for a controller object, recording events on
/// it.
pub struct PodControl<'a> {
    client: &'a kube::Client,
    events: &'a dyn EventSink,
}

impl std::fmt::Debug for PodControl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodControl").finish_non_exhaustive()
    }
}

impl<'a> PodControl<'a> {
    /// Writes through `client`, events to `events`.
    pub fn new(client: &'a kube::Client, events: &'a dyn EventSink) -> Self {
        PodControl { client, events }
    }

    /// Creates `pod` in its namespace for `owner` (upstream's `CreatePods`
    /// with the callers' handling of a terminating namespace): a pod
    /// without labels is refused, as no controller could select it; in a
    /// namespace being deleted nothing is created and that is no error, as
    /// every later create there fails too. The error is the API's message.
    pub async fn create_pod<O: Resource<DynamicType = ()>>(
        &self,
        owner: &O,
        pod: &Pod,
    ) -> Result<(), String> {
        if pod.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            return Err("unable to create pods, no labels".to_owned());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api.create(&PostParams::default(), pod).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                let note = format!("Created pod: {name}");
                record_event(self.events, owner, true, "SuccessfulCreate", "Create", note);
                Ok(())
            }
            Err(e) if is_namespace_terminating(&e) => Ok(()),
            Err(e) => {
                let msg = api_message(&e);
                let note = format!("Error creating: {msg}");
                record_event(self.events, owner, false, "FailedCreate", "Create", note);
                Err(msg)
            }
        }
    }

    /// Deletes the pod `ns/name` of `owner` (upstream's `DeletePod`):
    /// `Ok(true)` when deleted, `Ok(false)` when it was already gone (no
    /// event then).
    pub async fn delete_pod<O: Resource<DynamicType = ()>>(
        &self,
        owner: &O,
        ns: &str,
        name: &str,
    ) -> Result<bool, String> {
        let api: Api<CachedPod> = Api::namespaced(self.client.clone(), ns);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                let note = format!("Deleted pod: {name}");
                record_event(self.events, owner, true, "SuccessfulDelete", "Delete", note);
                Ok(true)
            }
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => {
                let msg = api_message(&e);
                let note = format!("Error deleting: {msg}");
                record_event(self.events, owner, false, "FailedDelete", "Delete", note);
                Err(format!("unable to delete pods: {msg}"))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::PodSpec;

    use std::sync::Mutex;

    use super::*;

    #[test]
    fn pod_prefix_is_name_dash() {
        assert_eq!(pods_prefix("web"), "web-");
        let long = "a".repeat(253);
        assert_eq!(pods_prefix(&long), long);
    }

    #[test]
    fn pod_from_template_takes_the_template_and_the_owner() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            ..ReplicaSet::default()
        };
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                name: Some("ignored".into()),
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                annotations: Some([("a".to_owned(), "b".to_owned())].into()),
                finalizers: Some(vec!["f".into()]),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                hostname: Some("h".into()),
                ..PodSpec::default()
            }),
        };
        let pod = pod_from_template(template.clone(), &rs, None);
        let m = &pod.metadata;
        assert_eq!(m.name, None);
        assert_eq!(m.generate_name.as_deref(), Some("web-"));
        assert_eq!(m.namespace.as_deref(), Some("ns"));
        assert_eq!(m.labels, template.metadata.as_ref().unwrap().labels);
        assert_eq!(
            m.annotations,
            template.metadata.as_ref().unwrap().annotations
        );
        assert_eq!(m.finalizers.as_deref(), Some(&["f".to_owned()][..]));
        let refs = m.owner_references.as_deref().unwrap();
        assert_eq!(
            (refs.len(), refs[0].kind.as_str(), refs[0].uid.as_str()),
            (1, "ReplicaSet", "u1")
        );
        assert_eq!(pod.spec, template.spec);
        let named = pod_from_template(template, &rs, Some("web-3-".into()));
        assert_eq!(named.metadata.generate_name.as_deref(), Some("web-3-"));
    }

    /// Calls succeed until call number `fail_from` (0-based), then fail.
    async fn run(count: usize, fail_from: Option<usize>) -> (usize, Option<String>, Vec<usize>) {
        let calls = Mutex::new(0usize);
        let batches = Mutex::new(Vec::<usize>::new());
        let in_batch = Mutex::new(0usize);
        let (ok, err) = slow_start_batch(count, 1, || {
            let n = {
                let mut c = calls.lock().unwrap();
                *c += 1;
                *c - 1
            };
            *in_batch.lock().unwrap() += 1;
            let batches = &batches;
            let in_batch = &in_batch;
            async move {
                // Record each batch's size when its last call finishes.
                tokio::task::yield_now().await;
                let mut b = in_batch.lock().unwrap();
                if *b > 0 {
                    batches.lock().unwrap().push(*b);
                    *b = 0;
                }
                match fail_from {
                    Some(f) if n >= f => Err(format!("call {n} failed")),
                    _ => Ok(()),
                }
            }
        })
        .await;
        let b = batches.lock().unwrap().clone();
        (ok, err, b)
    }

    #[tokio::test]
    async fn batches_double_up_to_the_count() {
        let (ok, err, batches) = run(10, None).await;
        assert_eq!(ok, 10);
        assert!(err.is_none());
        assert_eq!(batches, [1, 2, 4, 3]);
        let (ok, _, batches) = run(0, None).await;
        assert_eq!((ok, batches.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_failing_batch_stops_the_rest() {
        // Calls 0..=2 succeed (batches 1 and 2); the batch of 4 has failures.
        let (ok, err, batches) = run(20, Some(4)).await;
        assert_eq!(batches, [1, 2, 4]);
        assert_eq!(ok, 4, "calls 0-3 succeeded");
        assert_eq!(err.as_deref(), Some("call 4 failed"));
        // A first call failing stops everything after one call.
        let (ok, err, batches) = run(500, Some(0)).await;
        assert_eq!((ok, batches), (0, vec![1]));
        assert!(err.is_some());
    }
}
