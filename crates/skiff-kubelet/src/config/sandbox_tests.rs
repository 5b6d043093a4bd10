#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]

use std::net::IpAddr;

use serde_json::{Value, json};

use super::super::tests::pod;
use super::*;

fn paths() -> SandboxPaths {
    SandboxPaths {
        log_directory: PathBuf::from("/var/log/pods/ns_p_u-1"),
        cgroup_parent: "/kubepods/besteffort/podu-1".into(),
    }
}

fn dns() -> Vec<IpAddr> {
    vec!["10.43.0.10".parse().unwrap()]
}

fn sandbox(spec: Value) -> PodSandboxConfig {
    sandbox_config(
        &pod(json!({"spec": spec})),
        1,
        &paths(),
        &dns(),
        "cluster.local",
    )
    .unwrap()
}

#[test]
fn pod_logs_directory_is_namespace_name_uid() {
    let p = pod(json!({"metadata": {"name": "web-0", "namespace": "prod", "uid": "1234-ab"}}));
    assert_eq!(
        pod_logs_directory(std::path::Path::new(DEFAULT_POD_LOGS_DIR), &p),
        PathBuf::from("/var/log/pods/prod_web-0_1234-ab")
    );
}

#[test]
fn metadata_labels_annotations_and_paths() {
    let p = pod(json!({"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}}}));
    let cfg = sandbox_config(&p, 2, &paths(), &dns(), "cluster.local").unwrap();
    let md = cfg.metadata.unwrap();
    assert_eq!(
        (
            md.name.as_str(),
            md.namespace.as_str(),
            md.uid.as_str(),
            md.attempt
        ),
        ("p", "ns", "u-1", 2)
    );
    assert_eq!(cfg.labels.len(), 4);
    assert_eq!(cfg.labels["app"], "web");
    assert_eq!(cfg.labels["io.kubernetes.pod.name"], "p");
    assert_eq!(cfg.labels["io.kubernetes.pod.namespace"], "ns");
    assert_eq!(cfg.labels["io.kubernetes.pod.uid"], "u-1");
    assert_eq!(cfg.annotations.len(), 1);
    assert_eq!(cfg.annotations["a"], "b");
    assert_eq!(cfg.log_directory, "/var/log/pods/ns_p_u-1");
    assert_eq!(
        cfg.linux.unwrap().cgroup_parent,
        "/kubepods/besteffort/podu-1"
    );
}

#[test]
fn hostnames() {
    let long = "a".repeat(70);
    let dashed = format!("{}-.b", "a".repeat(61));
    let cases: Vec<(Value, Value, Result<&str, &str>)> = vec![
        (json!({}), json!({}), Ok("p")),
        (json!({}), json!({"hostname": "web-0"}), Ok("web-0")),
        (json!({"name": long}), json!({}), Ok(&long[..63])),
        (json!({"name": dashed}), json!({}), Ok(&dashed[..61])),
        (json!({}), json!({"hostNetwork": true}), Ok("")),
        (
            json!({}),
            json!({"hostname": "web-0", "subdomain": "svc", "setHostnameAsFQDN": true}),
            Ok("web-0.svc.ns.svc.cluster.local"),
        ),
        (
            json!({}),
            json!({"hostname": "web-0", "subdomain": "svc"}),
            Ok("web-0"),
        ),
        (
            json!({}),
            json!({"hostname": "Bad_Name"}),
            Err(
                "pod Hostname \"Bad_Name\" is not a valid DNS label: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ),
        ),
    ];
    for (meta, spec, want) in cases {
        let p = pod(json!({"metadata": meta, "spec": spec}));
        let got = sandbox_config(&p, 0, &paths(), &dns(), "cluster.local")
            .map(|c| c.hostname)
            .map_err(|e| e.to_string());
        match want {
            Ok(h) => assert_eq!(got.unwrap(), h),
            Err(msg) => assert_eq!(got.unwrap_err(), msg),
        }
    }
    // A 64-character FQDN fits the kernel's nodename; 65 does not.
    let p = pod(
        json!({"spec": {"hostname": "a".repeat(41), "subdomain": "s", "setHostnameAsFQDN": true}}),
    );
    let cfg = sandbox_config(&p, 0, &paths(), &dns(), "cluster.local").unwrap();
    assert_eq!(cfg.hostname.len(), 64);
    let p = pod(
        json!({"spec": {"hostname": "a".repeat(42), "subdomain": "s", "setHostnameAsFQDN": true}}),
    );
    let err = sandbox_config(&p, 0, &paths(), &dns(), "cluster.local").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "failed to construct FQDN from pod hostname and cluster domain, FQDN {}.s.ns.svc.cluster.local is too long (64 characters is the max, 65 characters requested)",
            "a".repeat(42)
        )
    );
}

#[test]
fn dns_policies() {
    let cluster = || DnsConfig {
        servers: vec!["10.43.0.10".into()],
        searches: vec![
            "ns.svc.cluster.local".into(),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ],
        options: vec!["ndots:5".into()],
    };
    let host = DnsConfig::default();
    let cases = [
        (json!({}), cluster()),
        (json!({"dnsPolicy": "ClusterFirst"}), cluster()),
        (
            json!({"dnsPolicy": "ClusterFirst", "hostNetwork": true}),
            host.clone(),
        ),
        (
            json!({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true}),
            cluster(),
        ),
        (json!({"dnsPolicy": "Default"}), host.clone()),
        (json!({"dnsPolicy": "None"}), DnsConfig::default()),
        (
            json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["x.test"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}),
            DnsConfig {
                servers: vec!["1.1.1.1".into()],
                searches: vec!["x.test".into()],
                options: vec!["edns0".into(), "ndots:2".into()],
            },
        ),
        (
            json!({"dnsConfig": {"nameservers": ["10.43.0.10", "9.9.9.9"], "searches": ["svc.cluster.local", "extra.test"], "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}]}}),
            DnsConfig {
                servers: vec!["10.43.0.10".into(), "9.9.9.9".into()],
                searches: vec![
                    "ns.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                    "cluster.local".into(),
                    "extra.test".into(),
                ],
                options: vec!["ndots:1".into(), "single-request".into()],
            },
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(sandbox(spec.clone()).dns_config.unwrap(), want, "{spec}");
    }
    // No cluster DNS address: ClusterFirst falls back to the host's.
    let p = pod(json!({}));
    assert_eq!(dns_config(&p, &[], "cluster.local", &host), host);
    // Host searches follow the cluster ones; the host's servers give way.
    let node = DnsConfig {
        servers: vec!["192.168.1.1".into()],
        searches: vec!["corp.test".into()],
        options: vec!["rotate".into()],
    };
    let got = dns_config(&p, &dns(), "cluster.local", &node);
    assert_eq!(got.searches.last().map(String::as_str), Some("corp.test"));
    assert_eq!(got.servers, ["10.43.0.10"]);
    let p = pod(json!({"spec": {"dnsPolicy": "Default"}}));
    assert_eq!(dns_config(&p, &dns(), "cluster.local", &node), node);
}

#[test]
fn resolv_conf_parsing_and_host_dns_in_the_sandbox() {
    let conf = "# generated\nnameserver 192.168.1.1\nsearch old.test\nnameserver 192.168.1.2\n  search corp.test. lab.test\noptions ndots:2 rotate\nnameserver\n";
    let host = parse_resolv_conf(conf);
    assert_eq!(host.servers, ["192.168.1.1", "192.168.1.2"]);
    assert_eq!(host.searches, ["corp.test", "lab.test"]);
    assert_eq!(host.options, ["ndots:2", "rotate"]);
    assert_eq!(parse_resolv_conf(""), DnsConfig::default());

    let p = pod(json!({}));
    let cfg =
        sandbox_config_with_host_dns(&p, 0, &paths(), &dns(), "cluster.local", &host).unwrap();
    let got = cfg.dns_config.unwrap();
    assert_eq!(got.servers, ["10.43.0.10"]);
    assert_eq!(
        got.searches,
        [
            "ns.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "corp.test",
            "lab.test"
        ]
    );
    assert_eq!(got.options, ["ndots:5"]);
    let p = pod(json!({"spec": {"dnsPolicy": "Default"}}));
    let cfg =
        sandbox_config_with_host_dns(&p, 0, &paths(), &dns(), "cluster.local", &host).unwrap();
    assert_eq!(cfg.dns_config.unwrap(), host);
}

#[test]
fn dns_limits() {
    let servers: Vec<String> = (1..=5).map(|i| format!("10.0.0.{i}")).collect();
    let searches: Vec<String> = (0..40).map(|i| format!("d{i}.test")).collect();
    let got = sandbox(
        json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": servers, "searches": searches}}),
    )
    .dns_config
    .unwrap();
    assert_eq!(got.servers.len(), 3);
    assert_eq!(got.searches.len(), 32);
    // Overlong single entries are dropped; the line is cut to 2048 characters.
    let long: Vec<String> = (0..10).map(|i| format!("{i}{}", "x".repeat(250))).collect();
    let mut searches = vec!["y".repeat(254)];
    searches.extend(long);
    let got = sandbox(json!({"dnsPolicy": "None", "dnsConfig": {"searches": searches}}))
        .dns_config
        .unwrap();
    assert_eq!(got.searches.len(), 8);
    assert!(got.searches.join(" ").len() <= 2048);
}

#[test]
fn port_mappings_from_every_container_port() {
    let cfg = sandbox(json!({"containers": [
        {"name": "a", "ports": [
            {"containerPort": 80, "hostPort": 8080, "protocol": "TCP"},
            {"containerPort": 53, "protocol": "UDP", "name": "dns"},
            {"containerPort": 54, "protocol": "UDP", "name": "dns"},
            {"containerPort": 80, "hostPort": 8080, "protocol": "TCP"},
            {"containerPort": 80, "hostPort": 8080, "protocol": "TCP", "hostIP": "127.0.0.1"}
        ]},
        {"name": "b", "ports": [{"containerPort": 9000, "protocol": "SCTP", "hostPort": 9000}]}
    ]}));
    let got: Vec<(i32, i32, i32, &str)> = cfg
        .port_mappings
        .iter()
        .map(|p| {
            (
                p.protocol,
                p.container_port,
                p.host_port,
                p.host_ip.as_str(),
            )
        })
        .collect();
    let (tcp, udp, sctp) = (
        Protocol::Tcp as i32,
        Protocol::Udp as i32,
        Protocol::Sctp as i32,
    );
    assert_eq!(
        got,
        vec![
            (tcp, 80, 8080, ""),
            (udp, 53, 0, ""),
            (tcp, 80, 8080, "127.0.0.1"),
            (sctp, 9000, 9000, ""),
        ]
    );
}

#[test]
fn linux_security_sysctls_and_resources() {
    let cfg = sandbox(json!({
        "hostNetwork": true, "hostIPC": true,
        "securityContext": {"seLinuxOptions": {"type": "spc_t"}, "runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 3000, "supplementalGroups": [4000],
                            "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
        "initContainers": [{"name": "i", "securityContext": {"privileged": true},
                            "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2", "memory": "1Gi"}}}],
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}
        ]
    }));
    let linux = cfg.linux.unwrap();
    assert_eq!(
        linux.sysctls.get("net.core.somaxconn").map(String::as_str),
        Some("1024")
    );
    let sc = linux.security_context.unwrap();
    assert!(sc.privileged);
    assert_eq!(sc.run_as_user.map(|v| v.value), Some(1000));
    assert_eq!(sc.run_as_group.map(|v| v.value), Some(2000));
    assert_eq!(sc.supplemental_groups, [3000, 4000]);
    assert_eq!(sc.selinux_options.as_ref().unwrap().r#type, "spc_t");
    let ns = sc.namespace_options.unwrap();
    assert_eq!(
        (ns.network, ns.ipc, ns.pid),
        (
            k8s_cri::v1::NamespaceMode::Node as i32,
            k8s_cri::v1::NamespaceMode::Node as i32,
            k8s_cri::v1::NamespaceMode::Container as i32,
        )
    );
    assert_eq!(
        sc.seccomp.unwrap().profile_type,
        ProfileType::RuntimeDefault as i32
    );
    // The init container's 2 CPUs / 1Gi outweigh the regular 500m / 128Mi.
    let r = linux.resources.unwrap();
    assert_eq!(
        (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
        (2048, 200_000, 1 << 30)
    );
    assert_eq!(cfg.hostname, "");

    let plain = sandbox(json!({})).linux.unwrap();
    let sc = plain.security_context.unwrap();
    assert!(!sc.privileged && sc.run_as_user.is_none() && sc.supplemental_groups.is_empty());
    assert!(sc.selinux_options.is_none());
    let r = plain.resources.unwrap();
    assert_eq!(
        (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
        (2, 0, 0)
    );
}

#[test]
fn etc_hosts_content() {
    let header = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";
    let ips = vec!["10.42.0.7".to_owned(), "fd00::7".to_owned()];
    let cases = [
        (json!({}), format!("{header}10.42.0.7\tp\nfd00::7\tp\n")),
        (
            json!({"hostname": "web-0", "subdomain": "web"}),
            format!(
                "{header}10.42.0.7\tweb-0.web.ns.svc.cluster.local\tweb-0\nfd00::7\tweb-0.web.ns.svc.cluster.local\tweb-0\n"
            ),
        ),
        (
            json!({"hostAliases": [{"ip": "1.2.3.4", "hostnames": ["foo", "bar"]}, {"ip": "5.6.7.8", "hostnames": ["baz"]}]}),
            format!(
                "{header}10.42.0.7\tp\nfd00::7\tp\n\n# Entries added by HostAliases.\n1.2.3.4\tfoo\tbar\n5.6.7.8\tbaz\n"
            ),
        ),
    ];
    for (spec, want) in cases {
        let p = pod(json!({"spec": spec.clone()}));
        assert_eq!(
            etc_hosts(&p, &ips, "cluster.local").unwrap(),
            want,
            "{spec}"
        );
    }
    let p = pod(json!({}));
    assert_eq!(etc_hosts(&p, &[], "cluster.local").unwrap(), header);
    let p = pod(json!({"spec": {"hostNetwork": true}}));
    assert_eq!(etc_hosts(&p, &ips, "cluster.local"), None);

    // Host network: the node's file under its own header, plus aliases.
    let p = pod(
        json!({"spec": {"hostNetwork": true, "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["foo"]}]}}),
    );
    assert_eq!(
        host_network_etc_hosts(&p, "127.0.0.1\tlocalhost\n192.168.1.10\tnode-1\n"),
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n192.168.1.10\tnode-1\n\n# Entries added by HostAliases.\n1.2.3.4\tfoo\n"
    );
    let p = pod(json!({"spec": {"hostNetwork": true}}));
    assert_eq!(
        host_network_etc_hosts(&p, "127.0.0.1\tlocalhost\n"),
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n"
    );
}
