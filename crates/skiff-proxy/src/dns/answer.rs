//! The answer function: one question and the cluster's data in, the records
//! of an authoritative answer out (or "not ours: forward"), with the names,
//! records, NXDOMAIN/NODATA split and TTLs of CoreDNS's `kubernetes` plugin
//! (`pods insecure`). Pure: no I/O, no clock.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::data::{ClusterData, ServiceKind};

/// TTL of every record (CoreDNS's `ttl` default), also the SOA's negative TTL.
pub const TTL: u32 = 5;

/// The version of the Kubernetes DNS schema (`dns-version.<zone>` TXT).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// Longest chain of in-zone CNAMEs followed (ExternalName to ExternalName).
const MAX_CNAME_CHAIN: usize = 8;

/// The cluster's zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The cluster domain, lowercase and fully qualified (`cluster.local.`).
    pub domain: Name,
    /// The cluster DNS Service's address (`ns.dns.<zone>`), if known.
    pub dns_ip: Option<IpAddr>,
}

impl Zone {
    /// The zone of `--cluster-domain` (with or without a trailing dot).
    pub fn new(domain: &str, dns_ip: Option<IpAddr>) -> Result<Zone, hickory_proto::ProtoError> {
        let mut name = Name::from_ascii(domain.trim_end_matches('.'))?.to_lowercase();
        name.set_fqdn(true);
        Ok(Zone {
            domain: name,
            dns_ip,
        })
    }

    fn name(&self, labels: &[&str]) -> Option<Name> {
        let mut name = Name::from_labels(labels.iter().map(|l| l.as_bytes())).ok()?;
        name = name.append_domain(&self.domain).ok()?;
        Some(name)
    }

    fn soa(&self, serial: u32) -> Record {
        let mname = self
            .name(&["ns", "dns"])
            .unwrap_or_else(|| self.domain.clone());
        let rname = self
            .name(&["hostmaster"])
            .unwrap_or_else(|| self.domain.clone());
        Record::from_rdata(
            self.domain.clone(),
            TTL,
            RData::SOA(SOA::new(mname, rname, serial, 7200, 1800, 86400, TTL)),
        )
    }
}

/// An answer from the cluster's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// NOERROR, NXDOMAIN or SERVFAIL.
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the zone's SOA on negative answers).
    pub authorities: Vec<Record>,
    /// The additional section (addresses of SRV targets, of the NS).
    pub additionals: Vec<Record>,
    /// An ExternalName target outside the zone whose records of the asked
    /// type should follow the CNAME (from the upstream resolvers).
    pub chase: Option<Name>,
}

impl Answer {
    fn new() -> Answer {
        Answer {
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            chase: None,
        }
    }
}

/// What to do with a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answer authoritatively.
    Answer(Answer),
    /// Not the cluster's name: ask the upstream resolvers.
    Forward,
}

/// Whether a name exists in the zone (NODATA) or not (NXDOMAIN).
#[derive(Debug)]
struct NameError;

/// One thing a name resolves to, before it becomes records.
#[derive(Debug)]
struct Target {
    host: Host,
    port: u16,
    /// The endpoint's label for endpoint records (SRV targets).
    endpoint: Option<String>,
}

#[derive(Debug)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A parsed in-zone name.
#[derive(Debug)]
enum Request<'a> {
    /// The zone's apex: SOA and NS.
    Apex,
    /// `svc.<zone>`, `pod.<zone>`: exists, no records.
    Empty,
    /// `dns-version.<zone>`.
    DnsVersion,
    /// `ns.dns.<zone>`.
    NameServer,
    /// `<ns>.svc.<zone>` or `<ns>.pod.<zone>`.
    Namespace(&'a str),
    /// `[_port._proto.|endpoint.]service.ns.svc.<zone>`.
    Service {
        namespace: &'a str,
        service: &'a str,
        endpoint: Option<&'a str>,
        port: Option<&'a str>,
        protocol: Option<&'a str>,
    },
    /// `a-b-c-d.ns.pod.<zone>`.
    Pod { namespace: &'a str, pod: &'a str },
}

/// Answers `qtype` for `qname` from `data` (`qname` in any case, with or
/// without the trailing dot).
pub fn answer(data: &ClusterData, zone: &Zone, qname: &Name, qtype: RecordType) -> Outcome {
    answer_chain(data, zone, qname, qtype, 0)
}

fn answer_chain(
    data: &ClusterData,
    zone: &Zone,
    qname: &Name,
    qtype: RecordType,
    depth: usize,
) -> Outcome {
    let mut lower = qname.to_lowercase();
    lower.set_fqdn(true);
    if !zone.domain.zone_of(&lower) {
        return reverse(data, zone, qname, &lower, qtype);
    }
    // (`num_labels` does not count a leading `*`; iterate instead.)
    let relative: Vec<String> = lower
        .iter()
        .take(
            lower
                .iter()
                .count()
                .saturating_sub(zone.domain.iter().count()),
        )
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let labels: Vec<&str> = relative.iter().map(String::as_str).collect();
    let mut out = Answer::new();
    let request = match parse(&labels) {
        Ok(r) => r,
        Err(NameError) => return negative(data, zone, out, Err(NameError)),
    };
    let owner = qname.clone();
    let found: Result<Vec<Target>, NameError> = match request {
        Request::Apex => {
            match qtype {
                RecordType::SOA => out.answers.push(zone.soa(data.serial())),
                RecordType::NS => {
                    if let Some(ns) = zone.name(&["ns", "dns"]) {
                        out.answers
                            .push(Record::from_rdata(owner, TTL, RData::NS(NS(ns.clone()))));
                        if let Some(ip) = zone.dns_ip {
                            out.additionals.push(address(ns, ip));
                        }
                    }
                }
                _ => {}
            }
            return negative(data, zone, out, Ok(Vec::new()));
        }
        Request::Empty => Ok(Vec::new()),
        Request::DnsVersion => {
            if qtype == RecordType::TXT {
                out.answers.push(Record::from_rdata(
                    owner,
                    TTL,
                    RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_owned()])),
                ));
            }
            return negative(data, zone, out, Ok(Vec::new()));
        }
        Request::NameServer => Ok(zone
            .dns_ip
            .map(|ip| Target {
                host: Host::Ip(ip),
                port: 53,
                endpoint: None,
            })
            .into_iter()
            .collect()),
        Request::Namespace(ns) => {
            if data.has_namespace(ns) {
                Ok(Vec::new())
            } else {
                Err(NameError)
            }
        }
        Request::Pod { namespace, pod } => find_pod(data, namespace, pod),
        Request::Service {
            namespace,
            service,
            endpoint,
            port,
            protocol,
        } => find_service(data, namespace, service, endpoint, port, protocol),
    };
    let targets = match found {
        Ok(t) => t,
        Err(e) => return negative(data, zone, out, Err(e)),
    };
    match qtype {
        RecordType::A | RecordType::AAAA | RecordType::CNAME => {
            for t in &targets {
                match &t.host {
                    Host::Ip(ip) if qtype != RecordType::CNAME => {
                        if ip.is_ipv4() == (qtype == RecordType::A) {
                            push_unique(&mut out.answers, address(owner.clone(), *ip));
                        }
                    }
                    Host::Ip(_) => {}
                    Host::Name(target) => {
                        let Some(target) = absolute(target) else {
                            continue;
                        };
                        out.answers.push(Record::from_rdata(
                            owner.clone(),
                            TTL,
                            RData::CNAME(CNAME(target.clone())),
                        ));
                        if qtype != RecordType::CNAME {
                            follow(data, zone, &target, qtype, depth, &mut out);
                        }
                    }
                }
            }
        }
        RecordType::SRV => srv(zone, &owner, &labels, &targets, &mut out),
        _ => {}
    }
    negative(data, zone, out, Ok(targets))
}

/// Adds what a CNAME's target resolves to: in the zone from `data`,
/// outside it by the caller (upstream).
fn follow(
    data: &ClusterData,
    zone: &Zone,
    target: &Name,
    qtype: RecordType,
    depth: usize,
    out: &mut Answer,
) {
    if !zone.domain.zone_of(&target.to_lowercase()) {
        out.chase = Some(target.clone());
        return;
    }
    if depth >= MAX_CNAME_CHAIN {
        return;
    }
    if let Outcome::Answer(next) = answer_chain(data, zone, target, qtype, depth + 1)
        && next.rcode == ResponseCode::NoError
    {
        out.answers.extend(next.answers);
        out.chase = next.chase;
    }
}

/// SRV records for `targets` with their addresses as additional records.
fn srv(zone: &Zone, owner: &Name, labels: &[&str], targets: &[Target], out: &mut Answer) {
    // The service's own name: the last three relative labels.
    let base = &labels[labels.len().saturating_sub(3)..];
    let mut records: Vec<(Name, u16, Option<IpAddr>)> = Vec::new();
    for t in targets {
        let (name, ip) = match (&t.host, &t.endpoint) {
            (Host::Name(n), _) => match absolute(n) {
                Some(n) => (n, None),
                None => continue,
            },
            (Host::Ip(ip), None) => match zone.name(base) {
                Some(n) => (n, Some(*ip)),
                None => continue,
            },
            (Host::Ip(ip), Some(ep)) => {
                let mut l: Vec<&str> = vec![ep.as_str()];
                l.extend_from_slice(base);
                match zone.name(&l) {
                    Some(n) => (n, Some(*ip)),
                    None => continue,
                }
            }
        };
        if !records.iter().any(|(n, p, _)| *n == name && *p == t.port) {
            records.push((name, t.port, ip));
        }
    }
    // CoreDNS's weights: 100 split evenly over the records of one priority.
    let weight = u16::try_from(100 / records.len().max(1))
        .unwrap_or(1)
        .max(1);
    for (name, port, ip) in records {
        out.answers.push(Record::from_rdata(
            owner.clone(),
            TTL,
            RData::SRV(SRV::new(0, weight, port, name.clone())),
        ));
        if let Some(ip) = ip {
            push_unique(&mut out.additionals, address(name, ip));
        }
    }
}

/// Finishes an answer: NXDOMAIN for a name that does not exist, NODATA
/// (NOERROR, no answers) otherwise; both with the zone's SOA as authority.
fn negative(
    data: &ClusterData,
    zone: &Zone,
    mut out: Answer,
    found: Result<Vec<Target>, NameError>,
) -> Outcome {
    if found.is_err() {
        out.rcode = ResponseCode::NXDomain;
    }
    if out.answers.is_empty() {
        out.authorities.push(zone.soa(data.serial()));
    }
    Outcome::Answer(out)
}

fn push_unique(records: &mut Vec<Record>, record: Record) {
    if !records.contains(&record) {
        records.push(record);
    }
}

fn address(name: Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, TTL, data)
}

/// `name` as an absolute DNS name (ExternalNames are written without the
/// trailing dot).
fn absolute(name: &str) -> Option<Name> {
    let mut n = Name::from_ascii(name.trim_end_matches('.')).ok()?;
    n.set_fqdn(true);
    (!n.is_root()).then_some(n)
}

/// Reads an in-zone name, relative labels last-to-first as CoreDNS does.
fn parse<'a>(labels: &[&'a str]) -> Result<Request<'a>, NameError> {
    let mut rest = labels.iter().rev().copied();
    let Some(kind) = rest.next() else {
        return Ok(Request::Apex);
    };
    match (kind, labels.len()) {
        ("dns-version", 1) => return Ok(Request::DnsVersion),
        ("dns", 2) if labels[0] == "ns" => return Ok(Request::NameServer),
        ("svc" | "pod", _) => {}
        _ => return Err(NameError),
    }
    let Some(namespace) = rest.next() else {
        return Ok(Request::Empty);
    };
    let Some(name) = rest.next() else {
        return Ok(Request::Namespace(namespace));
    };
    let left: Vec<&str> = rest.collect();
    if kind == "pod" {
        return match left.len() {
            0 => Ok(Request::Pod {
                namespace,
                pod: name,
            }),
            _ => Err(NameError),
        };
    }
    let underscored = |l: &'a str| l.strip_prefix('_').unwrap_or(l);
    let (endpoint, port, protocol) = match *left.as_slice() {
        [] => (None, None, None),
        [endpoint] => (Some(endpoint), None, None),
        [protocol, port] => (None, Some(underscored(port)), Some(underscored(protocol))),
        _ => return Err(NameError),
    };
    Ok(Request::Service {
        namespace,
        service: name,
        endpoint,
        port,
        protocol,
    })
}

/// `pods insecure`: any dashed address in an existing namespace.
fn find_pod(data: &ClusterData, ns: &str, pod: &str) -> Result<Vec<Target>, NameError> {
    if !data.has_namespace(ns) {
        return Err(NameError);
    }
    let text = if pod.matches('-').count() == 3 && !pod.contains("--") {
        pod.replace('-', ".")
    } else {
        pod.replace('-', ":")
    };
    let ip: IpAddr = text.parse().map_err(|_| NameError)?;
    Ok(vec![Target {
        host: Host::Ip(ip),
        port: 0,
        endpoint: None,
    }])
}

fn matches(query: Option<&str>, value: &str) -> bool {
    query.is_none_or(|q| q.eq_ignore_ascii_case(value))
}

fn find_service(
    data: &ClusterData,
    ns: &str,
    name: &str,
    endpoint: Option<&str>,
    port: Option<&str>,
    protocol: Option<&str>,
) -> Result<Vec<Target>, NameError> {
    if !data.has_namespace(ns) {
        return Err(NameError);
    }
    let svc = data.service(ns, name).ok_or(NameError)?;
    let mut out = Vec::new();
    if svc.kind == ServiceKind::Headless || endpoint.is_some() {
        for ep in data.endpoints(ns, name) {
            if !matches(endpoint, &ep.label) {
                continue;
            }
            if ep.ports.is_empty() && port.is_none() && protocol.is_none() {
                out.push(Target {
                    host: Host::Ip(ep.ip),
                    port: 0,
                    endpoint: Some(ep.label.clone()),
                });
            }
            for p in &ep.ports {
                if matches(port, &p.name) && matches(protocol, &p.protocol) {
                    out.push(Target {
                        host: Host::Ip(ep.ip),
                        port: p.port,
                        endpoint: Some(ep.label.clone()),
                    });
                }
            }
        }
        return if out.is_empty() {
            Err(NameError)
        } else {
            Ok(out)
        };
    }
    match &svc.kind {
        ServiceKind::ExternalName(target) => {
            // An IP address is no CNAME target; CoreDNS serves nothing then.
            if target.parse::<IpAddr>().is_err() && absolute(target).is_some() {
                out.push(Target {
                    host: Host::Name(target.clone()),
                    port: 0,
                    endpoint: None,
                });
            }
        }
        ServiceKind::ClusterIp(ips) => {
            let mut any = false;
            for p in &svc.ports {
                if matches(port, &p.name) && matches(protocol, &p.protocol) {
                    any = true;
                    out.extend(ips.iter().map(|&ip| Target {
                        host: Host::Ip(ip),
                        port: p.port,
                        endpoint: None,
                    }));
                }
            }
            if !any {
                return Err(NameError);
            }
        }
        ServiceKind::Headless => {}
    }
    if out.is_empty() && !matches!(svc.kind, ServiceKind::ClusterIp(_)) {
        return Err(NameError);
    }
    Ok(out)
}

/// PTR records of cluster addresses; anything else is forwarded (CoreDNS's
/// `fallthrough in-addr.arpa ip6.arpa`).
fn reverse(
    data: &ClusterData,
    zone: &Zone,
    qname: &Name,
    lower: &Name,
    qtype: RecordType,
) -> Outcome {
    if qtype != RecordType::PTR {
        return Outcome::Forward;
    }
    let Ok(net) = lower.parse_arpa_name() else {
        return Outcome::Forward;
    };
    if net.prefix_len() != net.max_prefix_len() {
        return Outcome::Forward;
    }
    let mut out = Answer::new();
    for t in data.ptr(net.addr()) {
        let mut labels: Vec<&str> = Vec::new();
        if let Some(ep) = &t.endpoint {
            labels.push(ep);
        }
        labels.extend([t.service.as_str(), t.namespace.as_str(), "svc"]);
        if let Some(name) = zone.name(&labels) {
            out.answers.push(Record::from_rdata(
                qname.clone(),
                TTL,
                RData::PTR(PTR(name)),
            ));
        }
    }
    if out.answers.is_empty() {
        return Outcome::Forward;
    }
    Outcome::Answer(out)
}
