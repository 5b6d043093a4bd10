//! CertificateSigningRequests (certificates.k8s.io/v1).
//!
//! On create the server must also set `spec.username`, `spec.uid`,
//! `spec.groups` and `spec.extra` from the requesting user, as upstream's
//! strategy does; that needs the request's user and is not done here.

use serde_json::{Value, json};

use crate::field::{BadValue, Error, ErrorList, Path};
use crate::kinds::core::config::{base64_decode, base64_encode};
use crate::kinds::core::util::{arr, default_str, str_of, str_or_empty, strs};
use crate::validation::{is_dns1123_label, is_dns1123_subdomain};

const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// Decoding: `spec.request` and `status.certificate` are base64 bytes.
pub(super) fn normalize(csr: &mut Value) -> Result<(), String> {
    for ptr in ["/spec/request", "/status/certificate"] {
        if let Some(v) = csr.pointer_mut(ptr)
            && let Some(s) = v.as_str()
        {
            let bytes = base64_decode(s).map_err(|i| {
                format!("CertificateSigningRequest in version \"v1\" cannot be handled as a CertificateSigningRequest: illegal base64 data at input byte {i}")
            })?;
            *v = Value::String(base64_encode(&bytes));
        }
    }
    Ok(())
}

/// `SetDefaults_CertificateSigningRequestCondition`: status `True`.
pub(super) fn default_csr(csr: &mut Value) {
    if let Some(conds) = csr
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in conds.iter_mut().filter(|c| c.is_object()) {
            default_str(c, "status", "True");
        }
    }
}

/// The strategy's `PrepareForCreate`: the status is cleared.
pub(super) fn prepare_create(csr: &mut Value) {
    if let Some(m) = csr.as_object_mut() {
        m.insert("status".into(), json!({}));
    }
}

/// The strategy's `PrepareForUpdate`: the spec never changes after
/// creation (approval and status have their own subresources).
pub(super) fn prepare_update(new: &mut Value, old: &Value) {
    if let Some(m) = new.as_object_mut() {
        match old.get("spec") {
            Some(spec) => {
                m.insert("spec".into(), spec.clone());
            }
            None => {
                m.remove("spec");
            }
        }
    }
}

/// Go's `%#v` of a byte slice.
fn go_bytes(bytes: &[u8]) -> BadValue {
    let items: Vec<String> = bytes.iter().map(|b| format!("0x{b:x}")).collect();
    BadValue::Raw(format!("[]byte{{{}}}", items.join(", ")))
}

/// The first PEM block of `data`: its type and decoded body.
fn pem_block(data: &[u8]) -> Option<(String, Vec<u8>)> {
    let text = std::str::from_utf8(data).ok()?;
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let (ty, rest) = rest.split_once("-----")?;
    let end_marker = format!("-----END {ty}-----");
    let end = rest.find(&end_marker)?;
    let body: String = rest[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64_decode(&body).ok()?;
    Some((ty.to_owned(), der))
}

/// Parses a PEM CSR as far as we can without X.509: the block type and an
/// outer DER SEQUENCE. (The signature is not verified.)
fn csr_error(request: &[u8]) -> Option<&'static str> {
    match pem_block(request) {
        Some((ty, der)) if ty == "CERTIFICATE REQUEST" => {
            if der.first() == Some(&0x30) && der.len() > 2 {
                None
            } else {
                Some("x509: malformed certificate request")
            }
        }
        _ => Some("PEM block type must be CERTIFICATE REQUEST"),
    }
}

/// Upstream's `ValidateSignerName`.
fn signer_name(errs: &mut ErrorList, path: &Path, name: &str) {
    if name.is_empty() {
        errs.push(Error::required(path, ""));
        return;
    }
    let segments: Vec<&str> = name.split('/').collect();
    let [domain, rest] = segments.as_slice() else {
        errs.push(Error::invalid(
            path,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    };
    if domain.len() > 253 {
        errs.push(Error::too_long(path, Some(253)));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for label in &labels {
        let msgs = is_dns1123_label(label);
        if !msgs.is_empty() {
            for msg in msgs {
                errs.push(Error::invalid(
                    path,
                    *domain,
                    &format!("validating label {}: {msg}", crate::go_quote(label)),
                ));
            }
            break;
        }
    }
    if labels.len() < 2 {
        errs.push(Error::invalid(
            path,
            *domain,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if rest.len() > 253 + 63 + 1 {
        errs.push(Error::too_long(path, Some(253 + 63 + 1)));
    }
    for msg in is_dns1123_subdomain(rest) {
        errs.push(Error::invalid(path, *rest, &msg));
    }
}

/// Upstream's `validateCertificateSigningRequest` (v1 options: known,
/// unique usages; no legacy signer).
pub(super) fn validate_csr(csr: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = csr.get("spec").unwrap_or(&null);
    let sp = Path::new("spec");
    let request = str_of(spec, "request")
        .and_then(|s| base64_decode(s).ok())
        .unwrap_or_default();
    if let Some(msg) = csr_error(&request) {
        errs.push(Error::invalid(
            &sp.child("request"),
            go_bytes(&request),
            msg,
        ));
    }
    let usages = strs(spec, "usages");
    if usages.is_empty() {
        errs.push(Error::required(&sp.child("usages"), ""));
    }
    for (i, u) in usages.iter().enumerate() {
        if !USAGES.contains(u) {
            errs.push(Error::not_supported(
                &sp.child("usages").index(i),
                *u,
                USAGES,
            ));
        }
    }
    for (i, u) in usages.iter().enumerate() {
        if usages[..i].contains(u) {
            errs.push(Error::duplicate(&sp.child("usages").index(i), *u));
        }
    }
    let signer = str_or_empty(spec, "signerName");
    if signer == "kubernetes.io/legacy-unknown" {
        errs.push(Error::invalid(
            &sp.child("signerName"),
            signer,
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        signer_name(&mut errs, &sp.child("signerName"), signer);
    }
    if let Some(secs) = spec.get("expirationSeconds").and_then(Value::as_i64)
        && secs < 600
    {
        errs.push(Error::invalid(
            &sp.child("expirationSeconds"),
            secs,
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    errs.extend(validate_conditions(csr));
    errs
}

fn validate_conditions(csr: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let base = Path::new("status").child("conditions");
    let null = Value::Null;
    let conds = arr(csr.get("status").unwrap_or(&null), "conditions");
    let (mut approved, mut denied) = (false, false);
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in conds.iter().enumerate() {
        let p = base.index(i);
        let ty = str_or_empty(c, "type");
        let status = str_or_empty(c, "status");
        if ty.is_empty() {
            errs.push(Error::required(&p.child("type"), ""));
        }
        if !matches!(status, "True" | "False" | "Unknown") {
            errs.push(Error::not_supported(
                &p.child("status"),
                status,
                &["False", "True", "Unknown"],
            ));
        }
        if matches!(ty, "Approved" | "Denied") {
            if ty == "Approved" {
                approved = true;
            } else {
                denied = true;
            }
            if status != "True" {
                errs.push(Error::invalid(
                    &p.child("status"),
                    status,
                    &format!("{ty} condition may only have status=True"),
                ));
            }
        }
        if seen.contains(&ty) {
            errs.push(Error::duplicate(&p.child("type"), ty));
        }
        seen.push(ty);
    }
    if approved && denied {
        errs.push(Error::invalid(
            &base,
            BadValue::Omitted,
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    errs
}

/// Validation of `/status` and `/approval` updates (upstream's
/// `validateCertificateSigningRequestUpdate`): the conditions, which may
/// not be removed or changed once set, and an issued certificate, which
/// is fixed.
pub(super) fn validate_csr_status(new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_conditions(new);
    let path = Path::new("status").child("conditions");
    let conditions = |v: &Value, ty: &str| -> Vec<Value> {
        v.pointer("/status/conditions")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter(|c| str_or_empty(c, "type") == ty)
                    .map(|c| {
                        // Timestamps may move; the rest of a condition may not.
                        let mut c = c.clone();
                        if let Some(m) = c.as_object_mut() {
                            m.remove("lastUpdateTime");
                            m.remove("lastTransitionTime");
                        }
                        c
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for ty in ["Approved", "Denied", "Failed"] {
        let (o, n) = (conditions(old, ty), conditions(new, ty));
        if n.len() < o.len() {
            errs.push(Error::forbidden(
                &path,
                &format!(
                    "updates may not remove a condition of type {}",
                    crate::go_quote(ty)
                ),
            ));
        }
        if o.iter().zip(&n).any(|(a, b)| a != b) {
            errs.push(Error::forbidden(
                &path,
                &format!(
                    "updates may not modify a condition of type {}",
                    crate::go_quote(ty)
                ),
            ));
        }
    }
    let cert = |v: &Value| {
        v.pointer("/status/certificate")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if !cert(old).is_empty() && cert(new) != cert(old) {
        errs.push(Error::invalid(
            &Path::new("status").child("certificate"),
            "<certificate data>",
            "updates may not modify existing certificate content",
        ));
    }
    errs
}

#[cfg(test)]
#[path = "certificates_tests.rs"]
mod tests;
