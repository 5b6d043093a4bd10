//! Validation of pod volumes (`ValidateVolumes`, `validateVolumeSource` and
//! the per-source rules of the common volume types).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::containers::dns_label;
use super::defaults::volume_sources;
use super::env::validate_field_ref;
use super::json::{has, int_of, list_of, str_of};
use crate::field::{Error, ErrorList, Path};
use crate::kinds::HOST_PATH_TYPES;
use crate::quantity;

/// Upstream's `fileModeErrorMsg`.
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// Field paths a downward API volume file may project.
const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

/// Upstream's `ValidateVolumes`: the names of the valid volumes (mounts of
/// an invalid one are reported as not found) and the errors.
pub(super) fn validate_volumes(volumes: &[Value], path: &Path) -> (BTreeSet<String>, ErrorList) {
    let mut errs = ErrorList::new();
    let mut names = BTreeSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let p = path.index(i);
        let mut el = validate_volume_source(vol, &p);
        let name = str_of(vol, "name");
        if name.is_empty() {
            el.push(Error::required(&p.child("name"), ""));
        } else {
            el.extend(dns_label(name, &p.child("name")));
        }
        if names.contains(name) {
            el.push(Error::duplicate(&p.child("name"), name));
        }
        if el.is_empty() {
            names.insert(name.to_owned());
        } else {
            errs.extend(el);
        }
    }
    (names, errs)
}

/// The path a second source is reported at (upstream's spelling quirks).
fn forbidden_path(source: &str) -> &str {
    match source {
        "cephfs" => "cephFS",
        "downwardAPI" => "downwarAPI",
        other => other,
    }
}

fn validate_volume_source(vol: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let empty = Map::new();
    let map = vol.as_object().unwrap_or(&empty);
    let sources = volume_sources(map);
    let Some(first) = sources.first() else {
        errs.push(Error::required(p, "must specify a volume type"));
        return errs;
    };
    let src = &map[*first];
    let sp = p.child(first);
    match *first {
        "emptyDir" => {
            if let Some(q) = src
                .get("sizeLimit")
                .and_then(|v| quantity::from_json(v).ok())
                && q.is_negative()
            {
                errs.push(Error::forbidden(
                    &sp.child("sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                ));
            }
        }
        "hostPath" => errs.extend(host_path(src, &sp)),
        "gitRepo" => {
            required(src, "repository", &sp, &mut errs);
            errs.extend(local_descending_path(
                str_of(src, "directory"),
                &sp.child("directory"),
            ));
        }
        "secret" => {
            required(src, "secretName", &sp, &mut errs);
            errs.extend(mode_and_items(src, &sp));
        }
        "configMap" => {
            required(src, "name", &sp, &mut errs);
            errs.extend(mode_and_items(src, &sp));
        }
        "nfs" => {
            required(src, "server", &sp, &mut errs);
            required(src, "path", &sp, &mut errs);
            let nfs_path = str_of(src, "path");
            if !nfs_path.starts_with('/') {
                errs.push(Error::invalid(
                    &sp.child("path"),
                    nfs_path,
                    "must be an absolute path",
                ));
            }
        }
        "persistentVolumeClaim" => required(src, "claimName", &sp, &mut errs),
        "downwardAPI" => {
            mode(src, "defaultMode", &sp, &mut errs);
            for item in list_of(src, "items") {
                errs.extend(downward_file(item, &sp));
            }
        }
        "projected" => {
            mode(src, "defaultMode", &sp, &mut errs);
            errs.extend(projection_sources(src, &sp));
        }
        "csi" => required(src, "driver", &sp, &mut errs),
        "ephemeral" if !has(src, "volumeClaimTemplate") => {
            errs.push(Error::required(&sp.child("volumeClaimTemplate"), ""));
        }
        _ => {}
    }
    for extra in &sources[1..] {
        errs.push(Error::forbidden(
            &p.child(forbidden_path(extra)),
            "may not specify more than 1 volume type",
        ));
    }
    errs
}

fn required(src: &Value, key: &str, p: &Path, errs: &mut ErrorList) {
    if str_of(src, key).is_empty() {
        errs.push(Error::required(&p.child(key), ""));
    }
}

fn mode(src: &Value, key: &str, p: &Path, errs: &mut ErrorList) {
    if let Some(m) = int_of(src, key)
        && !(0..=0o777).contains(&m)
    {
        errs.push(Error::invalid(&p.child(key), m, FILE_MODE_ERROR));
    }
}

fn host_path(src: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let host = str_of(src, "path");
    if host.is_empty() {
        errs.push(Error::required(&p.child("path"), ""));
        return errs;
    }
    errs.extend(no_backsteps(host, &p.child("path")));
    if let Some(t) = src.get("type").and_then(Value::as_str)
        && !HOST_PATH_TYPES.contains(&t)
    {
        errs.push(Error::not_supported(&p.child("type"), t, HOST_PATH_TYPES));
    }
    errs
}

/// `defaultMode` and `items` of a secret or config map volume.
fn mode_and_items(src: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    mode(src, "defaultMode", p, &mut errs);
    for (i, item) in list_of(src, "items").iter().enumerate() {
        errs.extend(key_to_path(item, &p.child("items").index(i)));
    }
    errs
}

/// Upstream's `validateKeyToPath`.
fn key_to_path(kp: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    required(kp, "key", p, &mut errs);
    required(kp, "path", p, &mut errs);
    errs.extend(local_non_reserved_path(
        str_of(kp, "path"),
        &p.child("path"),
    ));
    mode(kp, "mode", p, &mut errs);
    errs
}

/// Upstream's `validatePathNoBacksteps`.
fn no_backsteps(target: &str, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if target.split('/').any(|part| part == "..") {
        errs.push(Error::invalid(p, target, "must not contain '..'"));
    }
    errs
}

/// Upstream's `validateLocalDescendingPath`.
pub(super) fn local_descending_path(target: &str, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if target.starts_with('/') {
        errs.push(Error::invalid(p, target, "must be a relative path"));
    }
    errs.extend(no_backsteps(target, p));
    errs
}

/// Upstream's `ValidateLocalNonReservedPath`.
fn local_non_reserved_path(target: &str, p: &Path) -> ErrorList {
    let mut errs = local_descending_path(target, p);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(Error::invalid(p, target, "must not start with '..'"));
    }
    errs
}

/// Upstream's `validateDownwardAPIVolumeFile` (reported at the volume
/// source's path, as upstream does).
fn downward_file(file: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    required(file, "path", p, &mut errs);
    errs.extend(local_non_reserved_path(
        str_of(file, "path"),
        &p.child("path"),
    ));
    if let Some(f) = file.get("fieldRef").filter(|v| !v.is_null()) {
        errs.extend(validate_field_ref(
            f,
            VOLUME_FIELD_PATHS,
            &p.child("fieldRef"),
        ));
        if has(file, "resourceFieldRef") {
            errs.push(Error::invalid(
                p,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            ));
        }
    } else if !has(file, "resourceFieldRef") {
        errs.push(Error::required(
            p,
            "one of fieldRef and resourceFieldRef is required",
        ));
    }
    mode(file, "mode", p, &mut errs);
    errs
}

/// Upstream's `validateProjectionSources`.
fn projection_sources(src: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut paths = BTreeSet::new();
    for (i, source) in list_of(src, "sources").iter().enumerate() {
        let sp = p.child("sources").index(i);
        let mut count = 0;
        for kind in ["secret", "configMap"] {
            let Some(s) = source.get(kind).filter(|v| !v.is_null()) else {
                continue;
            };
            count += 1;
            let kp = sp.child(kind);
            required(s, "name", &kp, &mut errs);
            for (j, item) in list_of(s, "items").iter().enumerate() {
                errs.extend(key_to_path(item, &kp.child("items").index(j)));
                let item_path = str_of(item, "path");
                if !item_path.is_empty() && !paths.insert(item_path.to_owned()) {
                    errs.push(Error::invalid(
                        p,
                        str_of(s, "name"),
                        "conflicting duplicate paths",
                    ));
                }
            }
        }
        if let Some(d) = source.get("downwardAPI").filter(|v| !v.is_null()) {
            count += 1;
            for item in list_of(d, "items") {
                errs.extend(downward_file(item, &sp.child("downwardAPI")));
                let item_path = str_of(item, "path");
                if !item_path.is_empty() && !paths.insert(item_path.to_owned()) {
                    errs.push(Error::invalid(p, item_path, "conflicting duplicate paths"));
                }
            }
        }
        if let Some(t) = source.get("serviceAccountToken").filter(|v| !v.is_null()) {
            count += 1;
            let tp = sp.child("serviceAccountToken");
            let seconds = int_of(t, "expirationSeconds").unwrap_or(0);
            if seconds < 600 {
                errs.push(Error::invalid(
                    &tp.child("expirationSeconds"),
                    seconds,
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if seconds > 1 << 32 {
                errs.push(Error::invalid(
                    &tp.child("expirationSeconds"),
                    seconds,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            let token_path = str_of(t, "path");
            if token_path.is_empty() {
                errs.push(Error::required(&p.child("path"), ""));
            } else {
                errs.extend(local_non_reserved_path(token_path, &p.child("path")));
            }
        }
        if has(source, "clusterTrustBundle") {
            count += 1;
        }
        if count > 1 {
            errs.push(Error::forbidden(
                &sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
    errs
}
