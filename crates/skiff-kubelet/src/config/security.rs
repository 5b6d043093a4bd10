//! Security contexts: the pod's and the container's merged as upstream's
//! `DetermineEffectiveSecurityContext`, then turned into CRI terms
//! (`determineEffectiveSecurityContext`, `verifyRunAsNonRoot`,
//! `NamespacesForPod`).

use k8s_cri::v1::{
    Capability, Int64Value, LinuxContainerSecurityContext, NamespaceMode, NamespaceOption,
    SeLinuxOption, SecurityProfile, SupplementalGroupsPolicy, security_profile::ProfileType,
};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, Pod, SELinuxOptions, SeccompProfile, SecurityContext,
};

use super::container::ImageUser;
use super::{ConfigError, pod_desc};

/// `/proc` and `/sys` paths a container cannot see unless its procMount is
/// `Unmasked` (upstream's `defaultMaskedPaths`).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// `/proc` paths a container sees read-only unless its procMount is
/// `Unmasked` (upstream's `defaultReadonlyPaths`).
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where `Localhost` seccomp profiles live (the kubelet root's `seccomp`).
const SECCOMP_PROFILE_ROOT: &str = "/var/lib/kubelet/seccomp";

/// The container's security context with the pod's fields filling the gaps.
pub(super) fn effective_security_context(pod: &Pod, container: &Container) -> SecurityContext {
    let mut sc = container.security_context.clone().unwrap_or_default();
    let Some(pod_sc) = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()) else {
        return sc;
    };
    if sc.se_linux_options.is_none() {
        sc.se_linux_options = pod_sc.se_linux_options.clone();
    }
    if sc.windows_options.is_none() {
        sc.windows_options = pod_sc.windows_options.clone();
    }
    if sc.run_as_user.is_none() {
        sc.run_as_user = pod_sc.run_as_user;
    }
    if sc.run_as_group.is_none() {
        sc.run_as_group = pod_sc.run_as_group;
    }
    if sc.run_as_non_root.is_none() {
        sc.run_as_non_root = pod_sc.run_as_non_root;
    }
    if sc.seccomp_profile.is_none() {
        sc.seccomp_profile = pod_sc.seccomp_profile.clone();
    }
    if sc.app_armor_profile.is_none() {
        sc.app_armor_profile = pod_sc.app_armor_profile.clone();
    }
    sc
}

/// The pod's namespaces: host ones when asked for, the pod's shared PID
/// namespace with `shareProcessNamespace`, else the container's own.
pub(super) fn namespaces_for_pod(pod: &Pod) -> NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let mode = |host: bool, otherwise: NamespaceMode| {
        if host {
            NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    let pid = if flag(|s| s.host_pid) {
        NamespaceMode::Node
    } else if flag(|s| s.share_process_namespace) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    NamespaceOption {
        network: mode(flag(|s| s.host_network), NamespaceMode::Pod),
        pid: pid as i32,
        ipc: mode(flag(|s| s.host_ipc), NamespaceMode::Pod),
        ..Default::default()
    }
}

/// The pod's `supplementalGroupsPolicy` in CRI terms (`Merge` unless set).
pub(super) fn supplemental_groups_policy(pod: &Pod) -> Result<i32, ConfigError> {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.supplemental_groups_policy.as_deref());
    match policy {
        None | Some("Merge") => Ok(SupplementalGroupsPolicy::Merge as i32),
        Some("Strict") => Ok(SupplementalGroupsPolicy::Strict as i32),
        Some(other) => Err(ConfigError::UnsupportedSupplementalGroupsPolicy(
            other.to_owned(),
        )),
    }
}

/// fsGroup first, then the pod's supplementalGroups.
pub(super) fn supplemental_groups(pod: &Pod) -> Vec<i64> {
    let Some(sc) = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()) else {
        return Vec::new();
    };
    sc.fs_group
        .into_iter()
        .chain(sc.supplemental_groups.iter().flatten().copied())
        .collect()
}

fn seccomp(profile: Option<&SeccompProfile>) -> SecurityProfile {
    match profile.map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") => SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            ..Default::default()
        },
        Some("Localhost") => SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: format!(
                "{SECCOMP_PROFILE_ROOT}/{}",
                profile
                    .and_then(|p| p.localhost_profile.as_deref())
                    .unwrap_or_default()
            ),
        },
        // Unset means Unconfined while the kubelet's SeccompDefault is off.
        _ => SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            ..Default::default()
        },
    }
}

/// SELinux options in CRI terms.
pub(super) fn selinux(options: Option<&SELinuxOptions>) -> Option<SeLinuxOption> {
    options.map(|o| SeLinuxOption {
        user: o.user.clone().unwrap_or_default(),
        role: o.role.clone().unwrap_or_default(),
        r#type: o.type_.clone().unwrap_or_default(),
        level: o.level.clone().unwrap_or_default(),
    })
}

/// The AppArmor profile (`getAppArmorProfile`); unset leaves the runtime's
/// default.
fn apparmor(profile: Option<&AppArmorProfile>) -> Result<Option<SecurityProfile>, ConfigError> {
    let Some(profile) = profile else {
        return Ok(None);
    };
    let (profile_type, localhost_ref) = match profile.type_.as_str() {
        "RuntimeDefault" => (ProfileType::RuntimeDefault, String::new()),
        "Unconfined" => (ProfileType::Unconfined, String::new()),
        "Localhost" => match profile.localhost_profile.as_deref() {
            Some(name) => (ProfileType::Localhost, name.to_owned()),
            None => return Err(ConfigError::MissingAppArmorLocalhostProfile),
        },
        other => return Err(ConfigError::UnknownAppArmorProfileType(other.to_owned())),
    };
    Ok(Some(SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    }))
}

/// The container's CRI security context.
pub(super) fn container_security_context(
    pod: &Pod,
    container: &Container,
    image_user: &ImageUser,
) -> Result<LinuxContainerSecurityContext, ConfigError> {
    let sc = effective_security_context(pod, container);
    let capabilities = sc.capabilities.as_ref().map(|c| Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        ..Default::default()
    });
    let (run_as_user, run_as_username) = match sc.run_as_user {
        Some(uid) => (Some(Int64Value { value: uid }), String::new()),
        None => (
            image_user.uid.map(|value| Int64Value { value }),
            image_user.username.clone(),
        ),
    };
    let unmasked = sc.proc_mount.as_deref() == Some("Unmasked");
    let paths = |defaults: &[&str]| -> Vec<String> {
        if unmasked {
            Vec::new()
        } else {
            defaults.iter().map(|p| (*p).to_owned()).collect()
        }
    };
    Ok(LinuxContainerSecurityContext {
        capabilities,
        privileged: sc.privileged.unwrap_or(false),
        namespace_options: Some(namespaces_for_pod(pod)),
        run_as_user,
        run_as_group: sc.run_as_group.map(|value| Int64Value { value }),
        run_as_username,
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: supplemental_groups(pod),
        supplemental_groups_policy: supplemental_groups_policy(pod)?,
        // Only an explicit `allowPrivilegeEscalation: false` sets it.
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: paths(DEFAULT_MASKED_PATHS),
        readonly_paths: paths(DEFAULT_READONLY_PATHS),
        seccomp: Some(seccomp(sc.seccomp_profile.as_ref())),
        selinux_options: selinux(sc.se_linux_options.as_ref()),
        apparmor: apparmor(sc.app_armor_profile.as_ref())?,
        ..Default::default()
    })
}

/// Refuses a `runAsNonRoot` container that would run as root, or whose
/// image user is a name that cannot be checked.
pub(super) fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    image_user: &ImageUser,
) -> Result<(), ConfigError> {
    let sc = effective_security_context(pod, container);
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    let who = || (pod_desc(pod), container.name.clone());
    if let Some(uid) = sc.run_as_user {
        if uid == 0 {
            let (pod, container) = who();
            return Err(ConfigError::RunAsUserBreaksNonRoot { pod, container });
        }
        return Ok(());
    }
    match image_user.uid {
        Some(0) => {
            let (pod, container) = who();
            Err(ConfigError::ImageRunsAsRoot { pod, container })
        }
        Some(uid) if !(0..=i64::from(i32::MAX)).contains(&uid) => {
            let (pod, container) = who();
            Err(ConfigError::InvalidImageUserId {
                uid,
                pod,
                container,
            })
        }
        None if !image_user.username.is_empty() => {
            let (pod, container) = who();
            Err(ConfigError::NonNumericImageUser {
                user: image_user.username.clone(),
                pod,
                container,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;
