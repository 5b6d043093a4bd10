//! Service fields around the ports and addresses: session affinity,
//! traffic policies, load-balancer-only fields and the load-balancer
//! status.

use serde_json::Value;

use super::service::{externally_accessible, svc_type};
use super::util::{port_num_errors, str_of, str_or_empty, strs, valid_cidr, valid_ip};
use crate::field::{Error, ErrorList, Path};
use crate::validation::is_dns1123_subdomain;

const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;
const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

pub(super) fn validate_client_ip_config(config: Option<&Value>, path: &Path, errs: &mut ErrorList) {
    let why = "when session affinity type is ClientIP";
    let Some(config) = config.filter(|c| !c.is_null()) else {
        errs.push(Error::required(path, why));
        return;
    };
    let Some(client) = config.get("clientIP").filter(|c| !c.is_null()) else {
        errs.push(Error::required(&path.child("clientIP"), why));
        return;
    };
    let tp = path.child("clientIP").child("timeoutSeconds");
    match client.get("timeoutSeconds").and_then(Value::as_i64) {
        None => errs.push(Error::required(&tp, why)),
        Some(t) if t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS => errs.push(Error::invalid(
            &tp,
            t,
            &format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
        )),
        Some(_) => {}
    }
}

pub(super) fn validate_traffic_policies(svc: &Value, spec: &Value, errs: &mut ErrorList) {
    let sp = Path::new("spec");
    let ty = svc_type(svc);
    let etp = str_or_empty(spec, "externalTrafficPolicy");
    if !externally_accessible(svc) {
        if !etp.is_empty() {
            errs.push(Error::invalid(
                &sp.child("externalTrafficPolicy"),
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(Error::required(&sp.child("externalTrafficPolicy"), ""));
    } else if !matches!(etp, "Cluster" | "Local") {
        errs.push(Error::not_supported(
            &sp.child("externalTrafficPolicy"),
            etp,
            &["Cluster", "Local"],
        ));
    }
    let hc = spec
        .get("healthCheckNodePort")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if !needs_health_check(svc) {
        if hc != 0 {
            errs.push(Error::invalid(
                &sp.child("healthCheckNodePort"),
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc != 0 {
        // Upstream also requires it here, as its allocator fills it before
        // validation; the server allocates it after validation instead.
        for msg in port_num_errors(hc) {
            errs.push(Error::invalid(&sp.child("healthCheckNodePort"), hc, &msg));
        }
    }
    match str_of(spec, "internalTrafficPolicy") {
        None => {
            if matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer") {
                errs.push(Error::required(&sp.child("internalTrafficPolicy"), ""));
            }
        }
        Some("Cluster" | "Local") => {}
        Some(other) => errs.push(Error::not_supported(
            &sp.child("internalTrafficPolicy"),
            other,
            &["Cluster", "Local"],
        )),
    }
    if let Some(td) = str_of(spec, "trafficDistribution")
        && td != "PreferClose"
    {
        errs.push(Error::not_supported(
            &sp.child("trafficDistribution"),
            td,
            &["PreferClose"],
        ));
    }
}

/// A LoadBalancer with `externalTrafficPolicy: Local` gets a health-check
/// node port (upstream's `NeedsHealthCheck`).
fn needs_health_check(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer"
        && svc
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local")
}

/// Upstream's `validateServiceExternalTrafficFieldsUpdate`: the health
/// check node port is fixed while one is needed.
pub(super) fn validate_traffic_fields_update(new: &Value, old: &Value, errs: &mut ErrorList) {
    let hc = |v: &Value| {
        v.pointer("/spec/healthCheckNodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    if needs_health_check(old) && needs_health_check(new) && hc(new) != hc(old) {
        errs.push(Error::forbidden(
            &Path::new("spec").child("healthCheckNodePort"),
            "field is immutable",
        ));
    }
}

/// The fields only LoadBalancer services may carry.
pub(super) fn validate_load_balancer_fields(
    svc: &Value,
    ty: &str,
    spec: &Value,
    errs: &mut ErrorList,
) {
    let sp = Path::new("spec");
    let ranges = strs(spec, "loadBalancerSourceRanges");
    let annotation = svc
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SOURCE_RANGES_ANNOTATION))
        .and_then(Value::as_str);
    if ranges.is_empty()
        && let Some(value) = annotation
    {
        let path = Path::new("metadata")
            .child("annotations")
            .key(SOURCE_RANGES_ANNOTATION);
        if ty != "LoadBalancer" {
            errs.push(Error::forbidden(
                &path,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        let value = value.trim();
        if !value.is_empty() {
            for cidr in value.split(',') {
                valid_cidr(errs, &path, cidr.trim());
            }
        }
    }
    if !ranges.is_empty() {
        // Upstream's path really is capitalised here.
        let path = sp.child("LoadBalancerSourceRanges");
        if ty != "LoadBalancer" {
            errs.push(Error::forbidden(
                &path,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, range) in ranges.iter().enumerate() {
            valid_cidr(errs, &path.index(i), range.trim());
        }
    }
    let allocate = spec
        .get("allocateLoadBalancerNodePorts")
        .filter(|v| !v.is_null());
    if allocate.is_some() && ty != "LoadBalancer" {
        errs.push(Error::forbidden(
            &sp.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && allocate.is_none() {
        errs.push(Error::required(
            &Path::new("allocateLoadBalancerNodePorts"),
            "",
        ));
    }
}

/// Upstream's `ValidateServiceStatusUpdate` (the load-balancer status).
pub(super) fn validate_service_status(svc: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let ingress = svc
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array);
    let base = Path::new("status").child("loadBalancer").child("ingress");
    if svc_type(svc) != "LoadBalancer" && ingress.is_some_and(|i| !i.is_empty()) {
        errs.push(Error::forbidden(
            &base,
            "may only be used when `spec.type` is 'LoadBalancer'",
        ));
        return errs;
    }
    for (i, ing) in ingress.into_iter().flatten().enumerate() {
        let p = base.index(i);
        let ip = str_or_empty(ing, "ip");
        if !ip.is_empty() {
            valid_ip(&mut errs, &p.child("ip"), ip);
        }
        match (str_of(ing, "ipMode"), ip.is_empty()) {
            (None, false) => errs.push(Error::required(
                &p.child("ipMode"),
                "must be specified when `ip` is set",
            )),
            (Some(_), true) => errs.push(Error::forbidden(
                &p.child("ipMode"),
                "may not be specified when `ip` is not set",
            )),
            (Some(mode), false) if !matches!(mode, "Proxy" | "VIP") => {
                errs.push(Error::not_supported(
                    &p.child("ipMode"),
                    mode,
                    &["Proxy", "VIP"],
                ));
            }
            _ => {}
        }
        let host = str_or_empty(ing, "hostname");
        if !host.is_empty() {
            for msg in is_dns1123_subdomain(host) {
                errs.push(Error::invalid(&p.child("hostname"), host, &msg));
            }
            if super::util::parse_ip(host).is_some() {
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
