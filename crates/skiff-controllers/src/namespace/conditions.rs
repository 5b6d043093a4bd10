//! The NamespaceDeletion* conditions the namespace controller reports on a
//! terminating Namespace (upstream's `namespaceConditionUpdater`): every
//! sync sets all five, True with the failure's reason and message, or False
//! with the "ok" variant.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{NamespaceCondition, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Discovery of the server's resources failed (wholly or for some groups).
pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
/// A discovered group/version string did not parse.
pub const GROUP_VERSION_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
/// Deleting some content failed.
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
/// Content is still present.
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
/// Remaining content carries finalizers.
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// The condition types this controller owns, in upstream's order.
pub const CONDITION_TYPES: [&str; 5] = [
    DISCOVERY_FAILURE,
    GROUP_VERSION_PARSING_FAILURE,
    CONTENT_FAILURE,
    CONTENT_REMAINING,
    FINALIZERS_REMAINING,
];

/// The reason and message of a condition type when nothing is wrong.
fn ok_variant(condition_type: &str) -> (&'static str, &'static str) {
    match condition_type {
        DISCOVERY_FAILURE => (
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        GROUP_VERSION_PARSING_FAILURE => (
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        CONTENT_FAILURE => (
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        CONTENT_REMAINING => ("ContentRemoved", "All content successfully removed"),
        _ => (
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        ),
    }
}

/// A group, version and resource (plural).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gvr {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
}

impl Gvr {
    /// A GVR from its parts.
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Gvr {
            group: group.to_owned(),
            version: version.to_owned(),
            resource: resource.to_owned(),
        }
    }

    /// `apiVersion` of the group/version.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// As upstream's `GroupVersionResource.String()`: `apps/v1, Resource=deployments`.
impl fmt::Display for Gvr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}, Resource={}",
            self.group, self.version, self.resource
        )
    }
}

/// What is left of the namespace's content after a deletion pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentTotals {
    /// Objects remaining per resource.
    pub gvr_to_num_remaining: BTreeMap<Gvr, usize>,
    /// Remaining objects carrying each finalizer.
    pub finalizers_to_num_remaining: BTreeMap<String, usize>,
}

/// Collects one sync's failures, then writes them as conditions.
#[derive(Debug, Default)]
pub struct ConditionUpdater {
    new_conditions: Vec<NamespaceCondition>,
    delete_content_errors: Vec<String>,
}

fn condition(
    condition_type: &str,
    reason: &str,
    message: String,
    now: &Time,
) -> NamespaceCondition {
    NamespaceCondition {
        type_: condition_type.to_owned(),
        status: "True".to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_transition_time: Some(now.clone()),
    }
}

impl ConditionUpdater {
    /// Discovery failed; `failed_groups` is how many group versions failed
    /// when it failed only partly (upstream's `ErrGroupDiscoveryFailed`).
    pub fn process_discovery_error(
        &mut self,
        message: &str,
        failed_groups: Option<usize>,
        now: &Time,
    ) {
        let message = match failed_groups {
            Some(n) => format!("Discovery failed for some groups, {n} failing: {message}"),
            None => message.to_owned(),
        };
        self.new_conditions.push(condition(
            DISCOVERY_FAILURE,
            "DiscoveryFailed",
            message,
            now,
        ));
    }

    /// A group/version did not parse.
    pub fn process_group_version_error(&mut self, message: &str, now: &Time) {
        self.new_conditions.push(condition(
            GROUP_VERSION_PARSING_FAILURE,
            "GroupVersionParsingFailed",
            message.to_owned(),
            now,
        ));
    }

    /// Deleting one resource's content failed.
    pub fn process_delete_content_error(&mut self, message: &str) {
        self.delete_content_errors.push(message.to_owned());
    }

    /// Remaining content, and the finalizers holding it.
    pub fn process_content_totals(&mut self, totals: &ContentTotals, now: &Time) {
        if !totals.gvr_to_num_remaining.is_empty() {
            let mut parts: Vec<String> = totals
                .gvr_to_num_remaining
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(gvr, n)| {
                    format!("{}.{} has {n} resource instances", gvr.resource, gvr.group)
                })
                .collect();
            parts.sort();
            self.new_conditions.push(condition(
                CONTENT_REMAINING,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", parts.join(", ")),
                now,
            ));
        }
        if !totals.finalizers_to_num_remaining.is_empty() {
            let mut parts: Vec<String> = totals
                .finalizers_to_num_remaining
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(f, n)| format!("{f} in {n} resource instances"))
                .collect();
            parts.sort();
            self.new_conditions.push(condition(
                FINALIZERS_REMAINING,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    parts.join(", ")
                ),
                now,
            ));
        }
    }

    /// Writes the conditions into `status`; true when anything changed.
    pub fn update(mut self, status: &mut NamespaceStatus, now: &Time) -> bool {
        if !self.delete_content_errors.is_empty()
            && !self
                .new_conditions
                .iter()
                .any(|c| c.type_ == CONTENT_FAILURE)
        {
            let mut msgs = std::mem::take(&mut self.delete_content_errors);
            msgs.sort();
            self.new_conditions.push(condition(
                CONTENT_FAILURE,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    msgs.len(),
                    msgs.join(", ")
                ),
                now,
            ));
        }
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let mut changed = false;
        for t in CONDITION_TYPES {
            let wanted = self
                .new_conditions
                .iter()
                .find(|c| c.type_ == t)
                .cloned()
                .unwrap_or_else(|| {
                    let (reason, message) = ok_variant(t);
                    NamespaceCondition {
                        type_: t.to_owned(),
                        status: "False".to_owned(),
                        reason: Some(reason.to_owned()),
                        message: Some(message.to_owned()),
                        last_transition_time: Some(now.clone()),
                    }
                });
            match conditions.iter_mut().find(|c| c.type_ == t) {
                None => {
                    conditions.push(wanted);
                    changed = true;
                }
                Some(old) => {
                    if old.status != wanted.status
                        || old.reason != wanted.reason
                        || old.message != wanted.message
                    {
                        if old.status != wanted.status {
                            old.last_transition_time = Some(now.clone());
                        }
                        old.status = wanted.status;
                        old.reason = wanted.reason;
                        old.message = wanted.message;
                        changed = true;
                    }
                }
            }
        }
        changed
    }
}
