//! Rules of the kinds outside the core and workload groups; see the parent
//! module for the order of calls.

use serde_json::Value;

use crate::field::ErrorList;

pub(super) fn normalize(_group: &str, _kind: &str, _obj: &mut Value) -> Result<(), String> {
    Ok(())
}

pub(super) fn default(_group: &str, _kind: &str, _obj: &mut Value) {}

pub(super) fn prepare_create(_group: &str, _kind: &str, _obj: &mut Value) {}

pub(super) fn prepare_update(_group: &str, _kind: &str, _new: &mut Value, _old: &Value) {}

pub(super) fn validate(_group: &str, _kind: &str, _obj: &Value) -> ErrorList {
    ErrorList::new()
}

pub(super) fn validate_update(group: &str, kind: &str, new: &Value, _old: &Value) -> ErrorList {
    validate(group, kind, new)
}

pub(super) fn validate_status_update(
    _group: &str,
    _kind: &str,
    _new: &Value,
    _old: &Value,
) -> ErrorList {
    ErrorList::new()
}
