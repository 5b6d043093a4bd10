//! `RunPodSandbox`'s config (upstream's `generatePodSandboxConfig`,
//! `GetPodDNS`, `GeneratePodHostNameAndDomain`, `MakePortMappings`) and the
//! managed `/etc/hosts` content.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_cri::v1::{
    DnsConfig, Int64Value, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, PodSandboxConfig,
    PodSandboxMetadata, PortMapping, Protocol, SecurityProfile, security_profile::ProfileType,
};
use k8s_openapi::api::core::v1::{Container, Pod};

use super::ConfigError;
use super::container::{POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL};
use super::env::parse;
use super::resources::{QUOTA_PERIOD, milli_cpu_to_quota, milli_cpu_to_shares};
use super::security::{
    namespaces_for_pod, selinux, supplemental_groups, supplemental_groups_policy,
};

/// Host-side locations of the sandbox, chosen by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxPaths {
    /// `/var/log/pods/NAMESPACE_NAME_UID`.
    pub log_directory: PathBuf,
    /// The pod's cgroup (e.g. `/kubepods/burstable/pod<uid>`).
    pub cgroup_parent: String,
}

/// Upstream's default `--pod-logs-dir`.
pub const DEFAULT_POD_LOGS_DIR: &str = "/var/log/pods";

/// The pod's log directory under `root` (`BuildPodLogsDirectory`):
/// `ROOT/NAMESPACE_NAME_UID`.
pub fn pod_logs_directory(root: &std::path::Path, pod: &Pod) -> PathBuf {
    let meta = &pod.metadata;
    root.join(format!(
        "{}_{}_{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    ))
}

const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
const HOSTNAME_MAX_LEN: usize = 63;
const FQDN_MAX_LEN: usize = 64;

/// Upstream's `IsDNS1123Label` messages, joined with `;`.
fn dns1123_label_errors(value: &str) -> Option<String> {
    let mut errs = Vec::new();
    if value.len() > HOSTNAME_MAX_LEN {
        errs.push(format!(
            "must be no more than {HOSTNAME_MAX_LEN} characters"
        ));
    }
    let b = value.as_bytes();
    let inner_ok = b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    let ends_ok = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(inner_ok && ends_ok(b.first()) && ends_ok(b.last())) {
        errs.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_owned());
    }
    (!errs.is_empty()).then(|| errs.join(";"))
}

/// The pod's hostname (spec.hostname or its name, cut to 63 characters
/// without a trailing `-` or `.`) and its domain
/// (`SUBDOMAIN.NAMESPACE.svc.CLUSTER_DOMAIN` when spec.subdomain is set).
pub fn pod_hostname_and_domain(
    pod: &Pod,
    cluster_domain: &str,
) -> Result<(String, String), ConfigError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let mut hostname = name.clone();
    if let Some(h) = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
    {
        if let Some(reason) = dns1123_label_errors(h) {
            return Err(ConfigError::InvalidDnsLabel {
                field: "Hostname",
                value: h.to_owned(),
                reason,
            });
        }
        hostname = h.to_owned();
    }
    if hostname.len() > HOSTNAME_MAX_LEN {
        let cut: String = hostname.chars().take(HOSTNAME_MAX_LEN).collect();
        let cut = cut.trim_end_matches(['-', '.']);
        if cut.is_empty() {
            return Err(ConfigError::InvalidHostname {
                pod: name,
                hostname,
            });
        }
        hostname = cut.to_owned();
    }
    let mut domain = String::new();
    if let Some(sub) = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        if let Some(reason) = dns1123_label_errors(sub) {
            return Err(ConfigError::InvalidDnsLabel {
                field: "Subdomain",
                value: sub.to_owned(),
                reason,
            });
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        domain = format!("{sub}.{namespace}.svc.{cluster_domain}");
    }
    Ok((hostname, domain))
}

/// A resolv.conf's nameservers (all), search domains (the last `search`
/// line, trailing dots dropped) and options (the last `options` line), as
/// upstream's `parseResolvConf`.
pub fn parse_resolv_conf(content: &str) -> DnsConfig {
    let mut config = DnsConfig::default();
    for line in content.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => config.servers.extend(fields.next().map(str::to_owned)),
            Some("search") => {
                config.searches = fields
                    .map(|s| s.strip_suffix('.').unwrap_or(s).to_owned())
                    .collect();
            }
            Some("options") => config.options = fields.map(str::to_owned).collect(),
            _ => {}
        }
    }
    config
}

/// Keeps the first of each repeated entry.
fn omit_duplicates(list: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    list.into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

/// Upstream's `formDNSSearchFitsLimits`: at most 32 paths, none longer
/// than a DNS subdomain, the joined line at most 2048 characters.
fn fit_search_limits(mut search: Vec<String>) -> Vec<String> {
    search.truncate(MAX_DNS_SEARCH_PATHS);
    search.retain(|s| s.len() <= DNS1123_SUBDOMAIN_MAX_LENGTH);
    let mut line = search.join(" ").len();
    while line > MAX_DNS_SEARCH_LIST_CHARS {
        match search.pop() {
            Some(last) => line = line.saturating_sub(last.len() + 1),
            None => break,
        }
    }
    search
}

/// The sandbox's DNS config for the pod's dnsPolicy (`GetPodDNS`), with
/// `host` as the node's own resolver config (empty: the runtime then gives
/// the container the host's resolv.conf).
pub fn dns_config(
    pod: &Pod,
    cluster_dns: &[IpAddr],
    cluster_domain: &str,
    host: &DnsConfig,
) -> DnsConfig {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => None,
        "ClusterFirstWithHostNet" => Some(true),
        "Default" => Some(false),
        // ClusterFirst falls back to Default on the host network.
        "ClusterFirst" => Some(!host_network),
        // The API server rejects anything else; upstream then uses cluster DNS.
        _ => Some(true),
    };
    let mut config = match cluster {
        None => DnsConfig::default(),
        // Without a cluster DNS address ClusterFirst falls back to Default.
        Some(true) if !cluster_dns.is_empty() => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            let mut searches = Vec::new();
            if !cluster_domain.is_empty() {
                searches.push(format!("{namespace}.svc.{cluster_domain}"));
                searches.push(format!("svc.{cluster_domain}"));
                searches.push(cluster_domain.to_owned());
            }
            searches.extend(host.searches.iter().cloned());
            DnsConfig {
                servers: cluster_dns.iter().map(ToString::to_string).collect(),
                searches: omit_duplicates(searches),
                options: vec!["ndots:5".to_owned()],
            }
        }
        Some(_) => host.clone(),
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        let mut servers = std::mem::take(&mut config.servers);
        servers.extend(extra.nameservers.iter().flatten().cloned());
        config.servers = omit_duplicates(servers);
        let mut searches = std::mem::take(&mut config.searches);
        searches.extend(extra.searches.iter().flatten().cloned());
        config.searches = omit_duplicates(searches);
        // Pod options override same-named ones; Go's map order is random,
        // ours is by name.
        let mut options: BTreeMap<String, String> = BTreeMap::new();
        for o in &config.options {
            let (k, v) = o.split_once(':').unwrap_or((o.as_str(), ""));
            options.insert(k.to_owned(), v.to_owned());
        }
        for o in extra.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            options.insert(name, o.value.clone().unwrap_or_default());
        }
        config.options = options
            .into_iter()
            .map(|(k, v)| if v.is_empty() { k } else { format!("{k}:{v}") })
            .collect();
    }
    config.servers.truncate(MAX_DNS_NAMESERVERS);
    config.searches = fit_search_limits(std::mem::take(&mut config.searches));
    config
}

fn runtime_protocol(protocol: Option<&str>) -> Protocol {
    match protocol {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// Every declared port of the container, once per name (unnamed ports are
/// keyed by family, protocol, host IP and ports), as `MakePortMappings`.
fn port_mappings(container: &Container) -> Vec<PortMapping> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for p in container.ports.iter().flatten() {
        let host_ip = p.host_ip.clone().unwrap_or_default();
        let family = match host_ip.parse::<IpAddr>() {
            _ if host_ip.is_empty() => "any",
            Ok(IpAddr::V6(_)) => "v6",
            _ => "v4",
        };
        let protocol = p.protocol.as_deref().unwrap_or_default();
        let host_port = p.host_port.unwrap_or(0);
        let name = match p.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => n.to_owned(),
            None => format!(
                "{family}-{protocol}-{host_ip}:{}:{host_port}",
                p.container_port
            ),
        };
        if !names.insert(name) {
            continue;
        }
        out.push(PortMapping {
            protocol: runtime_protocol(p.protocol.as_deref()) as i32,
            container_port: p.container_port,
            host_port,
            host_ip,
        });
    }
    out
}

/// A pod's total request or limit of cpu (millicores) or memory (bytes), as
/// upstream's `PodRequests`/`PodLimits` aggregate: regular containers and
/// sidecars add up, each other init container counts on its own.
fn pod_total(pod: &Pod, limits: bool, name: &str) -> Result<Option<i64>, ConfigError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(None);
    };
    let mut found = false;
    let mut value = |c: &Container| -> Result<i64, ConfigError> {
        let r = c.resources.as_ref();
        let list = if limits {
            r.and_then(|r| r.limits.as_ref())
        } else {
            r.and_then(|r| r.requests.as_ref())
        };
        let Some(q) = list.and_then(|l| l.get(name)) else {
            return Ok(0);
        };
        found = true;
        let q = parse(&q.0)?;
        Ok(if name == "cpu" {
            q.milli_value()
        } else {
            q.value()
        })
    };
    let mut regular = 0i64;
    for c in &spec.containers {
        regular = regular.saturating_add(value(c)?);
    }
    let (mut sidecars, mut init_max) = (0i64, 0i64);
    for c in spec.init_containers.iter().flatten() {
        let v = value(c)?;
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars = sidecars.saturating_add(v);
            init_max = init_max.max(sidecars);
        } else {
            init_max = init_max.max(sidecars.saturating_add(v));
        }
    }
    Ok(found.then(|| regular.saturating_add(sidecars).max(init_max)))
}

fn has_privileged_container(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let privileged = |sc: Option<&k8s_openapi::api::core::v1::SecurityContext>| {
        sc.and_then(|s| s.privileged).unwrap_or(false)
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| privileged(c.security_context.as_ref()))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| privileged(c.security_context.as_ref()))
}

fn linux_config(pod: &Pod, cgroup_parent: &str) -> Result<LinuxPodSandboxConfig, ConfigError> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sysctls: HashMap<String, String> = pod_sc
        .and_then(|sc| sc.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    let security_context = LinuxSandboxSecurityContext {
        // Upstream sets these only with a pod securityContext, which the
        // API server always defaults; a missing one is treated as empty.
        namespace_options: Some(namespaces_for_pod(pod)),
        run_as_user: pod_sc
            .and_then(|sc| sc.run_as_user)
            .map(|value| Int64Value { value }),
        run_as_group: pod_sc
            .and_then(|sc| sc.run_as_group)
            .map(|value| Int64Value { value }),
        supplemental_groups: supplemental_groups(pod),
        supplemental_groups_policy: supplemental_groups_policy(pod)?,
        selinux_options: selinux(pod_sc.and_then(|sc| sc.se_linux_options.as_ref())),
        privileged: has_privileged_container(pod),
        // The sandbox always runs under the runtime's default profile.
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let cpu_request = pod_total(pod, false, "cpu")?;
    let cpu_limit = pod_total(pod, true, "cpu")?.unwrap_or(0);
    let memory_limit = pod_total(pod, true, "memory")?.unwrap_or(0);
    let cpu_shares = match cpu_request {
        None if cpu_limit != 0 => milli_cpu_to_shares(cpu_limit),
        request => milli_cpu_to_shares(request.unwrap_or(0)),
    };
    Ok(LinuxPodSandboxConfig {
        cgroup_parent: cgroup_parent.to_owned(),
        security_context: Some(security_context),
        sysctls,
        resources: Some(k8s_cri::v1::LinuxContainerResources {
            cpu_period: QUOTA_PERIOD,
            cpu_quota: milli_cpu_to_quota(cpu_limit, QUOTA_PERIOD),
            cpu_shares,
            memory_limit_in_bytes: memory_limit,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The `PodSandboxConfig` of the pod's `attempt`-th sandbox, without the
/// node's resolver config (see [`sandbox_config_with_host_dns`]).
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    paths: &SandboxPaths,
    cluster_dns: &[IpAddr],
    cluster_domain: &str,
) -> Result<PodSandboxConfig, ConfigError> {
    sandbox_config_with_host_dns(
        pod,
        attempt,
        paths,
        cluster_dns,
        cluster_domain,
        &DnsConfig::default(),
    )
}

/// [`sandbox_config`] with the node's resolver config (the parsed
/// `/etc/resolv.conf`, see [`parse_resolv_conf`]) as the base, as upstream
/// does: ClusterFirst pods then also search the node's domains, and
/// Default pods get the node's servers spelled out.
pub fn sandbox_config_with_host_dns(
    pod: &Pod,
    attempt: u32,
    paths: &SandboxPaths,
    cluster_dns: &[IpAddr],
    cluster_domain: &str,
    host_dns: &DnsConfig,
) -> Result<PodSandboxConfig, ConfigError> {
    let spec = pod.spec.as_ref().ok_or(ConfigError::NoSpec)?;
    let meta = &pod.metadata;
    let mut labels: HashMap<String, String> = meta
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        (POD_NAME_LABEL, &meta.name),
        (POD_NAMESPACE_LABEL, &meta.namespace),
        (POD_UID_LABEL, &meta.uid),
    ] {
        labels.insert(k.to_owned(), v.clone().unwrap_or_default());
    }
    let annotations: HashMap<String, String> = meta
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut hostname = String::new();
    if !spec.host_network.unwrap_or(false) {
        let (name, domain) = pod_hostname_and_domain(pod, cluster_domain)?;
        hostname = name;
        if !domain.is_empty() && spec.set_hostname_as_fqdn == Some(true) {
            let fqdn = format!("{hostname}.{domain}");
            if fqdn.len() > FQDN_MAX_LEN {
                let len = fqdn.len();
                return Err(ConfigError::FqdnTooLong { fqdn, len });
            }
            hostname = fqdn;
        }
    }
    Ok(PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname,
        log_directory: paths.log_directory.to_string_lossy().into_owned(),
        dns_config: Some(dns_config(pod, cluster_dns, cluster_domain, host_dns)),
        port_mappings: spec.containers.iter().flat_map(port_mappings).collect(),
        labels,
        annotations,
        linux: Some(linux_config(pod, &paths.cgroup_parent)?),
        ..Default::default()
    })
}

/// The managed `/etc/hosts` of a pod with its own network: localhost
/// entries, the pod's IPs under its hostname (and FQDN with a subdomain),
/// then spec.hostAliases. `None` for host-network pods, which get
/// [`host_network_etc_hosts`] instead.
pub fn etc_hosts(pod: &Pod, pod_ips: &[String], cluster_domain: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network.unwrap_or(false) {
        return None;
    }
    // An invalid hostname fails the sandbox first; fall back to the name.
    let (hostname, domain) = pod_hostname_and_domain(pod, cluster_domain)
        .unwrap_or_else(|_| (pod.metadata.name.clone().unwrap_or_default(), String::new()));
    let mut out = String::from("# Kubernetes-managed hosts file.\n");
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        if domain.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
        }
    }
    push_host_aliases(&mut out, pod);
    Some(out)
}

fn push_host_aliases(out: &mut String, pod: &Pod) {
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_deref())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.as_deref().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
}

/// The `/etc/hosts` of a host-network pod: the node's own file
/// (`node_hosts`, read by the caller) under a managed header, then
/// spec.hostAliases.
pub fn host_network_etc_hosts(pod: &Pod, node_hosts: &str) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (host network).\n");
    out.push_str(node_hosts);
    push_host_aliases(&mut out, pod);
    out
}

#[cfg(test)]
#[path = "sandbox_tests.rs"]
mod tests;
