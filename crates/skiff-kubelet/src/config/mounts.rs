//! A container's CRI mounts (upstream's `makeMounts` in kubelet_pods.go and
//! kuberuntime's `makeMounts`): its volumeMounts onto the directories the
//! volume manager prepared, the managed `/etc/hosts`, and the termination
//! message file.

use std::path::{Component, Path};

use k8s_cri::v1::{Mount, MountPropagation};
use k8s_openapi::api::core::v1::{Container, Pod};

use super::ConfigError;
use super::container::ContainerPaths;
use super::env::Environment;
use super::expansion::expand;

/// Where a container's termination message goes unless it says otherwise.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
const ETC_HOSTS: &str = "/etc/hosts";

fn propagation(mode: Option<&str>) -> Result<MountPropagation, ConfigError> {
    match mode {
        None | Some("None") => Ok(MountPropagation::PropagationPrivate),
        Some("HostToContainer") => Ok(MountPropagation::PropagationHostToContainer),
        Some("Bidirectional") => Ok(MountPropagation::PropagationBidirectional),
        Some(other) => Err(ConfigError::InvalidMountPropagation(other.to_owned())),
    }
}

/// Secret, ConfigMap, downward API and projected volumes are always
/// mounted read-only (their plugins' `ReadOnly` attribute).
fn plugin_mounts_read_only(pod: &Pod, volume: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name == volume))
        .is_some_and(|v| {
            v.secret.is_some()
                || v.config_map.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
        })
}

/// `subPathExpr` expanded with the container's environment; every
/// referenced variable must be set and non-empty.
fn expand_sub_path_expr(expr: &str, env: &Environment) -> Result<String, ConfigError> {
    let mut missing = std::collections::BTreeSet::new();
    let expanded = expand(expr, |name| match env.get(name) {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => {
            missing.insert(name.to_owned());
            String::new()
        }
    });
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(ConfigError::SubPathExprMissing(
            missing.into_iter().collect::<Vec<_>>().join(", "),
        ))
    }
}

/// The container's mounts, in volumeMounts order, then `/etc/hosts` (when
/// the caller wrote one, the pod is on the host network or its sandbox has
/// an IP, and the container does not mount that path itself), then the
/// termination message file.
pub(super) fn make_mounts(
    pod: &Pod,
    container: &Container,
    paths: &ContainerPaths,
    env: &Environment,
    has_pod_ip: bool,
) -> Result<Vec<Mount>, ConfigError> {
    let mut mounts = Vec::new();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let mut mount_etc_hosts = paths.etc_hosts.is_some() && (has_pod_ip || host_network);
    for vm in container.volume_mounts.iter().flatten() {
        mount_etc_hosts &= vm.mount_path != ETC_HOSTS;
        let volume = paths
            .volumes
            .get(&vm.name)
            .ok_or_else(|| ConfigError::VolumeNotFound {
                volume: vm.name.clone(),
                container: container.name.clone(),
            })?;
        let mut sub_path = vm.sub_path.clone().unwrap_or_default();
        if let Some(expr) = vm.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            sub_path = expand_sub_path_expr(expr, env)?;
        }
        let mut host_path = volume.clone();
        if !sub_path.is_empty() {
            if Path::new(&sub_path).is_absolute() {
                return Err(ConfigError::SubPathAbsolute(sub_path));
            }
            if sub_path.split('/').any(|part| part == "..") {
                return Err(ConfigError::SubPathBacksteps(sub_path));
            }
            // Normal components only: the checks above leave no `..` or root.
            for part in Path::new(&sub_path).components() {
                if let Component::Normal(p) = part {
                    host_path.push(p);
                }
            }
        }
        let container_path = if vm.mount_path.starts_with('/') {
            vm.mount_path.clone()
        } else {
            format!("/{}", vm.mount_path)
        };
        mounts.push(Mount {
            container_path,
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: vm.read_only.unwrap_or(false) || plugin_mounts_read_only(pod, &vm.name),
            propagation: propagation(vm.mount_propagation.as_deref())? as i32,
            ..Default::default()
        });
    }
    if mount_etc_hosts && let Some(hosts) = &paths.etc_hosts {
        mounts.push(Mount {
            container_path: ETC_HOSTS.to_owned(),
            host_path: hosts.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    let termination = container
        .termination_message_path
        .as_deref()
        .unwrap_or(DEFAULT_TERMINATION_MESSAGE_PATH);
    if !termination.is_empty() {
        mounts.push(Mount {
            container_path: termination.to_owned(),
            host_path: paths.termination_log.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    Ok(mounts)
}
