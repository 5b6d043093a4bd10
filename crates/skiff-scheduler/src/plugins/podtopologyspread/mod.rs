//! PodTopologySpread: spreads matching pods over topology domains, as
//! upstream's `podtopologyspread` plugin. Filter enforces the pod's
//! `DoNotSchedule` constraints (maxSkew, minDomains, node inclusion
//! policies); Score prefers nodes whose domains hold fewer matching pods
//! for `ScheduleAnyway` constraints.
//!
//! A pod without constraints of its own gets the default constraints (the
//! system defaults unless `defaultingType: List`), whose selector is built
//! from the Services, ReplicationController, ReplicaSet or StatefulSet
//! selecting the pod — looked up through [`ClusterLister::services`] and
//! the controller lookups next to it.

mod common;
mod counting;
mod filtering;
mod hints;
mod scoring;

#[cfg(test)]
mod filtering_tests;
#[cfg(test)]
mod scoring_tests;

use std::sync::Arc;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use skiff_api::field::{Error as FieldError, ErrorList, Path};
use skiff_api::validation::validate_label_name;

pub use filtering::{ERR_REASON_CONSTRAINTS_NOT_MATCH, ERR_REASON_NODE_LABEL_NOT_MATCH};

use crate::framework::{
    ClusterEvent, ClusterLister, EventObjects, EventResource, FilterPlugin, Handle, Plugin,
    PodInfo, PreFilterPlugin, PreScorePlugin, QueueingHint, ScorePlugin, action,
};
use common::{DO_NOT_SCHEDULE, LABEL_HOSTNAME, LABEL_TOPOLOGY_ZONE, SCHEDULE_ANYWAY};

/// The plugin's name in the scheduler configuration.
pub const NAME: &str = "PodTopologySpread";

/// Where default constraints come from (upstream's
/// `PodTopologySpreadConstraintsDefaulting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultingType {
    /// The built-in constraints: hostname maxSkew 3 and zone maxSkew 5,
    /// both ScheduleAnyway.
    #[default]
    System,
    /// `defaultConstraints` from the args.
    List,
}

/// The plugin's arguments (upstream's `PodTopologySpreadArgs`, v1
/// defaults).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodTopologySpreadArgs {
    /// Constraints for pods without their own (with `List`); they carry no
    /// selector.
    pub default_constraints: Vec<TopologySpreadConstraint>,
    /// Where default constraints come from.
    pub defaulting_type: DefaultingType,
}

impl PodTopologySpreadArgs {
    /// Decodes and validates `pluginConfig` args; errors name the field.
    pub fn from_json(args: Option<&serde_json::Value>) -> Result<Self, String> {
        let Some(obj) = args.filter(|v| !v.is_null()) else {
            return Ok(PodTopologySpreadArgs::default());
        };
        let Some(obj) = obj.as_object() else {
            return Err("PodTopologySpreadArgs: expected an object".to_owned());
        };
        let default_constraints: Vec<TopologySpreadConstraint> =
            match obj.get("defaultConstraints").filter(|v| !v.is_null()) {
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| format!("defaultConstraints: {e}"))?,
                None => Vec::new(),
            };
        let defaulting_type = obj
            .get("defaultingType")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        let mut errs = ErrorList::new();
        let defaulting_type = validate_defaulting_type(defaulting_type, &default_constraints)
            .unwrap_or_else(|e| {
                errs.push(e);
                DefaultingType::System
            });
        validate_default_constraints(&default_constraints, &mut errs);
        if let Some(msg) = errs.aggregate_message() {
            return Err(msg);
        }
        Ok(PodTopologySpreadArgs {
            default_constraints,
            defaulting_type,
        })
    }
}

fn validate_defaulting_type(
    v: &str,
    constraints: &[TopologySpreadConstraint],
) -> Result<DefaultingType, FieldError> {
    let path = Path::new("defaultingType");
    match v {
        // v1 defaults an unset type to System.
        "" | "System" if !constraints.is_empty() => Err(FieldError::invalid(
            &path,
            "System",
            "when .defaultConstraints are not empty",
        )),
        "" | "System" => Ok(DefaultingType::System),
        "List" => Ok(DefaultingType::List),
        other => Err(FieldError::not_supported(&path, other, &["System", "List"])),
    }
}

fn validate_default_constraints(constraints: &[TopologySpreadConstraint], errs: &mut ErrorList) {
    let base = Path::new("defaultConstraints");
    for (i, c) in constraints.iter().enumerate() {
        let p = base.index(i);
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid(
                &p.child("maxSkew"),
                c.max_skew,
                "not in valid range (0, inf)",
            ));
        }
        let key_path = p.child("topologyKey");
        if c.topology_key.is_empty() {
            errs.push(FieldError::required(&key_path, "can not be empty"));
        } else {
            errs.extend(validate_label_name(&c.topology_key, &key_path));
        }
        let when = p.child("whenUnsatisfiable");
        match c.when_unsatisfiable.as_str() {
            "" => errs.push(FieldError::required(&when, "can not be empty")),
            DO_NOT_SCHEDULE | SCHEDULE_ANYWAY => {}
            other => errs.push(FieldError::not_supported(
                &when,
                other,
                &[DO_NOT_SCHEDULE, SCHEDULE_ANYWAY],
            )),
        }
        if c.label_selector.is_some() {
            errs.push(FieldError::forbidden(
                &p.child("labelSelector"),
                "constraint must not define a selector, as they deduced for each pod",
            ));
        }
        let repeated = constraints[..i].iter().any(|o| {
            o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable
        });
        if repeated {
            errs.push(FieldError::duplicate(
                &p,
                format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable),
            ));
        }
    }
}

/// The system default constraints.
fn system_default_constraints() -> Vec<TopologySpreadConstraint> {
    vec![
        TopologySpreadConstraint {
            topology_key: LABEL_HOSTNAME.to_owned(),
            when_unsatisfiable: SCHEDULE_ANYWAY.to_owned(),
            max_skew: 3,
            ..TopologySpreadConstraint::default()
        },
        TopologySpreadConstraint {
            topology_key: LABEL_TOPOLOGY_ZONE.to_owned(),
            when_unsatisfiable: SCHEDULE_ANYWAY.to_owned(),
            max_skew: 5,
            ..TopologySpreadConstraint::default()
        },
    ]
}

/// The PodTopologySpread plugin.
pub struct PodTopologySpread {
    default_constraints: Vec<TopologySpreadConstraint>,
    /// The default constraints are the system ones.
    system_defaulted: bool,
    lister: Arc<dyn ClusterLister>,
    /// PreFilter's counts, kept for the next pod with the same constraints.
    pre_filter_counts: counting::PreFilterCounts,
}

impl std::fmt::Debug for PodTopologySpread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodTopologySpread")
            .field("default_constraints", &self.default_constraints)
            .field("system_defaulted", &self.system_defaulted)
            .finish_non_exhaustive()
    }
}

/// Builds the plugin from its args.
pub fn new(args: Option<&serde_json::Value>, handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(PodTopologySpread::new(
        PodTopologySpreadArgs::from_json(args)?,
        handle.lister.clone(),
    )))
}

impl PodTopologySpread {
    /// A plugin with validated args.
    pub fn new(args: PodTopologySpreadArgs, lister: Arc<dyn ClusterLister>) -> Self {
        let system_defaulted = args.defaulting_type == DefaultingType::System;
        let default_constraints = if system_defaulted {
            system_default_constraints()
        } else {
            args.default_constraints
        };
        PodTopologySpread {
            default_constraints,
            system_defaulted,
            lister,
            pre_filter_counts: counting::PreFilterCounts::default(),
        }
    }
}

/// PreFilter's state per constraint: every domain's count sorted, the
/// minimum of the critical paths, and the number of domains.
#[cfg(test)]
pub(crate) fn prefilter_counts_for_test(
    state: &crate::framework::CycleState,
) -> Option<Vec<filtering::ConstraintSummary>> {
    let s = state.read::<filtering::PreFilterState>(filtering::PRE_FILTER_STATE_KEY)?;
    Some(s.summary_for_test())
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            // Matching pods coming, going or relabelled change the counts.
            ClusterEvent {
                resource: EventResource::Pod,
                action: action::ADD | action::UPDATE_POD_LABEL | action::DELETE,
            },
            // Nodes define the domains; taints matter with nodeTaintsPolicy.
            ClusterEvent {
                resource: EventResource::Node,
                action: action::ADD
                    | action::DELETE
                    | action::UPDATE_NODE_LABEL
                    | action::UPDATE_NODE_TAINT,
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
