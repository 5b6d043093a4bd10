//! The OCI runtime spec (`config.json`) of a container, from its CRI
//! `ContainerConfig`, the image config and the sandbox.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::cri::api;
use crate::images::oci::RuntimeConfig;

/// containerd's default capability set for unprivileged containers.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Capability names by number (linux/capability.h).
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The number of capability `name` (`CAP_CHOWN` is 0).
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = normalize_cap(name);
    ALL_CAPABILITIES
        .iter()
        .position(|c| *c == upper)
        .and_then(|n| u32::try_from(n).ok())
}

/// Never requested: hosts like ours lack it in the bounding set (HOST-NOTES),
/// and asking for it makes the container fail to start.
const FORBIDDEN_CAPABILITY: &str = "CAP_SYS_RESOURCE";

/// The capabilities in a `CapBnd:` hex mask, minus CAP_SYS_RESOURCE.
pub fn bounding_capabilities(mask: u64) -> Vec<String> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, name)| mask & (1u64 << bit) != 0 && **name != FORBIDDEN_CAPABILITY)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

/// This process's bounding set, from `/proc/self/status`.
pub fn host_bounding_mask() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn normalize_cap(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper == "ALL" || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The capability set: privileged gets the bounding set; otherwise the
/// default set with CRI add/drop applied (`ALL` allowed in either).
pub fn capabilities(
    privileged: bool,
    caps: Option<&api::Capability>,
    bounding_mask: u64,
) -> Vec<String> {
    let all = bounding_capabilities(bounding_mask);
    if privileged {
        return all;
    }
    let mut set: Vec<String> = DEFAULT_CAPABILITIES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if let Some(caps) = caps {
        let add: Vec<String> = caps
            .add_capabilities
            .iter()
            .map(|c| normalize_cap(c))
            .collect();
        let drop: Vec<String> = caps
            .drop_capabilities
            .iter()
            .map(|c| normalize_cap(c))
            .collect();
        if add.iter().any(|c| c == "ALL") {
            set = all.clone();
        } else {
            for c in add {
                if !set.contains(&c) {
                    set.push(c);
                }
            }
        }
        if drop.iter().any(|c| c == "ALL") {
            set.clear();
        } else {
            set.retain(|c| !drop.contains(c));
        }
    }
    set.retain(|c| c != FORBIDDEN_CAPABILITY);
    set
}

/// The process args, as containerd combines CRI command/args with the image's
/// entrypoint/cmd.
pub fn process_args(config: &api::ContainerConfig, image: &RuntimeConfig) -> Vec<String> {
    if !config.command.is_empty() {
        let mut args = config.command.clone();
        args.extend(config.args.iter().cloned());
        return args;
    }
    let mut args = image.entrypoint.clone().unwrap_or_default();
    if !config.args.is_empty() {
        args.extend(config.args.iter().cloned());
    } else {
        args.extend(image.cmd.clone().unwrap_or_default());
    }
    args
}

/// Image env, then `HOSTNAME`, then CRI envs; later entries replace earlier
/// ones with the same name, keeping the first position.
pub fn process_env(
    config: &api::ContainerConfig,
    image: &RuntimeConfig,
    hostname: &str,
) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        if !values.contains_key(k) {
            order.push(k.to_owned());
        }
        values.insert(k.to_owned(), v.to_owned());
    };
    let image_env = image.env.clone().unwrap_or_default();
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        set(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    for e in &image_env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(k, v);
    }
    if !hostname.is_empty() {
        set("HOSTNAME", hostname);
    }
    for kv in &config.envs {
        set(&kv.key, &kv.value);
    }
    order
        .into_iter()
        .map(|k| {
            let v = values.get(&k).cloned().unwrap_or_default();
            format!("{k}={v}")
        })
        .collect()
}

/// The numeric user: CRI run_as_user/run_as_group win, then
/// `run_as_username`, then the image's `User`; names resolve through the
/// rootfs's /etc/passwd and /etc/group (best effort: unknown names are errors).
pub fn resolve_user(
    security: Option<&api::LinuxContainerSecurityContext>,
    image: &RuntimeConfig,
    rootfs: &Path,
) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let lookup_user = |name: &str| -> Result<(u32, u32), String> {
        if let Ok(uid) = name.parse::<u32>() {
            let gid = passwd_entry(&passwd, |f| f[2] == name)
                .and_then(|f| f[3].parse().ok())
                .unwrap_or(0);
            return Ok((uid, gid));
        }
        passwd_entry(&passwd, |f| f[0] == name)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .ok_or_else(|| format!("no such user {name:?} in the image's /etc/passwd"))
    };
    let lookup_group = |name: &str| -> Result<u32, String> {
        if let Ok(gid) = name.parse::<u32>() {
            return Ok(gid);
        }
        passwd_entry(&group, |f| f[0] == name)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| format!("no such group {name:?} in the image's /etc/group"))
    };
    let run_as_group = security
        .and_then(|s| s.run_as_group.as_ref())
        .map(|g| u32::try_from(g.value).map_err(|_| format!("invalid group id {}", g.value)))
        .transpose()?;
    let (uid, gid) = if let Some(u) = security.and_then(|s| s.run_as_user.as_ref()) {
        let uid = u32::try_from(u.value).map_err(|_| format!("invalid user id {}", u.value))?;
        lookup_user(&uid.to_string())?
    } else if let Some(name) = security
        .map(|s| s.run_as_username.as_str())
        .filter(|n| !n.is_empty())
    {
        lookup_user(name)?
    } else {
        match image.user.as_deref().filter(|u| !u.is_empty()) {
            None => (0, 0),
            Some(spec) => match spec.split_once(':') {
                Some((user, group)) => (lookup_user(user)?.0, lookup_group(group)?),
                None => lookup_user(spec)?,
            },
        }
    };
    Ok((uid, run_as_group.unwrap_or(gid)))
}

fn passwd_entry(text: &str, pred: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && pred(f))
}

/// Paths masked in unprivileged containers (containerd's defaults).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
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

/// Paths read-only in unprivileged containers (containerd's defaults).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What [`build_spec`] needs besides the CRI config.
#[derive(Debug)]
pub struct SpecInputs<'a> {
    /// The CRI container config.
    pub config: &'a api::ContainerConfig,
    /// The image's runtime defaults.
    pub image: &'a RuntimeConfig,
    /// The sandbox's hostname (for `HOSTNAME`).
    pub hostname: &'a str,
    /// The sandbox's namespace files.
    pub namespaces: &'a skiff_sys::PodNamespacePaths,
    /// The container's cgroup path.
    pub cgroups_path: &'a str,
    /// The container's mounted rootfs (for user lookup).
    pub rootfs: &'a Path,
    /// The host's capability bounding mask.
    pub bounding_mask: u64,
    /// Files the sandbox provides (`/etc/resolv.conf`, `/etc/hostname`):
    /// (container path, host path), bind-mounted unless a CRI mount covers them.
    pub sandbox_files: Vec<(String, String)>,
    /// RLIMIT_NOFILE for the container: raising it above our own hard limit
    /// would need CAP_SYS_RESOURCE, so callers pass [`host_nofile_limit`].
    pub nofile: u64,
}

/// This process's hard RLIMIT_NOFILE, from `/proc/self/limits` (1024 if unreadable).
pub fn host_nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(4)?.parse().ok()
        })
        .unwrap_or(1024)
}

/// The OCI linux.resources object of CRI resources.
pub fn resources_json(r: Option<&api::LinuxContainerResources>) -> Value {
    let mut res = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    let Some(r) = r else { return res };
    let mut cpu = serde_json::Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if r.cpu_quota > 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    if !cpu.is_empty() {
        res["cpu"] = Value::Object(cpu);
    }
    if r.memory_limit_in_bytes > 0 {
        let mut memory = json!({ "limit": r.memory_limit_in_bytes });
        if r.memory_swap_limit_in_bytes > 0 {
            memory["swap"] = json!(r.memory_swap_limit_in_bytes);
        }
        res["memory"] = memory;
    }
    res
}

/// Builds the OCI spec, or says why the config cannot run.
pub fn build_spec(inputs: &SpecInputs<'_>) -> Result<Value, String> {
    let config = inputs.config;
    let linux = config.linux.as_ref();
    let security = linux.and_then(|l| l.security_context.as_ref());
    let privileged = security.is_some_and(|s| s.privileged);
    let args = process_args(config, inputs.image);
    if args.is_empty() {
        return Err("no command specified".to_owned());
    }
    let env = process_env(config, inputs.image, inputs.hostname);
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else {
        inputs
            .image
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned())
    };
    let (uid, gid) = resolve_user(security, inputs.image, inputs.rootfs)?;
    let additional: Vec<i64> = security
        .map(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    let caps = capabilities(
        privileged,
        security.and_then(|s| s.capabilities.as_ref()),
        inputs.bounding_mask,
    );
    let resources = linux.and_then(|l| l.resources.as_ref());
    // A negative score needs CAP_SYS_RESOURCE, which we never have.
    let oom_score_adj = resources.map_or(0, |r| r.oom_score_adj.max(0));

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if privileged { "rw" } else { "ro" }]}),
    ];
    let readonly_root = security.is_some_and(|s| s.readonly_rootfs);
    for (dest, source) in &inputs.sandbox_files {
        if config.mounts.iter().any(|m| &m.container_path == dest) {
            continue;
        }
        mounts.push(json!({
            "destination": dest,
            "type": "bind",
            "source": source,
            "options": ["rbind", "rprivate", if readonly_root { "ro" } else { "rw" }],
        }));
    }
    for m in &config.mounts {
        let mut options = vec!["rbind", if m.readonly { "ro" } else { "rw" }];
        options.push(match api::MountPropagation::try_from(m.propagation) {
            Ok(api::MountPropagation::PropagationHostToContainer) => "rslave",
            Ok(api::MountPropagation::PropagationBidirectional) => "rshared",
            _ => "rprivate",
        });
        mounts.push(json!({
            "destination": m.container_path,
            "type": "bind",
            "source": m.host_path,
            "options": options,
        }));
    }
    let (masked, readonly): (Vec<String>, Vec<String>) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        let pick = |given: Option<&Vec<String>>, default: &[&str]| match given {
            Some(v) if !v.is_empty() => v.clone(),
            _ => default.iter().map(|s| (*s).to_owned()).collect(),
        };
        (
            pick(security.map(|s| &s.masked_paths), MASKED_PATHS),
            pick(security.map(|s| &s.readonly_paths), READONLY_PATHS),
        )
    };
    let ns = inputs.namespaces;
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": config.tty,
            "user": { "uid": uid, "gid": gid, "additionalGids": additional },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": inputs.nofile, "soft": inputs.nofile }],
            "noNewPrivileges": security.is_some_and(|s| s.no_new_privs),
            "oomScoreAdj": oom_score_adj,
        },
        "root": { "path": "rootfs", "readonly": readonly_root },
        "mounts": mounts,
        "linux": {
            "namespaces": [
                { "type": "pid" },
                { "type": "mount" },
                { "type": "network", "path": ns.net },
                { "type": "ipc", "path": ns.ipc },
                { "type": "uts", "path": ns.uts },
            ],
            "cgroupsPath": inputs.cgroups_path,
            "resources": resources_json(resources),
            "maskedPaths": masked,
            "readonlyPaths": readonly,
        },
    }))
}

/// A stop signal name or number (`SIGQUIT`, `QUIT`, `3`) as its number;
/// `None` for names we do not know.
pub fn parse_signal(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let n = match bare {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        "WINCH" => 28,
        "PWR" => 30,
        "RTMIN+3" => 37,
        _ => return None,
    };
    Some(n)
}

/// `/etc/resolv.conf` content from the CRI DNS config.
pub fn resolv_conf(dns: &api::DnsConfig) -> String {
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
