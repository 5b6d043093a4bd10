//! Go's `%v` rendering of decoded JSON (`map[a:1 b:[x y]]`) and the Go type
//! names upstream's patch errors print, so our messages read like upstream's.

use serde_json::Value;

/// The Go type a JSON value decodes to in upstream's patch code
/// (`map[string]interface {}`, `[]interface {}`, `string`, `int64`, `float64`,
/// `bool`), as `reflect.TypeOf(v)` prints it. Go prints a nil type as
/// `%!s(<nil>)` in these messages.
pub(crate) fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "%!s(<nil>)",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `%v` of a decoded JSON value: maps with sorted keys as `map[k:v]`,
/// slices as `[a b]`, nil as `<nil>`, floats in `%g` style. Unlike Go, long
/// renderings are cut at [`MAX_RENDER_LEN`] bytes (ending in `...`): these go
/// into error messages, and a patch may hold megabytes.
pub(crate) fn go_value(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, 0);
    if out.len() > MAX_RENDER_LEN {
        let mut cut = MAX_RENDER_LEN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// The longest value rendering kept in an error message.
pub(crate) const MAX_RENDER_LEN: usize = 2048;

/// Go's `%s` of a value: strings bare, anything else in Go's `%!s(type=value)`
/// form.
pub(crate) fn go_string_verb(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "%!s(<nil>)".to_string(),
        Value::Bool(_) | Value::Number(_) => format!("%!s({}={})", go_type(v), go_value(v)),
        _ => go_value(v),
    }
}

// Error messages only need a readable prefix of huge values; this also bounds
// recursion on deep input.
const MAX_RENDER_DEPTH: usize = 32;

fn write_value(out: &mut String, v: &Value, depth: usize) {
    if depth > MAX_RENDER_DEPTH || out.len() > MAX_RENDER_LEN {
        out.push_str("...");
        return;
    }
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (None, Some(u), _) => out.push_str(&u.to_string()),
            (None, None, Some(f)) => out.push_str(&go_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, item, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                if let Some(item) = map.get(k) {
                    write_value(out, item, depth + 1);
                }
            }
            out.push(']');
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): the
/// shortest digits, in exponent form (`1e+06`, `1.5e-07`) when the decimal
/// exponent is below -4 or at least 6.
fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.5e-7", "1e6".
    let sci = format!("{f:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return sci;
    };
    if f != 0.0 && !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.unsigned_abs());
    }
    format!("{f}")
}
