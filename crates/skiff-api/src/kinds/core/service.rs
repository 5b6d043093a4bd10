//! Services and Endpoints: upstream's defaults (kept consistent with the
//! server's allocation in `skiff-apiserver`'s `registry/services.rs`), the
//! strategy's clusterIP/clusterIPs syncing and type-change clean-up, and
//! validation.

use serde_json::{Map, Value, json};

use super::util::{
    arr, default_str, default_value, dns1123_label, dns1123_subdomain, endpoint_ip, obj_mut,
    port_num_or_name, protocol, qualified_name, str_map, str_of, str_or_empty, strs, valid_ip,
    valid_port,
};
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::validation::validate_labels;

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const KUBELET_PORT: i64 = 10250;

pub(super) fn svc_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Upstream's `SetDefaults_Service`, plus the IP family fields the server's
/// single-stack allocator fills, and an empty `status.loadBalancer`.
pub(super) fn default_service(svc: &mut Value) {
    let Some(root) = svc.as_object_mut() else {
        return;
    };
    if !root.get("spec").is_some_and(Value::is_object) {
        root.insert("spec".into(), json!({}));
    }
    let spec = &mut svc["spec"];
    default_str(spec, "type", "ClusterIP");
    default_str(spec, "sessionAffinity", "None");
    let ty = str_or_empty(spec, "type").to_owned();
    if str_or_empty(spec, "sessionAffinity") == "None"
        && let Some(m) = spec.as_object_mut()
    {
        m.remove("sessionAffinityConfig");
    }
    if str_or_empty(spec, "sessionAffinity") == "ClientIP" {
        let timeout = spec
            .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
            .is_some_and(|t| !t.is_null());
        if !timeout && let Some(config) = obj_mut(spec, "sessionAffinityConfig") {
            let client_ip = config.entry("clientIP").or_insert_with(|| json!({}));
            if !client_ip.is_object() {
                *client_ip = json!({});
            }
            client_ip["timeoutSeconds"] = json!(10800);
        }
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter(|p| p.is_object()) {
            default_str(port, "protocol", "TCP");
            let target_unset = match port.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            if target_unset && let Some(p) = port.get("port").cloned() {
                port["targetPort"] = p;
            }
        }
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_str(spec, "internalTrafficPolicy", "Cluster");
    }
    if ty != "ExternalName" {
        // Upstream's allocator picks these; the server allocates IPv4 only.
        default_value(spec, "ipFamilies", json!(["IPv4"]));
        default_str(spec, "ipFamilyPolicy", "SingleStack");
    }
    if ty == "LoadBalancer" {
        default_value(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    let has_external_ips = !arr(spec, "externalIPs").is_empty();
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") || (ty == "ClusterIP" && has_external_ips)
    {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if let Some(status) = obj_mut(svc, "status") {
        let lb = status.entry("loadBalancer").or_insert_with(|| json!({}));
        if !lb.is_object() {
            *lb = json!({});
        }
        let ingress = lb.get_mut("ingress").and_then(Value::as_array_mut);
        if let Some(ingress) = ingress.filter(|_| ty == "LoadBalancer") {
            for ing in ingress.iter_mut().filter(|i| i.is_object()) {
                if !str_or_empty(ing, "ip").is_empty() {
                    default_str(ing, "ipMode", "VIP");
                }
            }
        }
    }
}

pub(super) fn cluster_ips(svc: &Value) -> Vec<&str> {
    svc.get("spec")
        .map(|s| strs(s, "clusterIPs"))
        .unwrap_or_default()
}

fn cluster_ip(svc: &Value) -> &str {
    svc.get("spec")
        .map(|s| str_or_empty(s, "clusterIP"))
        .unwrap_or_default()
}

fn set_cluster_ips(svc: &mut Value, ips: Option<Vec<String>>) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        match ips {
            Some(ips) => {
                spec.insert("clusterIPs".into(), json!(ips));
            }
            None => {
                spec.remove("clusterIPs");
            }
        }
    }
}

/// The strategy's `PrepareForCreate`: status cleared, `clusterIPs` filled
/// from a lone `clusterIP` (old clients).
pub(super) fn prepare_create(svc: &mut Value) {
    if let Some(m) = svc.as_object_mut() {
        m.insert("status".into(), json!({"loadBalancer": {}}));
    }
    let ip = cluster_ip(svc).to_owned();
    if !ip.is_empty() && cluster_ips(svc).is_empty() {
        set_cluster_ips(svc, Some(vec![ip]));
    }
}

fn spec_field<'a>(svc: &'a Value, key: &str) -> Option<&'a Value> {
    svc.get("spec")
        .and_then(|s| s.get(key))
        .filter(|v| !v.is_null())
}

/// NodePort and LoadBalancer Services carry NodePorts (upstream's
/// `needsNodePort`, which ignores `allocateLoadBalancerNodePorts`).
fn has_node_port_type(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

pub(super) fn externally_accessible(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
        || (svc_type(svc) == "ClusterIP"
            && spec_field(svc, "externalIPs")
                .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty())))
}

/// The non-zero NodePorts of `svc`.
fn node_ports(svc: &Value) -> Vec<i64> {
    svc.get("spec")
        .map(|s| {
            arr(s, "ports")
                .iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                .filter(|p| *p != 0)
                .collect()
        })
        .unwrap_or_default()
}

/// A LoadBalancer with `externalTrafficPolicy: Local` has a health check
/// NodePort (upstream's `needsHCNodePort`).
fn needs_health_check_node_port(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer"
        && spec_field(svc, "externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
}

fn remove_spec(svc: &mut Value, key: &str) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove(key);
    }
}

/// The strategy's `PrepareForUpdate`: `NormalizeClusterIPs` and
/// `dropTypeDependentFields` (fields that no longer apply after a type
/// change are wiped, when the user left them as they were).
pub(super) fn prepare_update(new: &mut Value, old: &Value) {
    let old_ips = cluster_ips(old);
    let old_ip = cluster_ip(old);
    let same_ips = |new: &Value| cluster_ips(new) == old_ips;
    // An old client sent clusterIP only.
    if !old_ips.is_empty() && cluster_ips(new).is_empty() && old_ip == cluster_ip(new) {
        set_cluster_ips(new, Some(old_ips.iter().map(|s| (*s).to_owned()).collect()));
    }
    let new_ip = cluster_ip(new).to_owned();
    if old_ip != new_ip && same_ips(new) {
        if !old_ip.is_empty() && new_ip.is_empty() {
            set_cluster_ips(new, None);
        } else {
            set_cluster_ips(new, Some(vec![new_ip]));
        }
    }

    let (old_ty, new_ty) = (svc_type(old), svc_type(new).to_owned());
    if old_ty != "ExternalName" && new_ty == "ExternalName" {
        if same_ips(new) && old_ip == cluster_ip(new) {
            remove_spec(new, "clusterIP");
            remove_spec(new, "clusterIPs");
        }
        for key in ["ipFamilies", "ipFamilyPolicy"] {
            if spec_field(new, key) == spec_field(old, key) {
                remove_spec(new, key);
            }
        }
    }
    // NodePorts are wiped when the type no longer uses them, unless the
    // update names one the old object did not have (validation rejects it).
    let old_node_ports = node_ports(old);
    if has_node_port_type(old)
        && !has_node_port_type(new)
        && node_ports(new).iter().all(|p| old_node_ports.contains(p))
        && let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut)
    {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            p.remove("nodePort");
        }
    }
    if needs_health_check_node_port(old)
        && !needs_health_check_node_port(new)
        && spec_field(new, "healthCheckNodePort") == spec_field(old, "healthCheckNodePort")
    {
        remove_spec(new, "healthCheckNodePort");
    }
    if old_ty == "LoadBalancer" && new_ty != "LoadBalancer" {
        for key in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if spec_field(new, key) == spec_field(old, key) {
                remove_spec(new, key);
            }
        }
    }
    if externally_accessible(old)
        && !externally_accessible(new)
        && spec_field(new, "externalTrafficPolicy") == spec_field(old, "externalTrafficPolicy")
    {
        remove_spec(new, "externalTrafficPolicy");
    }
    if new_ty != "LoadBalancer"
        && let Some(status) = obj_mut(new, "status")
    {
        status.insert("loadBalancer".into(), Value::Object(Map::new()));
    }
}

pub(super) fn is_headless(svc: &Value) -> bool {
    cluster_ips(svc) == ["None"]
}

pub(super) fn str_list(v: &[&str]) -> BadValue {
    BadValue::StrList(v.iter().map(|s| (*s).to_owned()).collect())
}

/// Go's `%#v` of the `(protocol, port)` key upstream reports duplicates with.
fn service_port_key(protocol: &str, port: i64) -> BadValue {
    BadValue::Raw(format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        crate::go_quote(protocol)
    ))
}

/// Each port's own rules (upstream's `validateServicePort`).
fn validate_port_entries(spec: &Value, errs: &mut ErrorList) {
    let ports_path = Path::new("spec").child("ports");
    let ports = arr(spec, "ports");
    let mut names: Vec<&str> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ports_path.index(i);
        let name = str_or_empty(port, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(Error::required(&p.child("name"), ""));
        } else if !name.is_empty() {
            dns1123_label(errs, &p.child("name"), name);
            if names.contains(&name) {
                errs.push(Error::duplicate(&p.child("name"), name));
            } else {
                names.push(name);
            }
        }
        valid_port(errs, &p.child("port"), port.get("port"));
        protocol(errs, &p.child("protocol"), str_or_empty(port, "protocol"));
        port_num_or_name(errs, &p.child("targetPort"), port.get("targetPort"));
        if let Some(app) = str_of(port, "appProtocol") {
            qualified_name(errs, &p.child("appProtocol"), app);
        }
    }
}

/// The rules across ports: node ports only off ClusterIP, and no two
/// ports (or node ports) with the same protocol and number.
fn validate_port_sets(ty: &str, spec: &Value, errs: &mut ErrorList) {
    let ports_path = Path::new("spec").child("ports");
    let ports = arr(spec, "ports");
    let node_port = |p: &Value| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
    if ty == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if node_port(port) != 0 {
                errs.push(Error::forbidden(
                    &ports_path.index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut seen_node: Vec<(&str, i64)> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let np = node_port(port);
        if np == 0 {
            continue;
        }
        let key = (str_or_empty(port, "protocol"), np);
        if seen_node.contains(&key) {
            errs.push(Error::duplicate(&ports_path.index(i).child("nodePort"), np));
        }
        seen_node.push(key);
    }
    let mut seen: Vec<(&str, i64)> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let key = (
            str_or_empty(port, "protocol"),
            port.get("port").and_then(Value::as_i64).unwrap_or(0),
        );
        if seen.contains(&key) {
            errs.push(Error::duplicate(
                &ports_path.index(i),
                service_port_key(key.0, key.1),
            ));
        }
        seen.push(key);
    }
}

/// Upstream's `ValidateService` (without the metadata rules).
pub(super) fn validate_service(svc: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = svc.get("spec").unwrap_or(&null);
    let sp = Path::new("spec");
    let ty = svc_type(svc);
    if arr(spec, "ports").is_empty() && !is_headless(svc) && ty != "ExternalName" {
        errs.push(Error::required(&sp.child("ports"), ""));
    }
    let ips = cluster_ips(svc);
    match ty {
        "LoadBalancer" | "NodePort" => {
            if ty == "LoadBalancer" {
                for (i, port) in arr(spec, "ports").iter().enumerate() {
                    if port.get("port").and_then(Value::as_i64) == Some(KUBELET_PORT) {
                        errs.push(Error::invalid(
                            &sp.child("ports").index(i),
                            KUBELET_PORT,
                            &format!("may not expose port {KUBELET_PORT} externally since it is used by kubelet"),
                        ));
                    }
                }
            }
            if is_headless(svc) {
                errs.push(Error::invalid(
                    &sp.child("clusterIPs").index(0),
                    "None",
                    &format!("may not be set to 'None' for {ty} services"),
                ));
            }
        }
        "ExternalName" => {
            if !ips.is_empty() {
                errs.push(Error::forbidden(
                    &sp.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            for key in ["ipFamilies", "ipFamilyPolicy"] {
                if spec_field(svc, key).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))
                {
                    errs.push(Error::forbidden(
                        &sp.child(key),
                        "may not be set for ExternalName services",
                    ));
                }
            }
            let name = str_or_empty(spec, "externalName");
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(Error::required(&sp.child("externalName"), ""));
            } else {
                dns1123_subdomain(&mut errs, &sp.child("externalName"), cname);
            }
        }
        _ => {}
    }
    validate_port_entries(spec, &mut errs);
    if spec.get("selector").is_some_and(Value::is_object) {
        errs.extend(validate_labels(
            &str_map(spec, "selector"),
            &sp.child("selector"),
        ));
    }
    let affinity = str_or_empty(spec, "sessionAffinity");
    let config_path = sp.child("sessionAffinityConfig");
    match affinity {
        "" => errs.push(Error::required(&sp.child("sessionAffinity"), "")),
        "ClientIP" => super::service_fields::validate_client_ip_config(
            spec.get("sessionAffinityConfig"),
            &config_path,
            &mut errs,
        ),
        "None" => {
            if spec
                .get("sessionAffinityConfig")
                .is_some_and(|c| !c.is_null())
            {
                errs.push(Error::forbidden(
                    &config_path,
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(Error::not_supported(
            &sp.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    if ty != "ExternalName" {
        super::service_ips::validate_cluster_ips(spec, &mut errs);
    }
    for (i, ip) in strs(spec, "externalIPs").iter().enumerate() {
        let p = sp.child("externalIPs").index(i);
        if valid_ip(&mut errs, &p, ip).is_some() {
            endpoint_ip(&mut errs, &p, ip);
        }
    }
    if ty.is_empty() {
        errs.push(Error::required(&sp.child("type"), ""));
    } else if !SERVICE_TYPES.contains(&ty) {
        errs.push(Error::not_supported(&sp.child("type"), ty, SERVICE_TYPES));
    }
    validate_port_sets(ty, spec, &mut errs);
    super::service_fields::validate_load_balancer_fields(svc, ty, spec, &mut errs);
    super::service_ips::load_balancer_class(svc, None, &mut errs);
    super::service_fields::validate_traffic_policies(svc, spec, &mut errs);
    errs
}

/// Upstream's `ValidateServiceUpdate`: the primary clusterIP may not change
/// (except to or from ExternalName), then the object's own rules.
pub(super) fn validate_service_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = super::service_ips::validate_cluster_ips_update(new, old);
    super::service_fields::validate_traffic_fields_update(new, old, &mut errs);
    errs.extend(validate_service(new));
    errs
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
