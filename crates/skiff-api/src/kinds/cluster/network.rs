//! NetworkPolicies, Ingresses and IngressClasses.

use serde_json::{Value, json};

use crate::field::{BadValue, Error, ErrorList, Path};
use crate::kinds::core::util::{
    FIELD_IMMUTABLE, arr, default_str, dns1035_label, invalid_each, label_selector, obj_mut,
    parse_ip, port_name_errors, port_num_errors, str_of, str_or_empty, strs, valid_cidr, valid_ip,
    wildcard_dns1123_subdomain_errors,
};
use crate::validation::{
    is_dns1123_label, is_dns1123_subdomain, is_valid_path_segment_name, regex_error,
};

/// `SetDefaults_NetworkPolicy` and `SetDefaults_NetworkPolicyPort`: policy
/// types from the rules present, port protocols TCP.
pub(super) fn default_network_policy(np: &mut Value) {
    let Some(spec) = np.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    for (rules, peers) in [("ingress", "ports"), ("egress", "ports")] {
        let Some(list) = spec.get_mut(rules).and_then(Value::as_array_mut) else {
            continue;
        };
        for rule in list {
            if let Some(ports) = rule.get_mut(peers).and_then(Value::as_array_mut) {
                for port in ports.iter_mut().filter(|p| p.is_object()) {
                    default_str(port, "protocol", "TCP");
                }
            }
        }
    }
    if arr(spec, "policyTypes").is_empty() {
        let mut types = vec![json!("Ingress")];
        if !arr(spec, "egress").is_empty() {
            types.push(json!("Egress"));
        }
        spec["policyTypes"] = Value::Array(types);
    }
}

fn validate_np_port(port: &Value, path: &Path, errs: &mut ErrorList) {
    if let Some(proto) = str_of(port, "protocol")
        && !matches!(proto, "TCP" | "UDP" | "SCTP")
    {
        errs.push(Error::not_supported(
            &path.child("protocol"),
            proto,
            &["TCP", "UDP", "SCTP"],
        ));
    }
    let end = port.get("endPort").and_then(Value::as_i64);
    match port.get("port") {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            for msg in port_num_errors(n) {
                errs.push(Error::invalid(&path.child("port"), n, &msg));
            }
            if let Some(end) = end {
                if end < n {
                    errs.push(Error::invalid(
                        &path.child("endPort"),
                        n,
                        "must be greater than or equal to `port`",
                    ));
                }
                for msg in port_num_errors(end) {
                    errs.push(Error::invalid(&path.child("endPort"), end, &msg));
                }
            }
        }
        Some(Value::String(s)) => {
            if let Some(end) = end {
                errs.push(Error::invalid(
                    &path.child("endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            invalid_each(errs, &path.child("port"), s, port_name_errors(s));
        }
        _ => {
            if let Some(end) = end {
                errs.push(Error::invalid(
                    &path.child("endPort"),
                    end,
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

fn validate_ip_block(block: &Value, path: &Path, errs: &mut ErrorList) {
    let cidr = str_or_empty(block, "cidr");
    if cidr.is_empty() {
        errs.push(Error::required(&path.child("cidr"), ""));
        return;
    }
    let Some(net) = valid_cidr(errs, &path.child("cidr"), cidr) else {
        return;
    };
    for (i, except) in strs(block, "except").iter().enumerate() {
        let p = path.child("except").index(i);
        let Some(ex) = valid_cidr(errs, &p, except) else {
            continue;
        };
        if !net.contains(ex.ip) || net.prefix >= ex.prefix {
            errs.push(Error::invalid(
                &p,
                *except,
                "must be a strict subset of `cidr`",
            ));
        }
    }
}

fn validate_peer(peer: &Value, path: &Path, errs: &mut ErrorList) {
    let mut peers = 0;
    for key in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = peer.get(key).filter(|s| !s.is_null()) {
            peers += 1;
            label_selector(errs, &path.child(key), sel);
        }
    }
    let ip_block = peer.get("ipBlock").filter(|b| !b.is_null());
    if let Some(block) = ip_block {
        peers += 1;
        validate_ip_block(block, &path.child("ipBlock"), errs);
    }
    if peers == 0 {
        errs.push(Error::required(path, "must specify a peer"));
    } else if peers > 1 && ip_block.is_some() {
        errs.push(Error::forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
}

/// Upstream's `ValidateNetworkPolicySpec`.
pub(super) fn validate_network_policy(np: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = np.get("spec").unwrap_or(&null);
    let sp = Path::new("spec");
    label_selector(
        &mut errs,
        &sp.child("podSelector"),
        spec.get("podSelector").unwrap_or(&null),
    );
    for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr(spec, rules).iter().enumerate() {
            let rp = sp.child(rules).index(i);
            for (j, port) in arr(rule, "ports").iter().enumerate() {
                validate_np_port(port, &rp.child("ports").index(j), &mut errs);
            }
            for (j, peer) in arr(rule, peers).iter().enumerate() {
                validate_peer(peer, &rp.child(peers).index(j), &mut errs);
            }
        }
    }
    let types = strs(spec, "policyTypes");
    if types.len() > 2 {
        errs.push(Error::invalid(
            &sp.child("policyTypes"),
            BadValue::StrList(types.iter().map(|s| (*s).to_owned()).collect()),
            "may not specify more than two policyTypes",
        ));
        return errs;
    }
    for (i, t) in types.iter().enumerate() {
        if !matches!(*t, "Ingress" | "Egress") {
            errs.push(Error::not_supported(
                &sp.child("policyTypes").index(i),
                *t,
                &["Ingress", "Egress"],
            ));
        }
    }
    errs
}

/// The strategy's `PrepareForCreate`: the status is the controller's.
pub(super) fn prepare_create_ingress(ing: &mut Value) {
    if let Some(m) = ing.as_object_mut() {
        m.insert("status".into(), json!({"loadBalancer": {}}));
    }
}

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];

fn validate_backend(backend: &Value, path: &Path, errs: &mut ErrorList) {
    let resource = backend.get("resource").filter(|r| !r.is_null());
    let service = backend.get("service").filter(|s| !s.is_null());
    match (resource, service) {
        (Some(_), Some(_)) => {
            errs.push(Error::invalid(
                path,
                "",
                "cannot set both resource and service backends",
            ));
        }
        (Some(r), None) => typed_local_ref(r, &path.child("resource"), errs),
        (None, Some(svc)) => {
            let sp = path.child("service");
            let name = str_or_empty(svc, "name");
            if name.is_empty() {
                errs.push(Error::required(&sp.child("name"), ""));
            } else {
                dns1035_label(errs, &sp.child("name"), name);
            }
            let null = Value::Null;
            let port = svc.get("port").unwrap_or(&null);
            let port_name = str_or_empty(port, "name");
            let number = port.get("number").and_then(Value::as_i64).unwrap_or(0);
            match (port_name.is_empty(), number == 0) {
                (false, false) => errs.push(Error::invalid(
                    path,
                    "",
                    "cannot set both port name & port number",
                )),
                (false, true) => invalid_each(
                    errs,
                    &sp.child("port").child("name"),
                    port_name,
                    port_name_errors(port_name),
                ),
                (true, false) => {
                    for msg in port_num_errors(number) {
                        errs.push(Error::invalid(
                            &sp.child("port").child("number"),
                            number,
                            &msg,
                        ));
                    }
                }
                (true, true) => errs.push(Error::required(path, "port name or number is required")),
            }
        }
        (None, None) => errs.push(Error::invalid(
            path,
            "",
            "resource or service backend is required",
        )),
    }
}

fn typed_local_ref(r: &Value, path: &Path, errs: &mut ErrorList) {
    if let Some(group) = str_of(r, "apiGroup") {
        invalid_each(
            errs,
            &path.child("apiGroup"),
            group,
            is_dns1123_subdomain(group),
        );
    }
    for key in ["kind", "name"] {
        let v = str_or_empty(r, key);
        if v.is_empty() {
            errs.push(Error::required(
                &path.child(key),
                &format!("{key} is required"),
            ));
        } else {
            invalid_each(errs, &path.child(key), v, is_valid_path_segment_name(v));
        }
    }
}

fn validate_http_path(p: &Value, path: &Path, errs: &mut ErrorList) {
    let Some(ty) = str_of(p, "pathType") else {
        errs.push(Error::required(
            &path.child("pathType"),
            "pathType must be specified",
        ));
        return;
    };
    let value = str_or_empty(p, "path");
    let pp = path.child("path");
    match ty {
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(Error::invalid(&pp, value, "must be an absolute path"));
            }
            if !value.is_empty() {
                for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                    if value.contains(seq) {
                        errs.push(Error::invalid(
                            &pp,
                            value,
                            &format!("must not contain '{seq}'"),
                        ));
                    }
                }
                for suffix in ["/..", "/."] {
                    if value.ends_with(suffix) {
                        errs.push(Error::invalid(
                            &pp,
                            value,
                            &format!("cannot end with '{suffix}'"),
                        ));
                    }
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(Error::invalid(&pp, value, "must be an absolute path"));
            }
        }
        other => errs.push(Error::not_supported(
            &path.child("pathType"),
            other,
            PATH_TYPES,
        )),
    }
    let null = Value::Null;
    validate_backend(
        p.get("backend").unwrap_or(&null),
        &path.child("backend"),
        errs,
    );
}

fn host_errors(host: &str, path: &Path, errs: &mut ErrorList) {
    if host.contains('*') {
        invalid_each(errs, path, host, wildcard_dns1123_subdomain_errors(host));
    } else {
        invalid_each(errs, path, host, is_dns1123_subdomain(host));
    }
}

/// Upstream's `ValidateIngressSpec` (networking/v1).
pub(super) fn validate_ingress(ing: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = ing.get("spec").unwrap_or(&null);
    let sp = Path::new("spec");
    let rules = arr(spec, "rules");
    let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
    if rules.is_empty() && default_backend.is_none() {
        errs.push(Error::invalid(
            &sp,
            BadValue::Raw("[]networking.IngressRule(nil)".to_owned()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        validate_backend(b, &sp.child("defaultBackend"), &mut errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = sp.child("rules").index(i);
        let host = str_or_empty(rule, "host");
        if !host.is_empty() {
            if parse_ip(host).is_some() {
                errs.push(Error::invalid(
                    &rp.child("host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            host_errors(host, &rp.child("host"), &mut errs);
        }
        if let Some(http) = rule.get("http").filter(|h| !h.is_null()) {
            let hp = rp.child("http");
            let paths = arr(http, "paths");
            if paths.is_empty() {
                errs.push(Error::required(&hp.child("paths"), ""));
            }
            for (j, p) in paths.iter().enumerate() {
                validate_http_path(p, &hp.child("paths").index(j), &mut errs);
            }
        }
    }
    for (i, tls) in arr(spec, "tls").iter().enumerate() {
        let tp = sp.child("tls").index(i);
        for (j, host) in strs(tls, "hosts").iter().enumerate() {
            host_errors(host, &tp.child("hosts").index(j), &mut errs);
        }
        let secret = str_or_empty(tls, "secretName");
        if !secret.is_empty() {
            invalid_each(
                &mut errs,
                &tp.child("secretName"),
                secret,
                is_dns1123_subdomain(secret),
            );
        }
    }
    if let Some(class) = str_of(spec, "ingressClassName").filter(|c| !c.is_empty()) {
        invalid_each(
            &mut errs,
            &sp.child("ingressClassName"),
            class,
            is_dns1123_subdomain(class),
        );
    }
    errs
}

/// Upstream's `ValidateIngressCreate`: the spec, and the legacy class
/// annotation agreeing with `ingressClassName`.
pub(super) fn validate_ingress_create(ing: &Value) -> ErrorList {
    let mut errs = validate_ingress(ing);
    let annotation = ing
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(INGRESS_CLASS_ANNOTATION))
        .and_then(Value::as_str);
    let class = ing
        .pointer("/spec/ingressClassName")
        .and_then(Value::as_str);
    if let (Some(annotation), Some(class)) = (annotation, class)
        && annotation != class
    {
        errs.push(Error::invalid(
            &Path::new("annotations").child(INGRESS_CLASS_ANNOTATION),
            annotation,
            "must match `ingressClassName` when both are specified",
        ));
    }
    errs
}

const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Upstream's `ValidateIngressStatusUpdate` (load-balancer addresses).
pub(super) fn validate_ingress_status(ing: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let base = Path::new("status").child("loadBalancer").child("ingress");
    let list = ing
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array);
    for (i, entry) in list.into_iter().flatten().enumerate() {
        let p = base.index(i);
        let ip = str_or_empty(entry, "ip");
        if !ip.is_empty() {
            valid_ip(&mut errs, &p.child("ip"), ip);
        }
        let host = str_or_empty(entry, "hostname");
        if !host.is_empty() {
            invalid_each(
                &mut errs,
                &p.child("hostname"),
                host,
                is_dns1123_subdomain(host),
            );
            if parse_ip(host).is_some() {
                errs.push(Error::invalid(
                    &p.child("hostname"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
    errs
}

/// `SetDefaults_IngressClass`: a parameters reference is cluster-scoped
/// unless it says otherwise.
pub(super) fn default_ingress_class(class: &mut Value) {
    if let Some(spec) = class.get_mut("spec").filter(|s| s.is_object())
        && spec.get("parameters").is_some_and(Value::is_object)
        && let Some(params) = obj_mut(spec, "parameters")
        && params.get("scope").is_none_or(Value::is_null)
    {
        params.insert("scope".into(), json!("Cluster"));
    }
}

/// Upstream's `IsDomainPrefixedPath`.
fn domain_prefixed_path(errs: &mut ErrorList, path: &Path, value: &str) {
    if value.is_empty() {
        errs.push(Error::required(path, ""));
        return;
    }
    let Some((host, rest)) = value
        .split_once('/')
        .filter(|(h, r)| !h.is_empty() && !r.is_empty())
    else {
        errs.push(Error::invalid(
            path,
            value,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    invalid_each(errs, path, host, is_dns1123_subdomain(host));
    let ok = rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b));
    if !ok {
        errs.push(Error::invalid(
            path,
            rest,
            &regex_error("Invalid path", "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+", &[]),
        ));
    }
}

/// Upstream's `ValidateIngressClass`.
pub(super) fn validate_ingress_class(class: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = class.get("spec").unwrap_or(&null);
    let cp = Path::new("spec").child("controller");
    let controller = str_or_empty(spec, "controller");
    if controller.len() > 250 {
        errs.push(Error::too_long(&cp, Some(250)));
    }
    domain_prefixed_path(&mut errs, &cp, controller);
    if let Some(params) = spec.get("parameters").filter(|p| !p.is_null()) {
        let pp = Path::new("spec").child("parameters");
        typed_local_ref(params, &pp, &mut errs);
        match str_of(params, "scope") {
            None => errs.push(Error::required(&pp.child("scope"), "")),
            Some("Namespace") => match str_of(params, "namespace") {
                None => errs.push(Error::required(
                    &pp.child("namespace"),
                    "`parameters.scope` is set to 'Namespace'",
                )),
                Some(ns) => {
                    invalid_each(&mut errs, &pp.child("namespace"), ns, is_dns1123_label(ns))
                }
            },
            Some("Cluster") => {
                if params.get("namespace").is_some_and(|n| !n.is_null()) {
                    errs.push(Error::forbidden(
                        &pp.child("namespace"),
                        "`parameters.scope` is set to 'Cluster'",
                    ));
                }
            }
            Some(other) => errs.push(Error::not_supported(
                &pp.child("scope"),
                other,
                &["Cluster", "Namespace"],
            )),
        }
    }
    errs
}

/// Upstream's `ValidateIngressClassUpdate`: the controller is fixed.
pub(super) fn validate_ingress_class_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let controller = |v: &Value| {
        v.pointer("/spec/controller")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if controller(new) != controller(old) {
        errs.push(Error::invalid(
            &Path::new("spec").child("controller"),
            controller(new),
            FIELD_IMMUTABLE,
        ));
    }
    errs.extend(validate_ingress_class(new));
    errs
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
