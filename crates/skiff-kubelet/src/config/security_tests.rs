#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]

use serde_json::{Value, json};

use super::super::tests::{first, pod};
use super::*;

fn sc_of(pod_sc: Value, container_sc: Value, image: &ImageUser) -> LinuxContainerSecurityContext {
    let p = pod(json!({"spec": {"securityContext": pod_sc,
        "containers": [{"name": "c", "securityContext": container_sc}]}}));
    container_security_context(&p, first(&p), image).unwrap()
}

#[test]
fn container_overrides_pod_and_image_user_fills_in() {
    let image = ImageUser::from_image_status(Some(1000), "");
    // (pod sc, container sc, uid, gid, username)
    let named = ImageUser::from_image_status(None, "nobody");
    let root = ImageUser::default();
    let cases: Vec<(Value, Value, &ImageUser, Option<i64>, Option<i64>, &str)> = vec![
        (json!({}), json!({}), &image, Some(1000), None, ""),
        (
            json!({"runAsUser": 5, "runAsGroup": 6}),
            json!({}),
            &image,
            Some(5),
            Some(6),
            "",
        ),
        (
            json!({"runAsUser": 5, "runAsGroup": 6}),
            json!({"runAsUser": 7}),
            &image,
            Some(7),
            Some(6),
            "",
        ),
        (json!({}), json!({}), &named, None, None, "nobody"),
        (
            json!({"runAsUser": 0}),
            json!({}),
            &named,
            Some(0),
            None,
            "",
        ),
        // An image without a user runs as root.
        (json!({}), json!({}), &root, Some(0), None, ""),
    ];
    for (pod_sc, c_sc, img, uid, gid, name) in cases {
        let sc = sc_of(pod_sc.clone(), c_sc.clone(), img);
        assert_eq!(sc.run_as_user.map(|v| v.value), uid, "{pod_sc} {c_sc}");
        assert_eq!(sc.run_as_group.map(|v| v.value), gid, "{pod_sc} {c_sc}");
        assert_eq!(sc.run_as_username, name, "{pod_sc} {c_sc}");
    }
}

#[test]
fn flags_capabilities_and_groups() {
    let sc = sc_of(
        json!({"fsGroup": 2000, "supplementalGroups": [3000, 3001]}),
        json!({"privileged": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
               "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}),
        &ImageUser::default(),
    );
    assert!(sc.privileged && sc.readonly_rootfs && sc.no_new_privs);
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.add_capabilities, ["NET_ADMIN"]);
    assert_eq!(caps.drop_capabilities, ["ALL"]);
    assert_eq!(sc.supplemental_groups, [2000, 3000, 3001]);

    let plain = sc_of(json!({}), json!({}), &ImageUser::default());
    assert!(!plain.privileged && !plain.readonly_rootfs && !plain.no_new_privs);
    assert!(plain.capabilities.is_none());
    assert!(plain.supplemental_groups.is_empty());
    // Only an explicit false sets no_new_privs.
    assert!(
        !sc_of(
            json!({}),
            json!({"allowPrivilegeEscalation": true}),
            &ImageUser::default()
        )
        .no_new_privs
    );
}

#[test]
fn masked_and_readonly_paths_unless_unmasked() {
    let sc = sc_of(json!({}), json!({}), &ImageUser::default());
    assert_eq!(sc.masked_paths, DEFAULT_MASKED_PATHS);
    assert_eq!(sc.readonly_paths, DEFAULT_READONLY_PATHS);
    let sc = sc_of(
        json!({}),
        json!({"procMount": "Default"}),
        &ImageUser::default(),
    );
    assert_eq!(sc.masked_paths.len(), DEFAULT_MASKED_PATHS.len());
    let sc = sc_of(
        json!({}),
        json!({"procMount": "Unmasked"}),
        &ImageUser::default(),
    );
    assert!(sc.masked_paths.is_empty() && sc.readonly_paths.is_empty());
}

#[test]
fn seccomp_profiles() {
    let cases = [
        (json!({}), json!({}), ProfileType::Unconfined, ""),
        (
            json!({"seccompProfile": {"type": "RuntimeDefault"}}),
            json!({}),
            ProfileType::RuntimeDefault,
            "",
        ),
        (
            json!({"seccompProfile": {"type": "RuntimeDefault"}}),
            json!({"seccompProfile": {"type": "Unconfined"}}),
            ProfileType::Unconfined,
            "",
        ),
        (
            json!({}),
            json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}),
            ProfileType::Localhost,
            "/var/lib/kubelet/seccomp/p.json",
        ),
    ];
    for (pod_sc, c_sc, ty, reference) in cases {
        let s = sc_of(pod_sc, c_sc, &ImageUser::default()).seccomp.unwrap();
        assert_eq!(
            (s.profile_type, s.localhost_ref.as_str()),
            (ty as i32, reference)
        );
    }
}

#[test]
fn namespaces() {
    let node = NamespaceMode::Node as i32;
    let pod_ns = NamespaceMode::Pod as i32;
    let container = NamespaceMode::Container as i32;
    let cases = [
        (json!({}), (pod_ns, container, pod_ns)),
        (json!({"hostNetwork": true}), (node, container, pod_ns)),
        (
            json!({"hostPID": true, "hostIPC": true}),
            (pod_ns, node, node),
        ),
        (
            json!({"shareProcessNamespace": true}),
            (pod_ns, pod_ns, pod_ns),
        ),
        (
            json!({"shareProcessNamespace": true, "hostPID": true}),
            (pod_ns, node, pod_ns),
        ),
    ];
    for (spec, (net, pid, ipc)) in cases {
        let p = pod(json!({"spec": spec.clone()}));
        let ns = namespaces_for_pod(&p);
        assert_eq!((ns.network, ns.pid, ns.ipc), (net, pid, ipc), "{spec}");
        let sc = container_security_context(&p, first(&p), &ImageUser::default()).unwrap();
        assert_eq!(sc.namespace_options, Some(ns));
    }
}

#[test]
fn run_as_non_root() {
    let uid = |u| ImageUser::from_image_status(Some(u), "");
    let cases: Vec<(Value, Value, ImageUser, Option<&str>)> = vec![
        (json!({}), json!({}), uid(0), None),
        (json!({"runAsNonRoot": false}), json!({}), uid(0), None),
        (json!({"runAsNonRoot": true}), json!({}), uid(1000), None),
        (
            json!({"runAsNonRoot": true}),
            json!({}),
            uid(0),
            Some(
                "container has runAsNonRoot and image will run as root (pod: \"p_ns(u-1)\", container: c)",
            ),
        ),
        (
            json!({"runAsNonRoot": true}),
            json!({}),
            ImageUser::default(),
            Some(
                "container has runAsNonRoot and image will run as root (pod: \"p_ns(u-1)\", container: c)",
            ),
        ),
        (
            json!({}),
            json!({"runAsNonRoot": true, "runAsUser": 0}),
            uid(1000),
            Some("container's runAsUser breaks non-root policy (pod: \"p_ns(u-1)\", container: c)"),
        ),
        (
            json!({"runAsNonRoot": true, "runAsUser": 1000}),
            json!({}),
            uid(0),
            None,
        ),
        (
            json!({"runAsNonRoot": true}),
            json!({}),
            ImageUser::from_image_status(None, "app"),
            Some(
                "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: \"p_ns(u-1)\", container: c)",
            ),
        ),
        (
            json!({"runAsNonRoot": true}),
            json!({}),
            uid(-1),
            Some(
                "container has runAsNonRoot and image has an invalid user id (-1). (Must be 1-(2147483647)): must be between 0 and 2147483647, inclusive (pod: \"p_ns(u-1)\", container: c)",
            ),
        ),
        (
            json!({"runAsNonRoot": true}),
            json!({}),
            uid(1 << 31),
            Some(
                "container has runAsNonRoot and image has an invalid user id (2147483648). (Must be 1-(2147483647)): must be between 0 and 2147483647, inclusive (pod: \"p_ns(u-1)\", container: c)",
            ),
        ),
        (
            json!({"runAsNonRoot": true}),
            json!({}),
            uid(i64::from(i32::MAX)),
            None,
        ),
        // The container can switch the pod's policy off.
        (
            json!({"runAsNonRoot": true}),
            json!({"runAsNonRoot": false}),
            uid(0),
            None,
        ),
    ];
    for (pod_sc, c_sc, image, want) in cases {
        let p = pod(json!({"spec": {"securityContext": pod_sc.clone(),
            "containers": [{"name": "c", "securityContext": c_sc.clone()}]}}));
        let got = verify_run_as_non_root(&p, first(&p), &image)
            .err()
            .map(|e| e.to_string());
        assert_eq!(got.as_deref(), want, "{pod_sc} {c_sc}");
    }
}

#[test]
fn supplemental_groups_policies() {
    let cases = [
        (json!({}), Ok(SupplementalGroupsPolicy::Merge as i32)),
        (
            json!({"supplementalGroupsPolicy": "Merge"}),
            Ok(SupplementalGroupsPolicy::Merge as i32),
        ),
        (
            json!({"supplementalGroupsPolicy": "Strict"}),
            Ok(SupplementalGroupsPolicy::Strict as i32),
        ),
        (
            json!({"supplementalGroupsPolicy": "Loose"}),
            Err("unsupported supplementalGroupsPolicy: Loose".to_owned()),
        ),
    ];
    for (pod_sc, want) in cases {
        let p = pod(json!({"spec": {"securityContext": pod_sc}}));
        let got = container_security_context(&p, first(&p), &ImageUser::default())
            .map(|sc| sc.supplemental_groups_policy)
            .map_err(|e| e.to_string());
        assert_eq!(got, want);
    }
}

#[test]
fn selinux_and_apparmor() {
    let sc = sc_of(
        json!({"seLinuxOptions": {"level": "s0:c1,c2"}, "appArmorProfile": {"type": "RuntimeDefault"}}),
        json!({}),
        &ImageUser::default(),
    );
    let se = sc.selinux_options.unwrap();
    assert_eq!((se.level.as_str(), se.r#type.as_str()), ("s0:c1,c2", ""));
    assert_eq!(
        sc.apparmor.unwrap().profile_type,
        ProfileType::RuntimeDefault as i32
    );

    let plain = sc_of(json!({}), json!({}), &ImageUser::default());
    assert!(plain.selinux_options.is_none() && plain.apparmor.is_none());

    let local = sc_of(
        json!({"appArmorProfile": {"type": "RuntimeDefault"}}),
        json!({"appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-deny-write"}}),
        &ImageUser::default(),
    )
    .apparmor
    .unwrap();
    assert_eq!(
        (local.profile_type, local.localhost_ref.as_str()),
        (ProfileType::Localhost as i32, "k8s-deny-write")
    );

    let cases = [
        (
            json!({"type": "Localhost"}),
            "missing localhost apparmor profile name",
        ),
        (
            json!({"type": "Strict"}),
            "unknown apparmor profile type: \"Strict\"",
        ),
    ];
    for (profile, want) in cases {
        let p = pod(
            json!({"spec": {"containers": [{"name": "c", "securityContext": {"appArmorProfile": profile}}]}}),
        );
        let err = container_security_context(&p, first(&p), &ImageUser::default()).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}
