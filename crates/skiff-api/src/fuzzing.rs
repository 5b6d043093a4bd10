//! Entry points for fuzzing the pure request path: shared by the cargo-fuzz
//! targets in `fuzz/` and the stable smoke test `tests/fuzz_smoke.rs`.
//!
//! Each function takes arbitrary bytes, runs the code a request would run on
//! them, and returns nothing: the only failure is a panic (or a hang, or a
//! stack overflow), which is what the fuzzer looks for. Apart from the
//! invariants checked with `assert!` (a quantity's canonical round trip), any
//! panic here is a bug in the code under test.
//!
//! Input layout (so that a fuzzer can steer each part):
//! - byte 0 picks the kind from [`RESOURCES`] (modulo its length);
//! - byte 1 holds flags (YAML body, force, ...);
//! - the rest is split at [`SEPARATOR`] bytes into bodies (an original and a
//!   patch, a live object and applied configurations, a body and selectors).
#![doc(hidden)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde_json::Value;
use time::OffsetDateTime;

use crate::apply::{self, Applied, Scope};
use crate::field::Path;
use crate::kinds;
use crate::patch::{self, PatchSchema, PatchType};
use crate::printers::{IncludeObjectPolicy, table};
use crate::quantity::{self, Quantity};
use crate::resources::{RESOURCES, ResourceInfo};
use crate::selector::{fields, labels, selectable_fields};
use crate::validation;

/// The byte that separates the parts of an input (never valid in UTF-8, so it
/// cannot occur inside a JSON or YAML body).
pub const SEPARATOR: u8 = 0xFF;

/// Flag of byte 1: decode the body as YAML instead of JSON.
pub const FLAG_YAML: u8 = 0x01;
/// Flag of byte 1: force the applies of [`server_side_apply`].
pub const FLAG_FORCE: u8 = 0x02;
/// Flag of byte 1: [`server_side_apply`] writes the `status` subresource.
pub const FLAG_STATUS: u8 = 0x04;
/// Flag of byte 1: [`server_side_apply`] creates (no live object).
pub const FLAG_CREATE: u8 = 0x08;

/// The time printers and managed fields see: fixed, so runs replay.
const NOW_RFC3339: &str = "2026-01-01T00:00:00Z";

fn now() -> OffsetDateTime {
    // 2026-01-01T00:00:00Z.
    OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The kind byte 0 picks, the flags of byte 1 and the rest of the input.
fn header(data: &[u8]) -> Option<(&'static ResourceInfo, u8, &[u8])> {
    let (&k, rest) = data.split_first()?;
    let (&flags, rest) = rest.split_first().unwrap_or((&0, &[]));
    let resource = RESOURCES.get(usize::from(k) % RESOURCES.len().max(1))?;
    Some((resource, flags, rest))
}

/// The parts of `data` between [`SEPARATOR`] bytes.
fn parts(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == SEPARATOR).collect()
}

/// A JSON body, or `None` when it does not parse.
fn json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

/// A YAML body, decoded as the API server decodes `application/yaml`
/// (duplicate keys refused strictly, then accepted leniently, last wins).
fn yaml(body: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    let strict = serde_saphyr::options! { duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error };
    match serde_saphyr::from_str_with_options::<Value>(text, strict) {
        Ok(v) => Some(v),
        Err(_) => {
            let lenient = serde_saphyr::options! {
                duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins
            };
            serde_saphyr::from_str_with_options::<Value>(text, lenient).ok()
        }
    }
}

/// `metadata.<field>` as a string map, as the API server reads labels and
/// annotations for validation.
fn string_map(obj: &Value, field: &str) -> BTreeMap<String, String> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The common metadata rules the API server checks around the kind's own
/// validation: the kind's name rule, labels and annotations.
fn validate_meta(resource: &ResourceInfo, obj: &Value) {
    let meta = |f: &str| {
        obj.get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let rule: fn(&str, bool) -> Vec<String> = match (resource.group, resource.plural) {
        ("", "namespaces") => validation::validate_namespace_name,
        ("", "services") => validation::name_is_dns1035_label,
        ("rbac.authorization.k8s.io", _) | ("certificates.k8s.io", _) => {
            validation::validate_path_segment_name
        }
        _ => validation::name_is_dns_subdomain,
    };
    let _ = rule(meta("name"), false);
    let _ = rule(meta("generateName"), true);
    let _ = validation::validate_namespace_name(meta("namespace"), false);
    let path = Path::new("metadata");
    let _ = validation::validate_labels(&string_map(obj, "labels"), &path.child("labels"));
    let _ = validation::validate_annotations(
        &string_map(obj, "annotations"),
        &path.child("annotations"),
    );
}

/// Label and field selectors from `text` (`labels` and `fields` separated by
/// a newline), matched against `obj` as a filtered LIST does.
fn select(resource: &ResourceInfo, obj: &Value, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    let (label_text, field_text) = text.split_once('\n').unwrap_or((&text, &text));
    if let Ok(selector) = labels::parse(label_text) {
        let _ = selector.matches_object(obj);
        let _ = selector.requires_exact_match("app");
        let _ = selector.to_string();
    }
    if let Ok(selector) = fields::parse(field_text) {
        let _ = selector.requires_exact_match("metadata.name");
        if let Ok(selector) = selector.for_resource(resource) {
            let _ = selector.matches(&selectable_fields(resource, obj));
        }
    }
}

/// A Table of `obj` in the three `includeObject` policies.
fn print(resource: &ResourceInfo, obj: &Value) {
    let objects = std::slice::from_ref(obj);
    for include in [
        IncludeObjectPolicy::None,
        IncludeObjectPolicy::Metadata,
        IncludeObjectPolicy::Object,
    ] {
        let _ = table(resource, objects, now(), include, &ListMeta::default());
    }
}

/// Decode, normalise, default, prepare and validate a create of the kind
/// byte 0 picks, check its metadata, match selectors against it and print it
/// as a Table: the whole pure path of a POST.
///
/// Layout: `[kind] [flags] body [0xFF selectors]`; flag [`FLAG_YAML`]
/// decodes the body as YAML. Selectors are `labels\nfields` (without a
/// newline, the same text is tried as both).
pub fn decode_and_validate(data: &[u8]) {
    let Some((resource, flags, rest)) = header(data) else {
        return;
    };
    let parts = parts(rest);
    let body = parts.first().copied().unwrap_or_default();
    let decoded = if flags & FLAG_YAML != 0 {
        yaml(body)
    } else {
        json(body)
    };
    let Some(mut obj) = decoded else {
        return;
    };
    let (group, kind) = (resource.group, resource.kind);
    // Printers and selectors see stored objects, but must cope with anything.
    print(resource, &obj);
    if let Some(text) = parts.get(1) {
        select(resource, &obj, text);
    }
    if !obj.is_object() || kinds::normalize(group, kind, &mut obj).is_err() {
        return;
    }
    kinds::default(group, kind, &mut obj);
    kinds::prepare_create(group, kind, &mut obj);
    let _ = kinds::validate(group, kind, &obj);
    validate_meta(resource, &obj);
    print(resource, &obj);
    // Defaulting is idempotent upstream; here it must at least not panic on
    // its own output.
    kinds::default(group, kind, &mut obj);
}

/// Normalises and defaults a decoded object as the API server does on
/// every write; `None` when normalisation refuses it (a 400).
fn admit(resource: &ResourceInfo, mut obj: Value) -> Option<Value> {
    if !obj.is_object() {
        return None;
    }
    kinds::normalize(resource.group, resource.kind, &mut obj).ok()?;
    kinds::default(resource.group, resource.kind, &mut obj);
    Some(obj)
}

/// Patch an object of the kind byte 0 picks with the JSON, merge and
/// strategic merge patch formats, then run the update path (normalise,
/// default, prepare and validate the update, and the `/status` rules) on each
/// result.
///
/// Layout: `[kind] [flags] original 0xFF patch`.
pub fn strategic_merge_patch(data: &[u8]) {
    let Some((resource, _, rest)) = header(data) else {
        return;
    };
    let parts = parts(rest);
    let (Some(original), Some(patch_body)) = (parts.first(), parts.get(1)) else {
        return;
    };
    let Some(original) = json(original) else {
        return;
    };
    let (group, kind) = (resource.group, resource.kind);
    let schema = PatchSchema::for_kind(group, resource.version, kind);
    // A patch applies to whatever is stored, even an object that would no
    // longer pass normalisation: patch the raw value too.
    let _ = patch::apply_any(
        PatchType::StrategicMerge,
        &original,
        patch_body,
        schema.as_ref(),
    );
    let Some(old) = admit(resource, original) else {
        return;
    };
    for patch_type in PatchType::ALL {
        let Ok(patched) = patch::apply_any(patch_type, &old, patch_body, schema.as_ref()) else {
            continue;
        };
        let Some(mut new) = admit(resource, patched) else {
            continue;
        };
        let status = new.clone();
        kinds::prepare_update(group, kind, &mut new, &old);
        let _ = kinds::validate_update(group, kind, &new, &old);
        validate_meta(resource, &new);
        let _ = kinds::validate_status_update(group, kind, &status, &old);
        print(resource, &new);
    }
}

/// Server-side apply of one or two configurations (by two managers) to a
/// live object of the kind byte 0 picks, and the ownership tracking of an
/// ordinary update to the same configuration.
///
/// Layout: `[kind] [flags] live 0xFF config [0xFF config2]`; flags
/// [`FLAG_FORCE`], [`FLAG_STATUS`] (write `/status`) and [`FLAG_CREATE`]
/// (ignore `live`: the object does not exist yet).
pub fn server_side_apply(data: &[u8]) {
    let Some((resource, flags, rest)) = header(data) else {
        return;
    };
    let parts = parts(rest);
    let (Some(live), Some(config)) = (parts.first(), parts.get(1)) else {
        return;
    };
    let (Some(live), Some(config)) = (json(live), json(config)) else {
        return;
    };
    let second = parts.get(2).and_then(|c| json(c));
    let api_version = resource.api_version();
    let scope = Scope {
        schema: PatchSchema::for_kind(resource.group, resource.version, resource.kind)
            .unwrap_or_else(PatchSchema::opaque),
        api_version: &api_version,
        subresource: (flags & FLAG_STATUS != 0).then_some("status"),
        has_status: resource.subresource("status").is_some(),
        now: NOW_RFC3339,
    };
    let force = flags & FLAG_FORCE != 0;
    let live = (flags & FLAG_CREATE == 0).then_some(live);

    let mut updated = config.clone();
    let _ = apply::update(live.as_ref(), &mut updated, "fuzz-update", &scope);

    let Ok(first) = apply::apply(live.as_ref(), &config, "fuzz-apply", force, &scope) else {
        return;
    };
    let current = match first {
        Applied::Changed(obj) => obj,
        Applied::Unchanged => match live {
            Some(obj) => obj,
            None => return,
        },
    };
    // The same configuration again, then another manager's.
    let _ = apply::apply(Some(&current), &config, "fuzz-apply", force, &scope);
    if let Some(second) = second {
        let _ = apply::apply(Some(&current), &second, "fuzz-other", force, &scope);
        let mut updated = second;
        let _ = apply::update(Some(&current), &mut updated, "fuzz-update", &scope);
    }
}

/// Parse a quantity and check upstream's canonical round trip: the printed
/// form parses back to an equal quantity, and printing reaches a fixed point
/// after one round. Also runs the
/// arithmetic helpers and the JSON canonicalisation on it.
pub fn quantity(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut value = Value::String(text.to_owned());
    let _ = quantity::canonicalize_value(&mut value);
    let Ok(q) = Quantity::parse(text) else {
        return;
    };
    let printed = q.to_string();
    let again = Quantity::parse(&printed);
    assert!(
        again.is_ok(),
        "{text:?} printed as {printed:?}, which does not parse: {again:?}"
    );
    if let Ok(again) = again {
        assert_eq!(again, q, "{text:?} printed as {printed:?}");
        // The printed form itself may change once: upstream prints
        // `7.8125Ki` (binary, not a whole number of Ki) as `8000`, which
        // then parses as a decimal quantity and prints as `8k`. From there
        // on it is a fixed point.
        let second = again.to_string();
        let third = Quantity::parse(&second).map(|q| q.to_string());
        assert_eq!(
            third.as_deref(),
            Ok(second.as_str()),
            "{text:?} printed as {printed:?}, then {second:?}"
        );
    }
    let _ = (q.is_zero(), q.is_negative(), q.format());
    let _ = (q.value(), q.milli_value(), q.scaled_value(-9));
    let _ = q.round_up(0).to_string();
    let _ = q.checked_add(&q).map(|s| s.to_string());
}
