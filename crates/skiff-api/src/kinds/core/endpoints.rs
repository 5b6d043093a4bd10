//! Endpoints (core/v1).

use serde_json::Value;

use super::util::{
    arr, default_str, dns1123_label, dns1123_subdomain, endpoint_ip, protocol, qualified_name,
    str_of, str_or_empty, valid_ip, valid_port,
};
use crate::field::{Error, ErrorList, Path};

/// `SetDefaults_Endpoints`: port protocols default to TCP.
pub(super) fn default_endpoints(ep: &mut Value) {
    let Some(subsets) = ep.get_mut("subsets").and_then(Value::as_array_mut) else {
        return;
    };
    for subset in subsets {
        if let Some(ports) = subset.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut().filter(|p| p.is_object()) {
                default_str(port, "protocol", "TCP");
            }
        }
    }
}

fn validate_endpoint_address(addr: &Value, path: &Path, errs: &mut ErrorList) {
    let ip = str_or_empty(addr, "ip");
    valid_ip(errs, &path.child("ip"), ip);
    let host = str_or_empty(addr, "hostname");
    if !host.is_empty() {
        dns1123_label(errs, &path.child("hostname"), host);
    }
    if let Some(node) = str_of(addr, "nodeName") {
        dns1123_subdomain(errs, &path.child("nodeName"), node);
    }
    endpoint_ip(errs, &path.child("ip"), ip);
}

/// Upstream's `ValidateEndpoints` (the subsets).
pub(super) fn validate_endpoints(ep: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, ss) in arr(ep, "subsets").iter().enumerate() {
        let p = Path::new("subsets").index(i);
        let addrs = arr(ss, "addresses");
        let not_ready = arr(ss, "notReadyAddresses");
        if addrs.is_empty() && not_ready.is_empty() {
            errs.push(Error::required(
                &p,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (j, a) in addrs.iter().enumerate() {
            validate_endpoint_address(a, &p.child("addresses").index(j), &mut errs);
        }
        for (j, a) in not_ready.iter().enumerate() {
            validate_endpoint_address(a, &p.child("notReadyAddresses").index(j), &mut errs);
        }
        let ports = arr(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = p.child("ports").index(j);
            let name = str_or_empty(port, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(Error::required(&pp.child("name"), ""));
            } else if !name.is_empty() {
                dns1123_label(&mut errs, &pp.child("name"), name);
            }
            valid_port(&mut errs, &pp.child("port"), port.get("port"));
            protocol(
                &mut errs,
                &pp.child("protocol"),
                str_or_empty(port, "protocol"),
            );
            if let Some(app) = str_of(port, "appProtocol") {
                qualified_name(&mut errs, &pp.child("appProtocol"), app);
            }
        }
    }
    errs
}
