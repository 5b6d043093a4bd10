#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::kinds::core::util::messages;
use crate::kinds::{default, prepare_create, prepare_update, validate, validate_update};

/// Defaulting then the create preparation, as the server runs them.
fn created(mut svc: Value) -> Value {
    default("", "Service", &mut svc);
    prepare_create("", "Service", &mut svc);
    svc
}

fn errors(svc: &Value) -> Vec<String> {
    messages(&validate("", "Service", svc))
}

#[test]
fn defaults_match_the_server_and_are_idempotent() {
    let svc = created(json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}));
    assert_eq!(
        svc,
        json!({
            "spec": {
                "type": "NodePort",
                "sessionAffinity": "None",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "externalTrafficPolicy": "Cluster",
            },
            "status": {"loadBalancer": {}},
        })
    );
    let mut again = svc.clone();
    default("", "Service", &mut again);
    assert_eq!(again, svc);

    let plain = created(json!({"spec": {"ports": [{"port": 80, "targetPort": "http"}]}}));
    assert_eq!(plain["spec"]["type"], "ClusterIP");
    assert_eq!(plain["spec"]["ports"][0]["targetPort"], "http");
    assert!(plain["spec"].get("externalTrafficPolicy").is_none());
    assert!(plain["spec"].get("allocateLoadBalancerNodePorts").is_none());

    let lb = created(
        json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 0}]}}),
    );
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(lb["spec"]["ports"][0]["targetPort"], 80);

    let en = created(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
    assert!(en["spec"].get("ipFamilies").is_none());
    assert!(en["spec"].get("internalTrafficPolicy").is_none());
    assert!(errors(&en).is_empty(), "{:?}", errors(&en));

    let external =
        created(json!({"spec": {"externalIPs": ["192.0.2.10"], "ports": [{"port": 1}]}}));
    assert_eq!(external["spec"]["externalTrafficPolicy"], "Cluster");
    assert!(errors(&external).is_empty(), "{:?}", errors(&external));

    let dropped = created(
        json!({"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}, "ports": [{"port": 1}]}}),
    );
    assert!(dropped["spec"].get("sessionAffinityConfig").is_none());

    let affinity =
        created(json!({"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 1}]}}));
    assert_eq!(
        affinity["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
    assert!(errors(&affinity).is_empty(), "{:?}", errors(&affinity));
}

#[test]
fn create_copies_a_lone_cluster_ip_and_clears_status() {
    let svc = created(json!({
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
    }));
    assert_eq!(svc["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(svc["status"], json!({"loadBalancer": {}}));
    assert!(errors(&svc).is_empty(), "{:?}", errors(&svc));
}

#[test]
fn service_validation_messages() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"spec": {}}), vec!["spec.ports: Required value"]),
        (
            json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}}),
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value",
            ],
        ),
        (
            json!({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}}),
            vec!["spec.ports[1].name: Duplicate value: \"a\""],
        ),
        (
            json!({"spec": {"ports": [{"port": 70000}]}}),
            vec![
                "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ],
        ),
        (
            json!({"spec": {"ports": [{"port": 80, "protocol": "HTTP"}]}}),
            vec![
                "spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ],
        ),
        (
            json!({"spec": {"ports": [{"port": 80, "targetPort": "Web_Port"}]}}),
            vec![
                "spec.ports[0].targetPort: Invalid value: \"Web_Port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            ],
        ),
        (
            json!({"spec": {"type": "Internal", "ports": [{"port": 80}]}}),
            vec![
                "spec.type: Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ],
        ),
        (
            json!({"spec": {"type": "ExternalName"}}),
            vec!["spec.externalName: Required value"],
        ),
        (
            json!({"spec": {"type": "ExternalName", "externalName": "Not_A_Host"}}),
            vec![
                "spec.externalName: Invalid value: \"Not_A_Host\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ],
        ),
        (
            json!({"spec": {"type": "LoadBalancer", "clusterIP": "None", "ports": [{"port": 80}]}}),
            vec![
                "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services",
            ],
        ),
        (
            json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        ),
        (
            json!({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}}),
            vec![
                "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            ],
        ),
        (
            json!({"spec": {"clusterIP": "10.0.0.300", "ports": [{"port": 80}]}}),
            vec![
                "spec.clusterIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ],
        ),
        (
            json!({"spec": {"externalIPs": ["127.0.0.1"], "ports": [{"port": 80}]}}),
            vec![
                "spec.externalIPs[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            ],
        ),
        (
            json!({"spec": {"externalTrafficPolicy": "Local", "ports": [{"port": 80}]}}),
            vec![
                "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services",
            ],
        ),
        (
            json!({"spec": {"selector": {"app": "bad value!"}, "ports": [{"port": 80}]}}),
            vec![
                "spec.selector: Invalid value: \"bad value!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ],
        ),
        (
            json!({"spec": {"sessionAffinity": "Sticky", "ports": [{"port": 80}]}}),
            vec![
                "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            ],
        ),
        (
            json!({"spec": {"clusterIP": "None", "selector": {"app": "x"}}}),
            vec![],
        ),
        (
            json!({"spec": {"ports": [{"port": 80}], "loadBalancerSourceRanges": ["10.0.0.0/8", "x"], "allocateLoadBalancerNodePorts": false}}),
            vec![
                "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'",
                "spec.LoadBalancerSourceRanges[1]: Invalid value: \"x\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'",
            ],
        ),
    ];
    for (svc, want) in cases {
        let svc = created(svc);
        assert_eq!(errors(&svc), want, "{svc}");
    }
}

fn allocated(ty: &str) -> Value {
    let mut svc = created(json!({"spec": {"type": ty, "ports": [{"port": 80}]}}));
    svc["spec"]["clusterIP"] = json!("10.43.0.10");
    svc["spec"]["clusterIPs"] = json!(["10.43.0.10"]);
    if ty != "ClusterIP" {
        svc["spec"]["ports"][0]["nodePort"] = json!(30080);
    }
    svc
}

fn updated(mut new: Value, old: &Value) -> Vec<String> {
    default("", "Service", &mut new);
    prepare_update("", "Service", &mut new, old);
    messages(&validate_update("", "Service", &new, old))
}

#[test]
fn cluster_ip_may_not_change() {
    let old = allocated("ClusterIP");
    assert!(updated(old.clone(), &old).is_empty());
    // Changing only the singular field: the plural follows it, then fails.
    let mut new = old.clone();
    new["spec"]["clusterIP"] = json!("10.43.0.11");
    assert_eq!(
        updated(new, &old),
        vec![
            "spec.clusterIPs[0]: Invalid value: []string{\"10.43.0.11\"}: may not change once set"
        ]
    );
    // An old client that drops clusterIPs keeps the allocated ones.
    let mut legacy = old.clone();
    legacy["spec"].as_object_mut().unwrap().remove("clusterIPs");
    assert!(updated(legacy, &old).is_empty());
}

#[test]
fn type_changes_drop_fields_that_no_longer_apply() {
    let old = allocated("NodePort");
    let mut new = old.clone();
    new["spec"]["type"] = json!("ExternalName");
    new["spec"]["externalName"] = json!("db.example.com");
    default("", "Service", &mut new);
    prepare_update("", "Service", &mut new, &old);
    let spec = &new["spec"];
    for gone in [
        "clusterIP",
        "clusterIPs",
        "ipFamilies",
        "ipFamilyPolicy",
        "externalTrafficPolicy",
    ] {
        assert!(spec.get(gone).is_none(), "{gone} kept: {spec}");
    }
    assert!(spec["ports"][0].get("nodePort").is_none());
    assert!(validate_update("", "Service", &new, &old).is_empty());

    let mut to_cluster_ip = old.clone();
    to_cluster_ip["spec"]["type"] = json!("ClusterIP");
    assert_eq!(updated(to_cluster_ip, &old), Vec::<String>::new());
}

#[test]
fn node_ports_and_health_check_port_are_wiped_only_when_left_as_they_were() {
    let mut two = allocated("NodePort");
    two["spec"]["ports"] = json!([
        {"name": "a", "port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080},
        {"name": "b", "port": 81, "protocol": "TCP", "targetPort": 81, "nodePort": 30081},
    ]);
    let mut lb_local = allocated("LoadBalancer");
    lb_local["spec"]["externalTrafficPolicy"] = json!("Local");
    lb_local["spec"]["healthCheckNodePort"] = json!(31000);
    let edit = |old: &Value, f: &dyn Fn(&mut Value)| {
        let mut new = old.clone();
        f(&mut new);
        new
    };
    let not_cluster_ip = |i: usize| {
        format!("spec.ports[{i}].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'")
    };
    let hc_forbidden = "spec.healthCheckNodePort: Invalid value: 31001: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'";
    let cases: Vec<(&str, &Value, Value, Vec<String>)> = vec![
        (
            "to ClusterIP, a port dropped: the rest are wiped",
            &two,
            edit(&two, &|n| {
                n["spec"]["type"] = json!("ClusterIP");
                n["spec"]["ports"].as_array_mut().unwrap().pop();
            }),
            vec![],
        ),
        (
            "to ClusterIP naming a new NodePort: kept, and refused",
            &two,
            edit(&two, &|n| {
                n["spec"]["type"] = json!("ClusterIP");
                n["spec"]["ports"][0]["nodePort"] = json!(30099);
            }),
            vec![not_cluster_ip(0), not_cluster_ip(1)],
        ),
        (
            "Local to Cluster: the health check port is wiped",
            &lb_local,
            edit(&lb_local, &|n| {
                n["spec"]["externalTrafficPolicy"] = json!("Cluster")
            }),
            vec![],
        ),
        (
            "Local to Cluster with a new health check port: kept, and refused",
            &lb_local,
            edit(&lb_local, &|n| {
                n["spec"]["externalTrafficPolicy"] = json!("Cluster");
                n["spec"]["healthCheckNodePort"] = json!(31001);
            }),
            vec![hc_forbidden.to_owned()],
        ),
    ];
    for (what, old, new, want) in cases {
        assert_eq!(updated(new, old), want, "{what}");
    }
}

#[test]
fn endpoints_defaults_and_validation() {
    let mut ep = json!({"subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 80}]}]});
    default("", "Endpoints", &mut ep);
    assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
    assert!(validate("", "Endpoints", &ep).is_empty());
    let bad = json!({"subsets": [
        {"ports": [{"port": 80, "protocol": "TCP"}]},
        {"addresses": [{"ip": "127.0.0.1"}, {"ip": "x"}], "ports": [{"port": 1, "protocol": "TCP"}, {"name": "b", "port": 2, "protocol": "TCP"}]},
    ]});
    assert_eq!(
        messages(&validate("", "Endpoints", &bad)),
        vec![
            "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`",
            "subsets[1].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            "subsets[1].addresses[1].ip: Invalid value: \"x\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "subsets[1].addresses[1].ip: Invalid value: \"x\": must be a valid IP address",
            "subsets[1].ports[0].name: Required value",
        ]
    );
}

#[test]
fn load_balancer_status() {
    let mut svc = allocated("LoadBalancer");
    svc["status"] =
        json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "1.2.3.5"}]}});
    default("", "Service", &mut svc);
    assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
    assert_eq!(
        messages(&crate::kinds::validate_status_update(
            "", "Service", &svc, &svc
        )),
        vec![
            "status.loadBalancer.ingress[1].hostname: Invalid value: \"1.2.3.5\": must be a DNS name, not an IP address"
        ]
    );
}

#[test]
fn load_balancer_status_needs_a_load_balancer() {
    let mut svc = allocated("ClusterIP");
    svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ipMode": "VIP"}]}});
    assert_eq!(
        messages(&crate::kinds::validate_status_update(
            "", "Service", &svc, &svc
        )),
        vec![
            "status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"
        ]
    );
}

#[test]
fn families_and_load_balancer_class_on_update() {
    let old = allocated("LoadBalancer");
    let mut v6 = old.clone();
    v6["spec"]["ipFamilies"] = json!(["IPv6"]);
    assert_eq!(
        updated(v6, &old),
        vec![
            "spec.ipFamilies[0]: Invalid value: []string{\"IPv6\"}: may not change once set",
            "spec.clusterIPs[0]: Invalid value: \"10.43.0.10\": expected an IPv6 value as indicated by `ipFamilies[0]`",
        ]
    );
    let mut classed = old.clone();
    classed["spec"]["loadBalancerClass"] = json!("example.com/lb");
    assert_eq!(
        updated(classed, &old),
        vec!["spec.loadBalancerClass: Invalid value: \"example.com/lb\": may not change once set"]
    );
    let mut two = old.clone();
    two["spec"]["clusterIPs"] = json!(["10.43.0.10", "10.43.0.11"]);
    assert_eq!(
        updated(two, &old),
        vec![
            "spec.clusterIPs: Invalid value: []string{\"10.43.0.10\", \"10.43.0.11\"}: may specify no more than one IP for each IP family"
        ]
    );
    let mut local = old.clone();
    local["spec"]["externalTrafficPolicy"] = json!("Local");
    local["spec"]["healthCheckNodePort"] = json!(31000);
    let mut moved = local.clone();
    moved["spec"]["healthCheckNodePort"] = json!(31001);
    assert_eq!(
        updated(moved, &local),
        vec!["spec.healthCheckNodePort: Forbidden: field is immutable"]
    );
    let mut distributed = old.clone();
    distributed["spec"]["trafficDistribution"] = json!("Anywhere");
    assert_eq!(
        updated(distributed, &old),
        vec![
            "spec.trafficDistribution: Unsupported value: \"Anywhere\": supported values: \"PreferClose\""
        ]
    );
    let cluster_ip_class =
        created(json!({"spec": {"loadBalancerClass": "x", "ports": [{"port": 1}]}}));
    assert_eq!(
        errors(&cluster_ip_class),
        vec!["spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"]
    );
}
