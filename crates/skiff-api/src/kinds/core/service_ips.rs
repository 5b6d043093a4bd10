//! The clusterIP fields of Services: `clusterIP`/`clusterIPs`, IP families
//! and the rules for changing them (and `loadBalancerClass`) on update.

use std::net::IpAddr;

use serde_json::Value;

use super::service::{cluster_ips, is_headless, str_list, svc_type};
use super::util::{parse_ip, qualified_name, str_of, str_or_empty, strs, valid_ip};
use crate::field::{BadValue, Error, ErrorList, Path};

const POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];

/// Upstream's `ValidateServiceClusterIPsRelatedFields`.
pub(super) fn validate_cluster_ips(spec: &Value, errs: &mut ErrorList) {
    let sp = Path::new("spec");
    let ips_path = sp.child("clusterIPs");
    let ip = str_or_empty(spec, "clusterIP");
    let ips = strs(spec, "clusterIPs");
    if !ip.is_empty() {
        if ips.is_empty() {
            errs.push(Error::required(&ips_path, ""));
        } else if ips[0] != ip {
            errs.push(Error::invalid(
                &ips_path,
                str_list(&ips),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(Error::invalid(
            &ips_path,
            str_list(&ips),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let families = strs(spec, "ipFamilies");
    for (i, fam) in families.iter().enumerate() {
        let p = sp.child("ipFamilies").index(i);
        if !matches!(*fam, "IPv4" | "IPv6") {
            errs.push(Error::not_supported(&p, *fam, &["IPv4", "IPv6"]));
        }
        if families[..i].contains(fam) {
            errs.push(Error::duplicate(&p, *fam));
        }
    }
    if let Some(policy) = str_of(spec, "ipFamilyPolicy")
        && !POLICIES.contains(&policy)
    {
        errs.push(Error::not_supported(
            &sp.child("ipFamilyPolicy"),
            policy,
            POLICIES,
        ));
    }
    let mut invalid_ips = false;
    let mut parsed: Vec<IpAddr> = Vec::new();
    for (i, addr) in ips.iter().enumerate() {
        if i == 0 && *addr == "None" {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.push(Error::invalid(
                    &ips_path,
                    str_list(&ips),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        match valid_ip(errs, &ips_path.index(i), addr) {
            Some(ip) => parsed.push(ip),
            None => invalid_ips = true,
        }
    }
    if ips.len() > 2 {
        errs.push(Error::invalid(
            &ips_path,
            str_list(&ips),
            "may only hold up to 2 values",
        ));
    }
    // Bad addresses would skew the checks below.
    if invalid_ips {
        return;
    }
    if ips.len() > 1 {
        let dual = parsed.len() == 2 && parsed[0].is_ipv4() != parsed[1].is_ipv4();
        if !dual {
            errs.push(Error::invalid(
                &ips_path,
                str_list(&ips),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if ips != ["None"] {
        for (i, (addr, fam)) in ips.iter().zip(&families).enumerate() {
            let v6 = parse_ip(addr).is_some_and(|ip| ip.is_ipv6());
            let expected = match *fam {
                "IPv4" if v6 => "IPv4",
                "IPv6" if !v6 => "IPv6",
                _ => continue,
            };
            errs.push(Error::invalid(
                &ips_path.index(i),
                *addr,
                &format!("expected an {expected} value as indicated by `ipFamilies[{i}]`"),
            ));
        }
    }
}

fn policy_value(svc: &Value) -> BadValue {
    svc.pointer("/spec/ipFamilyPolicy")
        .and_then(Value::as_str)
        .map_or(BadValue::Null, BadValue::from)
}

/// Upstream's `validateUpgradeDowngradeClusterIPs`: the primary clusterIP
/// may not change (except to or from ExternalName).
fn cluster_ips_update(new: &Value, old: &Value, errs: &mut ErrorList) {
    if is_headless(new) && is_headless(old) {
        return;
    }
    let ips_path = Path::new("spec").child("clusterIPs");
    let (o, n) = (cluster_ips(old), cluster_ips(new));
    let changed = |errs: &mut ErrorList, i: usize| {
        errs.push(Error::invalid(
            &ips_path.index(i),
            str_list(&n),
            "may not change once set",
        ));
    };
    if o.len() == n.len() {
        for (i, ip) in o.iter().enumerate() {
            if n[i] != *ip {
                changed(errs, i);
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(Error::invalid(
                &ips_path.index(0),
                str_list(&n),
                "primary clusterIP can not be unset",
            ));
        }
        if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
            changed(errs, 0);
        }
        if n.len() == 1 && str_of(&new["spec"], "ipFamilyPolicy") != Some("SingleStack") {
            errs.push(Error::invalid(
                &Path::new("spec").child("ipFamilyPolicy"),
                policy_value(new),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        changed(errs, 0);
    }
}

/// Upstream's `validateUpgradeDowngradeIPFamilies`.
fn ip_families_update(new: &Value, old: &Value, errs: &mut ErrorList) {
    if is_headless(new) || is_headless(old) {
        return;
    }
    let fam_path = Path::new("spec").child("ipFamilies").index(0);
    fn families(v: &Value) -> Vec<&str> {
        v.get("spec")
            .map(|s| strs(s, "ipFamilies"))
            .unwrap_or_default()
    }
    let (o, n) = (families(old), families(new));
    if o.len() == n.len() {
        for (i, fam) in o.iter().enumerate() {
            if n[i] != *fam {
                errs.push(Error::invalid(
                    &fam_path,
                    str_list(&n),
                    "may not change once set",
                ));
            }
        }
    } else if o.len() > n.len() {
        if cluster_ips(new).is_empty() {
            errs.push(Error::invalid(
                &fam_path,
                str_list(&n),
                "primary ipFamily can not be unset",
            ));
        }
        if !n.is_empty() && n[0] != o[0] {
            errs.push(Error::invalid(
                &fam_path,
                str_list(&cluster_ips(new)),
                "may not change once set",
            ));
        }
        if n.len() == 1 && str_of(&new["spec"], "ipFamilyPolicy") != Some("SingleStack") {
            errs.push(Error::invalid(
                &Path::new("spec").child("ipFamilyPolicy"),
                policy_value(new),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
        errs.push(Error::invalid(
            &fam_path,
            str_list(&cluster_ips(new)),
            "may not change once set",
        ));
    }
}

/// Upstream's `validateLoadBalancerClassField` (format on LoadBalancer
/// services; fixed while a service stays a LoadBalancer).
pub(super) fn load_balancer_class(new: &Value, old: Option<&Value>, errs: &mut ErrorList) {
    let path = Path::new("spec").child("loadBalancerClass");
    let class = |v: &Value| {
        v.pointer("/spec/loadBalancerClass")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if let Some(old) = old
        && svc_type(old) == "LoadBalancer"
        && svc_type(new) == "LoadBalancer"
        && class(old) != class(new)
    {
        errs.push(Error::invalid(
            &path,
            class(new).map_or(BadValue::Null, BadValue::from),
            "may not change once set",
        ));
    }
    if old.is_some() {
        // The format rules run with the object's own validation.
        return;
    }
    if svc_type(new) == "LoadBalancer" {
        if let Some(c) = class(new) {
            qualified_name(errs, &path, &c);
        }
    } else if class(new).is_some() {
        errs.push(Error::forbidden(
            &path,
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
}

/// Upstream's update rules for a Service's addresses: clusterIPs and IP
/// families may not change except to or from ExternalName, and the
/// load-balancer class is fixed.
pub(super) fn validate_cluster_ips_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    if svc_type(new) != "ExternalName" && svc_type(old) != "ExternalName" {
        cluster_ips_update(new, old, &mut errs);
        ip_families_update(new, old, &mut errs);
    }
    load_balancer_class(new, Some(old), &mut errs);
    errs
}
