//! Go renderings of values that upstream puts into field error messages
//! (`%#v` of maps and structs, generated `String()` of API types).

use std::collections::BTreeMap;

use serde_json::Value;

use super::json::{str_of, string_map};
use crate::go_quote;

/// Go's `%#v` of a `map[string]string` (keys sorted; `nil` when absent).
pub(super) fn go_string_map(v: Option<&Value>) -> String {
    if v.is_none_or(Value::is_null) {
        return "map[string]string(nil)".to_owned();
    }
    let entries: Vec<String> = string_map(v)
        .iter()
        .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
        .collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

/// The generated `String()` of a `*metav1.LabelSelector`, as upstream's
/// field errors print it.
pub(super) fn label_selector(v: Option<&Value>) -> String {
    let Some(sel) = v.filter(|v| !v.is_null()) else {
        return "nil".to_owned();
    };
    let labels: BTreeMap<String, String> = string_map(sel.get("matchLabels"));
    let mut s = String::from("&LabelSelector{MatchLabels:map[string]string{");
    for (k, v) in &labels {
        s.push_str(&format!("{k}: {v},"));
    }
    s.push_str("},MatchExpressions:[]LabelSelectorRequirement{");
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        s.push_str(&format!(
            "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
            str_of(e, "key"),
            str_of(e, "operator"),
            values.join(" ")
        ));
    }
    s.push_str("},}");
    s
}

/// Go's `%#v` of an `intstr.IntOrString`.
pub(super) fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => {
            format!(
                "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
                go_quote(s)
            )
        }
        Some(Value::Number(n)) => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            n.as_i64().unwrap_or(0)
        ),
        _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_owned(),
    }
}

/// Go's `%#v` of an apps strategy struct with an unsupported `type`.
pub(super) fn strategy(kind: &str, rolling: &str, type_: &str, v: &Value) -> String {
    let rolling_value = if v.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
        format!("(*apps.{rolling})(0xc000000000)")
    } else {
        format!("(*apps.{rolling})(nil)")
    };
    format!(
        "apps.{kind}{{Type:{}, RollingUpdate:{rolling_value}}}",
        go_quote(type_)
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_like_go() {
        assert_eq!(
            go_string_map(Some(&json!({"b": "2", "a": "1"}))),
            r#"map[string]string{"a":"1", "b":"2"}"#
        );
        assert_eq!(go_string_map(None), "map[string]string(nil)");
        assert_eq!(
            label_selector(Some(&json!({"matchLabels": {"app": "web"}}))),
            "&LabelSelector{MatchLabels:map[string]string{app: web,},MatchExpressions:[]LabelSelectorRequirement{},}"
        );
        assert_eq!(
            int_or_string(Some(&json!(0))),
            r#"intstr.IntOrString{Type:0, IntVal:0, StrVal:""}"#
        );
    }
}
