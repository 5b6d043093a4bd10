//! The clusterIP fields of Services: `clusterIP`/`clusterIPs`, IP families
//! and their update rules.

use serde_json::Value;

use super::service::{cluster_ips, is_headless, str_list, svc_type};
use super::util::{str_of, str_or_empty, strs, valid_ip};
use crate::field::{Error, ErrorList, Path};

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
    let policy = str_of(spec, "ipFamilyPolicy");
    if let Some(policy) = policy
        && !matches!(
            policy,
            "PreferDualStack" | "RequireDualStack" | "SingleStack"
        )
    {
        errs.push(Error::not_supported(
            &sp.child("ipFamilyPolicy"),
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    for (i, addr) in ips.iter().enumerate() {
        if i == 0 && *addr == "None" {
            if ips.len() > 1 {
                errs.push(Error::invalid(
                    &ips_path,
                    str_list(&ips),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        valid_ip(errs, &ips_path.index(i), addr);
    }
    if ips.len() > 2 {
        errs.push(Error::invalid(
            &ips_path,
            str_list(&ips),
            "may only hold up to 2 values",
        ));
    }
    if policy == Some("SingleStack") {
        if ips.len() > 1 {
            errs.push(Error::invalid(
                &ips_path,
                str_list(&ips),
                "must have at most one value when `ipFamilyPolicy` is 'SingleStack'",
            ));
        }
        if families.len() > 1 {
            errs.push(Error::invalid(
                &sp.child("ipFamilies"),
                str_list(&families),
                "must have at most one value when `ipFamilyPolicy` is 'SingleStack'",
            ));
        }
    }
    if families.len() > 2 {
        errs.push(Error::invalid(
            &sp.child("ipFamilies"),
            str_list(&families),
            "may only hold up to 2 values",
        ));
    }
}

/// Upstream's `validateUpgradeDowngradeClusterIPs`: the primary clusterIP
/// may not change (except to or from ExternalName).
pub(super) fn validate_cluster_ips_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let ips_path = Path::new("spec").child("clusterIPs");
    let skip = svc_type(new) == "ExternalName"
        || svc_type(old) == "ExternalName"
        || (is_headless(new) && is_headless(old));
    if !skip {
        let (o, n) = (cluster_ips(old), cluster_ips(new));
        if o.len() == n.len() {
            for (i, ip) in o.iter().enumerate() {
                if n[i] != *ip {
                    errs.push(Error::invalid(
                        &ips_path.index(i),
                        str_list(&n),
                        "may not change once set",
                    ));
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
                errs.push(Error::invalid(
                    &ips_path.index(0),
                    str_list(&n),
                    "may not change once set",
                ));
            }
            if n.len() == 1 && str_of(&new["spec"], "ipFamilyPolicy") != Some("SingleStack") {
                errs.push(Error::invalid(
                    &ips_path.index(0),
                    str_list(&n),
                    "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !o.is_empty() && n[0] != o[0] {
            errs.push(Error::invalid(
                &ips_path.index(0),
                str_list(&n),
                "may not change once set",
            ));
        }
    }
    errs
}
