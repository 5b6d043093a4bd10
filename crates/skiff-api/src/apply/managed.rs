//! `metadata.managedFields`: who owns which fields, keyed as upstream keys
//! managers (name, operation, subresource, and for updates the API version).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::ApplyError;
use super::fieldpath::FieldSet;
use super::walk::Comparison;

/// The most update entries an object keeps (upstream's default).
pub const MAX_UPDATE_MANAGERS: usize = 10;
/// The manager the oldest update entries are merged into.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// `ManagedFieldsEntry.operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write (create, update, non-apply patch).
    Update,
}

impl Operation {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// What identifies one managedFields entry: entries with the same key are
/// merged into one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerKey {
    /// `manager`.
    pub manager: String,
    /// `operation`.
    pub operation: Operation,
    /// `apiVersion` for updates; empty for applies (upstream ignores it there).
    pub api_version: String,
    /// `subresource`, empty for the main resource.
    pub subresource: String,
}

impl ManagerKey {
    /// A key for `manager` doing `operation` on `api_version` / `subresource`.
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> Self {
        ManagerKey {
            manager: manager.to_owned(),
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_owned(),
            },
            subresource: subresource.to_owned(),
        }
    }

    /// The manager as upstream names it in conflict messages:
    /// `"kubectl" with subresource "status" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut s = crate::go_quote(&self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(
                " with subresource {}",
                crate::go_quote(&self.subresource)
            ));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// One manager's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `apiVersion` the fields are in.
    pub api_version: String,
    /// `time` of the last change, RFC 3339.
    pub time: Option<String>,
    /// The owned fields.
    pub set: FieldSet,
}

/// All managers of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Managed(pub BTreeMap<ManagerKey, Entry>);

/// Sets `obj`'s `metadata.managedFields` to the encoded entries `list`;
/// an empty list removes it.
pub(crate) fn set_list(obj: &mut Value, list: Vec<Value>) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    if list.is_empty() {
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        return;
    }
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

impl Managed {
    /// Decodes `metadata.managedFields` of `obj` (absent or null: empty).
    pub fn decode(obj: &Value) -> Result<Managed, ApplyError> {
        let bad = |m: &str| ApplyError::BadManagedFields(m.to_owned());
        let mut out = Managed::default();
        let list = match obj.pointer("/metadata/managedFields") {
            None | Some(Value::Null) => return Ok(out),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(bad("managedFields must be a list")),
        };
        for e in list {
            let e = e
                .as_object()
                .ok_or_else(|| bad("managedFields entries must be objects"))?;
            let text = |k: &str| -> Result<String, ApplyError> {
                match e.get(k) {
                    None | Some(Value::Null) => Ok(String::new()),
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(_) => Err(bad(&format!("{k} must be a string"))),
                }
            };
            let operation = match text("operation")?.as_str() {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                other => return Err(bad(&format!("unknown operation {other:?}"))),
            };
            let fields_type = text("fieldsType")?;
            if fields_type != "FieldsV1" {
                return Err(bad(&format!("invalid fieldsType {fields_type:?}")));
            }
            let set = match e.get("fieldsV1") {
                None | Some(Value::Null) => FieldSet::new(),
                Some(v) => FieldSet::from_fields_v1(v)?,
            };
            let api_version = text("apiVersion")?;
            let key = ManagerKey::new(
                &text("manager")?,
                operation,
                &api_version,
                &text("subresource")?,
            );
            let time = Some(text("time")?).filter(|t| !t.is_empty());
            match out.0.get_mut(&key) {
                Some(prev) => {
                    prev.set.merge(&set);
                    if time > prev.time {
                        prev.time = time;
                    }
                }
                None => {
                    out.0.insert(
                        key,
                        Entry {
                            api_version,
                            time,
                            set,
                        },
                    );
                }
            }
        }
        Ok(out)
    }

    /// True for `managedFields: []` or `[{}]`, which clear the entries.
    pub fn is_reset(obj: &Value) -> bool {
        match obj.get("metadata").and_then(|m| m.get("managedFields")) {
            Some(Value::Array(list)) => {
                list.is_empty()
                    || (list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty))
            }
            _ => false,
        }
    }

    /// Writes the entries into `obj`'s metadata in upstream's order
    /// (applies first, then by time, manager, version, subresource); no
    /// entries means no `managedFields`.
    pub fn encode_into(&self, obj: &mut Value) {
        let mut entries: Vec<(&ManagerKey, &Entry)> =
            self.0.iter().filter(|(_, e)| !e.set.is_empty()).collect();
        entries.sort_by(|(ka, ea), (kb, eb)| {
            (
                ka.operation,
                &ea.time,
                &ka.manager,
                &ea.api_version,
                &ka.subresource,
            )
                .cmp(&(
                    kb.operation,
                    &eb.time,
                    &kb.manager,
                    &eb.api_version,
                    &kb.subresource,
                ))
        });
        let list: Vec<Value> = entries
            .into_iter()
            .map(|(k, e)| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(k.manager));
                m.insert("operation".into(), json!(k.operation.as_str()));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !k.subresource.is_empty() {
                    m.insert("subresource".into(), json!(k.subresource));
                }
                Value::Object(m)
            })
            .collect();
        set_list(obj, list);
    }

    /// Upstream's update bookkeeping for `key`'s write: other managers lose
    /// what it modified or added, everyone loses what it removed, and the
    /// writer gains what it modified or added (stamped `now` when that is
    /// anything).
    pub fn record_update(
        &mut self,
        key: &ManagerKey,
        api_version: &str,
        cmp: Comparison,
        now: &str,
    ) {
        let Comparison {
            modified: mut touched,
            added,
            removed,
        } = cmp;
        if touched.is_empty() {
            // Nothing modified (every create): the added set as it is.
            touched = added;
        } else {
            touched.merge(&added);
        }
        for (k, e) in self.0.iter_mut() {
            if k != key {
                e.set.subtract(&touched);
            }
            e.set.subtract(&removed);
        }
        let mut gained = touched;
        gained.subtract(&removed);
        if !gained.is_empty() {
            let entry = self.0.entry(key.clone()).or_insert_with(|| Entry {
                api_version: api_version.to_owned(),
                time: None,
                set: FieldSet::new(),
            });
            if entry.set.is_empty() {
                entry.set = gained;
            } else {
                entry.set.merge(&gained);
            }
            entry.api_version = api_version.to_owned();
            entry.time = Some(now.to_owned());
        }
        self.drop_empty();
    }

    /// Keeps at most [`MAX_UPDATE_MANAGERS`] update entries as upstream
    /// does: the oldest are merged, per API version, into an
    /// `ancient-changes` entry stamped with the newest merged time.
    pub fn cap_update_managers(&mut self) {
        let mut updaters: Vec<(Option<String>, ManagerKey)> = self
            .0
            .iter()
            .filter(|(k, _)| k.operation == Operation::Update)
            .map(|(k, e)| (e.time.clone(), k.clone()))
            .collect();
        let mut count = updaters.len();
        if count <= MAX_UPDATE_MANAGERS {
            return;
        }
        updaters.sort();
        let mut first_of_version: BTreeMap<String, ManagerKey> = BTreeMap::new();
        for (time, key) in updaters {
            if count <= MAX_UPDATE_MANAGERS {
                break;
            }
            let Some(entry) = self.0.get(&key).cloned() else {
                continue;
            };
            let version = entry.api_version.clone();
            let Some(first) = first_of_version.get(&version).cloned() else {
                first_of_version.insert(version, key);
                continue;
            };
            let bucket = ManagerKey::new(ANCIENT_CHANGES, Operation::Update, &version, "");
            if !self.0.contains_key(&bucket)
                && let Some(first_entry) = self.0.remove(&first)
            {
                self.0.insert(bucket.clone(), first_entry);
            }
            self.0.remove(&key);
            if let Some(b) = self.0.get_mut(&bucket) {
                b.set = b.set.union(&entry.set);
                b.time = time;
            }
            count -= 1;
        }
    }

    /// Forgets managers that own nothing.
    pub fn drop_empty(&mut self) {
        self.0.retain(|_, e| !e.set.is_empty());
    }

    /// The union of every manager's fields.
    pub fn all_fields(&self) -> FieldSet {
        self.0.values().fold(FieldSet::new(), |mut acc, e| {
            acc.merge(&e.set);
            acc
        })
    }

    /// The fields of each manager, without times (to detect no-ops).
    pub fn sets(&self) -> BTreeMap<&ManagerKey, &FieldSet> {
        self.0.iter().map(|(k, e)| (k, &e.set)).collect()
    }
}
