//! Service plumbing and networking: endpoints, endpoint slices, ingresses,
//! ingress classes and network policies.

use serde_json::Value;

use super::fields::{
    age, array_at, format_label_selector, get, int_at, join_host_port, list_with_more,
    load_balancer_ingress, name, opt_int, opt_str, str_at,
};
use super::{AGE, Ctx, TableColumnDefinition, col, name_col};

/// At most this many addresses, ports or hosts are listed before `+ N more...`.
const MAX_LISTED: usize = 3;

// ---- endpoints ----

/// Endpoints columns.
pub(super) static ENDPOINTS_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Endpoints",
        "string",
        0,
        "Addresses (ip:port) of the endpoints.",
    ),
    AGE,
];

/// Upstream's `formatEndpoints`: `ip:port` for every address of every port of
/// every subset (bare IPs for subsets without ports), at most three, then
/// `+ N more...`; `<none>` without subsets.
fn format_endpoints(ep: &Value) -> String {
    let subsets = array_at(ep, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0usize;
    for ss in subsets {
        let addresses = array_at(ss, &["addresses"]);
        let ports = array_at(ss, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            list.extend(
                addresses
                    .iter()
                    .take(MAX_LISTED.saturating_sub(list.len()))
                    .map(|a| str_at(a, &["ip"]).to_owned()),
            );
            continue;
        }
        for port in ports {
            count += addresses.len();
            let p = int_at(port, &["port"]);
            list.extend(
                addresses
                    .iter()
                    .take(MAX_LISTED.saturating_sub(list.len()))
                    .map(|a| join_host_port(str_at(a, &["ip"]), p)),
            );
        }
    }
    let joined = list.join(",");
    if count > list.len() {
        format!("{joined} + {} more...", count - MAX_LISTED)
    } else {
        joined
    }
}

/// The cells of one Endpoints object.
pub(super) fn endpoints_row(ep: &Value, ctx: &Ctx) -> Vec<Value> {
    vec![name(ep).into(), format_endpoints(ep).into(), age(ep, ctx)]
}

// ---- endpoint slices ----

/// EndpointSlice columns.
pub(super) static SLICE_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col("AddressType", "string", 0, "IPv4, IPv6 or FQDN."),
    col(
        "Ports",
        "string",
        0,
        "Port numbers (or names) of the slice.",
    ),
    col(
        "Endpoints",
        "string",
        0,
        "Addresses of the slice's endpoints.",
    ),
    AGE,
];

/// The cells of one endpoint slice.
pub(super) fn slice_row(slice: &Value, ctx: &Ctx) -> Vec<Value> {
    let ports: Vec<String> = array_at(slice, &["ports"])
        .iter()
        .map(|p| match (opt_int(p, &["port"]), opt_str(p, &["name"])) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_owned(),
            (None, None) => "*".to_owned(),
        })
        .collect();
    let addresses: Vec<String> = array_at(slice, &["endpoints"])
        .iter()
        .flat_map(|e| array_at(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or("").to_owned())
        .collect();
    vec![
        name(slice).into(),
        str_at(slice, &["addressType"]).into(),
        list_with_more(&ports, MAX_LISTED).into(),
        list_with_more(&addresses, MAX_LISTED).into(),
        age(slice, ctx),
    ]
}

// ---- ingresses ----

/// Ingress columns.
pub(super) static INGRESS_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Class",
        "string",
        0,
        "The ingress class handling the ingress.",
    ),
    col("Hosts", "string", 0, "Hosts the rules match."),
    col(
        "Address",
        "string",
        0,
        "Addresses of the load balancer serving the ingress.",
    ),
    col("Ports", "string", 0, "80, plus 443 when TLS is configured."),
    AGE,
];

/// Upstream's `formatHosts`: the hosts of the first three rules (rules without
/// a host skipped), `+ N more...` counting rules; `*` when none has a host.
fn format_hosts(ing: &Value) -> String {
    let rules = array_at(ing, &["spec", "rules"]);
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX_LISTED {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_owned();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX_LISTED)
    } else {
        joined
    }
}

/// The cells of one ingress.
pub(super) fn ingress_row(ing: &Value, ctx: &Ctx) -> Vec<Value> {
    let ports = if array_at(ing, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(ing).into(),
        opt_str(ing, &["spec", "ingressClassName"])
            .unwrap_or("<none>")
            .into(),
        format_hosts(ing).into(),
        load_balancer_ingress(ing, &["status", "loadBalancer", "ingress"]).into(),
        ports.into(),
        age(ing, ctx),
    ]
}

// ---- ingress classes ----

/// IngressClass columns.
pub(super) static INGRESSCLASS_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Controller",
        "string",
        0,
        "The controller implementing the class.",
    ),
    col(
        "Parameters",
        "string",
        0,
        "kind.group/name of the class's parameters object.",
    ),
    AGE,
];

/// The cells of one ingress class.
pub(super) fn ingressclass_row(ic: &Value, ctx: &Ctx) -> Vec<Value> {
    let parameters = match get(ic, &["spec", "parameters"]).filter(|p| p.is_object()) {
        Some(p) => {
            let mut s = str_at(p, &["kind"]).to_owned();
            if let Some(group) = opt_str(p, &["apiGroup"]) {
                s.push('.');
                s.push_str(group);
            }
            format!("{s}/{}", str_at(p, &["name"]))
        }
        None => "<none>".to_owned(),
    };
    vec![
        name(ic).into(),
        str_at(ic, &["spec", "controller"]).into(),
        parameters.into(),
        age(ic, ctx),
    ]
}

// ---- network policies ----

/// NetworkPolicy columns.
pub(super) static NETPOL_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Pod-Selector",
        "string",
        0,
        "Label selector of the pods the policy applies to.",
    ),
    AGE,
];

/// The cells of one network policy. Its pod selector is a value, never nil: an
/// absent one selects every pod.
pub(super) fn netpol_row(np: &Value, ctx: &Ctx) -> Vec<Value> {
    let selector = match get(np, &["spec", "podSelector"]) {
        None | Some(Value::Null) => "<none>".to_owned(),
        Some(_) => format_label_selector(np, &["spec", "podSelector"]),
    };
    vec![name(np).into(), selector.into(), age(np, ctx)]
}
