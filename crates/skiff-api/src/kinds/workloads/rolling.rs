//! Rolling update parameters of Deployments, DaemonSets and StatefulSets:
//! int-or-percent values as upstream's apps validation checks them.

use serde_json::Value;

use super::render;
use crate::field::{BadValue, Error, ErrorList, Path};

/// The value of an int-or-percent, and whether it was a percent.
pub(super) fn int_or_percent(v: Option<&Value>) -> (i64, bool) {
    match v {
        Some(Value::Number(n)) => (n.as_i64().unwrap_or(0), false),
        Some(Value::String(s)) => (
            s.strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            true,
        ),
        _ => (0, false),
    }
}

/// Upstream's `ValidatePositiveIntOrPercent`.
pub(super) fn positive_int_or_percent(v: Option<&Value>, path: &Path, errs: &mut ErrorList) {
    match v {
        Some(Value::String(s)) => {
            let digits = s.strip_suffix('%').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                errs.push(Error::invalid(
                    path,
                    BadValue::Raw(render::int_or_string(v)),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
            }
        }
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                errs.push(Error::invalid(
                    path,
                    n,
                    "must be greater than or equal to 0",
                ));
            }
        }
        _ => {}
    }
}

pub(super) fn not_more_than_100(v: Option<&Value>, path: &Path, errs: &mut ErrorList) {
    let (n, percent) = int_or_percent(v);
    if percent && n > 100 {
        errs.push(Error::invalid(
            path,
            BadValue::Raw(render::int_or_string(v)),
            "must not be greater than 100%",
        ));
    }
}

pub(super) fn validate_rolling_update_deployment(ru: &Value, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let (mu, ms) = (ru.get("maxUnavailable"), ru.get("maxSurge"));
    positive_int_or_percent(mu, &path.child("maxUnavailable"), &mut errs);
    positive_int_or_percent(ms, &path.child("maxSurge"), &mut errs);
    if int_or_percent(mu).0 == 0 && int_or_percent(ms).0 == 0 {
        errs.push(Error::invalid(
            &path.child("maxUnavailable"),
            BadValue::Raw(render::int_or_string(mu)),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    not_more_than_100(mu, &path.child("maxUnavailable"), &mut errs);
    errs
}

pub(super) fn validate_rolling_update_daemon_set(ru: &Value, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let (mu, ms) = (ru.get("maxUnavailable"), ru.get("maxSurge"));
    positive_int_or_percent(mu, &path.child("maxUnavailable"), &mut errs);
    positive_int_or_percent(ms, &path.child("maxSurge"), &mut errs);
    not_more_than_100(mu, &path.child("maxUnavailable"), &mut errs);
    not_more_than_100(ms, &path.child("maxSurge"), &mut errs);
    let unavailable = int_or_percent(mu).0 != 0;
    let surge = int_or_percent(ms).0 != 0;
    if unavailable && surge {
        errs.push(Error::invalid(
            &path.child("maxSurge"),
            BadValue::Raw(render::int_or_string(ms)),
            "may not be set when maxUnavailable is non-zero",
        ));
    } else if !unavailable && !surge {
        errs.push(Error::required(
            &path.child("maxUnavailable"),
            "cannot be 0 when maxSurge is 0",
        ));
    }
    errs
}
