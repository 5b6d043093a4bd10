//! InterPodAffinity: required pod affinity and anti-affinity (Filter) and
//! preferred terms (Score), as upstream's `interpodaffinity` plugin.
//!
//! PreFilter counts, per topology pair (node label key and value), the
//! existing pods that the incoming pod's required terms select and the
//! existing pods whose required anti-affinity selects the incoming pod, so
//! Filter only does map lookups per node. PreScore does the same for the
//! weighted terms.

mod counting;
mod filtering;
mod hints;
mod scoring;

#[cfg(test)]
mod filtering_tests;
#[cfg(test)]
mod scoring_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_api::field::{Error as FieldError, Path};
use skiff_api::selector::labels::Selector;

pub(crate) use crate::plugins::domains::TopologyCounts;

use crate::framework::node_info::AffinityTerm;
use crate::framework::{
    ClusterEvent, ClusterLister, EventObjects, EventResource, FilterPlugin, Handle, Plugin,
    PodInfo, PreFilterPlugin, PreScorePlugin, QueueingHint, ScorePlugin, action,
};

/// The plugin's name in the scheduler configuration.
pub const NAME: &str = "InterPodAffinity";

/// Lowest and highest `hardPodAffinityWeight`.
const MIN_HARD_POD_AFFINITY_WEIGHT: i64 = 0;
const MAX_HARD_POD_AFFINITY_WEIGHT: i64 = 100;

/// The plugin's arguments (upstream's `InterPodAffinityArgs`, v1 defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterPodAffinityArgs {
    /// Score weight of an existing pod's required affinity term that selects
    /// the incoming pod (0-100, default 1).
    pub hard_pod_affinity_weight: i32,
    /// Score only the incoming pod's preferred terms when it has any, and
    /// skip scoring otherwise.
    pub ignore_preferred_terms_of_existing_pods: bool,
}

impl Default for InterPodAffinityArgs {
    fn default() -> Self {
        InterPodAffinityArgs {
            hard_pod_affinity_weight: 1,
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

impl InterPodAffinityArgs {
    /// Decodes and validates `pluginConfig` args; errors name the field.
    pub fn from_json(args: Option<&serde_json::Value>) -> Result<Self, String> {
        let mut out = InterPodAffinityArgs::default();
        let Some(obj) = args.filter(|v| !v.is_null()) else {
            return Ok(out);
        };
        let Some(obj) = obj.as_object() else {
            return Err("InterPodAffinityArgs: expected an object".to_owned());
        };
        if let Some(v) = obj.get("hardPodAffinityWeight").filter(|v| !v.is_null()) {
            let path = Path::new("hardPodAffinityWeight");
            let w = v.as_i64().ok_or_else(|| {
                FieldError::invalid(&path, v.to_string(), "must be an integer").to_string()
            })?;
            if !(MIN_HARD_POD_AFFINITY_WEIGHT..=MAX_HARD_POD_AFFINITY_WEIGHT).contains(&w) {
                let msg = format!(
                    "not in valid range [{MIN_HARD_POD_AFFINITY_WEIGHT}-{MAX_HARD_POD_AFFINITY_WEIGHT}]"
                );
                return Err(FieldError::invalid(&path, w, &msg).to_string());
            }
            // In range, so it fits.
            out.hard_pod_affinity_weight = i32::try_from(w).unwrap_or_default();
        }
        if let Some(v) = obj
            .get("ignorePreferredTermsOfExistingPods")
            .filter(|v| !v.is_null())
        {
            out.ignore_preferred_terms_of_existing_pods = v.as_bool().ok_or_else(|| {
                FieldError::invalid(
                    &Path::new("ignorePreferredTermsOfExistingPods"),
                    v.to_string(),
                    "must be a boolean",
                )
                .to_string()
            })?;
        }
        Ok(out)
    }
}

/// The InterPodAffinity plugin.
pub struct InterPodAffinity {
    args: InterPodAffinityArgs,
    lister: Arc<dyn ClusterLister>,
    /// PreFilter's counts, kept for the next pod with the same terms.
    pre_filter_counts: counting::PreFilterCounts,
    /// PreScore's contributions, kept likewise.
    pre_score_counts: counting::PreScoreCounts,
}

impl std::fmt::Debug for InterPodAffinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterPodAffinity")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

/// Builds the plugin from its args.
pub fn new(args: Option<&serde_json::Value>, handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(InterPodAffinity::new(
        InterPodAffinityArgs::from_json(args)?,
        handle.lister.clone(),
    )))
}

impl InterPodAffinity {
    /// A plugin with validated args.
    pub fn new(args: InterPodAffinityArgs, lister: Arc<dyn ClusterLister>) -> Self {
        InterPodAffinity {
            args,
            lister,
            pre_filter_counts: counting::PreFilterCounts::default(),
            pre_score_counts: counting::PreScoreCounts::default(),
        }
    }

    /// The incoming pod's terms with a non-empty namespaceSelector turned
    /// into the namespaces it selects now, so matching needs no namespace
    /// labels (upstream's `mergeAffinityTermNamespacesIfNotEmpty`). An empty
    /// selector (every namespace) stays as it is.
    fn merge_namespaces<'a, I>(&self, terms: I) -> Vec<AffinityTerm>
    where
        I: IntoIterator<Item = &'a AffinityTerm>,
    {
        let mut namespaces: Option<Vec<(String, BTreeMap<String, String>)>> = None;
        terms
            .into_iter()
            .map(|t| {
                let mut t = t.clone();
                if let Some(sel) = t.namespace_selector.as_ref().filter(|s| !s.is_empty()) {
                    let all = namespaces.get_or_insert_with(|| self.lister.namespaces());
                    for (name, labels) in all.iter() {
                        if sel.matches(labels) {
                            t.namespaces.insert(name.clone());
                        }
                    }
                    t.namespace_selector = Some(Selector::nothing());
                }
                t
            })
            .collect()
    }

    /// The incoming pod's namespace labels (None when the namespace is
    /// unknown: selectors then see no labels).
    fn namespace_labels(&self, pod: &PodInfo) -> Option<Arc<BTreeMap<String, String>>> {
        self.lister.namespace_labels(pod.namespace()).map(Arc::new)
    }
}

/// True when `term` selects `pod`: the pod's namespace is listed or selected
/// by the term's namespaceSelector (given the labels of the pod's namespace),
/// and its labels match the term's selector (upstream's
/// `AffinityTerm.Matches`).
pub(crate) fn term_matches(
    term: &AffinityTerm,
    pod: &PodInfo,
    ns_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    // The packed index holds the namespace and labels side by side.
    let labels = &pod.label_index;
    let in_namespace = term.namespaces.contains(labels.prefix())
        || term
            .namespace_selector
            .as_ref()
            .is_some_and(|s| s.matches(ns_labels.unwrap_or(&EMPTY)));
    in_namespace && term.selector.matches(labels)
}

/// True when `pod` is selected by every term (false for no terms). Used for
/// the incoming pod's own, namespace-merged terms.
pub(crate) fn pod_matches_all_terms(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    !terms.is_empty() && terms.iter().all(|t| term_matches(t, pod, None))
}

/// PreFilter's counts as sorted (key, value, count) triples: existing pods'
/// anti-affinity, affinity, anti-affinity.
#[cfg(test)]
pub(crate) fn prefilter_counts_for_test(
    state: &crate::framework::CycleState,
) -> Option<[Vec<(String, String, i64)>; 3]> {
    let s = state.read::<filtering::PreFilterState>(filtering::PRE_FILTER_STATE_KEY)?;
    Some([
        s.existing_anti_affinity_counts.pairs(),
        s.affinity_counts.pairs(),
        s.anti_affinity_counts.pairs(),
    ])
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            // A new pod may satisfy affinity; a deleted or relabelled one
            // may lift anti-affinity.
            ClusterEvent {
                resource: EventResource::Pod,
                action: action::ADD | action::UPDATE_POD_LABEL | action::DELETE,
            },
            // A new or relabelled node may form a matching topology domain.
            ClusterEvent {
                resource: EventResource::Node,
                action: action::ADD | action::UPDATE_NODE_LABEL,
            },
        ]
    }
    fn queueing_hint(
        &self,
        pod: &PodInfo,
        _event: &ClusterEvent,
        objects: &EventObjects,
    ) -> QueueingHint {
        self.hint(pod, objects)
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}
