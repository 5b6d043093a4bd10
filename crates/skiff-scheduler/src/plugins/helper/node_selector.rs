//! Node selectors as the scheduler evaluates them (upstream's
//! `component-helpers/scheduling/corev1/nodeaffinity`): parsed once per pod,
//! matched against many nodes without allocating.

use k8s_openapi::api::core::v1::{
    NodeSelector as ApiNodeSelector, NodeSelectorRequirement, NodeSelectorTerm as ApiTerm, Pod,
    PreferredSchedulingTerm,
};
use skiff_api::field::{Error, ErrorList, Path};
use skiff_api::selector::labels::{Labels, Operator, Requirement, Selector, from_map};

/// The only field a node selector term may match on.
pub const OBJECT_NAME_FIELD: &str = "metadata.name";

const VALID_SELECTOR_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];

/// A `matchFields` requirement on `metadata.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldRequirement {
    /// `In [name]`.
    NameIs(String),
    /// `NotIn [name]`.
    NameIsNot(String),
}

/// One parsed node selector term: its label and field requirements, ANDed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSelectorTerm {
    labels: Option<Selector>,
    fields: Option<Vec<FieldRequirement>>,
}

impl NodeSelectorTerm {
    /// Parses `term`; errors carry paths under `path`.
    pub fn parse(term: &ApiTerm, path: &Path) -> Result<NodeSelectorTerm, ErrorList> {
        let mut errs = ErrorList::new();
        let mut parsed = NodeSelectorTerm::default();
        if let Some(exprs) = term.match_expressions.as_ref().filter(|e| !e.is_empty()) {
            match requirements_as_selector(exprs, &path.child("matchExpressions")) {
                Ok(s) => parsed.labels = Some(s),
                Err(e) => errs.extend(e),
            }
        }
        if let Some(fields) = term.match_fields.as_ref().filter(|f| !f.is_empty()) {
            match requirements_as_fields(fields, &path.child("matchFields")) {
                Ok(f) => parsed.fields = Some(f),
                Err(e) => errs.extend(e),
            }
        }
        if errs.is_empty() {
            Ok(parsed)
        } else {
            Err(errs)
        }
    }

    /// True when the node's labels and name satisfy the term. An empty term
    /// matches nothing; field requirements are ignored for a nameless node,
    /// as upstream (volume node affinity is matched on labels only).
    pub fn matches(&self, labels: &impl Labels, name: &str) -> bool {
        if self.labels.is_none() && self.fields.is_none() {
            return false;
        }
        if let Some(sel) = &self.labels
            && !sel.matches(labels)
        {
            return false;
        }
        if let Some(fields) = &self.fields
            && !name.is_empty()
        {
            return fields.iter().all(|f| match f {
                FieldRequirement::NameIs(n) => n == name,
                FieldRequirement::NameIsNot(n) => n != name,
            });
        }
        true
    }
}

fn requirements_as_selector(
    exprs: &[NodeSelectorRequirement],
    path: &Path,
) -> Result<Selector, ErrorList> {
    let mut errs = ErrorList::new();
    let mut reqs = Vec::with_capacity(exprs.len());
    for (i, expr) in exprs.iter().enumerate() {
        let p = path.index(i);
        let op = match expr.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::GreaterThan,
            "Lt" => Operator::LessThan,
            other => {
                errs.push(Error::not_supported(
                    &p.child("operator"),
                    other,
                    VALID_SELECTOR_OPERATORS,
                ));
                continue;
            }
        };
        match Requirement::new(&expr.key, op, expr.values.clone().unwrap_or_default()) {
            Ok(r) => reqs.push(r),
            Err(e) => {
                for mut err in e {
                    // Requirement errors are relative to the requirement.
                    err.field = format!("{p}.{}", err.field);
                    errs.push(err);
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(Selector::from_requirements(reqs))
    } else {
        Err(errs)
    }
}

fn requirements_as_fields(
    exprs: &[NodeSelectorRequirement],
    path: &Path,
) -> Result<Vec<FieldRequirement>, ErrorList> {
    let mut errs = ErrorList::new();
    let mut out = Vec::with_capacity(exprs.len());
    for (i, expr) in exprs.iter().enumerate() {
        let p = path.index(i);
        if expr.key != OBJECT_NAME_FIELD {
            errs.push(Error::not_supported(
                &p.child("key"),
                expr.key.as_str(),
                &[OBJECT_NAME_FIELD],
            ));
            continue;
        }
        let values = expr.values.as_deref().unwrap_or(&[]);
        let [value] = values else {
            errs.push(Error::invalid(
                &p.child("values"),
                values.to_vec(),
                "must have one element",
            ));
            continue;
        };
        match expr.operator.as_str() {
            "In" => out.push(FieldRequirement::NameIs(value.clone())),
            "NotIn" => out.push(FieldRequirement::NameIsNot(value.clone())),
            other => errs.push(Error::not_supported(
                &p.child("operator"),
                other,
                &["In", "NotIn"],
            )),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// A parsed `NodeSelector`: its terms are ORed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSelector {
    /// Terms that failed to parse are kept as `None`: they match nothing
    /// (upstream's lazy-error selector).
    terms: Vec<Option<NodeSelectorTerm>>,
}

impl NodeSelector {
    /// Parses `ns`, failing on any invalid term (plugin args).
    pub fn new(ns: &ApiNodeSelector, path: &Path) -> Result<NodeSelector, ErrorList> {
        let mut errs = ErrorList::new();
        let mut terms = Vec::with_capacity(ns.node_selector_terms.len());
        let tp = path.child("nodeSelectorTerms");
        for (i, term) in ns.node_selector_terms.iter().enumerate() {
            match NodeSelectorTerm::parse(term, &tp.index(i)) {
                Ok(t) => terms.push(Some(t)),
                Err(e) => errs.extend(e),
            }
        }
        if errs.is_empty() {
            Ok(NodeSelector { terms })
        } else {
            Err(errs)
        }
    }

    /// Parses `ns`, keeping invalid terms as never-matching (pod specs,
    /// which validation already checked).
    pub fn new_lazy(ns: &ApiNodeSelector) -> NodeSelector {
        let root = Path::new("nodeSelectorTerms");
        NodeSelector {
            terms: ns
                .node_selector_terms
                .iter()
                .enumerate()
                .map(|(i, t)| NodeSelectorTerm::parse(t, &root.index(i)).ok())
                .collect(),
        }
    }

    /// True when any term matches.
    pub fn matches(&self, labels: &impl Labels, name: &str) -> bool {
        self.terms.iter().flatten().any(|t| t.matches(labels, name))
    }
}

/// A pod's `nodeSelector` and required node affinity together (upstream's
/// `RequiredNodeAffinity`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequiredNodeAffinity {
    label_selector: Option<Selector>,
    node_selector: Option<NodeSelector>,
}

impl RequiredNodeAffinity {
    /// Parses the pod's `spec.nodeSelector` and
    /// `affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub fn from_pod(pod: &Pod) -> RequiredNodeAffinity {
        let spec = pod.spec.as_ref();
        let label_selector = spec
            .and_then(|s| s.node_selector.as_ref())
            .filter(|m| !m.is_empty())
            .map(from_map);
        let node_selector = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(NodeSelector::new_lazy);
        RequiredNodeAffinity {
            label_selector,
            node_selector,
        }
    }

    /// True when the node satisfies both.
    pub fn matches(&self, labels: &impl Labels, name: &str) -> bool {
        if let Some(sel) = &self.label_selector
            && !sel.matches(labels)
        {
            return false;
        }
        self.node_selector
            .as_ref()
            .is_none_or(|ns| ns.matches(labels, name))
    }
}

/// Weighted preferred terms (upstream's `PreferredSchedulingTerms`).
#[derive(Debug, Clone, Default)]
pub struct PreferredSchedulingTerms {
    terms: Vec<(NodeSelectorTerm, i64)>,
}

impl PreferredSchedulingTerms {
    /// Parses `terms`, skipping zero-weight ones; errors carry paths under
    /// `path`.
    pub fn new(
        terms: &[PreferredSchedulingTerm],
        path: &Path,
    ) -> Result<PreferredSchedulingTerms, ErrorList> {
        let mut errs = ErrorList::new();
        let mut out = Vec::with_capacity(terms.len());
        for (i, t) in terms.iter().enumerate() {
            if t.weight == 0 {
                continue;
            }
            match NodeSelectorTerm::parse(&t.preference, &path.index(i).child("preference")) {
                Ok(parsed) => out.push((parsed, i64::from(t.weight))),
                Err(e) => errs.extend(e),
            }
        }
        if errs.is_empty() {
            Ok(PreferredSchedulingTerms { terms: out })
        } else {
            Err(errs)
        }
    }

    /// The sum of the weights of the terms the node matches.
    pub fn score(&self, labels: &impl Labels, name: &str) -> i64 {
        self.terms
            .iter()
            .filter(|(t, _)| t.matches(labels, name))
            .map(|(_, w)| w)
            .sum()
    }

    /// True when there are no (non-zero-weight) terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn selector(v: serde_json::Value) -> ApiNodeSelector {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn operators_table() {
        let node = labels(&[("zone", "a"), ("cores", "8")]);
        let cases = [
            (
                json!({"key": "zone", "operator": "In", "values": ["a", "b"]}),
                true,
            ),
            (
                json!({"key": "zone", "operator": "In", "values": ["b"]}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "NotIn", "values": ["b"]}),
                true,
            ),
            (
                json!({"key": "missing", "operator": "NotIn", "values": ["b"]}),
                true,
            ),
            (json!({"key": "zone", "operator": "Exists"}), true),
            (json!({"key": "missing", "operator": "Exists"}), false),
            (json!({"key": "zone", "operator": "DoesNotExist"}), false),
            (json!({"key": "missing", "operator": "DoesNotExist"}), true),
            (
                json!({"key": "cores", "operator": "Gt", "values": ["4"]}),
                true,
            ),
            (
                json!({"key": "cores", "operator": "Gt", "values": ["8"]}),
                false,
            ),
            (
                json!({"key": "cores", "operator": "Lt", "values": ["9"]}),
                true,
            ),
            (
                json!({"key": "zone", "operator": "Lt", "values": ["9"]}),
                false,
            ),
            (
                json!({"key": "missing", "operator": "Gt", "values": ["1"]}),
                false,
            ),
            // Invalid terms match nothing.
            (
                json!({"key": "cores", "operator": "Gt", "values": ["x"]}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "Bogus", "values": ["a"]}),
                false,
            ),
        ];
        for (expr, want) in cases {
            let ns = selector(json!({"nodeSelectorTerms": [{"matchExpressions": [expr.clone()]}]}));
            assert_eq!(
                NodeSelector::new_lazy(&ns).matches(&node, "n1"),
                want,
                "{expr}"
            );
        }
    }

    #[test]
    fn terms_are_ored_and_fields_match_the_name() {
        let ns = selector(json!({"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {}
        ]}));
        let ns = NodeSelector::new(&ns, &Path::new("x")).unwrap();
        assert!(ns.matches(&labels(&[]), "n1"));
        assert!(!ns.matches(&labels(&[]), "n2"));
        assert!(ns.matches(&labels(&[("zone", "b")]), "n2"));
        let not_in = selector(json!({"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}]}));
        let not_in = NodeSelector::new_lazy(&not_in);
        assert!(!not_in.matches(&labels(&[]), "n1"));
        assert!(not_in.matches(&labels(&[]), "n2"));
    }

    #[test]
    fn strict_parse_names_the_field() {
        let ns = selector(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "Bogus", "values": ["a"]}]},
            {"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["a"]}]}
        ]}));
        let err = NodeSelector::new(&ns, &Path::new("req"))
            .unwrap_err()
            .aggregate_message()
            .unwrap();
        assert!(
            err.contains("req.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Bogus\""),
            "{err}"
        );
        assert!(
            err.contains(
                "req.nodeSelectorTerms[1].matchFields[0].key: Unsupported value: \"metadata.uid\""
            ),
            "{err}"
        );
        let bad_value = selector(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "n", "operator": "Gt", "values": ["x"]}]}]}));
        let err = NodeSelector::new(&bad_value, &Path::new("req"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("req.nodeSelectorTerms[0].matchExpressions[0].values[0]"),
            "{err}"
        );
    }

    #[test]
    fn preferred_terms_sum_weights() {
        let terms: Vec<PreferredSchedulingTerm> = serde_json::from_value(json!([
            {"weight": 5, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}},
            {"weight": 3, "preference": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}},
            {"weight": 0, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}
        ]))
        .unwrap();
        let p = PreferredSchedulingTerms::new(&terms, &Path::new("p")).unwrap();
        assert_eq!(p.score(&labels(&[("a", "1"), ("b", "1")]), "n"), 8);
        assert_eq!(p.score(&labels(&[("a", "1")]), "n"), 5);
        assert_eq!(p.score(&labels(&[]), "n"), 0);
    }
}
