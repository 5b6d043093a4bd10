//! EndpointSlices.

use std::net::IpAddr;

use serde_json::Value;

use crate::field::{Error, ErrorList, Path};
use crate::kinds::core::util::{
    arr, default_str, default_value, dns1123_label, endpoint_ip, immutable, invalid_each, parse_ip,
    protocol, qualified_name, str_map, str_of, str_or_empty,
};
use crate::validation::{is_dns1123_label, is_dns1123_subdomain, validate_labels};

const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 20000;
const MAX_TOPOLOGY_LABELS: usize = 16;
const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];

/// `SetDefaults_EndpointPort`: name `""`, protocol TCP.
pub(super) fn default_endpoint_slice(slice: &mut Value) {
    let Some(ports) = slice.get_mut("ports").and_then(Value::as_array_mut) else {
        return;
    };
    for port in ports.iter_mut().filter(|p| p.is_object()) {
        default_value(port, "name", Value::String(String::new()));
        default_str(port, "protocol", "TCP");
    }
}

/// The strategy's `dropTopologyOnV1` on create: `deprecatedTopology` is
/// not writable through discovery/v1.
pub(super) fn prepare_create_endpoint_slice(slice: &mut Value) {
    drop_topology(slice, None);
}

/// The strategy's `dropTopologyOnV1` on update: when the endpoints change,
/// `deprecatedTopology` is dropped, and a node name the old slice recorded
/// there (under `kubernetes.io/hostname`) moves into `nodeName`.
pub(super) fn prepare_update_endpoint_slice(new: &mut Value, old: &Value) {
    if new.get("endpoints") == old.get("endpoints") {
        return;
    }
    drop_topology(new, Some(old));
}

const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

fn drop_topology(slice: &mut Value, old: Option<&Value>) {
    let previous: Vec<String> = old
        .map(|o| {
            arr(o, "endpoints")
                .iter()
                .filter_map(|e| e.pointer("/deprecatedTopology/kubernetes.io~1hostname"))
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let Some(endpoints) = slice.get_mut("endpoints").and_then(Value::as_array_mut) else {
        return;
    };
    for ep in endpoints.iter_mut().filter_map(Value::as_object_mut) {
        let host = ep
            .get("deprecatedTopology")
            .and_then(|t| t.get(HOSTNAME_LABEL))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let no_node = ep.get("nodeName").is_none_or(Value::is_null);
        if let Some(host) = host
            && no_node
            && previous.contains(&host)
            && is_dns1123_subdomain(&host).is_empty()
        {
            ep.insert("nodeName".into(), Value::String(host));
        }
        ep.remove("deprecatedTopology");
    }
}

/// Upstream's `IsFullyQualifiedDomainName`.
fn fqdn(errs: &mut ErrorList, path: &Path, name: &str) {
    if name.is_empty() {
        errs.push(Error::required(path, ""));
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = is_dns1123_subdomain(name);
    if !msgs.is_empty() {
        errs.push(Error::invalid(path, name, &msgs.join(",")));
        return;
    }
    if name.split('.').count() < 2 {
        errs.push(Error::invalid(
            path,
            name,
            "should be a domain with at least two segments separated by dots",
        ));
        return;
    }
    for label in name.split('.') {
        let msgs = is_dns1123_label(label);
        if !msgs.is_empty() {
            errs.push(Error::invalid(path, label, &msgs.join(",")));
            return;
        }
    }
}

fn validate_address(errs: &mut ErrorList, path: &Path, ty: &str, address: &str) {
    let family = |want_v4: bool, msg: &str, errs: &mut ErrorList| match parse_ip(address) {
        Some(IpAddr::V4(_)) if want_v4 => endpoint_ip(errs, path, address),
        Some(IpAddr::V6(_)) if !want_v4 => endpoint_ip(errs, path, address),
        _ => errs.push(Error::invalid(path, address, msg)),
    };
    match ty {
        "IPv4" => family(true, "must be a valid IPv4 address", errs),
        "IPv6" => family(false, "must be a valid IPv6 address", errs),
        "FQDN" => fqdn(errs, path, address),
        _ => {}
    }
}

/// Upstream's `ValidateEndpointSlice`.
pub(super) fn validate_endpoint_slice(slice: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let ty = str_or_empty(slice, "addressType");
    if ty.is_empty() {
        errs.push(Error::required(&Path::new("addressType"), ""));
    } else if !ADDRESS_TYPES.contains(&ty) {
        errs.push(Error::not_supported(
            &Path::new("addressType"),
            ty,
            ADDRESS_TYPES,
        ));
    }
    validate_endpoints(slice, ty, &mut errs);
    validate_ports(slice, &mut errs);
    errs
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn validate_endpoints(slice: &Value, ty: &str, errs: &mut ErrorList) {
    let base = Path::new("endpoints");
    let endpoints = arr(slice, "endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        errs.push(Error::too_many(
            &base,
            Some(count(endpoints.len())),
            Some(count(MAX_ENDPOINTS)),
        ));
        return;
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let p = base.index(i);
        let ap = p.child("addresses");
        let addresses = arr(ep, "addresses");
        if addresses.is_empty() {
            errs.push(Error::required(&ap, "must contain at least 1 address"));
        } else if addresses.len() > MAX_ADDRESSES {
            errs.push(Error::too_many(
                &ap,
                Some(count(addresses.len())),
                Some(count(MAX_ADDRESSES)),
            ));
        }
        for (j, a) in addresses.iter().enumerate() {
            validate_address(errs, &ap.index(j), ty, a.as_str().unwrap_or_default());
        }
        if let Some(node) = str_of(ep, "nodeName") {
            invalid_each(errs, &p.child("nodeName"), node, is_dns1123_subdomain(node));
        }
        let tp = p.child("deprecatedTopology");
        let topology = str_map(ep, "deprecatedTopology");
        if topology.len() > MAX_TOPOLOGY_LABELS {
            errs.push(Error::too_many(
                &tp,
                Some(count(topology.len())),
                Some(count(MAX_TOPOLOGY_LABELS)),
            ));
        }
        errs.extend(validate_labels(&topology, &tp));
        if let Some(host) = str_of(ep, "hostname") {
            dns1123_label(errs, &p.child("hostname"), host);
        }
    }
}

fn validate_ports(slice: &Value, errs: &mut ErrorList) {
    let base = Path::new("ports");
    let ports = arr(slice, "ports");
    if ports.len() > MAX_PORTS {
        errs.push(Error::too_many(
            &base,
            Some(count(ports.len())),
            Some(count(MAX_PORTS)),
        ));
        return;
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let p = base.index(i);
        let name = str_or_empty(port, "name");
        if !name.is_empty() {
            dns1123_label(errs, &p.child("name"), name);
        }
        if names.contains(&name) {
            errs.push(Error::duplicate(&p.child("name"), name));
        } else {
            names.push(name);
        }
        protocol(errs, &p.child("protocol"), str_or_empty(port, "protocol"));
        if let Some(app) = str_of(port, "appProtocol") {
            qualified_name(errs, &p.child("appProtocol"), app);
        }
    }
}

/// Upstream's `ValidateEndpointSliceUpdate`: the address type is fixed.
pub(super) fn validate_endpoint_slice_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_endpoint_slice(new);
    immutable(
        new.get("addressType"),
        old.get("addressType"),
        &Path::new("addressType"),
        &mut errs,
    );
    errs
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
