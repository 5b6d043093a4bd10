//! ControllerRevision history shared by the DaemonSet and StatefulSet
//! controllers (upstream's `pkg/controller/history`): naming and hashing of
//! revisions, ordering, equality, truncation, and the API writes (create
//! with hash-collision probing, renumber, delete); claims go through
//! [`crate::controllerref`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::deployment::util::{fnv32a, safe_encode};

/// The label naming a revision's hash, on revisions and on the pods made
/// from them (upstream's `ControllerRevisionHashLabel`).
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// Longest parent-name prefix of a revision name: room for `-` and a hash
/// within the 253 characters of a name.
const MAX_PREFIX_LEN: usize = 223;

/// `<prefix>-<hash>`, the prefix cut to 223 characters (upstream's
/// `ControllerRevisionName`).
pub fn controller_revision_name(prefix: &str, hash: &str) -> String {
    let prefix = if prefix.len() > MAX_PREFIX_LEN {
        // Names are ASCII (DNS subdomains); stay on a char boundary anyway.
        let mut end = MAX_PREFIX_LEN;
        while !prefix.is_char_boundary(end) {
            end -= 1;
        }
        &prefix[..end]
    } else {
        prefix
    };
    format!("{prefix}-{hash}")
}

/// The hash of a revision's data, with the collision count (`probe`) mixed
/// in as its decimal text (upstream's `HashControllerRevision`: FNV-32a,
/// printed in decimal through the safe alphabet).
pub fn hash_controller_revision(revision: &ControllerRevision, probe: Option<i32>) -> String {
    let mut data = revision
        .data
        .as_ref()
        .map(|d| serde_json::to_vec(&d.0).unwrap_or_default())
        .unwrap_or_default();
    if let Some(p) = probe {
        data.extend_from_slice(p.to_string().as_bytes());
    }
    safe_encode(&fnv32a(&data).to_string())
}

/// A revision of `parent` holding `data`, labelled with the template's
/// labels and its hash, named `<parent>-<hash>` (upstream's
/// `NewControllerRevision`).
pub fn new_controller_revision(
    parent: &ObjectMeta,
    controller_ref: OwnerReference,
    template_labels: Option<&BTreeMap<String, String>>,
    data: serde_json::Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let mut cr = ControllerRevision {
        metadata: ObjectMeta {
            namespace: parent.namespace.clone(),
            labels: Some(template_labels.cloned().unwrap_or_default()),
            owner_references: Some(vec![controller_ref]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    };
    let hash = hash_controller_revision(&cr, collision_count);
    cr.metadata.name = Some(controller_revision_name(
        parent.name.as_deref().unwrap_or(""),
        &hash,
    ));
    if let Some(labels) = cr.metadata.labels.as_mut() {
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.to_owned(), hash);
    }
    cr
}

/// The revision's hash label, if set.
pub fn revision_hash(cr: &ControllerRevision) -> Option<&str> {
    cr.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// Orders by revision number, then creation time, then name (upstream's
/// `SortControllerRevisions`).
pub fn sort_controller_revisions(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
                ta.cmp(&tb)
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// Drops nulls and empty objects and lists, as Go's semantic equality
/// treats an empty struct, slice or map like an absent one.
fn prune_empty(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Object(m) => {
            m.retain(|_, v| !prune_empty(v));
            m.is_empty()
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                prune_empty(x);
            }
            a.is_empty()
        }
        _ => false,
    }
}

/// Whether two JSON documents are equal once empty values are dropped (a
/// revision's data read back from the server may spell an empty field
/// differently than we wrote it).
pub fn semantic_json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    prune_empty(&mut a);
    prune_empty(&mut b);
    a == b
}

fn data_of(cr: &ControllerRevision) -> serde_json::Value {
    cr.data.as_ref().map(|d| d.0.clone()).unwrap_or_default()
}

/// Whether two revisions hold the same data: different hash labels mean
/// different revisions (upstream's `EqualRevision`).
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    if let (Some(ha), Some(hb)) = (revision_hash(a), revision_hash(b))
        && ha != hb
    {
        return false;
    }
    semantic_json_eq(&data_of(a), &data_of(b))
}

/// The revisions equal to `needle` (upstream's `FindEqualRevisions`).
pub fn find_equal_revisions(
    revisions: &[Arc<ControllerRevision>],
    needle: &ControllerRevision,
) -> Vec<Arc<ControllerRevision>> {
    revisions
        .iter()
        .filter(|r| equal_revision(r, needle))
        .cloned()
        .collect()
}

/// The highest revision number, 0 for none.
pub fn max_revision(revisions: &[Arc<ControllerRevision>]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0)
}

/// Which of the `old` revisions to delete to keep at most `limit` of them:
/// the lowest revisions first, never one `is_live` says is still in use
/// (upstream's DaemonSet `cleanupHistory` and StatefulSet
/// `truncateHistory`). Names, oldest first.
pub fn revisions_to_truncate(
    old: &[Arc<ControllerRevision>],
    limit: i32,
    is_live: impl Fn(&ControllerRevision) -> bool,
) -> Vec<String> {
    let keep = usize::try_from(limit).unwrap_or(0);
    let mut to_kill = old.len().saturating_sub(keep);
    if to_kill == 0 {
        return Vec::new();
    }
    let mut sorted = old.to_vec();
    sort_controller_revisions(&mut sorted);
    let mut out = Vec::new();
    for r in sorted {
        if to_kill == 0 {
            break;
        }
        if is_live(&r) {
            continue;
        }
        out.push(r.metadata.name.clone().unwrap_or_default());
        to_kill -= 1;
    }
    out
}

/// Whether `owner_uid` controls the object.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    crate::podutil::controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// ControllerRevision writes through the API (upstream's `realHistory`).
#[derive(Clone)]
pub struct History {
    client: kube::Client,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

impl History {
    /// Writes through `client`.
    pub fn new(client: kube::Client) -> Self {
        History { client }
    }

    fn api(&self, ns: &str) -> Api<ControllerRevision> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates `revision` for the parent named `parent_name` with UID
    /// `parent_uid`, named by the hash of its data: on a name taken by a
    /// revision with other data (or another owner) the collision count is
    /// bumped and the next name tried; an identical revision of ours is
    /// returned as is (upstream's `CreateControllerRevision`).
    pub async fn create_controller_revision(
        &self,
        parent_name: &str,
        parent_uid: &str,
        revision: &ControllerRevision,
        collision_count: &mut i32,
    ) -> Result<ControllerRevision, kube::Error> {
        let ns = revision.metadata.namespace.clone().unwrap_or_default();
        let api = self.api(&ns);
        let mut clone = revision.clone();
        loop {
            let hash = hash_controller_revision(revision, Some(*collision_count));
            clone.metadata.name = Some(controller_revision_name(parent_name, &hash));
            clone
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(CONTROLLER_REVISION_HASH_LABEL.to_owned(), hash);
            match api.create(&PostParams::default(), &clone).await {
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let name = clone.metadata.name.clone().unwrap_or_default();
                    let existing = api.get(&name).await?;
                    if is_controlled_by(&existing.metadata, parent_uid)
                        && semantic_json_eq(&data_of(&existing), &data_of(&clone))
                    {
                        return Ok(existing);
                    }
                    *collision_count = collision_count.saturating_add(1);
                }
                other => return other,
            }
        }
    }

    /// Sets the revision number of `revision` (upstream's
    /// `UpdateControllerRevision`, which retries on conflicts).
    pub async fn update_controller_revision(
        &self,
        revision: &ControllerRevision,
        new_revision: i64,
    ) -> Result<ControllerRevision, kube::Error> {
        let ns = revision.metadata.namespace.clone().unwrap_or_default();
        let name = revision.metadata.name.clone().unwrap_or_default();
        let api = self.api(&ns);
        let mut current = revision.clone();
        for attempt in 0..5 {
            if current.revision == new_revision {
                return Ok(current);
            }
            current.revision = new_revision;
            match api.replace(&name, &PostParams::default(), &current).await {
                Ok(updated) => return Ok(updated),
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < 4 => {
                    current = api.get(&name).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(current)
    }

    /// Deletes `revision`; already gone counts as done.
    pub async fn delete_controller_revision(
        &self,
        revision: &ControllerRevision,
    ) -> Result<(), kube::Error> {
        let ns = revision.metadata.namespace.clone().unwrap_or_default();
        let name = revision.metadata.name.clone().unwrap_or_default();
        match self.api(&ns).delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
