//! The pure translation from a pod (plus the objects it references) to the
//! CRI requests the pod worker sends: `RunPodSandbox`'s `PodSandboxConfig`
//! and `CreateContainer`'s `ContainerConfig`, as upstream's kuberuntime
//! builds them (`generatePodSandboxConfig`, `generateContainerConfig`,
//! `makeEnvironmentVariables`, `makeMounts`). No I/O: the caller resolves
//! ConfigMaps, Secrets, volume directories and the image's user first.

mod container;
mod env;
mod ephemeral;
mod expansion;
mod mounts;
mod resources;
mod sandbox;
mod security;
mod service_env;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use container::{
    CONTAINER_NAME_LABEL, ContainerPaths, ImageUser, POD_NAME_LABEL, POD_NAMESPACE_LABEL,
    POD_UID_LABEL, container_config, container_hash, container_log_path,
};
pub use env::{Environment, make_environment_variables};
pub use ephemeral::{ephemeral_as_container, target_pid_namespace};
pub use expansion::expand;
pub use mounts::DEFAULT_TERMINATION_MESSAGE_PATH;
pub use resources::{
    QUOTA_PERIOD, linux_container_resources, milli_cpu_to_quota, milli_cpu_to_shares,
    oom_score_adjust,
};
pub use sandbox::{
    DEFAULT_POD_LOGS_DIR, SandboxPaths, dns_config, etc_hosts, host_network_etc_hosts,
    parse_resolv_conf, pod_hostname_and_domain, pod_logs_directory, sandbox_config,
    sandbox_config_with_host_dns,
};
pub use security::{DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
pub use service_env::{SERVICES_NOT_READ, service_env_vars};

/// Everything env and config resolution needs besides the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct PodEnv<'a> {
    /// The node the pod runs on.
    pub node_name: &'a str,
    /// The node's InternalIP (`status.hostIP`); `None` while unknown.
    pub host_ip: Option<&'a str>,
    /// The sandbox's IPs, primary first; empty until the sandbox has one.
    pub pod_ips: &'a [String],
    /// ConfigMaps of the pod's namespace by name; absent means not found.
    pub configmaps: &'a BTreeMap<String, ConfigMap>,
    /// Secrets of the pod's namespace by name; absent means not found.
    pub secrets: &'a BTreeMap<String, Secret>,
    /// Docker-link-style service variables. The caller applies
    /// `enableServiceLinks` when it builds them, as upstream's
    /// `getServiceEnvVarMap` does.
    pub service_env: &'a [EnvVar],
    /// The node's allocatable resources: the limit a `resourceFieldRef`
    /// reports for a container that sets none.
    pub node_allocatable: Option<&'a BTreeMap<String, Quantity>>,
    /// The machine's memory capacity in bytes (cAdvisor's `MemoryCapacity`),
    /// the denominator of the Burstable OOM score; 0 when unknown.
    pub memory_capacity: i64,
}

/// The ConfigMaps and Secrets a pod's containers read through `env` and
/// `envFrom`: what the caller must fetch before [`container_config`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referenced {
    /// ConfigMap names.
    pub configmaps: BTreeSet<String>,
    /// Secret names.
    pub secrets: BTreeSet<String>,
}

/// The ConfigMaps and Secrets referenced from `env` and `envFrom` of every
/// init, regular and ephemeral container. Whether a reference is optional
/// is decided later, when the container's environment is built: a missing
/// optional object is simply absent from [`PodEnv`].
pub fn referenced_objects(pod: &Pod) -> Referenced {
    let mut out = Referenced::default();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    let mut visit =
        |env: Option<&Vec<EnvVar>>,
         env_from: Option<&Vec<k8s_openapi::api::core::v1::EnvFromSource>>| {
            for e in env.into_iter().flatten() {
                let Some(from) = e.value_from.as_ref() else {
                    continue;
                };
                if let Some(r) = &from.config_map_key_ref {
                    out.configmaps.insert(r.name.clone());
                }
                if let Some(r) = &from.secret_key_ref {
                    out.secrets.insert(r.name.clone());
                }
            }
            for f in env_from.into_iter().flatten() {
                if let Some(r) = &f.config_map_ref {
                    out.configmaps.insert(r.name.clone());
                }
                if let Some(r) = &f.secret_ref {
                    out.secrets.insert(r.name.clone());
                }
            }
        };
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        visit(c.env.as_ref(), c.env_from.as_ref());
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        visit(c.env.as_ref(), c.env_from.as_ref());
    }
    out
}

/// Why a container (or sandbox) config cannot be built. The Display text is
/// upstream's, which the kubelet reports as the message of a
/// `CreateContainerConfigError` waiting state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required ConfigMap does not exist.
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    /// A required Secret does not exist.
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    /// A required key is missing from a ConfigMap.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        /// The key.
        key: String,
        /// The pod's namespace.
        namespace: String,
        /// The ConfigMap.
        name: String,
    },
    /// A required key is missing from a Secret.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        /// The key.
        key: String,
        /// The pod's namespace.
        namespace: String,
        /// The Secret.
        name: String,
    },
    /// `runAsNonRoot` with `runAsUser: 0`.
    #[error(
        "container's runAsUser breaks non-root policy (pod: \"{pod}\", container: {container})"
    )]
    RunAsUserBreaksNonRoot {
        /// `name_namespace(uid)`.
        pod: String,
        /// The container.
        container: String,
    },
    /// `runAsNonRoot` and the image's user is root.
    #[error(
        "container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {container})"
    )]
    ImageRunsAsRoot {
        /// `name_namespace(uid)`.
        pod: String,
        /// The container.
        container: String,
    },
    /// `runAsNonRoot` and the image names its user, not a uid.
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: \"{pod}\", container: {container})"
    )]
    NonNumericImageUser {
        /// The image's user name.
        user: String,
        /// `name_namespace(uid)`.
        pod: String,
        /// The container.
        container: String,
    },
    /// `runAsNonRoot` and the image's uid is outside 0..=2^31-1.
    #[error(
        "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be 1-(2147483647)): must be between 0 and 2147483647, inclusive (pod: \"{pod}\", container: {container})"
    )]
    InvalidImageUserId {
        /// The image's uid.
        uid: i64,
        /// `name_namespace(uid)`.
        pod: String,
        /// The container.
        container: String,
    },
    /// A `supplementalGroupsPolicy` the CRI does not know.
    #[error("unsupported supplementalGroupsPolicy: {0}")]
    UnsupportedSupplementalGroupsPolicy(String),
    /// An AppArmor profile of type Localhost without a name.
    #[error("missing localhost apparmor profile name")]
    MissingAppArmorLocalhostProfile,
    /// An AppArmor profile type upstream does not know.
    #[error("unknown apparmor profile type: \"{0}\"")]
    UnknownAppArmorProfileType(String),
    /// A downward API `fieldRef` with an apiVersion other than v1.
    #[error("unsupported pod version: {0}")]
    UnsupportedPodVersion(String),
    /// A downward API field path upstream does not know.
    #[error("field label not supported: {0}")]
    FieldLabelNotSupported(String),
    /// A subscript on a field that has none.
    #[error("field label does not support subscript: {0}")]
    FieldLabelNoSubscript(String),
    /// A known field path the kubelet cannot resolve.
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    /// `status.hostIP` before the node's address is known.
    #[error("host IP unknown; known addresses: []")]
    HostIpUnknown,
    /// A `resourceFieldRef` to a resource the downward API does not expose.
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    /// A `resourceFieldRef.containerName` that is not in the pod.
    #[error("container {0} not found")]
    ContainerNotFound(String),
    /// A quantity that does not parse.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
    )]
    InvalidQuantity(String),
    /// A volumeMount naming a volume the volume manager did not prepare.
    #[error("cannot find volume \"{volume}\" to mount into container \"{container}\"")]
    VolumeNotFound {
        /// The volume.
        volume: String,
        /// The container.
        container: String,
    },
    /// An absolute `subPath`.
    #[error("error SubPath `{0}` must not be an absolute path")]
    SubPathAbsolute(String),
    /// A `subPath` with a `..` element.
    #[error("unable to provision SubPath `{0}`: must not contain '..'")]
    SubPathBacksteps(String),
    /// A `subPathExpr` referencing variables that are unset or empty.
    #[error("missing value for {0}")]
    SubPathExprMissing(String),
    /// An unknown `mountPropagation`.
    #[error("invalid MountPropagation mode: \"{0}\"")]
    InvalidMountPropagation(String),
    /// `spec.hostname` or `spec.subdomain` that is not a DNS label.
    #[error("pod {field} \"{value}\" is not a valid DNS label: {reason}")]
    InvalidDnsLabel {
        /// `Hostname` or `Subdomain`.
        field: &'static str,
        /// The value.
        value: String,
        /// Upstream's validation message.
        reason: String,
    },
    /// A hostname that is empty once truncated.
    #[error("hostname for pod \"{pod}\" was invalid: \"{hostname}\"")]
    InvalidHostname {
        /// The pod's name.
        pod: String,
        /// The hostname.
        hostname: String,
    },
    /// `setHostnameAsFQDN` with a name longer than the kernel takes.
    #[error(
        "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long (64 characters is the max, {len} characters requested)"
    )]
    FqdnTooLong {
        /// The FQDN.
        fqdn: String,
        /// Its length.
        len: usize,
    },
    /// A pod without a spec.
    #[error("pod has no spec")]
    NoSpec,
}

/// Upstream's `format.Pod`: `name_namespace(uid)`.
pub(crate) fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Finds a container of the pod by name (regular, then init).
pub(crate) fn find_container<'p>(pod: &'p Pod, name: &str) -> Option<&'p Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests;
