//! Quantities in JSON objects: decoding one, and walking paths of an
//! object to canonicalise (normalisation) or round (defaulting) them.

use serde_json::Value;

use super::{Quantity, QuantityError};

/// Parses a quantity from its JSON form: a string, or a bare number as
/// upstream's decoder also accepts.
pub fn from_json(v: &Value) -> Result<Quantity, QuantityError> {
    match v {
        Value::String(s) => Quantity::parse(s),
        Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => Err(QuantityError::FormatWrong),
    }
}

/// Rewrites one JSON quantity in place to its canonical form (`null` is
/// left alone).
pub fn canonicalize_value(v: &mut Value) -> Result<(), QuantityError> {
    if v.is_null() {
        return Ok(());
    }
    let q = from_json(v)?;
    *v = Value::String(q.to_string());
    Ok(())
}

/// Rewrites every value of a JSON map of quantities (a `ResourceList`) in
/// place; a missing or non-object field is left alone.
pub fn canonicalize_map(v: Option<&mut Value>) -> Result<(), QuantityError> {
    if let Some(Value::Object(map)) = v {
        for q in map.values_mut() {
            canonicalize_value(q)?;
        }
    }
    Ok(())
}

/// Canonicalises the quantities of `obj` found at each of `paths`.
///
/// A path is a list of steps: a field name, `"*"` for every element of a
/// list, or `"{}"` for every value of a map (the last step is the quantity
/// itself, or `"{}"` to canonicalise a whole `ResourceList`). For example
/// `&["spec", "limits", "*", "max", "{}"]` covers a LimitRange's maxima
/// and `&["spec", "capacity", "{}"]` a PersistentVolume's capacity.
/// Missing fields are skipped; the error is the 400 message upstream's
/// decoder gives for a malformed quantity.
pub(crate) fn canonicalize_at(obj: &mut Value, paths: &[&[&str]]) -> Result<(), String> {
    for path in paths {
        walk(obj, path).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The quantity fields of the core/v1 kinds other than pods and their
/// templates, in [`canonicalize_at`]'s path syntax (every one of them is a
/// `ResourceList`, which upstream's defaulting also rounds up to
/// milli-units: see [`round_up_milli_at`]).
#[allow(dead_code, reason = "for kinds::core, whose owner wires it in")]
pub(crate) fn core_quantity_paths(kind: &str) -> &'static [&'static [&'static str]] {
    match kind {
        "Node" => &[
            &["status", "capacity", "{}"],
            &["status", "allocatable", "{}"],
        ],
        "PersistentVolume" => &[&["spec", "capacity", "{}"]],
        "PersistentVolumeClaim" => &[
            &["spec", "resources", "requests", "{}"],
            &["spec", "resources", "limits", "{}"],
            &["status", "capacity", "{}"],
            &["status", "allocatedResources", "{}"],
        ],
        "ResourceQuota" => &[
            &["spec", "hard", "{}"],
            &["status", "hard", "{}"],
            &["status", "used", "{}"],
        ],
        "LimitRange" => &[
            &["spec", "limits", "*", "max", "{}"],
            &["spec", "limits", "*", "min", "{}"],
            &["spec", "limits", "*", "default", "{}"],
            &["spec", "limits", "*", "defaultRequest", "{}"],
            &["spec", "limits", "*", "maxLimitRequestRatio", "{}"],
        ],
        _ => &[],
    }
}

/// Upstream's `SetDefaults_ResourceList`: rounds every quantity found at
/// `paths` (same syntax as [`canonicalize_at`]) up to milli-units. Values
/// that are not valid quantities are left for validation.
pub(crate) fn round_up_milli_at(obj: &mut Value, paths: &[&[&str]]) {
    for path in paths {
        visit(obj, path, &mut |v| {
            if let Ok(q) = from_json(v) {
                let rounded = q.round_up(-3);
                if rounded.original.is_none() && q.exponent < -3 {
                    *v = Value::String(rounded.to_string());
                }
            }
        });
    }
}

fn visit(v: &mut Value, path: &[&str], f: &mut dyn FnMut(&mut Value)) {
    let Some((step, rest)) = path.split_first() else {
        if !v.is_null() {
            f(v);
        }
        return;
    };
    match *step {
        "*" => {
            if let Value::Array(items) = v {
                for item in items {
                    visit(item, rest, f);
                }
            }
        }
        "{}" => {
            if let Value::Object(map) = v {
                for item in map.values_mut() {
                    visit(item, rest, f);
                }
            }
        }
        name => {
            if let Some(child) = v.get_mut(name) {
                visit(child, rest, f);
            }
        }
    }
}

fn walk(v: &mut Value, path: &[&str]) -> Result<(), QuantityError> {
    let Some((step, rest)) = path.split_first() else {
        return canonicalize_value(v);
    };
    match *step {
        "*" => {
            if let Value::Array(items) = v {
                for item in items {
                    walk(item, rest)?;
                }
            }
        }
        "{}" => {
            if let Value::Object(map) = v {
                for item in map.values_mut() {
                    // A null entry of a resource list decodes as zero.
                    if item.is_null() && rest.is_empty() {
                        *item = Value::String("0".to_owned());
                    }
                    walk(item, rest)?;
                }
            }
        }
        name => {
            if let Some(child) = v.get_mut(name) {
                walk(child, rest)?;
            }
        }
    }
    Ok(())
}
