//! The file contents of configMap, secret and downwardAPI volumes (and of the
//! same sources inside a projected volume), as upstream's `MakePayload` and
//! `CollectData` compute them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, ResourceFieldSelector, Secret,
};
use skiff_api::go_quote;
use skiff_api::quantity::Quantity;

use super::atomic_writer::{FileProjection, Payload};

/// The mode of projected files when the volume names none (the API default).
pub const DEFAULT_MODE: i32 = 0o644;

/// Permission bits from an API mode field.
pub(crate) fn mode_bits(mode: Option<i32>, default_mode: i32) -> u32 {
    u32::try_from(mode.unwrap_or(default_mode)).unwrap_or(0) & 0o7777
}

/// The files of a configMap volume (or projection): every key of `data` and
/// `binaryData`, or just the listed `items`.
pub fn configmap_payload(
    items: Option<&[KeyToPath]>,
    config_map: &ConfigMap,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let data = config_map.data.clone().unwrap_or_default();
    let binary = config_map.binary_data.clone().unwrap_or_default();
    let mut payload = Payload::new();
    match items {
        None | Some([]) => {
            for (k, v) in data {
                payload.insert(k, file(v.into_bytes(), None, default_mode));
            }
            for (k, v) in binary {
                payload.insert(k, file(v.0, None, default_mode));
            }
        }
        Some(items) => {
            for ktp in items {
                let content = if let Some(v) = data.get(&ktp.key) {
                    v.as_bytes().to_vec()
                } else if let Some(v) = binary.get(&ktp.key) {
                    v.0.clone()
                } else if optional {
                    continue;
                } else {
                    return Err(format!(
                        "configmap references non-existent config key: {}",
                        ktp.key
                    ));
                };
                payload.insert(ktp.path.clone(), file(content, ktp.mode, default_mode));
            }
        }
    }
    Ok(payload)
}

/// The files of a secret volume (or projection).
pub fn secret_payload(
    items: Option<&[KeyToPath]>,
    secret: &Secret,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let data = secret.data.clone().unwrap_or_default();
    let mut payload = Payload::new();
    match items {
        None | Some([]) => {
            for (k, v) in data {
                payload.insert(k, file(v.0, None, default_mode));
            }
        }
        Some(items) => {
            for ktp in items {
                let Some(content) = data.get(&ktp.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("references non-existent secret key: {}", ktp.key));
                };
                payload.insert(
                    ktp.path.clone(),
                    file(content.0.clone(), ktp.mode, default_mode),
                );
            }
        }
    }
    Ok(payload)
}

fn file(data: Vec<u8>, mode: Option<i32>, default_mode: i32) -> FileProjection {
    FileProjection {
        data,
        mode: mode_bits(mode, default_mode),
        fs_user: None,
    }
}

/// Joins several errors as upstream's `utilerrors.NewAggregate` prints them.
pub(crate) fn aggregate(errors: Vec<String>) -> Result<(), String> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.into_iter().next().unwrap_or_default()),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

/// The files of a downwardAPI volume (or projection). Every item is tried;
/// the failures come back together.
pub fn downward_api_payload(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    node_allocatable: &BTreeMap<String, Quantity>,
    default_mode: i32,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            extract_field_path(pod, &field.field_path)
        } else if let Some(resource) = &item.resource_field_ref {
            let container = resource.container_name.as_deref().unwrap_or_default();
            extract_resource_value(resource, pod, container, node_allocatable)
        } else {
            Ok(String::new())
        };
        let data = match value {
            Ok(v) => sort_lines(&v).into_bytes(),
            Err(e) => {
                errors.push(e);
                Vec::new()
            }
        };
        payload.insert(clean_path(&item.path), file(data, item.mode, default_mode));
    }
    aggregate(errors).map(|()| payload)
}

/// Upstream sorts the lines of every downward API file (labels, annotations).
fn sort_lines(value: &str) -> String {
    let mut lines: Vec<&str> = value.split('\n').collect();
    lines.sort_unstable();
    lines.join("\n")
}

fn clean_path(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// `k="v"` lines sorted by key, no trailing newline (upstream's `FormatMap`).
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a pod field path (upstream's `ExtractFieldPathAsString`).
pub fn extract_field_path(pod: &Pod, field_path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    if let Some((path, key)) = split_subscript(field_path) {
        let map = match path {
            "metadata.annotations" => meta.annotations.as_ref(),
            "metadata.labels" => meta.labels.as_ref(),
            _ => {
                return Err(format!(
                    "fieldPath {} does not support subscript",
                    go_quote(field_path)
                ));
            }
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let empty = BTreeMap::new();
    Ok(match field_path {
        "metadata.annotations" => format_map(meta.annotations.as_ref().unwrap_or(&empty)),
        "metadata.labels" => format_map(meta.labels.as_ref().unwrap_or(&empty)),
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        _ => return Err(format!("unsupported fieldPath: {field_path}")),
    })
}

/// `metadata.labels['key']` -> (`metadata.labels`, `key`).
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let (path, rest) = field_path.split_once("['")?;
    let key = rest.strip_suffix("']")?;
    Some((path, key))
}

/// A container resource as a string in units of the divisor, rounded up
/// (upstream's `ExtractResourceValueByContainerNameAndNodeAllocatable`): limits
/// the container does not set are the node's allocatable amount.
pub fn extract_resource_value(
    selector: &ResourceFieldSelector,
    pod: &Pod,
    container_name: &str,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let container = find_container(pod, container_name)
        .ok_or_else(|| format!("container {container_name} not found"))?;
    let resources = container.resources.clone().unwrap_or_default();
    let mut limits = parse_list(resources.limits.as_ref())?;
    let requests = parse_list(resources.requests.as_ref())?;
    for name in ["cpu", "memory", "ephemeral-storage"] {
        if !limits.contains_key(name)
            && let Some(q) = node_allocatable.get(name)
        {
            limits.insert(name.to_string(), q.clone());
        }
    }
    let divisor = match selector.divisor.as_ref().map(|d| Quantity::parse(&d.0)) {
        None => None,
        Some(Ok(d)) if d.is_zero() => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return Err(format!("invalid divisor: {e}")),
    };
    let divisor = divisor.unwrap_or_else(|| Quantity::from_int(1));
    let zero = Quantity::from_int(0);
    let (list, name) = match selector.resource.split_once('.') {
        Some(("limits", name)) => (&limits, name),
        Some(("requests", name)) => (&requests, name),
        _ => {
            return Err(format!(
                "unsupported container resource : {}",
                selector.resource
            ));
        }
    };
    let value = list.get(name).unwrap_or(&zero);
    match name {
        "cpu" => Ok(ceil_div(value.milli_value(), divisor.milli_value()).to_string()),
        "memory" | "ephemeral-storage" => Ok(ceil_div(value.value(), divisor.value()).to_string()),
        n if n.starts_with("hugepages-") => {
            Ok(ceil_div(value.value(), divisor.value()).to_string())
        }
        _ => Err(format!(
            "unsupported container resource : {}",
            selector.resource
        )),
    }
}

fn ceil_div(value: i64, divisor: i64) -> i64 {
    if divisor <= 0 {
        return value;
    }
    value.div_euclid(divisor) + i64::from(value.rem_euclid(divisor) != 0)
}

fn parse_list(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Result<BTreeMap<String, Quantity>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in list.into_iter().flatten() {
        let q = Quantity::parse(&v.0).map_err(|e| format!("invalid quantity {k}: {e}"))?;
        out.insert(k.clone(), q);
    }
    Ok(out)
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn format_map_quotes_like_go() {
        let map = BTreeMap::from([
            ("b".to_string(), "tab\there".to_string()),
            ("a".to_string(), "x\"y\\z".to_string()),
            ("c".to_string(), String::new()),
        ]);
        assert_eq!(
            format_map(&map),
            "a=\"x\\\"y\\\\z\"\nb=\"tab\\there\"\nc=\"\""
        );
        assert_eq!(format_map(&BTreeMap::new()), "");
    }

    #[test]
    fn field_paths() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"app": "x"}}
        }))
        .unwrap();
        let cases = [
            ("metadata.name", Ok("p")),
            ("metadata.namespace", Ok("")),
            ("metadata.labels['app']", Ok("x")),
            ("metadata.labels['missing']", Ok("")),
            ("metadata.annotations", Ok("")),
            (
                "metadata.name['x']",
                Err("fieldPath \"metadata.name['x']\" does not support subscript"),
            ),
            ("status.podIP", Err("unsupported fieldPath: status.podIP")),
        ];
        for (path, want) in cases {
            let got = extract_field_path(&pod, path);
            assert_eq!(got.as_deref().map_err(String::as_str), want, "{path}");
        }
    }

    #[test]
    fn resource_values_round_up_in_divisor_units() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "c", "resources": {
                "limits": {"cpu": "1500m", "memory": "100M", "hugepages-2Mi": "4Mi"},
                "requests": {"cpu": "1", "ephemeral-storage": "1Gi"}
            }}]}
        }))
        .unwrap();
        let sel = |resource: &str, divisor: Option<&str>| ResourceFieldSelector {
            container_name: Some("c".into()),
            resource: resource.into(),
            divisor: divisor
                .map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
        };
        let none = BTreeMap::new();
        let cases = [
            (sel("limits.cpu", None), Ok("2")),
            (sel("limits.cpu", Some("1m")), Ok("1500")),
            (sel("limits.cpu", Some("0")), Ok("2")),
            (sel("requests.cpu", Some("100m")), Ok("10")),
            (sel("limits.memory", Some("1Mi")), Ok("96")),
            (sel("requests.ephemeral-storage", Some("1Mi")), Ok("1024")),
            (sel("limits.hugepages-2Mi", Some("1Mi")), Ok("4")),
            (sel("requests.memory", None), Ok("0")),
            (
                sel("limits.gpu", None),
                Err("unsupported container resource : limits.gpu"),
            ),
        ];
        for (selector, want) in cases {
            let got = extract_resource_value(&selector, &pod, "c", &none);
            assert_eq!(got.as_deref().map_err(String::as_str), want, "{selector:?}");
        }
    }

    #[test]
    fn aggregate_like_upstream() {
        assert_eq!(aggregate(vec![]), Ok(()));
        assert_eq!(aggregate(vec!["a".into()]), Err("a".to_string()));
        assert_eq!(
            aggregate(vec!["a".into(), "b".into()]),
            Err("[a, b]".to_string())
        );
    }
}
