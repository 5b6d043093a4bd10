//! Field selectors: `field=value`, `field==value`, `field!=value`, separated by
//! commas; `\`, `,` and `=` in values are escaped with a backslash.
//!
//! A parsed selector is checked against the resource's supported field labels
//! with [`FieldSelector::for_resource`] (upstream's `ConvertFieldLabel`), then
//! matched against [`super::selectable_fields`] of each object.

use std::collections::BTreeMap;
use std::fmt;

use super::SelectorError;
use super::fields_table::convert_field_label;
use crate::resources::ResourceInfo;

/// An object's selectable fields by label (`spec.nodeName`): the labels
/// are the fixed names of [`super::selectable_fields`], so only the values
/// are allocated.
pub type Fields = BTreeMap<&'static str, String>;

/// Whether a requirement wants equality or inequality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One `field=value` / `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field label, e.g. `spec.nodeName`.
    pub field: String,
    /// Equality or inequality.
    pub operator: FieldOperator,
    /// The unescaped value.
    pub value: String,
}

/// A field selector: every requirement must hold. The empty selector matches
/// everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Escapes `\`, `,` and `=` in a value, as upstream's `EscapeValue`.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`]; rejects unknown escapes and unescaped `,`/`=` with
/// upstream's messages.
pub fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Upstream prints the rune with %v, i.e. as its code point number.
            ',' | '=' => {
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError(
            "invalid field selector: invalid escape sequence: \\".to_owned(),
        ));
    }
    Ok(out)
}

/// Splits on commas not preceded by a backslash.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Finds the first operator, trying `!=`, `==`, `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, rhs));
            }
        }
    }
    None
}

/// Parses a field selector string (`?fieldSelector=`). Terms are kept sorted by
/// their text, as upstream does; the empty string selects everything.
pub fn parse(selector: &str) -> Result<FieldSelector, SelectorError> {
    let mut parts = split_terms(selector);
    parts.sort_unstable();
    let mut requirements = Vec::new();
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let Some((lhs, operator, rhs)) = split_term(part) else {
            return Err(SelectorError(format!(
                "invalid selector: '{selector}'; can't understand '{part}'"
            )));
        };
        requirements.push(FieldRequirement {
            field: lhs.to_owned(),
            operator,
            value: unescape_value(rhs)?,
        });
    }
    Ok(FieldSelector { requirements })
}

impl FieldSelector {
    /// Matches everything.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// A selector with one `field=value` requirement.
    pub fn one_term_equal(field: &str, value: &str) -> Self {
        FieldSelector {
            requirements: vec![FieldRequirement {
                field: field.to_owned(),
                operator: FieldOperator::Equals,
                value: value.to_owned(),
            }],
        }
    }

    /// The requirements.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Checks every field label against what `resource` supports and rewrites
    /// aliases to their canonical label (e.g. pods' `spec.host` →
    /// `spec.nodeName`, events.k8s.io's `regarding.name` → `involvedObject.name`).
    /// The error is upstream's, e.g. `field label not supported: foo`.
    pub fn for_resource(self, resource: &ResourceInfo) -> Result<Self, SelectorError> {
        let mut requirements = Vec::with_capacity(self.requirements.len());
        for r in self.requirements {
            let field = convert_field_label(resource, &r.field).map_err(SelectorError)?;
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                ..r
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// True when `fields` satisfy every requirement; a missing field reads as
    /// the empty string, as upstream.
    pub fn matches(&self, fields: &Fields) -> bool {
        self.requirements.iter().all(|r| {
            let actual = fields.get(r.field.as_str()).map_or("", String::as_str);
            match r.operator {
                FieldOperator::Equals => actual == r.value,
                FieldOperator::NotEquals => actual != r.value,
            }
        })
    }

    /// The value `field` must equal, when an equality requirement pins it (e.g.
    /// `metadata.name` for a single-object watch, `spec.nodeName` for a kubelet).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
