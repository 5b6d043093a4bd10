//! A container's environment (upstream's `makeEnvironmentVariables`): envFrom
//! first, then env in order (each value expanding the variables before
//! it), then the service variables nobody else set.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use skiff_api::quantity::Quantity;

use super::expansion::expand;
use super::{ConfigError, PodEnv, find_container};

/// The resolved environment of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// Name → value; upstream's order is a Go map's (random), ours is by name.
    pub vars: BTreeMap<String, String>,
}

impl Environment {
    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// Builds `container`'s environment.
pub fn make_environment_variables(
    pod: &Pod,
    container: &Container,
    env: &PodEnv<'_>,
) -> Result<Environment, ConfigError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut tmp: BTreeMap<String, String> = BTreeMap::new();

    // envFrom keys go in as they are (prefixed): since the relaxed
    // environment variable validation (beta, on by default in 1.32) the
    // kubelet no longer skips keys that are not C identifiers.
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let Some(cm) = env.configmaps.get(&r.name) else {
                if r.optional == Some(true) {
                    continue;
                }
                return Err(ConfigError::ConfigMapNotFound(r.name.clone()));
            };
            for (k, v) in cm.data.iter().flatten() {
                tmp.insert(format!("{prefix}{k}"), v.clone());
            }
        } else if let Some(r) = &from.secret_ref {
            let Some(secret) = env.secrets.get(&r.name) else {
                if r.optional == Some(true) {
                    continue;
                }
                return Err(ConfigError::SecretNotFound(r.name.clone()));
            };
            for (k, v) in secret.data.iter().flatten() {
                tmp.insert(
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v.0).into_owned(),
                );
            }
        }
    }

    let service: BTreeMap<&str, &str> = env
        .service_env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
        .collect();

    for var in container.env.iter().flatten() {
        let literal = var.value.as_deref().unwrap_or_default();
        let value = if !literal.is_empty() {
            expand(literal, |name| {
                tmp.get(name)
                    .map(String::as_str)
                    .or_else(|| service.get(name).copied())
                    .map_or_else(|| format!("$({name})"), str::to_owned)
            })
        } else if let Some(from) = &var.value_from {
            if let Some(fs) = &from.field_ref {
                pod_field_value(fs, pod, env)?
            } else if let Some(rs) = &from.resource_field_ref {
                container_resource_value(rs, pod, container, env)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let Some(cm) = env.configmaps.get(&r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(ConfigError::ConfigMapNotFound(r.name.clone()));
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(ConfigError::ConfigMapKeyNotFound {
                            key: r.key.clone(),
                            namespace: namespace.to_owned(),
                            name: r.name.clone(),
                        });
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let Some(secret) = env.secrets.get(&r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(ConfigError::SecretNotFound(r.name.clone()));
                };
                match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(ConfigError::SecretKeyNotFound {
                            key: r.key.clone(),
                            namespace: namespace.to_owned(),
                            name: r.name.clone(),
                        });
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        tmp.insert(var.name.clone(), value);
    }

    for (name, value) in service {
        tmp.entry(name.to_owned())
            .or_insert_with(|| value.to_owned());
    }
    Ok(Environment { vars: tmp })
}

/// Splits `path['key']` into (`path`, `key`), as `SplitMaybeSubscriptedPath`.
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// A downward API `fieldRef` value (`podFieldSelectorRuntimeValue`).
fn pod_field_value(
    fs: &ObjectFieldSelector,
    pod: &Pod,
    env: &PodEnv<'_>,
) -> Result<String, ConfigError> {
    let version = fs.api_version.as_deref().unwrap_or("v1");
    if version != "v1" {
        return Err(ConfigError::UnsupportedPodVersion(version.to_owned()));
    }
    let path = fs.field_path.as_str();
    let meta = &pod.metadata;
    if let Some((base, key)) = split_subscript(path) {
        let map = match base {
            "metadata.annotations" => meta.annotations.as_ref(),
            "metadata.labels" => meta.labels.as_ref(),
            _ => return Err(ConfigError::FieldLabelNoSubscript(path.to_owned())),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let spec = pod.spec.as_ref();
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" | "spec.host" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| env.node_name.to_owned()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => {
            env.host_ip.ok_or(ConfigError::HostIpUnknown)?.to_owned()
        }
        "status.podIP" => env.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => env.pod_ips.join(","),
        // Known to the API but not resolved by the kubelet.
        "spec.restartPolicy" | "spec.schedulerName" | "status.phase" => {
            return Err(ConfigError::UnsupportedFieldPath(path.to_owned()));
        }
        _ => return Err(ConfigError::FieldLabelNotSupported(path.to_owned())),
    };
    Ok(value)
}

/// Upstream's `FormatMap`: `key="value"` lines sorted by key, values quoted
/// as Go's `%q` does.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote` for the characters label and annotation values hold.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A downward API `resourceFieldRef` value (`containerResourceRuntimeValue`
/// on a pod whose missing limits default to node allocatable).
fn container_resource_value(
    rs: &ResourceFieldSelector,
    pod: &Pod,
    container: &Container,
    env: &PodEnv<'_>,
) -> Result<String, ConfigError> {
    let target = match rs.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => find_container(pod, name)
            .ok_or_else(|| ConfigError::ContainerNotFound(name.to_owned()))?,
        None => container,
    };
    let divisor = match &rs.divisor {
        Some(d) => parse(&d.0)?,
        None => Quantity::from_int(0),
    };
    let divisor = if divisor.is_zero() {
        Quantity::from_int(1)
    } else {
        divisor
    };
    let (kind, resource) = rs
        .resource
        .split_once('.')
        .ok_or_else(|| ConfigError::UnsupportedResource(rs.resource.clone()))?;
    let resources = target.resources.as_ref();
    let list = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(ConfigError::UnsupportedResource(rs.resource.clone())),
    };
    let is_huge_page = resource.starts_with("hugepages-");
    if !matches!(resource, "cpu" | "memory" | "ephemeral-storage") && !is_huge_page {
        return Err(ConfigError::UnsupportedResource(rs.resource.clone()));
    }
    let mut quantity = match list.and_then(|l| l.get(resource)) {
        Some(q) => parse(&q.0)?,
        None => Quantity::from_int(0),
    };
    // Upstream fills a missing or zero limit from node allocatable before
    // reading it (hugepages are never overcommitted, so never filled).
    if quantity.is_zero()
        && kind == "limits"
        && !is_huge_page
        && let Some(q) = env.node_allocatable.and_then(|a| a.get(resource))
    {
        quantity = parse(&q.0)?;
    }
    let result = if resource == "cpu" {
        ceil_div(quantity.milli_value(), divisor.milli_value())
    } else {
        ceil_div(quantity.value(), divisor.value())
    };
    Ok(result.to_string())
}

/// `ceil(a / b)` for the non-negative quantities of the downward API.
fn ceil_div(a: i64, b: i64) -> i64 {
    if b <= 0 {
        return a;
    }
    let q = a / b;
    if a % b > 0 { q + 1 } else { q }
}

pub(super) fn parse(s: &str) -> Result<Quantity, ConfigError> {
    Quantity::parse(s).map_err(|_| ConfigError::InvalidQuantity(s.to_owned()))
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
