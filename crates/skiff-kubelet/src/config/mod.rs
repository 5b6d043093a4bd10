//! TEMPORARY minimal container/sandbox config (replaced by the full module).
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_cri::v1 as api;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub struct PodEnv<'a> {
    pub node_name: &'a str,
    pub host_ip: Option<&'a str>,
    pub pod_ips: &'a [String],
    pub configmaps: &'a BTreeMap<String, ConfigMap>,
    pub secrets: &'a BTreeMap<String, Secret>,
    pub service_env: &'a [EnvVar],
    pub node_allocatable: Option<&'a BTreeMap<String, Quantity>>,
}
pub struct SandboxPaths {
    pub log_directory: PathBuf,
    pub cgroup_parent: String,
}
pub struct ContainerPaths {
    pub volumes: BTreeMap<String, PathBuf>,
    pub etc_hosts: Option<PathBuf>,
    pub termination_log: PathBuf,
}
#[derive(Debug, Default)]
pub struct Referenced {
    pub configmaps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

fn labels(pod: &Pod) -> std::collections::HashMap<String, String> {
    let m = &pod.metadata;
    [
        ("io.kubernetes.pod.name", m.name.clone().unwrap_or_default()),
        ("io.kubernetes.pod.namespace", m.namespace.clone().unwrap_or_default()),
        ("io.kubernetes.pod.uid", m.uid.clone().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    paths: &SandboxPaths,
    _cluster_dns: &[IpAddr],
    _cluster_domain: &str,
) -> Result<api::PodSandboxConfig, ConfigError> {
    let m = &pod.metadata;
    Ok(api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: m.name.clone().unwrap_or_default(),
        log_directory: paths.log_directory.to_string_lossy().into_owned(),
        labels: labels(pod),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: paths.cgroup_parent.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub fn container_config(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
    _env: &PodEnv<'_>,
    paths: &ContainerPaths,
    image_ref: &str,
) -> Result<api::ContainerConfig, ConfigError> {
    let mut l = labels(pod);
    l.insert("io.kubernetes.container.name".into(), container.name.clone());
    Ok(api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: container.name.clone(),
            attempt: restart_count,
        }),
        image: Some(api::ImageSpec {
            image: image_ref.to_owned(),
            ..Default::default()
        }),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        envs: container
            .env
            .iter()
            .flatten()
            .map(|e| api::KeyValue {
                key: e.name.clone(),
                value: e.value.clone().unwrap_or_default(),
            })
            .collect(),
        mounts: container
            .volume_mounts
            .iter()
            .flatten()
            .filter_map(|m| {
                Some(api::Mount {
                    container_path: m.mount_path.clone(),
                    host_path: paths.volumes.get(&m.name)?.to_string_lossy().into_owned(),
                    readonly: m.read_only.unwrap_or(false),
                    ..Default::default()
                })
            })
            .collect(),
        labels: l,
        log_path: container_log_path(&container.name, restart_count),
        ..Default::default()
    })
}

pub fn referenced_objects(_pod: &Pod) -> Referenced {
    Referenced::default()
}

pub fn etc_hosts(_pod: &Pod, _pod_ips: &[String]) -> Option<String> {
    None
}

pub fn container_log_path(container_name: &str, restart_count: u32) -> String {
    format!("{container_name}/{restart_count}.log")
}
