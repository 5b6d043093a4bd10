//! The ownerReference graph (upstream's `GraphBuilder` state): every
//! observed object by UID, with its owners, and the dependents of every
//! UID named as an owner (observed or not). Changes return the work they
//! cause; the graph itself does no I/O.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Resource};

/// Which object a node is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Its resource.
    pub resource: Arc<Resource>,
    /// Its namespace, for namespaced resources.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its UID.
    pub uid: String,
}

/// What the collector keeps of an object.
#[derive(Debug, Clone)]
pub struct ObjectMetaView {
    /// The object.
    pub identity: Identity,
    /// Its owner references.
    pub owners: Vec<OwnerReference>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

impl ObjectMetaView {
    /// The view of an object of `resource` with metadata `meta`.
    pub fn new(resource: &Arc<Resource>, meta: ObjectMeta) -> Self {
        ObjectMetaView {
            identity: Identity {
                resource: resource.clone(),
                namespace: meta.namespace.filter(|n| !n.is_empty()),
                name: meta.name.unwrap_or_default(),
                uid: meta.uid.unwrap_or_default(),
            },
            owners: meta.owner_references.unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.unwrap_or_default(),
        }
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: waiting for its dependents.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND_FINALIZER)
    }

    /// Being deleted with the orphan policy.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN_FINALIZER)
    }
}

/// UIDs to process after a change.
#[derive(Debug, Default, PartialEq)]
pub struct Work {
    /// Objects whose owners may be gone, or owners waiting for dependents.
    pub attempt_to_delete: Vec<String>,
    /// Owners whose dependents must be orphaned.
    pub attempt_to_orphan: Vec<String>,
}

/// The graph.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, ObjectMetaView>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// The node of `uid`.
    pub fn get(&self, uid: &str) -> Option<&ObjectMetaView> {
        self.nodes.get(uid)
    }

    /// The observed dependents of `uid`.
    pub fn dependents(&self, uid: &str) -> Vec<ObjectMetaView> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).cloned())
            .collect()
    }

    /// Adds or updates a node.
    pub fn upsert(&mut self, view: ObjectMetaView) -> Work {
        let mut work = Work::default();
        let uid = view.identity.uid.clone();
        if uid.is_empty() {
            return work;
        }
        let old = self.nodes.remove(&uid);
        let old_owners: HashSet<String> = old
            .iter()
            .flat_map(|o| o.owners.iter().map(|r| r.uid.clone()))
            .collect();
        let new_owners: HashSet<String> = view.owners.iter().map(|r| r.uid.clone()).collect();
        for gone in old_owners.difference(&new_owners) {
            self.unlink(gone, &uid);
            // An owner waiting for its dependents may be done now.
            if self
                .nodes
                .get(gone)
                .is_some_and(ObjectMetaView::deleting_dependents)
            {
                work.attempt_to_delete.push(gone.clone());
            }
        }
        for owner in &new_owners {
            self.dependents
                .entry(owner.clone())
                .or_default()
                .insert(uid.clone());
        }
        // Owners not observed (maybe gone), in another namespace (so not
        // owners at all), or deleting in the foreground.
        let check = view.owners.iter().any(|r| match self.nodes.get(&r.uid) {
            None => true,
            Some(o) => {
                o.deleting_dependents()
                    || (o.identity.resource.namespaced
                        && o.identity.namespace != view.identity.namespace)
            }
        });
        if check && !view.deleting {
            work.attempt_to_delete.push(uid.clone());
        }
        if view.orphaning() {
            work.attempt_to_orphan.push(uid.clone());
        }
        let started_foreground = view.deleting_dependents()
            && !old
                .as_ref()
                .is_some_and(ObjectMetaView::deleting_dependents);
        if view.deleting_dependents() {
            work.attempt_to_delete.push(uid.clone());
        }
        if started_foreground {
            work.attempt_to_delete
                .extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        }
        self.nodes.insert(uid, view);
        work
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }

    /// Removes the node of `uid` (the object was deleted).
    pub fn remove(&mut self, uid: &str) -> Work {
        let mut work = Work::default();
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        for r in &node.owners {
            self.unlink(&r.uid, uid);
            if self
                .nodes
                .get(&r.uid)
                .is_some_and(ObjectMetaView::deleting_dependents)
            {
                work.attempt_to_delete.push(r.uid.clone());
            }
        }
        // Its dependents lost an owner.
        work.attempt_to_delete
            .extend(self.dependents.get(uid).into_iter().flatten().cloned());
        work
    }

    /// Replaces every node of `resource` with `list` (a relist).
    pub fn replace_resource(&mut self, resource: &Resource, list: Vec<ObjectMetaView>) -> Work {
        let listed: HashSet<String> = list.iter().map(|v| v.identity.uid.clone()).collect();
        let stale: Vec<String> = self
            .nodes
            .iter()
            .filter(|(uid, v)| {
                v.identity.resource.api.group == resource.api.group
                    && v.identity.resource.api.plural == resource.api.plural
                    && !listed.contains(*uid)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        let mut work = Work::default();
        for uid in stale {
            let w = self.remove(&uid);
            work.attempt_to_delete.extend(w.attempt_to_delete);
        }
        for v in list {
            let w = self.upsert(v);
            work.attempt_to_delete.extend(w.attempt_to_delete);
            work.attempt_to_orphan.extend(w.attempt_to_orphan);
        }
        work
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use kube::api::ApiResource;

    use super::*;

    fn res() -> Arc<Resource> {
        Arc::new(Resource {
            api: ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                plural: "configmaps".into(),
            },
            namespaced: true,
        })
    }

    fn view(uid: &str, owners: &[&str], deleting: bool, finalizers: &[&str]) -> ObjectMetaView {
        ObjectMetaView {
            identity: Identity {
                resource: res(),
                namespace: Some("ns".into()),
                name: uid.into(),
                uid: uid.into(),
            },
            owners: owners
                .iter()
                .map(|o| OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: (*o).into(),
                    uid: (*o).into(),
                    controller: None,
                    block_owner_deletion: Some(true),
                })
                .collect(),
            deleting,
            finalizers: finalizers.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn dependents_of_unseen_owners_are_checked() {
        let mut g = Graph::default();
        assert_eq!(g.upsert(view("owner", &[], false, &[])), Work::default());
        assert_eq!(
            g.upsert(view("dep", &["owner"], false, &[])),
            Work::default()
        );
        let w = g.upsert(view("dep2", &["missing"], false, &[]));
        assert_eq!(w.attempt_to_delete, ["dep2"]);
        assert_eq!(g.dependents("owner").len(), 1);
    }

    #[test]
    fn an_owner_in_another_namespace_is_checked() {
        let mut g = Graph::default();
        g.upsert(view("owner", &[], false, &[]));
        let mut dep = view("dep", &["owner"], false, &[]);
        dep.identity.namespace = Some("elsewhere".into());
        assert_eq!(g.upsert(dep).attempt_to_delete, ["dep"]);
    }

    #[test]
    fn deleting_an_owner_checks_its_dependents() {
        let mut g = Graph::default();
        g.upsert(view("owner", &[], false, &[]));
        g.upsert(view("dep", &["owner"], false, &[]));
        let w = g.remove("owner");
        assert_eq!(w.attempt_to_delete, ["dep"]);
        assert!(g.get("owner").is_none());
    }

    #[test]
    fn foreground_owner_waits_for_dependents_then_is_rechecked() {
        let mut g = Graph::default();
        g.upsert(view("owner", &[], false, &[]));
        g.upsert(view("dep", &["owner"], false, &[]));
        let w = g.upsert(view("owner", &[], true, &[FOREGROUND_FINALIZER]));
        assert_eq!(w.attempt_to_delete, ["owner", "dep"]);
        // The dependent going away brings the owner back.
        let w = g.remove("dep");
        assert_eq!(w.attempt_to_delete, ["owner"]);
        // Dropping the reference does too.
        g.upsert(view("dep3", &["owner"], false, &[]));
        let w = g.upsert(view("dep3", &[], false, &[]));
        assert_eq!(w.attempt_to_delete, ["owner"]);
        assert!(g.dependents("owner").is_empty());
    }

    #[test]
    fn orphan_finalizer_queues_orphaning() {
        let mut g = Graph::default();
        let w = g.upsert(view("owner", &[], true, &[ORPHAN_FINALIZER]));
        assert_eq!(w.attempt_to_orphan, ["owner"]);
        // Without a deletionTimestamp the finalizer means nothing yet.
        let mut g = Graph::default();
        assert!(
            g.upsert(view("o", &[], false, &[ORPHAN_FINALIZER]))
                .attempt_to_orphan
                .is_empty()
        );
    }

    #[test]
    fn relist_removes_what_is_gone() {
        let mut g = Graph::default();
        g.upsert(view("a", &[], false, &[]));
        g.upsert(view("b", &["a"], false, &[]));
        let w = g.replace_resource(&res(), vec![view("b", &["a"], false, &[])]);
        assert!(g.get("a").is_none());
        assert!(w.attempt_to_delete.contains(&"b".to_owned()));
    }
}
