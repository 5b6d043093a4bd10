//! `CreateContainer`'s config (upstream's `generateContainerConfig` with
//! the labels and annotations of kuberuntime's labels.go).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use k8s_cri::v1::{ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerConfig};
use k8s_openapi::api::core::v1::{Container, Pod};

use super::env::make_environment_variables;
use super::expansion::expand;
use super::mounts::make_mounts;
use super::resources::linux_container_resources;
use super::security::{container_security_context, verify_run_as_non_root};
use super::{ConfigError, PodEnv};

/// Label: the pod's name.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Label: the pod's namespace.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Label: the pod's UID.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// Label: the container's name.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// Host-side paths the container config points at, prepared by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerPaths {
    /// Volume name → host directory of that volume (from the volume manager).
    pub volumes: BTreeMap<String, PathBuf>,
    /// The pod's hosts file, written from [`super::etc_hosts`] (or
    /// [`super::host_network_etc_hosts`] on the host network); `None` to
    /// leave the runtime's.
    pub etc_hosts: Option<PathBuf>,
    /// A fresh, empty host file for this container instance's termination
    /// message.
    pub termination_log: PathBuf,
}

/// The user an image runs as, from the runtime's `ImageStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    /// The numeric user, when the image names one.
    pub uid: Option<i64>,
    /// The user name, when the image names a user but not by number.
    pub username: String,
}

impl ImageUser {
    /// From `ImageStatus`'s `uid` and `username`: an image that sets
    /// neither runs as root (upstream's `getImageUser`).
    pub fn from_image_status(uid: Option<i64>, username: &str) -> Self {
        match uid {
            Some(uid) => Self {
                uid: Some(uid),
                username: String::new(),
            },
            None if !username.is_empty() => Self {
                uid: None,
                username: username.to_owned(),
            },
            None => Self::default(),
        }
    }
}

impl Default for ImageUser {
    /// Root, as for an image that names no user.
    fn default() -> Self {
        Self {
            uid: Some(0),
            username: String::new(),
        }
    }
}

/// The container's log file relative to the pod's log directory:
/// `NAME/RESTARTCOUNT.log`.
pub fn container_log_path(container_name: &str, restart_count: u32) -> String {
    format!("{container_name}/{restart_count}.log")
}

/// FNV-1a (32 bit), the hash upstream's `HashContainer` uses.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The container hash the kubelet uses to notice a changed spec; upstream
/// hashes only the name and the image, so upgrades do not restart pods.
pub fn container_hash(container: &Container) -> u64 {
    let picked = serde_json::json!({ "image": container.image, "name": container.name });
    u64::from(fnv1a32(picked.to_string().as_bytes()))
}

fn container_labels(pod: &Pod, container: &Container) -> HashMap<String, String> {
    let meta = &pod.metadata;
    [
        (POD_NAME_LABEL, meta.name.clone()),
        (POD_NAMESPACE_LABEL, meta.namespace.clone()),
        (POD_UID_LABEL, meta.uid.clone()),
        (CONTAINER_NAME_LABEL, Some(container.name.clone())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.unwrap_or_default()))
    .collect()
}

fn container_annotations(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
) -> HashMap<String, String> {
    let mut a = HashMap::new();
    let mut put = |k: &str, v: String| {
        a.insert(k.to_owned(), v);
    };
    put(
        "io.kubernetes.container.hash",
        format!("{:x}", container_hash(container)),
    );
    put(
        "io.kubernetes.container.restartCount",
        restart_count.to_string(),
    );
    put(
        "io.kubernetes.container.terminationMessagePath",
        container
            .termination_message_path
            .clone()
            .unwrap_or_default(),
    );
    put(
        "io.kubernetes.container.terminationMessagePolicy",
        container
            .termination_message_policy
            .clone()
            .unwrap_or_default(),
    );
    if let Some(grace) = pod.metadata.deletion_grace_period_seconds {
        put("io.kubernetes.pod.deletionGracePeriod", grace.to_string());
    }
    let spec = pod.spec.as_ref();
    if let Some(grace) = spec.and_then(|s| s.termination_grace_period_seconds) {
        put(
            "io.kubernetes.pod.terminationGracePeriod",
            grace.to_string(),
        );
    }
    // Upstream logs and skips a handler or port list that fails to encode.
    if let Some(pre_stop) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        && let Ok(json) = serde_json::to_string(pre_stop)
    {
        put("io.kubernetes.container.preStopHandler", json);
    }
    if let Some(ports) = container.ports.as_ref().filter(|p| !p.is_empty())
        && let Ok(json) = serde_json::to_string(ports)
    {
        put("io.kubernetes.container.ports", json);
    }
    let is_in = |list: Option<&Vec<Container>>| {
        list.is_some_and(|l| l.iter().any(|c| c.name == container.name))
    };
    let kind = if is_in(spec.and_then(|s| s.init_containers.as_ref())) {
        Some("init")
    } else if is_in(spec.map(|s| &s.containers)) {
        Some("container")
    } else if spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == container.name))
    {
        Some("ephemeral")
    } else {
        None
    };
    if let Some(kind) = kind {
        put("io.kubernetes.container.type", kind.to_owned());
    }
    a
}

/// The `ContainerConfig` for `container` of `pod`, its `restart_count`-th
/// instance, running `image_ref` (the image ID the pull resolved) as
/// `image_user` (from the runtime's `ImageStatus`).
pub fn container_config(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
    env: &PodEnv<'_>,
    paths: &ContainerPaths,
    image_ref: &str,
    image_user: &ImageUser,
) -> Result<ContainerConfig, ConfigError> {
    if pod.spec.is_none() {
        return Err(ConfigError::NoSpec);
    }
    let environment = make_environment_variables(pod, container, env)?;
    let mounts = make_mounts(pod, container, paths, &environment, !env.pod_ips.is_empty())?;
    verify_run_as_non_root(pod, container, image_user)?;

    let expand_all = |list: Option<&Vec<String>>| -> Vec<String> {
        list.into_iter()
            .flatten()
            .map(|s| {
                expand(s, |name| {
                    environment
                        .get(name)
                        .map_or_else(|| format!("$({name})"), str::to_owned)
                })
            })
            .collect()
    };
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: container.name.clone(),
            attempt: restart_count,
        }),
        image: Some(ImageSpec {
            image: image_ref.to_owned(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: expand_all(container.command.as_ref()),
        args: expand_all(container.args.as_ref()),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: environment
            .vars
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        labels: container_labels(pod, container),
        annotations: container_annotations(pod, container, restart_count),
        log_path: container_log_path(&container.name, restart_count),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(LinuxContainerConfig {
            resources: Some(linux_container_resources(
                pod,
                container,
                env.memory_capacity,
            )?),
            security_context: Some(container_security_context(pod, container, image_user)?),
        }),
        ..Default::default()
    };
    Ok(config)
}
