#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::quantity_value_for_tests as q;
use crate::kinds::core::util::messages;
use crate::kinds::{default, validate};

#[test]
fn quantity_syntax() {
    for (s, want) in [
        ("1", Some(1.0)),
        ("100m", Some(0.1)),
        ("1Ki", Some(1024.0)),
        ("1.5Gi", Some(1.5 * 1024f64.powi(3))),
        ("2e3", Some(2000.0)),
        ("+3", Some(3.0)),
        ("-1", Some(-1.0)),
        (".5", Some(0.5)),
        ("", None),
        ("1.2.3", None),
        ("abc", None),
        ("1KB", None),
        ("1e", None),
        ("-", None),
    ] {
        assert_eq!(q(&json!(s)), want, "{s:?}");
    }
    assert_eq!(q(&json!(2)), Some(2.0));
}

#[test]
fn container_limit_defaults() {
    let mut lr = json!({"spec": {"limits": [
        {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "min": {"cpu": "100m"}, "default": {"memory": "512Mi"}},
        {"type": "Pod", "max": {"cpu": "4"}},
    ]}});
    default("", "LimitRange", &mut lr);
    assert_eq!(
        lr["spec"]["limits"][0],
        json!({
            "type": "Container",
            "max": {"cpu": "2", "memory": "1Gi"},
            "min": {"cpu": "100m"},
            "default": {"cpu": "2", "memory": "512Mi"},
            "defaultRequest": {"cpu": "2", "memory": "512Mi"},
        })
    );
    assert_eq!(
        lr["spec"]["limits"][1],
        json!({"type": "Pod", "max": {"cpu": "4"}})
    );
    let again = lr.clone();
    default("", "LimitRange", &mut lr);
    assert_eq!(lr, again);
    assert!(
        validate("", "LimitRange", &lr).is_empty(),
        "{:?}",
        messages(&validate("", "LimitRange", &lr))
    );
}

#[test]
fn limit_range_validation() {
    let lr = json!({"spec": {"limits": [
        {"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "2"}, "maxLimitRequestRatio": {"memory": "500m"}},
        {"type": "Container"},
        {"type": "Pod", "default": {"cpu": "1"}, "max": {"pods": "1"}},
        {"type": "Thing", "max": {"widgets": "x"}},
        {"type": "PersistentVolumeClaim", "max": {"cpu": "1"}},
    ]}});
    assert_eq!(
        messages(&validate("", "LimitRange", &lr)),
        vec![
            "spec.limits[0].min[cpu]: Invalid value: 2: min value 2 is greater than max value 1",
            "spec.limits[0].maxLimitRequestRatio[memory]: Invalid value: 500m: ratio 500m is less than 1",
            "spec.limits[1].type: Duplicate value: \"Container\"",
            "spec.limits[2].max[pods]: Invalid value: \"pods\": must be a standard resource for containers",
            "spec.limits[2].default: Forbidden: may not be specified when `type` is 'Pod'",
            "spec.limits[3].type: Invalid value: \"Thing\": must be a standard limit type or fully qualified",
            "spec.limits[3].max[widgets]: Invalid value: \"widgets\": must be a standard resource type or fully qualified",
            "spec.limits[3].max[widgets]: Invalid value: \"x\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            "spec.limits[4].limits: Required value: either minimum or maximum storage value is required, but neither was provided",
        ]
    );
}
