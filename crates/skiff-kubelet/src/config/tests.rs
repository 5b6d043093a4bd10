#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]
//! Fixtures shared by the config tests, and tests of the whole container
//! config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_cri::v1::MountPropagation;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use serde_json::{Value, json};

use super::*;

/// A pod from JSON; `spec.containers[0]` is the container under test.
pub(super) fn pod(v: Value) -> Pod {
    let mut base = json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    });
    merge(&mut base, v);
    serde_json::from_value(base).unwrap()
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

pub(super) fn first(pod: &Pod) -> &Container {
    &pod.spec.as_ref().unwrap().containers[0]
}

/// Owned storage behind a [`PodEnv`].
#[derive(Default)]
pub(super) struct World {
    pub configmaps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    pub service_env: Vec<EnvVar>,
    pub pod_ips: Vec<String>,
    pub allocatable:
        Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
}

impl World {
    pub fn configmap(mut self, name: &str, data: Value) -> Self {
        let cm = serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap();
        self.configmaps.insert(name.to_owned(), cm);
        self
    }
    /// `data` holds plain strings; they are base64-encoded as the API does.
    pub fn secret(mut self, name: &str, data: &[(&str, &str)]) -> Self {
        let data: BTreeMap<String, k8s_openapi::ByteString> = data
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    k8s_openapi::ByteString(v.as_bytes().to_vec()),
                )
            })
            .collect();
        let s = Secret {
            data: Some(data),
            ..Default::default()
        };
        self.secrets.insert(name.to_owned(), s);
        self
    }
    pub fn env(&self) -> PodEnv<'_> {
        PodEnv {
            node_name: "node-1",
            host_ip: Some("192.168.1.10"),
            pod_ips: &self.pod_ips,
            configmaps: &self.configmaps,
            secrets: &self.secrets,
            service_env: &self.service_env,
            node_allocatable: self.allocatable.as_ref(),
            memory_capacity: 8 << 30,
        }
    }
}

fn paths() -> ContainerPaths {
    ContainerPaths {
        volumes: [(
            "data".to_owned(),
            PathBuf::from("/var/lib/kubelet/pods/u-1/volumes/data"),
        )]
        .into_iter()
        .collect(),
        etc_hosts: Some(PathBuf::from("/var/lib/kubelet/pods/u-1/etc-hosts")),
        termination_log: PathBuf::from("/var/lib/kubelet/pods/u-1/containers/c/abcd"),
    }
}

#[test]
fn container_log_path_is_name_and_restart_count() {
    assert_eq!(container_log_path("app", 0), "app/0.log");
    assert_eq!(container_log_path("side-car", 12), "side-car/12.log");
}

#[test]
fn referenced_objects_from_env_and_env_from_of_all_containers() {
    let p = pod(json!({"spec": {
        "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s-init"}}]}],
        "containers": [{"name": "c", "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-a", "key": "k"}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s-b", "key": "k", "optional": true}}},
            {"name": "C", "value": "plain"},
            {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ], "envFrom": [{"configMapRef": {"name": "cm-from"}}]}],
        "ephemeralContainers": [{"name": "e", "envFrom": [{"configMapRef": {"name": "cm-eph"}}]}]
    }}));
    let r = referenced_objects(&p);
    let names = |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    assert_eq!(names(&r.configmaps), ["cm-a", "cm-eph", "cm-from"]);
    assert_eq!(names(&r.secrets), ["s-b", "s-init"]);
}

#[test]
fn container_config_carries_metadata_labels_annotations_and_io_flags() {
    let p = pod(json!({
        "metadata": {"deletionGracePeriodSeconds": 30},
        "spec": {"terminationGracePeriodSeconds": 45, "containers": [{
        "name": "c", "image": "busybox:1.36", "workingDir": "/work",
        "tty": true, "stdin": true, "stdinOnce": true,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}}
    }]}}));
    let w = World::default();
    let cfg = container_config(
        &p,
        first(&p),
        3,
        &w.env(),
        &paths(),
        "sha256:abc",
        &ImageUser::from_image_status(Some(1000), ""),
    )
    .unwrap();
    let md = cfg.metadata.as_ref().unwrap();
    assert_eq!((md.name.as_str(), md.attempt), ("c", 3));
    let image = cfg.image.as_ref().unwrap();
    assert_eq!(image.image, "sha256:abc");
    assert_eq!(image.user_specified_image, "busybox:1.36");
    assert_eq!(cfg.working_dir, "/work");
    assert!(cfg.tty && cfg.stdin && cfg.stdin_once);
    assert_eq!(cfg.log_path, "c/3.log");
    assert_eq!(cfg.labels["io.kubernetes.pod.name"], "p");
    assert_eq!(cfg.labels["io.kubernetes.pod.namespace"], "ns");
    assert_eq!(cfg.labels["io.kubernetes.pod.uid"], "u-1");
    assert_eq!(cfg.labels["io.kubernetes.container.name"], "c");
    assert_eq!(cfg.labels.len(), 4);
    let a = &cfg.annotations;
    assert_eq!(a["io.kubernetes.container.restartCount"], "3");
    assert_eq!(
        a["io.kubernetes.container.terminationMessagePath"],
        "/dev/termination-log"
    );
    assert_eq!(
        a["io.kubernetes.container.terminationMessagePolicy"],
        "File"
    );
    assert_eq!(a["io.kubernetes.pod.deletionGracePeriod"], "30");
    assert_eq!(a["io.kubernetes.pod.terminationGracePeriod"], "45");
    assert_eq!(a["io.kubernetes.container.type"], "container");
    let pre_stop: Value =
        serde_json::from_str(&a["io.kubernetes.container.preStopHandler"]).unwrap();
    assert_eq!(pre_stop, json!({"exec": {"command": ["sleep", "1"]}}));
    let ports: Value = serde_json::from_str(&a["io.kubernetes.container.ports"]).unwrap();
    assert_eq!(ports, json!([{"containerPort": 80, "protocol": "TCP"}]));
    // The hash follows name and image only.
    let hash = &a["io.kubernetes.container.hash"];
    assert!(u64::from_str_radix(hash, 16).is_ok(), "{hash}");
    let mut other = first(&p).clone();
    other.working_dir = Some("/elsewhere".into());
    assert_eq!(format!("{:x}", container::container_hash(&other)), *hash);
    other.image = Some("busybox:1.37".into());
    assert_ne!(format!("{:x}", container::container_hash(&other)), *hash);
}

#[test]
fn init_container_is_typed_init_and_no_optional_annotations() {
    let p = pod(json!({"spec": {"initContainers": [{"name": "i", "image": "busybox"}]}}));
    let init = &p.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
    let w = World::default();
    let cfg = container_config(
        &p,
        init,
        0,
        &w.env(),
        &paths(),
        "img",
        &ImageUser::default(),
    )
    .unwrap();
    assert_eq!(cfg.annotations["io.kubernetes.container.type"], "init");
    for absent in [
        "io.kubernetes.pod.deletionGracePeriod",
        "io.kubernetes.pod.terminationGracePeriod",
        "io.kubernetes.container.preStopHandler",
        "io.kubernetes.container.ports",
    ] {
        assert!(!cfg.annotations.contains_key(absent), "{absent}");
    }
}

#[test]
fn command_and_args_expand_from_the_final_environment() {
    let cases: &[(Value, Vec<&str>, Vec<&str>)] = &[
        (json!({}), vec![], vec![]),
        (
            json!({"command": ["/bin/$(CMD)"], "args": ["$(A)-$(B)", "$$(A)", "$(NOPE)", "$(SVC_HOST)"]}),
            vec!["/bin/sh"],
            vec!["1-1-1-1-2", "$(A)", "$(NOPE)", "10.43.0.5"],
        ),
        (json!({"args": ["x $(A)"]}), vec![], vec!["x 1-1"]),
    ];
    for (extra, command, args) in cases {
        let mut c = json!({"name": "c", "image": "busybox", "env": [
            {"name": "CMD", "value": "sh"},
            {"name": "A", "value": "1"},
            {"name": "A", "value": "$(A)-1"},
            {"name": "B", "value": "$(A)-2"}
        ]});
        merge(&mut c, extra.clone());
        let p = pod(json!({"spec": {"containers": [c]}}));
        let mut w = World::default();
        w.service_env = vec![EnvVar {
            name: "SVC_HOST".into(),
            value: Some("10.43.0.5".into()),
            value_from: None,
        }];
        let cfg = container_config(
            &p,
            first(&p),
            0,
            &w.env(),
            &paths(),
            "img",
            &ImageUser::default(),
        )
        .unwrap();
        assert_eq!(cfg.command, *command, "{extra}");
        assert_eq!(cfg.args, *args, "{extra}");
    }
}

#[test]
fn mounts_volume_subpath_etc_hosts_and_termination_log() {
    let p = pod(
        json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}], "containers": [{
            "name": "c", "image": "busybox",
            "env": [{"name": "DIR", "value": "logs"}],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "data", "mountPath": "/sub", "subPath": "a/b", "readOnly": true},
                {"name": "data", "mountPath": "/expr", "subPathExpr": "$(DIR)/x", "mountPropagation": "HostToContainer"}
            ]
        }]}}),
    );
    let mut w = World::default();
    w.pod_ips = vec!["10.42.0.7".into()];
    let cfg = container_config(
        &p,
        first(&p),
        0,
        &w.env(),
        &paths(),
        "img",
        &ImageUser::default(),
    )
    .unwrap();
    let got: Vec<(&str, &str, bool, i32)> = cfg
        .mounts
        .iter()
        .map(|m| {
            (
                m.container_path.as_str(),
                m.host_path.as_str(),
                m.readonly,
                m.propagation,
            )
        })
        .collect();
    let private = MountPropagation::PropagationPrivate as i32;
    assert_eq!(
        got,
        vec![
            (
                "/data",
                "/var/lib/kubelet/pods/u-1/volumes/data",
                false,
                private
            ),
            (
                "/sub",
                "/var/lib/kubelet/pods/u-1/volumes/data/a/b",
                true,
                private
            ),
            (
                "/expr",
                "/var/lib/kubelet/pods/u-1/volumes/data/logs/x",
                false,
                MountPropagation::PropagationHostToContainer as i32
            ),
            (
                "/etc/hosts",
                "/var/lib/kubelet/pods/u-1/etc-hosts",
                false,
                private
            ),
            (
                "/dev/termination-log",
                "/var/lib/kubelet/pods/u-1/containers/c/abcd",
                false,
                private
            ),
        ]
    );
}

#[test]
fn etc_hosts_mount_needs_an_ip_and_no_own_mount() {
    let mount_paths = |p: &Pod, ips: Vec<String>, paths: &ContainerPaths| {
        let mut w = World::default();
        w.pod_ips = ips;
        let cfg = container_config(
            p,
            first(p),
            0,
            &w.env(),
            paths,
            "img",
            &ImageUser::default(),
        )
        .unwrap();
        cfg.mounts
            .into_iter()
            .map(|m| m.container_path)
            .collect::<Vec<_>>()
    };
    let plain = pod(json!({}));
    let ip = || vec!["10.42.0.7".to_owned()];
    assert_eq!(
        mount_paths(&plain, ip(), &paths()),
        ["/etc/hosts", "/dev/termination-log"]
    );
    // No sandbox IP yet: no hosts file.
    assert_eq!(
        mount_paths(&plain, vec![], &paths()),
        ["/dev/termination-log"]
    );
    // Host network: mounted even before any pod IP is known.
    let host = pod(json!({"spec": {"hostNetwork": true}}));
    assert_eq!(
        mount_paths(&host, vec![], &paths()),
        ["/etc/hosts", "/dev/termination-log"]
    );
    // No file written: none.
    let mut no_hosts = paths();
    no_hosts.etc_hosts = None;
    assert_eq!(
        mount_paths(&plain, ip(), &no_hosts),
        ["/dev/termination-log"]
    );
    // The container mounts its own /etc/hosts; a custom termination path.
    let own = pod(
        json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}], "containers": [{
            "name": "c", "image": "busybox", "terminationMessagePath": "/tmp/msg",
            "volumeMounts": [{"name": "data", "mountPath": "/etc/hosts", "subPath": "hosts"}]
        }]}}),
    );
    assert_eq!(
        mount_paths(&own, ip(), &paths()),
        ["/etc/hosts", "/tmp/msg"]
    );
    // An empty terminationMessagePath means no termination mount.
    let none = pod(json!({"spec": {"containers": [{"name": "c", "terminationMessagePath": ""}]}}));
    assert_eq!(mount_paths(&none, vec![], &paths()), Vec::<String>::new());
}

#[test]
fn secret_and_configmap_volumes_mount_read_only() {
    let p = pod(json!({"spec": {
        "volumes": [{"name": "data", "secret": {"secretName": "s"}}],
        "containers": [{"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/s"}]}]
    }}));
    let w = World::default();
    let cfg = container_config(
        &p,
        first(&p),
        0,
        &w.env(),
        &paths(),
        "img",
        &ImageUser::default(),
    )
    .unwrap();
    assert!(cfg.mounts[0].readonly);
}

#[test]
fn mount_errors_use_upstream_messages() {
    let cases = [
        (
            json!({"name": "missing", "mountPath": "/m"}),
            "cannot find volume \"missing\" to mount into container \"c\"",
        ),
        (
            json!({"name": "data", "mountPath": "/m", "subPath": "/abs"}),
            "error SubPath `/abs` must not be an absolute path",
        ),
        (
            json!({"name": "data", "mountPath": "/m", "subPath": "a/../../b"}),
            "unable to provision SubPath `a/../../b`: must not contain '..'",
        ),
        (
            json!({"name": "data", "mountPath": "/m", "subPath": ".."}),
            "unable to provision SubPath `..`: must not contain '..'",
        ),
        (
            json!({"name": "data", "mountPath": "/m", "subPathExpr": "$(NOPE)/$(EMPTY)/$(A)"}),
            "missing value for EMPTY, NOPE",
        ),
        (
            json!({"name": "data", "mountPath": "/m", "mountPropagation": "Sideways"}),
            "invalid MountPropagation mode: \"Sideways\"",
        ),
    ];
    for (vm, want) in cases {
        let p = pod(json!({"spec": {"containers": [{"name": "c", "env": [
            {"name": "A", "value": "a"}, {"name": "EMPTY", "value": ""}
        ], "volumeMounts": [vm]}]}}));
        let w = World::default();
        let err = container_config(
            &p,
            first(&p),
            0,
            &w.env(),
            &paths(),
            "img",
            &ImageUser::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    // `..` inside a name is fine.
    let p = pod(
        json!({"spec": {"containers": [{"name": "c", "volumeMounts": [
            {"name": "data", "mountPath": "/m", "subPath": "a..b/c"}
        ]}]}}),
    );
    let w = World::default();
    let cfg = container_config(
        &p,
        first(&p),
        0,
        &w.env(),
        &paths(),
        "img",
        &ImageUser::default(),
    )
    .unwrap();
    assert!(cfg.mounts[0].host_path.ends_with("data/a..b/c"));
}

#[test]
fn env_errors_become_config_errors() {
    let p = pod(
        json!({"spec": {"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}]}]}}),
    );
    let w = World::default().configmap("cm", json!({"GOOD": "1", "1bad": "2"}));
    let cfg = container_config(
        &p,
        first(&p),
        0,
        &w.env(),
        &paths(),
        "img",
        &ImageUser::default(),
    )
    .unwrap();
    assert_eq!(
        cfg.envs.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["1bad", "GOOD"]
    );
    let w = World::default();
    let err = container_config(
        &p,
        first(&p),
        0,
        &w.env(),
        &paths(),
        "img",
        &ImageUser::default(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "configmap \"cm\" not found");
}
