//! Small helpers shared by the rules of the core and cluster kinds: typed
//! reads of JSON fields, and upstream's common validators (IPs, CIDRs,
//! ports, DNS names, label selectors, quantities, immutability).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::field::{BadValue, Error, ErrorList, Path};
use crate::validation::{
    inclusive_range_error, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain,
    is_qualified_name, is_valid_label_value, max_len_error, regex_error, validate_label_name,
    validate_labels,
};

/// Upstream's `FieldImmutableErrorMsg`.
pub(in crate::kinds) const FIELD_IMMUTABLE: &str = "field is immutable";

/// The string at `key` of `v`, if it is one.
pub(in crate::kinds) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The string at `key`, or `""` when absent (Go's zero value).
pub(in crate::kinds) fn str_or_empty<'a>(v: &'a Value, key: &str) -> &'a str {
    str_of(v, key).unwrap_or_default()
}

/// The array at `key`, or an empty slice.
pub(in crate::kinds) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The object at `key`, if it is one.
pub(in crate::kinds) fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// The strings of the array at `key` (non-strings skipped).
pub(in crate::kinds) fn strs<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    arr(v, key).iter().filter_map(Value::as_str).collect()
}

/// The string-valued map at `key` (non-string values skipped).
pub(in crate::kinds) fn str_map(v: &Value, key: &str) -> BTreeMap<String, String> {
    obj(v, key)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// `v[key]` as a mutable object, created (replacing a non-object) if needed.
pub(in crate::kinds) fn obj_mut<'a>(
    v: &'a mut Value,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let m = v.as_object_mut()?;
    let slot = m
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Sets `v[key] = value` when `key` is absent, null or the empty string.
pub(in crate::kinds) fn default_str(v: &mut Value, key: &str, value: &str) {
    if let Some(m) = v.as_object_mut() {
        let empty = m
            .get(key)
            .is_none_or(|x| x.is_null() || x.as_str() == Some(""));
        if empty {
            m.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    }
}

/// Sets `v[key] = value` when `key` is absent or null.
pub(in crate::kinds) fn default_value(v: &mut Value, key: &str, value: Value) {
    if let Some(m) = v.as_object_mut()
        && m.get(key).is_none_or(Value::is_null)
    {
        m.insert(key.to_owned(), value);
    }
}

/// A JSON value as the bad value of an error: strings quoted, numbers and
/// booleans bare, anything else as compact JSON.
pub(in crate::kinds) fn bad(v: &Value) -> BadValue {
    match v {
        Value::Null => BadValue::Null,
        Value::String(s) => BadValue::Str(s.clone()),
        Value::Bool(b) => BadValue::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| BadValue::Raw(n.to_string()), BadValue::Int),
        other => BadValue::Raw(other.to_string()),
    }
}

/// An `intstr.IntOrString` as a bad value: upstream (1.33) prints it with
/// its `String()` method, unquoted (`50%`, `3`).
pub(in crate::kinds) fn int_or_string_repr(v: &Value) -> BadValue {
    match v {
        Value::String(s) => BadValue::Raw(s.clone()),
        Value::Number(n) => BadValue::Raw(n.as_i64().unwrap_or_default().to_string()),
        other => bad(other),
    }
}

/// Upstream's `ValidateImmutableField`: `field is immutable` when the value
/// changed (absent and null are the same).
pub(in crate::kinds) fn immutable(
    new: Option<&Value>,
    old: Option<&Value>,
    path: &Path,
    errs: &mut ErrorList,
) {
    let norm = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
    if norm(new) != norm(old) {
        let value = new.map_or(BadValue::Null, bad);
        errs.push(Error::invalid(path, value, FIELD_IMMUTABLE));
    }
}

/// Pushes one `Invalid` error per message of a string validator.
pub(in crate::kinds) fn invalid_each(
    errs: &mut ErrorList,
    path: &Path,
    value: &str,
    msgs: Vec<String>,
) {
    for msg in msgs {
        errs.push(Error::invalid(path, value, &msg));
    }
}

/// Upstream's `ValidateDNS1123Label`.
pub(in crate::kinds) fn dns1123_label(errs: &mut ErrorList, path: &Path, value: &str) {
    invalid_each(errs, path, value, is_dns1123_label(value));
}

/// Upstream's `ValidateDNS1123Subdomain`.
pub(in crate::kinds) fn dns1123_subdomain(errs: &mut ErrorList, path: &Path, value: &str) {
    invalid_each(errs, path, value, is_dns1123_subdomain(value));
}

/// Upstream's `ValidateDNS1035Label` (Service names).
pub(in crate::kinds) fn dns1035_label(errs: &mut ErrorList, path: &Path, value: &str) {
    invalid_each(errs, path, value, is_dns1035_label(value));
}

/// Upstream's `ValidateQualifiedName`.
pub(in crate::kinds) fn qualified_name(errs: &mut ErrorList, path: &Path, value: &str) {
    invalid_each(errs, path, value, is_qualified_name(value));
}

/// The error of an invalid IP address (upstream's `IsValidIP`).
pub(in crate::kinds) const IP_ERROR: &str =
    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
/// The error of an invalid CIDR (upstream's `IsValidCIDR`).
pub(in crate::kinds) const CIDR_ERROR: &str =
    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// Parses an IP address as Go's `net.ParseIP` does (no zones, no brackets).
pub(in crate::kinds) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// Upstream's `IsValidIP`.
pub(in crate::kinds) fn valid_ip(errs: &mut ErrorList, path: &Path, value: &str) -> Option<IpAddr> {
    let ip = parse_ip(value);
    if ip.is_none() {
        errs.push(Error::invalid(path, value, IP_ERROR));
    }
    ip
}

/// A parsed CIDR: its address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::kinds) struct Cidr {
    pub(in crate::kinds) ip: IpAddr,
    pub(in crate::kinds) prefix: u8,
}

impl Cidr {
    /// Parses `ip/prefix`.
    pub(in crate::kinds) fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = s.split_once('/')?;
        let ip: IpAddr = ip.parse().ok()?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { ip, prefix })
    }

    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    /// Whether `ip` lies in this network.
    pub(in crate::kinds) fn contains(&self, ip: IpAddr) -> bool {
        if self.ip.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let (net, width) = Self::bits(self.ip);
        let (addr, _) = Self::bits(ip);
        let shift = u32::from(width - self.prefix);
        if shift >= 128 {
            return true;
        }
        (net >> shift) == (addr >> shift)
    }
}

/// Upstream's `IsValidCIDR`.
pub(in crate::kinds) fn valid_cidr(errs: &mut ErrorList, path: &Path, value: &str) -> Option<Cidr> {
    let cidr = Cidr::parse(value);
    if cidr.is_none() {
        errs.push(Error::invalid(path, value, CIDR_ERROR));
    }
    cidr
}

/// Upstream's `ValidateEndpointIP` (also `ValidateNonSpecialIP`): endpoint
/// and external IPs may not be unspecified, loopback or link-local.
pub(in crate::kinds) fn endpoint_ip(errs: &mut ErrorList, path: &Path, value: &str) {
    let Some(ip) = parse_ip(value) else {
        errs.push(Error::invalid(path, value, "must be a valid IP address"));
        return;
    };
    if ip.is_unspecified() {
        errs.push(Error::invalid(
            path,
            value,
            &format!("may not be unspecified ({value})"),
        ));
    }
    if ip.is_loopback() {
        errs.push(Error::invalid(
            path,
            value,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let (link_local, link_local_mc) = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (
                o[0] == 169 && o[1] == 254,
                o[0] == 224 && o[1] == 0 && o[2] == 0,
            )
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xffc0 == 0xfe80, s[0] & 0xff0f == 0xff02)
        }
    };
    if link_local {
        errs.push(Error::invalid(
            path,
            value,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_mc {
        errs.push(Error::invalid(
            path,
            value,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

/// Upstream's `IsValidPortNum` message list.
pub(in crate::kinds) fn port_num_errors(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// Checks a port number at `path` (a missing or non-integer value is 0).
pub(in crate::kinds) fn valid_port(errs: &mut ErrorList, path: &Path, value: Option<&Value>) {
    let n = value.and_then(Value::as_i64).unwrap_or(0);
    for msg in port_num_errors(n) {
        errs.push(Error::invalid(path, n, &msg));
    }
}

/// Upstream's `IsValidPortName` (an IANA service name).
pub(in crate::kinds) fn port_name_errors(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty()
        || !port
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    }
    if !port.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

/// Upstream's `ValidatePortNumOrName` for an int-or-string port.
pub(in crate::kinds) fn port_num_or_name(errs: &mut ErrorList, path: &Path, value: Option<&Value>) {
    match value {
        Some(Value::String(s)) => invalid_each(errs, path, s, port_name_errors(s)),
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            for msg in port_num_errors(n) {
                errs.push(Error::invalid(path, n, &msg));
            }
        }
        None | Some(Value::Null) => {
            for msg in port_num_errors(0) {
                errs.push(Error::invalid(path, 0i64, &msg));
            }
        }
        Some(other) => errs.push(Error::internal(path, &format!("unknown type: {other}"))),
    }
}

/// Port protocols (`supportedPortProtocols`, sorted).
pub(in crate::kinds) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// Checks a required port protocol.
pub(in crate::kinds) fn protocol(errs: &mut ErrorList, path: &Path, value: &str) {
    if value.is_empty() {
        errs.push(Error::required(path, ""));
    } else if !PROTOCOLS.contains(&value) {
        errs.push(Error::not_supported(path, value, PROTOCOLS));
    }
}

/// Upstream's `ValidateNonnegativeField`.
pub(in crate::kinds) fn nonnegative(errs: &mut ErrorList, path: &Path, value: i64) {
    if value < 0 {
        errs.push(Error::invalid(
            path,
            value,
            "must be greater than or equal to 0",
        ));
    }
}

/// Upstream's `ValidateLabelSelector` (metav1), without the options of
/// newer validators.
pub(in crate::kinds) fn label_selector(errs: &mut ErrorList, path: &Path, selector: &Value) {
    if selector.is_null() {
        return;
    }
    for (i, req) in arr(selector, "matchExpressions").iter().enumerate() {
        let rp = path.child("matchExpressions").index(i);
        let op = str_or_empty(req, "operator");
        let values = arr(req, "values");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(Error::required(
                        &rp.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(Error::forbidden(
                        &rp.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(Error::invalid(
                &rp.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_label_name(
            str_or_empty(req, "key"),
            &rp.child("key"),
        ));
        for (j, v) in values.iter().enumerate() {
            let s = v.as_str().unwrap_or_default();
            invalid_each(
                errs,
                &rp.child("values").index(j),
                s,
                is_valid_label_value(s),
            );
        }
    }
    errs.extend(validate_labels(
        &str_map(selector, "matchLabels"),
        &path.child("matchLabels"),
    ));
}

/// The regular expression of a quantity, quoted in decode errors.
pub(in crate::kinds) const QUANTITY_REGEX_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A quantity's approximate value, or `None` when it does not parse. Only
/// for ordering checks (min <= max): the canonical form and exact
/// arithmetic belong to the `Quantity` type.
pub(in crate::kinds) fn quantity_value(v: &Value) -> Option<f64> {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Number(n) => return n.as_f64(),
        _ => return None,
    };
    let body_len = s
        .bytes()
        .enumerate()
        .take_while(|(i, b)| {
            b.is_ascii_digit() || *b == b'.' || (*i == 0 && (*b == b'+' || *b == b'-'))
        })
        .count();
    let (num, suffix) = s.split_at(body_len);
    let digits = num.trim_start_matches(['+', '-']);
    if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp => {
            let rest = exp.strip_prefix(['e', 'E'])?;
            let unsigned = rest.trim_start_matches(['+', '-']);
            if unsigned.is_empty()
                || !unsigned.bytes().all(|b| b.is_ascii_digit())
                || rest.len() - unsigned.len() > 1
            {
                return None;
            }
            let e: i32 = rest.parse().ok()?;
            10f64.powi(e)
        }
    };
    Some(n * scale)
}

/// The text of a quantity for messages.
pub(in crate::kinds) fn quantity_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks that a quantity parses (the syntax check until decoding
/// canonicalises quantities) and is not negative; returns its value.
/// Upstream prints a quantity bad value unquoted (its `String()`).
pub(in crate::kinds) fn quantity(errs: &mut ErrorList, path: &Path, v: &Value) -> Option<f64> {
    let Some(q) = quantity_value(v) else {
        errs.push(Error::invalid(path, quantity_text(v), QUANTITY_REGEX_ERROR));
        return None;
    };
    if q < 0.0 {
        errs.push(Error::invalid(
            path,
            BadValue::Raw(quantity_text(v)),
            "must be greater than or equal to 0",
        ));
    }
    Some(q)
}

/// Upstream's `IsStandardResourceName` set (plus its prefixes).
pub(in crate::kinds) fn is_standard_resource_name(name: &str) -> bool {
    const STANDARD: &[&str] = &[
        "cpu",
        "memory",
        "ephemeral-storage",
        "storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "services.nodeports",
        "services.loadbalancers",
        "requests.cpu",
        "requests.memory",
        "requests.storage",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
    ];
    STANDARD.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
        || name.starts_with("limits.hugepages-")
        || name.starts_with("count/")
}

/// Upstream's `validateResourceName`: a qualified name, and a standard one
/// unless it carries a domain prefix.
pub(in crate::kinds) fn resource_name(
    errs: &mut ErrorList,
    path: &Path,
    name: &str,
    standard_msg: &str,
) {
    let before = errs.len();
    qualified_name(errs, path, name);
    if errs.len() == before && !name.contains('/') && !is_standard_resource_name(name) {
        errs.push(Error::invalid(path, name, standard_msg));
    }
}

/// A wildcard DNS-1123 subdomain (`*.example.com`), as upstream's
/// `IsWildcardDNS1123Subdomain`.
pub(in crate::kinds) fn wildcard_dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = value
        .strip_prefix("*.")
        .is_some_and(|rest| is_dns1123_subdomain(rest).is_empty());
    if !ok {
        errs.push(regex_error(
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character",
            "\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
            &["*.example.com"],
        ));
    }
    errs
}

/// The rendered messages of an error list, for tests.
#[cfg(test)]
pub(in crate::kinds) fn messages(errs: &ErrorList) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}
