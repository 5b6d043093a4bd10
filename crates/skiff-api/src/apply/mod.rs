//! Server-side apply and `metadata.managedFields`, with upstream's semantics
//! (`sigs.k8s.io/structured-merge-diff/v4` and the API server's field
//! manager), on JSON objects. No I/O.
//!
//! - [`update`]: ownership tracking of an ordinary write (create, update,
//!   non-apply patch): the writer gains what it changed.
//! - [`apply`]: merges an applied configuration into the live object,
//!   detects conflicts with other managers, removes fields the applier no
//!   longer applies, and records its ownership.
//! - [`fieldpath`]: field paths, field sets and the `FieldsV1` encoding.

mod created;
pub mod fieldpath;
mod managed;
mod walk;

#[cfg(test)]
mod tests;

use serde_json::{Value, json};

pub use fieldpath::{FieldSet, Path, PathElement, path_string};
pub use managed::{ANCIENT_CHANGES, Entry, MAX_UPDATE_MANAGERS, Managed, ManagerKey, Operation};
pub use walk::Comparison;

use crate::patch::PatchSchema;
use walk::Ctx;

/// The manager upstream records for an object's fields that existed before
/// its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// How many leading elements of a path decide whether a manager can own
/// it ([`Scope::tracks`]: the top field and, under metadata, the next).
const TRACKS_DEPTH: usize = 2;

/// Metadata fields no manager owns.
const UNTRACKED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// Why an apply or the tracking of an update failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// The applied configuration cannot be typed (bad list element, duplicate
    /// key, too deep): upstream's 422.
    #[error("{0}")]
    Invalid(String),
    /// The request is malformed (e.g. managedFields in an applied
    /// configuration): 400.
    #[error("{0}")]
    BadRequest(String),
    /// `metadata.managedFields` cannot be decoded.
    #[error("invalid managedFields: {0}")]
    BadManagedFields(String),
    /// Fields of the configuration are owned by other managers with other
    /// values: 409 unless forced.
    #[error("{}", .0.message())]
    Conflicts(Conflicts),
}

/// One conflicting field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    /// The other manager, as upstream describes it (`"kubectl" using apps/v1`).
    pub manager: String,
    /// The field.
    pub path: Path,
}

/// The conflicts of a failed apply, sorted by manager then field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// Upstream's message: `Apply failed with 1 conflict: conflict with
    /// "mgr" using apps/v1: .spec.replicas`, or for several, one line per
    /// manager and field.
    pub fn message(&self) -> String {
        match self.0.as_slice() {
            [one] => format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                one.manager,
                path_string(&one.path)
            ),
            all => {
                let mut lines = Vec::new();
                let mut current: Option<&str> = None;
                for c in all {
                    if current != Some(c.manager.as_str()) {
                        lines.push(format!("conflicts with {}:", c.manager));
                        current = Some(c.manager.as_str());
                    }
                    lines.push(format!("- {}", path_string(&c.path)));
                }
                format!(
                    "Apply failed with {} conflicts: {}",
                    all.len(),
                    lines.join("\n")
                )
            }
        }
    }

    /// The `metav1.Status` upstream answers with: 409, reason Conflict, one
    /// `FieldManagerConflict` cause per field.
    pub fn status(&self) -> Value {
        let causes: Vec<Value> = self
            .0
            .iter()
            .map(|c| {
                json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with {}", c.manager),
                    "field": path_string(&c.path),
                })
            })
            .collect();
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message(),
            "reason": "Conflict",
            "details": {"causes": causes},
            "code": 409,
        })
    }
}

/// Where a write happens.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The patch schema of the kind (list types).
    pub schema: PatchSchema,
    /// The object's `apiVersion` (`apps/v1`).
    pub api_version: &'a str,
    /// The subresource written (`status`), if any.
    pub subresource: Option<&'a str>,
    /// True when the kind has a status subresource, so that writes to the
    /// main resource neither set nor own `status`.
    pub has_status: bool,
    /// The time to stamp on changed entries (RFC 3339).
    pub now: &'a str,
}

impl Scope<'_> {
    fn subresource(&self) -> &str {
        self.subresource.unwrap_or_default()
    }

    /// Whether a manager can own `path` in this scope (decided by the
    /// first [`TRACKS_DEPTH`] elements of `path`): type and identity
    /// metadata never; on `/status` only status; on the main resource of a
    /// kind with a status subresource, anything but status.
    fn tracks(&self, path: &[PathElement]) -> bool {
        let field = |i: usize| match path.get(i) {
            Some(PathElement::Field(f)) => Some(f.as_str()),
            _ => None,
        };
        field(0).is_some_and(|first| self.tracks_field(first, field(1)))
    }

    /// [`Scope::tracks`] of the field `first` (`second` `None`), or of the
    /// field `second` or a list element (`None`) under it.
    fn tracks_field(&self, first: &str, second: Option<&str>) -> bool {
        match first {
            "apiVersion" | "kind" => false,
            "metadata" => {
                self.subresource.is_none()
                    && second.is_some_and(|f| !UNTRACKED_METADATA.contains(&f))
            }
            "status" => self.subresource.is_some() || !self.has_status,
            _ => self.subresource.is_none(),
        }
    }

    fn tracked(&self, set: &FieldSet) -> FieldSet {
        set.filter_by_prefix(TRACKS_DEPTH, |p| self.tracks(p))
    }

    fn tracked_cmp(&self, mut cmp: Comparison) -> Comparison {
        for set in [&mut cmp.modified, &mut cmp.added, &mut cmp.removed] {
            set.retain_by_prefix(TRACKS_DEPTH, |p| self.tracks(p));
        }
        cmp
    }

    fn ctx(&self) -> Ctx {
        Ctx::root(self.schema)
    }
}

/// Removes managedFields and resourceVersion from `obj`'s metadata, for
/// [`restore_tracking_fields`] to put back.
fn take_tracking_fields(obj: &mut Value) -> [Option<Value>; 2] {
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => [m.remove("managedFields"), m.remove("resourceVersion")],
        None => [None, None],
    }
}

fn restore_tracking_fields(obj: &mut Value, [managed, rv]: [Option<Value>; 2]) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(v) = managed {
            m.insert("managedFields".into(), v);
        }
        if let Some(v) = rv {
            m.insert("resourceVersion".into(), v);
        }
    }
}

/// A copy of `obj` without managedFields and resourceVersion, which are
/// never copied (managedFields is often the bulk of the metadata).
fn copy_without_tracking_fields(obj: &Value) -> Value {
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let copy = map.iter().map(|(k, v)| {
        let v = match (k.as_str(), v) {
            ("metadata", Value::Object(m)) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "managedFields" | "resourceVersion"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            _ => v.clone(),
        };
        (k.clone(), v)
    });
    Value::Object(copy.collect())
}

/// Records `manager`'s ordinary write of `new` over `live` (`None` for a
/// create) in `new`'s `metadata.managedFields`. Entries sent in `new` are
/// used when valid (`[]` clears them), else the live ones are kept; writes
/// to a subresource always start from the live entries.
pub fn update(
    live: Option<&Value>,
    new: &mut Value,
    manager: &str,
    scope: &Scope<'_>,
) -> Result<(), ApplyError> {
    if live.is_none() && scope.subresource.is_none() && record_create(new, manager, scope) {
        return Ok(());
    }
    update_by_comparison(live, new, manager, scope)
}

/// [`update`] of a create that brings no managedFields of its own (or
/// clears them), through [`created_managed_fields`]. False, with `new`
/// untouched, for any other.
fn record_create(new: &mut Value, manager: &str, scope: &Scope<'_>) -> bool {
    match created_list(new, manager, scope) {
        Some(Some(text)) => put_managed_fields(new, &text).is_ok(),
        Some(None) => {
            managed::set_list(new, Vec::new());
            true
        }
        None => false,
    }
}

/// Sets `obj`'s managedFields to `list`, the JSON text of a list (as
/// [`created_managed_fields`] gives it). An error, with `obj` untouched,
/// when `list` is not one.
pub fn put_managed_fields(obj: &mut Value, list: &[u8]) -> Result<(), ApplyError> {
    let list: Vec<Value> =
        serde_json::from_slice(list).map_err(|e| ApplyError::BadManagedFields(e.to_string()))?;
    managed::set_list(obj, list);
    Ok(())
}

/// The managedFields of a create that brings none of its own (or clears
/// them), as the JSON text of the list: the writer owns what the object
/// sets, encoded straight from it (see [`created`]), for the caller to put
/// into the encoded object (in `metadata`, where a sorted map puts it).
/// `Some(None)` when the writer owns nothing: the object has no
/// managedFields. Either way, any the object sent are removed from `new`.
/// `None`, with `new` untouched, when this path does not decide (a
/// subresource, managedFields of its own, an object it leaves to the
/// comparison): [`update_by_comparison`] it instead.
pub fn created_managed_fields(
    new: &mut Value,
    manager: &str,
    scope: &Scope<'_>,
) -> Option<Option<Vec<u8>>> {
    if scope.subresource.is_some() {
        return None;
    }
    let list = created_list(new, manager, scope)?;
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    Some(list)
}

/// [`created_managed_fields`] without touching `new`.
fn created_list(new: &Value, manager: &str, scope: &Scope<'_>) -> Option<Option<Vec<u8>>> {
    let sent = new
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some();
    if sent && !Managed::is_reset(new) {
        return None;
    }
    let obj = new.as_object()?;
    let tracks = |first: &str, second: Option<&str>| scope.tracks_field(first, second);
    let mut fields = Vec::with_capacity(1024);
    created::fields_v1(obj, scope.ctx(), &tracks, &mut fields)?;
    if fields == b"{}" {
        return Some(None);
    }
    // The entry's members in the order a sorted map writes them.
    let mut out = Vec::with_capacity(fields.len() + 160);
    out.extend_from_slice(b"[{\"apiVersion\":");
    created::write_str(&mut out, scope.api_version);
    out.extend_from_slice(b",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":");
    out.extend_from_slice(&fields);
    out.extend_from_slice(b",\"manager\":");
    created::write_str(&mut out, manager);
    out.extend_from_slice(b",\"operation\":");
    created::write_str(&mut out, Operation::Update.as_str());
    out.extend_from_slice(b",\"time\":");
    created::write_str(&mut out, scope.now);
    out.extend_from_slice(b"}]");
    Some(Some(out))
}

/// [`update`] by comparing `new` with `live` (or the kind's zero value),
/// without first trying a create's direct path.
pub fn update_by_comparison(
    live: Option<&Value>,
    new: &mut Value,
    manager: &str,
    scope: &Scope<'_>,
) -> Result<(), ApplyError> {
    let from_live = || {
        live.map(Managed::decode)
            .transpose()
            .map(Option::unwrap_or_default)
            .unwrap_or_default()
    };
    let mut managed = if scope.subresource.is_some() {
        from_live()
    } else if Managed::is_reset(new) {
        Managed::default()
    } else {
        match Managed::decode(new) {
            Ok(m) if !m.0.is_empty() => m,
            _ => from_live(),
        }
    };
    let cmp = {
        // `new` is compared with its own managedFields and resourceVersion
        // set aside rather than copied whole; `live` is copied without them.
        let stashed = take_tracking_fields(new);
        let old = walk::with_zero_structs(
            live.map(copy_without_tracking_fields)
                .unwrap_or_else(|| json!({})),
            new,
        );
        let cmp = walk::compare(&old, new, scope.ctx());
        restore_tracking_fields(new, stashed);
        scope.tracked_cmp(cmp?)
    };
    let key = ManagerKey::new(
        manager,
        Operation::Update,
        scope.api_version,
        scope.subresource(),
    );
    managed.record_update(&key, scope.api_version, cmp, scope.now);
    managed.cap_update_managers();
    managed.encode_into(new);
    Ok(())
}

/// The outcome of a successful [`apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The object to store (with its new managedFields).
    Changed(Value),
    /// Nothing would change: keep the live object as it is.
    Unchanged,
}

/// Applies `config` as `manager` to `live` (`None` when the object does not
/// exist yet). `force` takes conflicting fields from their owners.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    scope: &Scope<'_>,
) -> Result<Applied, ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::BadRequest(
            "the applied configuration must be an object".into(),
        ));
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let ctx = scope.ctx();
    let live_obj = live
        .map(copy_without_tracking_fields)
        .unwrap_or_else(|| json!({}));
    let original = live
        .map(Managed::decode)
        .transpose()
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut managed = original.clone();
    if live.is_some() && managed.0.is_empty() {
        // As an update from nothing to the live object.
        let cmp = walk::compare(
            &walk::with_zero_structs(json!({}), &live_obj),
            &live_obj,
            ctx,
        )?;
        let key = ManagerKey::new(BEFORE_FIRST_APPLY, Operation::Update, scope.api_version, "");
        managed.record_update(&key, scope.api_version, scope.tracked_cmp(cmp), scope.now);
    }

    let config_set = scope.tracked(&walk::field_set(config, ctx)?);
    let merged = walk::merge(&live_obj, config, ctx, 0)?;
    let cmp = scope.tracked_cmp(walk::compare(&live_obj, &merged, ctx)?);
    let own = ManagerKey::new(
        manager,
        Operation::Apply,
        scope.api_version,
        scope.subresource(),
    );

    let touched = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    for (key, entry) in &mut managed.0 {
        if *key == own {
            continue;
        }
        let clash = entry.set.intersection(&touched);
        conflicts.extend(clash.iter().map(|path| Conflict {
            manager: key.describe(),
            path,
        }));
        if force {
            entry.set = entry.set.difference(&clash);
        }
        entry.set = entry.set.difference(&cmp.removed);
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort();
        return Err(ApplyError::Conflicts(Conflicts(conflicts)));
    }

    let last = managed
        .0
        .get(&own)
        .map(|e| e.set.clone())
        .unwrap_or_default();
    managed.0.insert(
        own.clone(),
        Entry {
            api_version: scope.api_version.to_owned(),
            time: original.0.get(&own).and_then(|e| e.time.clone()),
            set: config_set.clone(),
        },
    );

    // Fields this manager applied before but no longer does go, unless
    // someone else (or its new configuration, below them) still owns them.
    let owned = managed.all_fields();
    let mut pruned = merged;
    for path in last.difference(&config_set).iter() {
        if !owned.has_prefix(&path) {
            walk::remove(&mut pruned, &path);
        }
    }
    let cmp = scope.tracked_cmp(walk::compare(&live_obj, &pruned, ctx)?);
    for entry in managed.0.values_mut() {
        entry.set = entry.set.difference(&cmp.removed);
    }
    managed.drop_empty();

    if live.is_some() && pruned == live_obj && managed.sets() == original.sets() {
        return Ok(Applied::Unchanged);
    }
    if let Some(entry) = managed.0.get_mut(&own) {
        entry.time = Some(scope.now.to_owned());
    }
    managed.cap_update_managers();
    if let Some(rv) = live.and_then(|l| l.pointer("/metadata/resourceVersion")) {
        // Keep the precondition the live object was read at unless the
        // configuration names its own.
        if config.pointer("/metadata/resourceVersion").is_none()
            && let Some(m) = pruned.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.insert("resourceVersion".into(), rv.clone());
        }
    }
    managed.encode_into(&mut pruned);
    Ok(Applied::Changed(pruned))
}
