//! Ephemeral containers: upstream runs them through the same config path
//! as a `Container` (their `EphemeralContainerCommon`), then points a
//! container-private PID namespace at the target container's.

use k8s_cri::v1::{ContainerConfig, NamespaceMode};
use k8s_openapi::api::core::v1::{Container, EphemeralContainer};

/// The ephemeral container as the `Container` [`super::container_config`]
/// takes (every shared field; `targetContainerName` is applied afterwards
/// with [`target_pid_namespace`]).
pub fn ephemeral_as_container(ec: &EphemeralContainer) -> Container {
    Container {
        args: ec.args.clone(),
        command: ec.command.clone(),
        env: ec.env.clone(),
        env_from: ec.env_from.clone(),
        image: ec.image.clone(),
        image_pull_policy: ec.image_pull_policy.clone(),
        lifecycle: ec.lifecycle.clone(),
        liveness_probe: ec.liveness_probe.clone(),
        name: ec.name.clone(),
        ports: ec.ports.clone(),
        readiness_probe: ec.readiness_probe.clone(),
        resize_policy: ec.resize_policy.clone(),
        resources: ec.resources.clone(),
        restart_policy: ec.restart_policy.clone(),
        security_context: ec.security_context.clone(),
        startup_probe: ec.startup_probe.clone(),
        stdin: ec.stdin,
        stdin_once: ec.stdin_once,
        termination_message_path: ec.termination_message_path.clone(),
        termination_message_policy: ec.termination_message_policy.clone(),
        tty: ec.tty,
        volume_devices: ec.volume_devices.clone(),
        volume_mounts: ec.volume_mounts.clone(),
        working_dir: ec.working_dir.clone(),
    }
}

/// Joins the PID namespace of the runtime container `target_id` (the
/// ephemeral container's `targetContainerName`), unless the pod already
/// shares one PID namespace (or uses the host's), as upstream's
/// `generateLinuxContainerConfig` does with its `nsTarget`.
pub fn target_pid_namespace(config: &mut ContainerConfig, target_id: &str) {
    let Some(ns) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|sc| sc.namespace_options.as_mut())
    else {
        return;
    };
    if ns.pid == NamespaceMode::Container as i32 {
        ns.pid = NamespaceMode::Target as i32;
        ns.target_id = target_id.to_owned();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::tests::{World, pod};
    use super::super::{ContainerPaths, ImageUser, container_config};
    use super::*;

    fn ephemeral_config(spec: serde_json::Value) -> ContainerConfig {
        let p = pod(json!({"spec": spec}));
        let ec = &p
            .spec
            .as_ref()
            .unwrap()
            .ephemeral_containers
            .as_ref()
            .unwrap()[0];
        let c = ephemeral_as_container(ec);
        let w = World::default();
        container_config(
            &p,
            &c,
            0,
            &w.env(),
            &ContainerPaths::default(),
            "img",
            &ImageUser::default(),
        )
        .unwrap()
    }

    #[test]
    fn ephemeral_container_targets_its_container_pid_namespace() {
        let debug = json!([{"name": "debug", "image": "busybox", "targetContainerName": "c",
                             "command": ["sh"], "tty": true, "stdin": true}]);
        let mut cfg = ephemeral_config(json!({"ephemeralContainers": debug}));
        assert_eq!(cfg.command, ["sh"]);
        assert!(cfg.tty && cfg.stdin);
        assert_eq!(cfg.annotations["io.kubernetes.container.type"], "ephemeral");
        target_pid_namespace(&mut cfg, "runtime-id-of-c");
        let ns = cfg
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(
            (ns.pid, ns.target_id.as_str()),
            (NamespaceMode::Target as i32, "runtime-id-of-c")
        );

        // A shared PID namespace stays shared.
        let mut cfg =
            ephemeral_config(json!({"shareProcessNamespace": true, "ephemeralContainers": debug}));
        target_pid_namespace(&mut cfg, "runtime-id-of-c");
        let ns = cfg
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(
            (ns.pid, ns.target_id.as_str()),
            (NamespaceMode::Pod as i32, "")
        );
    }
}
