//! Field-level validation errors, rendered exactly like upstream's
//! `k8s.io/apimachinery/pkg/util/validation/field` package.
//!
//! Every validator in this crate returns an [`ErrorList`]; the API server turns a
//! non-empty list into a `422 Invalid` [`crate::status::ApiError::Invalid`], whose
//! message and causes are built from [`Error::body`] and [`Error::field`].

use std::fmt;

use crate::quote::go_quote;

/// A path to a field, such as `spec.containers[0].name` or `metadata.labels[app]`.
///
/// Rendered like upstream's `field.Path.String()`: names joined by `.`, indexes and
/// map keys in brackets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(String);

impl Path {
    /// A root path with one or more names, e.g. `Path::new("metadata")`.
    pub fn new(name: &str) -> Self {
        Path(name.to_owned())
    }

    /// This path with a named child appended (`parent.child`).
    #[must_use]
    pub fn child(&self, name: &str) -> Self {
        // Sized once: validation builds a path for every field it visits.
        let mut s = String::with_capacity(self.0.len() + 1 + name.len());
        s.push_str(&self.0);
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(name);
        Path(s)
    }

    /// This path with a list index appended (`parent[3]`).
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        Path(format!("{}[{index}]", self.0))
    }

    /// This path with a map key appended (`parent[key]`).
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        Path(format!("{}[{key}]", self.0))
    }

    /// The rendered path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of a field error; its [`ErrorType::as_str`] is the `reason` of a
/// `StatusCause` (e.g. `FieldValueRequired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// `FieldValueNotFound`: a referenced value does not exist.
    NotFound,
    /// `FieldValueRequired`: a required value is missing.
    Required,
    /// `FieldValueDuplicate`: a value that must be unique is repeated.
    Duplicate,
    /// `FieldValueInvalid`: a value is malformed or out of range.
    Invalid,
    /// `FieldValueNotSupported`: a value is not one of an enumerated set.
    NotSupported,
    /// `FieldValueForbidden`: the field may not be set (in this context).
    Forbidden,
    /// `FieldValueTooLong`: a value is too long.
    TooLong,
    /// `FieldValueTooMany`: a list has too many items.
    TooMany,
    /// `InternalError`: validation could not be performed.
    Internal,
    /// `FieldValueTypeInvalid`: a value has the wrong type.
    TypeInvalid,
}

impl ErrorType {
    /// The machine-readable cause type, e.g. `FieldValueInvalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human-readable phrase that starts the message, e.g. `Invalid value`.
    pub fn description(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

/// The offending value of a field error, rendered as upstream renders Go values.
#[derive(Debug, Clone, PartialEq)]
pub enum BadValue {
    /// No value is shown (upstream's `omitValue`).
    Omitted,
    /// A nil value; upstream renders it as the quoted string `"null"`.
    Null,
    /// A string, rendered Go-quoted (`"foo"`).
    Str(String),
    /// An integer, rendered bare.
    Int(i64),
    /// A float, rendered like Go's `%v`.
    Float(f64),
    /// A boolean, rendered bare.
    Bool(bool),
    /// A list of strings, rendered like Go's `%#v` of `[]string`.
    StrList(Vec<String>),
    /// A value already rendered by the caller, shown verbatim.
    Raw(String),
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_owned())
    }
}

impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}

impl From<i64> for BadValue {
    fn from(v: i64) -> Self {
        BadValue::Int(v)
    }
}

impl From<i32> for BadValue {
    fn from(v: i32) -> Self {
        BadValue::Int(i64::from(v))
    }
}

impl From<bool> for BadValue {
    fn from(v: bool) -> Self {
        BadValue::Bool(v)
    }
}

impl From<f64> for BadValue {
    fn from(v: f64) -> Self {
        BadValue::Float(v)
    }
}

impl From<Vec<String>> for BadValue {
    fn from(v: Vec<String>) -> Self {
        BadValue::StrList(v)
    }
}

impl BadValue {
    fn render(&self) -> Option<String> {
        match self {
            BadValue::Omitted => None,
            BadValue::Null => Some(go_quote("null")),
            BadValue::Str(s) => Some(go_quote(s)),
            BadValue::Int(i) => Some(i.to_string()),
            BadValue::Float(v) => Some(go_float(*v)),
            BadValue::Bool(b) => Some(b.to_string()),
            BadValue::StrList(items) => {
                let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
                Some(format!("[]string{{{}}}", quoted.join(", ")))
            }
            BadValue::Raw(s) => Some(s.clone()),
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`).
fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "1.234567e6".
    let sci = format!("{v:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return sci;
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    // Plain decimal notation: Rust's Display is the shortest round-trip form too.
    format!("{v}")
}

/// One field validation error: a path, a type, the offending value and a detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    /// What kind of error this is.
    pub error_type: ErrorType,
    /// The rendered field path, e.g. `metadata.name`.
    pub field: String,
    /// The offending value.
    pub bad_value: BadValue,
    /// Extra explanation; may be empty.
    pub detail: String,
}

impl Error {
    fn new(error_type: ErrorType, path: &Path, bad_value: BadValue, detail: &str) -> Self {
        Error {
            error_type,
            field: path.as_str().to_owned(),
            bad_value,
            detail: detail.to_owned(),
        }
    }

    /// A required value is missing (`Required value`).
    pub fn required(path: &Path, detail: &str) -> Self {
        Self::new(
            ErrorType::Required,
            path,
            BadValue::Str(String::new()),
            detail,
        )
    }

    /// A value is invalid (`Invalid value: <value>: <detail>`).
    pub fn invalid(path: &Path, value: impl Into<BadValue>, detail: &str) -> Self {
        Self::new(ErrorType::Invalid, path, value.into(), detail)
    }

    /// A value has the wrong type.
    pub fn type_invalid(path: &Path, value: impl Into<BadValue>, detail: &str) -> Self {
        Self::new(ErrorType::TypeInvalid, path, value.into(), detail)
    }

    /// A referenced value was not found.
    pub fn not_found(path: &Path, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::NotFound, path, value.into(), "")
    }

    /// A value is a duplicate.
    pub fn duplicate(path: &Path, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::Duplicate, path, value.into(), "")
    }

    /// A value is not one of `valid`; the detail lists them, Go-quoted.
    pub fn not_supported(path: &Path, value: impl Into<BadValue>, valid: &[&str]) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, path, value.into(), &detail)
    }

    /// The field may not be set.
    pub fn forbidden(path: &Path, detail: &str) -> Self {
        Self::new(
            ErrorType::Forbidden,
            path,
            BadValue::Str(String::new()),
            detail,
        )
    }

    /// A value is longer than `max_len` bytes (`None`: no limit given).
    pub fn too_long(path: &Path, max_len: Option<usize>) -> Self {
        let detail = match max_len {
            Some(n) => format!("may not be more than {n} bytes"),
            None => "value is too long".to_owned(),
        };
        Self::new(
            ErrorType::TooLong,
            path,
            BadValue::Str("<value omitted>".to_owned()),
            &detail,
        )
    }

    /// A list has `actual` items (if known) where at most `max` are allowed.
    pub fn too_many(path: &Path, actual: Option<i64>, max: Option<i64>) -> Self {
        let detail = match max {
            Some(m) => format!("must have at most {m} items"),
            None => "has too many items".to_owned(),
        };
        let value = actual.map_or(BadValue::Omitted, BadValue::Int);
        Self::new(ErrorType::TooMany, path, value, &detail)
    }

    /// Validation itself failed.
    pub fn internal(path: &Path, detail: &str) -> Self {
        Self::new(ErrorType::Internal, path, BadValue::Null, detail)
    }

    /// The message without the field path (upstream's `ErrorBody`), used as the
    /// `message` of a `StatusCause`.
    pub fn body(&self) -> String {
        let hides_value = matches!(
            self.error_type,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal
        );
        let mut s = self.error_type.description().to_owned();
        if !hides_value && let Some(v) = self.bad_value.render() {
            s.push_str(": ");
            s.push_str(&v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for Error {}

/// A list of field errors, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorList(Vec<Error>);

impl ErrorList {
    /// An empty list.
    pub fn new() -> Self {
        ErrorList(Vec::new())
    }

    /// Appends one error.
    pub fn push(&mut self, e: Error) {
        self.0.push(e);
    }

    /// Appends every error of another list.
    pub fn extend(&mut self, other: ErrorList) {
        self.0.extend(other.0);
    }

    /// True when there are no errors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The errors, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Error> {
        self.0.iter()
    }

    /// Upstream's `ToAggregate().Error()`: `None` when empty, the single message
    /// for one distinct error, else `[msg1, msg2, ...]` with duplicates removed.
    pub fn aggregate_message(&self) -> Option<String> {
        let mut seen: Vec<String> = Vec::new();
        for e in &self.0 {
            let msg = e.to_string();
            if !seen.contains(&msg) {
                seen.push(msg);
            }
        }
        match seen.len() {
            0 => None,
            1 => seen.pop(),
            _ => Some(format!("[{}]", seen.join(", "))),
        }
    }
}

impl From<Vec<Error>> for ErrorList {
    fn from(v: Vec<Error>) -> Self {
        ErrorList(v)
    }
}

impl From<Error> for ErrorList {
    fn from(e: Error) -> Self {
        ErrorList(vec![e])
    }
}

impl IntoIterator for ErrorList {
    type Item = Error;
    type IntoIter = std::vec::IntoIter<Error>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ErrorList {
    type Item = &'a Error;
    type IntoIter = std::slice::Iter<'a, Error>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ErrorList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.aggregate_message().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_upstream() {
        let p = Path::new("spec").child("containers").index(0).child("name");
        assert_eq!(p.as_str(), "spec.containers[0].name");
        assert_eq!(
            Path::new("metadata").child("labels").key("app").as_str(),
            "metadata.labels[app]"
        );
    }

    #[test]
    fn messages_render_like_upstream() {
        let name = Path::new("metadata").child("name");
        let cases: Vec<(Error, &str)> = vec![
            (
                Error::required(&name, "name or generateName is required"),
                "metadata.name: Required value: name or generateName is required",
            ),
            (
                Error::required(&Path::new("spec").child("containers"), ""),
                "spec.containers: Required value",
            ),
            (
                Error::invalid(&name, "Foo", "bad"),
                "metadata.name: Invalid value: \"Foo\": bad",
            ),
            (
                Error::invalid(
                    &Path::new("spec").child("replicas"),
                    -1i64,
                    "must be greater than or equal to 0",
                ),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                Error::invalid(&Path::new("x"), BadValue::Null, "d"),
                "x: Invalid value: \"null\": d",
            ),
            (
                Error::invalid(&Path::new("values"), Vec::<String>::new(), "empty"),
                "values: Invalid value: []string{}: empty",
            ),
            (
                Error::invalid(
                    &Path::new("values"),
                    vec!["a".to_owned(), "b".to_owned()],
                    "x",
                ),
                "values: Invalid value: []string{\"a\", \"b\"}: x",
            ),
            (
                Error::not_supported(
                    &Path::new("spec").child("restartPolicy"),
                    "Sometimes",
                    &["Always", "OnFailure", "Never"],
                ),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ),
            (
                Error::duplicate(&Path::new("spec").child("ports").index(1), "http"),
                "spec.ports[1]: Duplicate value: \"http\"",
            ),
            (
                Error::forbidden(
                    &Path::new("metadata").child("namespace"),
                    "not allowed on this type",
                ),
                "metadata.namespace: Forbidden: not allowed on this type",
            ),
            (
                Error::too_long(&Path::new("metadata").child("annotations"), Some(262144)),
                "metadata.annotations: Too long: may not be more than 262144 bytes",
            ),
            (
                Error::too_long(&Path::new("data"), None),
                "data: Too long: value is too long",
            ),
            (
                Error::too_many(&Path::new("items"), Some(5), Some(3)),
                "items: Too many: 5: must have at most 3 items",
            ),
            (
                Error::too_many(&Path::new("items"), None, None),
                "items: Too many: has too many items",
            ),
            (
                Error::not_found(&Path::new("spec").child("volume"), "v1"),
                "spec.volume: Not found: \"v1\"",
            ),
            (
                Error::internal(&Path::new("spec"), "boom"),
                "spec: Internal error: boom",
            ),
            (
                Error::type_invalid(&Path::new("spec"), BadValue::Bool(true), "expected string"),
                "spec: Invalid value: true: expected string",
            ),
            (
                Error::invalid(&Path::new("f"), 1.5f64, "d"),
                "f: Invalid value: 1.5: d",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn cause_types() {
        assert_eq!(ErrorType::Required.as_str(), "FieldValueRequired");
        assert_eq!(ErrorType::TypeInvalid.as_str(), "FieldValueTypeInvalid");
        assert_eq!(ErrorType::Internal.as_str(), "InternalError");
        assert_eq!(
            Error::invalid(&Path::new("a"), "b", "c").body(),
            "Invalid value: \"b\": c"
        );
    }

    #[test]
    fn go_float_formatting() {
        for (v, want) in [
            (1.5, "1.5"),
            (1_000_000.0, "1e+06"),
            (123_456.0, "123456"),
            (1_234_567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e21, "1e+21"),
            (-2.0, "-2"),
        ] {
            assert_eq!(go_float(v), want, "{v}");
        }
    }

    #[test]
    fn aggregate_dedups_and_brackets() {
        let p = Path::new("a");
        let mut list = ErrorList::new();
        assert_eq!(list.aggregate_message(), None);
        list.push(Error::required(&p, ""));
        assert_eq!(list.aggregate_message().unwrap(), "a: Required value");
        list.push(Error::required(&p, ""));
        assert_eq!(list.aggregate_message().unwrap(), "a: Required value");
        list.push(Error::forbidden(&p, "no"));
        assert_eq!(
            list.aggregate_message().unwrap(),
            "[a: Required value, a: Forbidden: no]"
        );
        assert_eq!(list.len(), 3);
    }
}
