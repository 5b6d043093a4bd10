//! Service environment variables (`FOO_SERVICE_HOST`, Docker-link-style
//! `FOO_PORT_80_TCP`, ...), as upstream's kubelet builds them from the
//! Services it watches: every Service of the pod's namespace when
//! `enableServiceLinks` is on, and always the `kubernetes` Service of the
//! `default` namespace (in-cluster clients find the API server through
//! `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, Service};

/// The Services of `default` whose variables every pod gets (upstream's
/// master services).
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// The message upstream's kubelet gives when its Service informer has not
/// synced yet (the container waits with CreateContainerConfigError).
pub const SERVICES_NOT_READ: &str =
    "services have not yet been read at least once, cannot construct envvars";

/// The Services whose variables a pod in `namespace` gets, by name: a
/// Service of the pod's own namespace wins over a master Service of the
/// same name. Services without a cluster IP (headless, ExternalName) give
/// none.
fn visible<'a>(
    namespace: &str,
    enable_service_links: bool,
    services: impl IntoIterator<Item = &'a Service>,
) -> BTreeMap<&'a str, &'a Service> {
    let mut out: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in services {
        let (Some(name), Some(ns)) = (s.metadata.name.as_deref(), s.metadata.namespace.as_deref())
        else {
            continue;
        };
        let ip_set = s
            .spec
            .as_ref()
            .and_then(|spec| spec.cluster_ip.as_deref())
            .is_some_and(|ip| !ip.is_empty() && ip != "None");
        if !ip_set {
            continue;
        }
        if ns == "default" && MASTER_SERVICES.contains(&name) {
            out.entry(name).or_insert(s);
        } else if ns == namespace && enable_service_links {
            out.insert(name, s);
        }
    }
    out
}

/// `my-svc` → `MY_SVC`.
fn env_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

fn var(name: String, value: String) -> EnvVar {
    EnvVar {
        name,
        value: Some(value),
        value_from: None,
    }
}

/// The variables of one Service, in upstream's order.
fn of_service(s: &Service) -> Vec<EnvVar> {
    let Some(spec) = s.spec.as_ref() else {
        return Vec::new();
    };
    let (Some(ip), Some(ports)) = (spec.cluster_ip.as_deref(), spec.ports.as_deref()) else {
        return Vec::new();
    };
    let Some(first) = ports.first() else {
        return Vec::new();
    };
    let prefix = env_name(s.metadata.name.as_deref().unwrap_or_default());
    let mut out = vec![
        var(format!("{prefix}_SERVICE_HOST"), ip.to_owned()),
        var(format!("{prefix}_SERVICE_PORT"), first.port.to_string()),
    ];
    for p in ports {
        if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push(var(
                format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)),
                p.port.to_string(),
            ));
        }
    }
    // IPv6 cluster IPs are bracketed in URLs, as Go's JoinHostPort does.
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    for (i, p) in ports.iter().enumerate() {
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{host}:{}", p.port);
        if i == 0 {
            out.push(var(format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_uppercase());
        out.push(var(port_prefix.clone(), url));
        out.push(var(format!("{port_prefix}_PROTO"), lower));
        out.push(var(format!("{port_prefix}_PORT"), p.port.to_string()));
        out.push(var(format!("{port_prefix}_ADDR"), ip.to_owned()));
    }
    out
}

/// The service variables for a pod in `namespace` (upstream's
/// `getServiceEnvVarMap` + `envvars.FromServices`), Services by name.
pub fn service_env_vars<'a>(
    namespace: &str,
    enable_service_links: bool,
    services: impl IntoIterator<Item = &'a Service>,
) -> Vec<EnvVar> {
    visible(namespace, enable_service_links, services)
        .into_values()
        .flat_map(of_service)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports},
        }))
        .unwrap()
    }

    fn env_map(vars: &[EnvVar]) -> BTreeMap<String, String> {
        vars.iter()
            .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn one_service_gives_host_port_and_docker_link_variables() {
        let s = svc(
            "web",
            "my-svc",
            "10.43.0.20",
            json!([{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]),
        );
        let got = env_map(&service_env_vars("web", true, [&s]));
        let want: BTreeMap<String, String> = [
            ("MY_SVC_SERVICE_HOST", "10.43.0.20"),
            ("MY_SVC_SERVICE_PORT", "80"),
            ("MY_SVC_SERVICE_PORT_HTTP", "80"),
            ("MY_SVC_SERVICE_PORT_DNS", "53"),
            ("MY_SVC_PORT", "tcp://10.43.0.20:80"),
            ("MY_SVC_PORT_80_TCP", "tcp://10.43.0.20:80"),
            ("MY_SVC_PORT_80_TCP_PROTO", "tcp"),
            ("MY_SVC_PORT_80_TCP_PORT", "80"),
            ("MY_SVC_PORT_80_TCP_ADDR", "10.43.0.20"),
            ("MY_SVC_PORT_53_UDP", "udp://10.43.0.20:53"),
            ("MY_SVC_PORT_53_UDP_PROTO", "udp"),
            ("MY_SVC_PORT_53_UDP_PORT", "53"),
            ("MY_SVC_PORT_53_UDP_ADDR", "10.43.0.20"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn which_services_a_pod_sees() {
        let kubernetes = svc(
            "default",
            "kubernetes",
            "10.43.0.1",
            json!([{"name": "https", "port": 443}]),
        );
        let other_default = svc("default", "other", "10.43.0.5", json!([{"port": 1}]));
        let own = svc("web", "api", "10.43.0.7", json!([{"port": 8080}]));
        let headless = svc("web", "db", "None", json!([{"port": 5432}]));
        let external = svc("web", "ext", "", json!([{"port": 1}]));
        let elsewhere = svc("other", "cache", "10.43.0.9", json!([{"port": 6379}]));
        let all = [
            &kubernetes,
            &other_default,
            &own,
            &headless,
            &external,
            &elsewhere,
        ];
        let names = |ns: &str, links: bool| -> Vec<String> {
            service_env_vars(ns, links, all)
                .into_iter()
                .filter(|v| v.name.ends_with("_SERVICE_HOST"))
                .map(|v| v.name)
                .collect()
        };
        // Own namespace plus the master service; no headless or ExternalName.
        assert_eq!(
            names("web", true),
            ["API_SERVICE_HOST", "KUBERNETES_SERVICE_HOST"]
        );
        // enableServiceLinks: false keeps only the master service.
        assert_eq!(names("web", false), ["KUBERNETES_SERVICE_HOST"]);
        // In default, its own services count with links on.
        assert_eq!(
            names("default", true),
            ["KUBERNETES_SERVICE_HOST", "OTHER_SERVICE_HOST"]
        );
        assert_eq!(names("default", false), ["KUBERNETES_SERVICE_HOST"]);
        let k = env_map(&service_env_vars("web", false, all));
        assert_eq!(k["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(k["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(k["KUBERNETES_PORT"], "tcp://10.43.0.1:443");
    }

    #[test]
    fn a_service_of_the_pods_namespace_shadows_the_master_one() {
        let master = svc("default", "kubernetes", "10.43.0.1", json!([{"port": 443}]));
        let own = svc("web", "kubernetes", "10.43.0.99", json!([{"port": 8443}]));
        for order in [[&master, &own], [&own, &master]] {
            let got = env_map(&service_env_vars("web", true, order));
            assert_eq!(got["KUBERNETES_SERVICE_HOST"], "10.43.0.99");
        }
    }

    #[test]
    fn ipv6_cluster_ips_are_bracketed_in_urls() {
        let s = svc("web", "v6", "fd00::10", json!([{"port": 80}]));
        let got = env_map(&service_env_vars("web", true, [&s]));
        assert_eq!(got["V6_PORT"], "tcp://[fd00::10]:80");
        assert_eq!(got["V6_PORT_80_TCP_ADDR"], "fd00::10");
        assert_eq!(got["V6_SERVICE_HOST"], "fd00::10");
    }
}
