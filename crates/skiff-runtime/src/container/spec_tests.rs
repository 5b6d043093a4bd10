#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn cfg(command: &[&str], args: &[&str]) -> api::ContainerConfig {
    api::ContainerConfig {
        command: command.iter().map(|s| s.to_string()).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn args_combine_like_containerd() {
    let image = RuntimeConfig {
        entrypoint: Some(strings(&["/ep"])),
        cmd: Some(strings(&["default"])),
        ..Default::default()
    };
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (&[], &[], &["/ep", "default"]),
        (&[], &["x"], &["/ep", "x"]),
        (&["/bin/sh"], &[], &["/bin/sh"]),
        (&["/bin/sh"], &["-c", "true"], &["/bin/sh", "-c", "true"]),
    ];
    for (command, args, want) in cases {
        assert_eq!(process_args(&cfg(command, args), &image), strings(want));
    }
    assert!(process_args(&cfg(&[], &[]), &RuntimeConfig::default()).is_empty());
}

#[test]
fn env_overrides_keep_order() {
    let image = RuntimeConfig {
        env: Some(strings(&["PATH=/bin", "A=1", "B=2"])),
        ..Default::default()
    };
    let mut config = cfg(&["x"], &[]);
    config.envs = vec![
        api::KeyValue {
            key: "A".into(),
            value: "over".into(),
        },
        api::KeyValue {
            key: "C".into(),
            value: "3".into(),
        },
    ];
    assert_eq!(
        process_env(&config, &image, "pod"),
        strings(&["PATH=/bin", "A=over", "B=2", "HOSTNAME=pod", "C=3"])
    );
    let env = process_env(&cfg(&["x"], &[]), &RuntimeConfig::default(), "");
    assert!(env[0].starts_with("PATH=/usr/local/sbin"));
    assert_eq!(env.len(), 1);
}

#[test]
fn capability_sets() {
    let all_mask = u64::MAX >> (64 - ALL_CAPABILITIES.len());
    let privileged = capabilities(true, None, all_mask);
    assert_eq!(privileged.len(), ALL_CAPABILITIES.len() - 1);
    assert!(!privileged.iter().any(|c| c == "CAP_SYS_RESOURCE"));
    // A host bounding set without NET_ADMIN (bit 12) leaves it out.
    assert!(!capabilities(true, None, all_mask & !(1 << 12)).contains(&"CAP_NET_ADMIN".to_owned()));

    type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        // add, drop, must contain, must not contain
        (
            &[],
            &[],
            &["CAP_CHOWN", "CAP_KILL"],
            &["CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
        ),
        (&["NET_ADMIN"], &["KILL"], &["CAP_NET_ADMIN"], &["CAP_KILL"]),
        (&["SYS_RESOURCE"], &[], &[], &["CAP_SYS_RESOURCE"]),
        (&[], &["ALL"], &[], &["CAP_CHOWN"]),
        (
            &["NET_BIND_SERVICE"],
            &["ALL"],
            &[],
            &["CAP_NET_BIND_SERVICE"],
        ),
        (&["ALL"], &[], &["CAP_SYS_ADMIN"], &["CAP_SYS_RESOURCE"]),
    ];
    for (add, drop, has, lacks) in cases {
        let caps = api::Capability {
            add_capabilities: strings(add),
            drop_capabilities: strings(drop),
            ..Default::default()
        };
        let got = capabilities(false, Some(&caps), all_mask);
        for c in *has {
            assert!(
                got.contains(&c.to_string()),
                "{add:?}/{drop:?}: {got:?} lacks {c}"
            );
        }
        for c in *lacks {
            assert!(
                !got.contains(&c.to_string()),
                "{add:?}/{drop:?}: {got:?} has {c}"
            );
        }
    }
}

#[test]
fn users_resolve() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
    let image = |u: &str| RuntimeConfig {
        user: Some(u.to_owned()),
        ..Default::default()
    };
    let sc = |uid: Option<i64>, gid: Option<i64>, name: &str| api::LinuxContainerSecurityContext {
        run_as_user: uid.map(|value| api::Int64Value { value }),
        run_as_group: gid.map(|value| api::Int64Value { value }),
        run_as_username: name.to_owned(),
        ..Default::default()
    };
    let root = dir.path();
    assert_eq!(
        resolve_user(None, &RuntimeConfig::default(), root),
        Ok((0, 0))
    );
    assert_eq!(resolve_user(None, &image("app"), root), Ok((1000, 1001)));
    assert_eq!(
        resolve_user(None, &image("app:staff"), root),
        Ok((1000, 50))
    );
    assert_eq!(resolve_user(None, &image("42:7"), root), Ok((42, 7)));
    assert_eq!(resolve_user(None, &image("1000"), root), Ok((1000, 1001)));
    assert!(resolve_user(None, &image("ghost"), root).is_err());
    assert_eq!(
        resolve_user(Some(&sc(Some(1000), None, "")), &image("root"), root),
        Ok((1000, 1001))
    );
    assert_eq!(
        resolve_user(Some(&sc(Some(5), Some(6), "")), &image("app"), root),
        Ok((5, 6))
    );
    assert_eq!(
        resolve_user(Some(&sc(None, None, "app")), &image("root"), root),
        Ok((1000, 1001))
    );
    assert!(resolve_user(Some(&sc(Some(-1), None, "")), &image("root"), root).is_err());
}

#[test]
fn spec_has_limits_namespaces_and_no_negative_oom() {
    let mut config = cfg(&["sleep", "1"], &[]);
    config.working_dir = "/tmp".into();
    config.linux = Some(api::LinuxContainerConfig {
        resources: Some(api::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            cpu_shares: 512,
            oom_score_adj: -998,
            ..Default::default()
        }),
        security_context: None,
    });
    config.mounts = vec![api::Mount {
        container_path: "/data".into(),
        host_path: "/srv/data".into(),
        readonly: true,
        ..Default::default()
    }];
    let ns = skiff_sys::PodNamespacePaths::new(Path::new("/run/s"), "sb");
    let dir = tempfile::tempdir().unwrap();
    let spec = build_spec(&SpecInputs {
        config: &config,
        image: &RuntimeConfig::default(),
        hostname: "h",
        namespaces: &ns,
        cgroups_path: "/skiff/sb/c1",
        rootfs: dir.path(),
        bounding_mask: u64::MAX,
        nofile: 4096,
        sandbox_files: vec![
            ("/etc/resolv.conf".into(), "/sb/resolv.conf".into()),
            ("/data".into(), "/sb/shadowed".into()),
        ],
    })
    .unwrap();
    assert_eq!(spec["process"]["oomScoreAdj"], 0);
    assert_eq!(spec["process"]["cwd"], "/tmp");
    assert_eq!(spec["process"]["rlimits"][0]["hard"], 4096);
    assert!(host_nofile_limit() >= 1);
    assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50_000);
    assert_eq!(spec["linux"]["resources"]["cpu"]["shares"], 512);
    assert_eq!(spec["linux"]["cgroupsPath"], "/skiff/sb/c1");
    assert_eq!(spec["linux"]["namespaces"][2]["path"], "/run/s/netns/sb");
    let mounts = spec["mounts"].as_array().unwrap();
    let resolv: Vec<_> = mounts
        .iter()
        .filter(|m| m["destination"] == "/etc/resolv.conf")
        .collect();
    assert_eq!(resolv.len(), 1);
    assert_eq!(resolv[0]["source"], "/sb/resolv.conf");
    // A CRI mount at the same path wins over the sandbox's file.
    assert_eq!(
        mounts
            .iter()
            .filter(|m| m["destination"] == "/data")
            .count(),
        1
    );
    let data = mounts.last().unwrap().clone();
    assert_eq!(data["source"], "/srv/data");
    assert_eq!(data["options"][1], "ro");
    assert!(!spec["linux"]["maskedPaths"].as_array().unwrap().is_empty());

    let empty = cfg(&[], &[]);
    let err = build_spec(&SpecInputs {
        config: &empty,
        image: &RuntimeConfig::default(),
        hostname: "h",
        namespaces: &ns,
        cgroups_path: "/x",
        rootfs: dir.path(),
        bounding_mask: 0,
        nofile: 1024,
        sandbox_files: vec![],
    });
    assert_eq!(err, Err("no command specified".to_owned()));
}

#[test]
fn signals_and_resolv_conf() {
    let cases = [
        ("SIGTERM", Some(15)),
        ("QUIT", Some(3)),
        ("sigint", Some(2)),
        ("9", Some(9)),
        ("0", None),
        ("SIGBOGUS", None),
    ];
    for (name, want) in cases {
        assert_eq!(parse_signal(name), want, "{name}");
    }
    let dns = api::DnsConfig {
        servers: strings(&["10.43.0.10"]),
        searches: strings(&["default.svc.cluster.local", "svc.cluster.local"]),
        options: strings(&["ndots:5"]),
    };
    assert_eq!(
        resolv_conf(&dns),
        "search default.svc.cluster.local svc.cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
    );
    assert_eq!(resolv_conf(&api::DnsConfig::default()), "");
}
