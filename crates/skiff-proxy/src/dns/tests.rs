//! The answer function and the wire layer, table-driven over a small
//! cluster: every record type, NXDOMAIN vs NODATA, headless Services,
//! ExternalName, PTR, pod names, case and trailing dots, truncation, and
//! malformed requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::answer::{Outcome, TTL, Zone, answer};
use super::data::ClusterData;
use super::message::{self, Step, Transport};

fn svc(ns: &str, name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
        .unwrap()
}

fn slice(ns: &str, name: &str, service: &str, endpoints: Value, ports: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
    }))
    .unwrap()
}

/// default: web (ClusterIP, ports http/TCP and dns/UDP), db (headless,
/// two ready endpoints with hostnames and one not ready), raw (headless, no
/// hostnames, no ports), ext (ExternalName), alias (ExternalName inside the
/// zone), pub (headless, publishNotReadyAddresses), dual (IPv4 and IPv6);
/// namespace `other` without Services.
fn cluster() -> ClusterData {
    let mut d = ClusterData::default();
    d.replace_namespaces(["default", "other", "kube-system"]);
    d.set_serial(1234);
    d.replace_services(&[
        svc(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                      {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        ),
        svc(
            "default",
            "db",
            json!({"clusterIP": "None",
            "ports": [{"name": "pg", "port": 5432}]}),
        ),
        svc("default", "raw", json!({"clusterIP": "None"})),
        svc(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.org"}),
        ),
        svc(
            "default",
            "alias",
            json!({"type": "ExternalName", "externalName": "web.default.svc.cluster.local."}),
        ),
        svc(
            "default",
            "pub",
            json!({"clusterIP": "None", "publishNotReadyAddresses": true,
            "ports": [{"name": "p", "port": 1}]}),
        ),
        svc(
            "default",
            "dual",
            json!({"clusterIP": "10.43.0.21", "clusterIPs": ["10.43.0.21", "fd00::21"],
            "ports": [{"port": 80}]}),
        ),
    ]);
    d.replace_slices(&[
        slice("default", "web-1", "web",
            json!([{"addresses": ["10.42.0.5"], "conditions": {"ready": true}}]),
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}])),
        slice("default", "db-1", "db",
            json!([{"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": true}},
                   {"addresses": ["10.42.1.8"], "hostname": "db-1"},
                   {"addresses": ["10.42.1.9"], "hostname": "db-2", "conditions": {"ready": false}}]),
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}])),
        slice("default", "raw-1", "raw",
            json!([{"addresses": ["10.42.2.3"], "conditions": {"ready": true}}]), json!([])),
        slice("default", "pub-1", "pub",
            json!([{"addresses": ["10.42.3.1"], "conditions": {"ready": false}}]),
            json!([{"name": "p", "port": 1}])),
    ]);
    d
}

fn zone() -> Zone {
    Zone::new("cluster.local", Some("10.43.0.10".parse().unwrap())).unwrap()
}

/// The answer to `name`/`qtype`: (rcode, answer data as text, has SOA authority).
fn ask(d: &ClusterData, name: &str, qtype: RecordType) -> (ResponseCode, Vec<String>, bool) {
    let qname = Name::from_ascii(name).unwrap();
    match answer(d, &zone(), &qname, qtype) {
        Outcome::Forward => (ResponseCode::Refused, vec!["forward".into()], false),
        Outcome::Answer(a) => {
            for r in a.answers.iter().chain(&a.authorities).chain(&a.additionals) {
                assert_eq!(r.ttl, TTL, "{r}");
            }
            let soa = a
                .authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA);
            let mut texts: Vec<String> = a
                .answers
                .iter()
                .map(|r| format!("{} {}", r.record_type(), r.data))
                .collect();
            texts.sort();
            (a.rcode, texts, soa)
        }
    }
}

use RecordType::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use ResponseCode::{NXDomain, NoError};

#[test]
fn answers_like_coredns() {
    let d = cluster();
    let cases: &[(&str, RecordType, ResponseCode, &[&str], bool)] = &[
        // ClusterIP Services.
        (
            "web.default.svc.cluster.local.",
            A,
            NoError,
            &["A 10.43.0.20"],
            false,
        ),
        ("web.default.svc.cluster.local.", AAAA, NoError, &[], true),
        ("web.default.svc.cluster.local.", MX, NoError, &[], true),
        ("web.default.svc.cluster.local.", TXT, NoError, &[], true),
        (
            "dual.default.svc.cluster.local.",
            AAAA,
            NoError,
            &["AAAA fd00::21"],
            false,
        ),
        (
            "dual.default.svc.cluster.local.",
            A,
            NoError,
            &["A 10.43.0.21"],
            false,
        ),
        // Case and the trailing dot do not matter.
        (
            "WEB.Default.SVC.Cluster.Local",
            A,
            NoError,
            &["A 10.43.0.20"],
            false,
        ),
        // Unknown names in the zone.
        ("nope.default.svc.cluster.local.", A, NXDomain, &[], true),
        ("nope.default.svc.cluster.local.", MX, NXDomain, &[], true),
        ("web.nons.svc.cluster.local.", A, NXDomain, &[], true),
        ("web.default.svx.cluster.local.", A, NXDomain, &[], true),
        (
            "a.b.c.d.web.default.svc.cluster.local.",
            A,
            NXDomain,
            &[],
            true,
        ),
        // Names that exist without records of their own.
        ("default.svc.cluster.local.", A, NoError, &[], true),
        ("other.svc.cluster.local.", A, NoError, &[], true),
        ("svc.cluster.local.", A, NoError, &[], true),
        ("pod.cluster.local.", A, NoError, &[], true),
        ("cluster.local.", A, NoError, &[], true),
        (
            "cluster.local.",
            SOA,
            NoError,
            &["SOA ns.dns.cluster.local. hostmaster.cluster.local. 1234 7200 1800 86400 5"],
            false,
        ),
        (
            "cluster.local.",
            NS,
            NoError,
            &["NS ns.dns.cluster.local."],
            false,
        ),
        (
            "ns.dns.cluster.local.",
            A,
            NoError,
            &["A 10.43.0.10"],
            false,
        ),
        (
            "dns-version.cluster.local.",
            TXT,
            NoError,
            &["TXT 1.1.0"],
            false,
        ),
        // Headless: the ready endpoints (ready unset counts as ready).
        (
            "db.default.svc.cluster.local.",
            A,
            NoError,
            &["A 10.42.0.7", "A 10.42.1.8"],
            false,
        ),
        (
            "db-0.db.default.svc.cluster.local.",
            A,
            NoError,
            &["A 10.42.0.7"],
            false,
        ),
        ("db-2.db.default.svc.cluster.local.", A, NXDomain, &[], true),
        (
            "raw.default.svc.cluster.local.",
            A,
            NoError,
            &["A 10.42.2.3"],
            false,
        ),
        (
            "10-42-2-3.raw.default.svc.cluster.local.",
            A,
            NoError,
            &["A 10.42.2.3"],
            false,
        ),
        (
            "pub.default.svc.cluster.local.",
            A,
            NoError,
            &["A 10.42.3.1"],
            false,
        ),
        // Endpoint names of a ClusterIP Service (CoreDNS serves them too).
        (
            "10-42-0-5.web.default.svc.cluster.local.",
            A,
            NoError,
            &["A 10.42.0.5"],
            false,
        ),
        // SRV: ClusterIP target is the Service, headless targets the endpoints.
        (
            "_http._tcp.web.default.svc.cluster.local.",
            SRV,
            NoError,
            &["SRV 0 100 80 web.default.svc.cluster.local."],
            false,
        ),
        (
            "_dns._udp.web.default.svc.cluster.local.",
            SRV,
            NoError,
            &["SRV 0 100 53 web.default.svc.cluster.local."],
            false,
        ),
        (
            "_http._udp.web.default.svc.cluster.local.",
            SRV,
            NXDomain,
            &[],
            true,
        ),
        (
            "web.default.svc.cluster.local.",
            SRV,
            NoError,
            &[
                "SRV 0 50 53 web.default.svc.cluster.local.",
                "SRV 0 50 80 web.default.svc.cluster.local.",
            ],
            false,
        ),
        (
            "_pg._tcp.db.default.svc.cluster.local.",
            SRV,
            NoError,
            &[
                "SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
                "SRV 0 50 5432 db-1.db.default.svc.cluster.local.",
            ],
            false,
        ),
        // ExternalName: a CNAME; inside the zone, followed.
        (
            "ext.default.svc.cluster.local.",
            CNAME,
            NoError,
            &["CNAME example.org."],
            false,
        ),
        (
            "ext.default.svc.cluster.local.",
            A,
            NoError,
            &["CNAME example.org."],
            false,
        ),
        (
            "alias.default.svc.cluster.local.",
            A,
            NoError,
            &["A 10.43.0.20", "CNAME web.default.svc.cluster.local."],
            false,
        ),
        // Pods (insecure): any address in an existing namespace.
        (
            "10-42-0-9.default.pod.cluster.local.",
            A,
            NoError,
            &["A 10.42.0.9"],
            false,
        ),
        (
            "10-42-0-9.default.pod.cluster.local.",
            AAAA,
            NoError,
            &[],
            true,
        ),
        (
            "fd00--9.default.pod.cluster.local.",
            AAAA,
            NoError,
            &["AAAA fd00::9"],
            false,
        ),
        ("10-42-0-9.nons.pod.cluster.local.", A, NXDomain, &[], true),
        (
            "not-an-ip.default.pod.cluster.local.",
            A,
            NXDomain,
            &[],
            true,
        ),
        // PTR of ClusterIPs and endpoints.
        (
            "20.0.43.10.in-addr.arpa.",
            PTR,
            NoError,
            &["PTR web.default.svc.cluster.local."],
            false,
        ),
        (
            "7.0.42.10.in-addr.arpa.",
            PTR,
            NoError,
            &["PTR db-0.db.default.svc.cluster.local."],
            false,
        ),
        (
            "3.2.42.10.in-addr.arpa.",
            PTR,
            NoError,
            &["PTR 10-42-2-3.raw.default.svc.cluster.local."],
            false,
        ),
        (
            "1.0.0.f.f.f.f.f.ip6.arpa.",
            PTR,
            ResponseCode::Refused,
            &["forward"],
            false,
        ),
        // Outside the zone: forwarded.
        (
            "example.org.",
            A,
            ResponseCode::Refused,
            &["forward"],
            false,
        ),
        (
            "9.9.9.10.in-addr.arpa.",
            PTR,
            ResponseCode::Refused,
            &["forward"],
            false,
        ),
    ];
    for (name, qtype, rcode, records, soa) in cases {
        let got = ask(&d, name, *qtype);
        let want: Vec<String> = records.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(got, (*rcode, want, *soa), "{name} {qtype}");
    }
}

#[test]
fn ptr_of_ipv6_cluster_ip() {
    let d = cluster();
    let ip: IpAddr = "fd00::21".parse().unwrap();
    let IpAddr::V6(v6) = ip else { unreachable!() };
    let nibbles: Vec<String> = v6
        .octets()
        .iter()
        .rev()
        .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
        .collect();
    let name = format!("{}.ip6.arpa.", nibbles.join("."));
    assert_eq!(
        ask(&d, &name, PTR),
        (
            NoError,
            vec!["PTR dual.default.svc.cluster.local.".to_owned()],
            false
        )
    );
}

#[test]
fn srv_additional_records_carry_target_addresses() {
    let d = cluster();
    let qname = Name::from_ascii("_pg._tcp.db.default.svc.cluster.local.").unwrap();
    let Outcome::Answer(a) = answer(&d, &zone(), &qname, SRV) else {
        panic!("forwarded")
    };
    let mut extra: Vec<String> = a
        .additionals
        .iter()
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        [
            "db-0.db.default.svc.cluster.local. 10.42.0.7",
            "db-1.db.default.svc.cluster.local. 10.42.1.8"
        ]
    );
}

#[test]
fn answers_keep_the_asked_case() {
    let d = cluster();
    let qname = Name::from_ascii("Web.Default.svc.cluster.local").unwrap();
    let Outcome::Answer(a) = answer(&d, &zone(), &qname, A) else {
        panic!("forwarded")
    };
    assert_eq!(
        a.answers[0].name.to_ascii(),
        "Web.Default.svc.cluster.local"
    );
}

#[test]
fn changes_reach_answers_and_ptr() {
    let mut d = cluster();
    let name = "db.default.svc.cluster.local.";
    // The not-ready endpoint becomes ready; another slice appears.
    d.apply_slice(&slice(
        "default",
        "db-1",
        "db",
        json!([{"addresses": ["10.42.1.9"], "hostname": "db-2", "conditions": {"ready": true}}]),
        json!([{"name": "pg", "port": 5432}]),
    ));
    d.apply_slice(&slice(
        "default",
        "db-2",
        "db",
        json!([{"addresses": ["10.42.4.4"]}]),
        json!([{"name": "pg", "port": 5432}]),
    ));
    assert_eq!(ask(&d, name, A).1, ["A 10.42.1.9", "A 10.42.4.4"]);
    assert_eq!(
        ask(&d, "7.0.42.10.in-addr.arpa.", PTR).0,
        ResponseCode::Refused,
        "old endpoint's PTR is gone"
    );
    assert_eq!(
        ask(&d, "9.1.42.10.in-addr.arpa.", PTR).1,
        ["PTR db-2.db.default.svc.cluster.local."]
    );
    d.remove_slice("default", "db-1");
    d.remove_slice("default", "db-2");
    assert_eq!(
        ask(&d, name, A),
        (NXDomain, vec![], true),
        "headless without endpoints"
    );
    d.remove_service("default", "web");
    assert_eq!(ask(&d, "web.default.svc.cluster.local.", A).0, NXDomain);
    assert_eq!(
        ask(&d, "20.0.43.10.in-addr.arpa.", PTR).0,
        ResponseCode::Refused
    );
    d.remove_namespace("other");
    assert_eq!(ask(&d, "other.svc.cluster.local.", A).0, NXDomain);
    // A slice moving to another Service (its label changed).
    d.apply_slice(&slice(
        "default",
        "raw-1",
        "pub",
        json!([{"addresses": ["10.42.2.3"]}]),
        json!([{"name": "p", "port": 1}]),
    ));
    assert_eq!(ask(&d, "raw.default.svc.cluster.local.", A).0, NXDomain);
    assert_eq!(
        ask(&d, "pub.default.svc.cluster.local.", A).1,
        ["A 10.42.2.3", "A 10.42.3.1"]
    );
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn reply(d: &ClusterData, bytes: &[u8], transport: Transport) -> Message {
    match message::process(d, &zone(), bytes, transport, true) {
        Step::Reply(b) => Message::from_vec(&b).unwrap(),
        other => panic!("not a reply: {other:?}"),
    }
}

/// A headless Service with `n` endpoints.
fn big(n: u32) -> ClusterData {
    let mut d = cluster();
    d.apply_service(&svc(
        "default",
        "big",
        json!({"clusterIP": "None", "ports": [{"name": "p", "port": 1}]}),
    ));
    let endpoints: Vec<Value> = (0..n)
        .map(|i| json!({"addresses": [format!("10.42.{}.{}", i / 250, i % 250 + 1)]}))
        .collect();
    d.apply_slice(&slice(
        "default",
        "big-1",
        "big",
        json!(endpoints),
        json!([{"name": "p", "port": 1}]),
    ));
    d
}

#[test]
fn wire_reply_flags_and_sections() {
    let d = cluster();
    let m = reply(
        &d,
        &query("web.default.svc.cluster.local.", A, None),
        Transport::Udp,
    );
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m.metadata.authoritative && m.metadata.recursion_desired && !m.metadata.truncation);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(m.answers.len(), 1);
    assert!(m.edns.is_none(), "no OPT without one in the request");
    let m = reply(
        &d,
        &query("nope.default.svc.cluster.local.", A, Some(1232)),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, NXDomain);
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), SOA);
    assert!(m.edns.is_some(), "OPT answered with OPT");
}

#[test]
fn udp_truncates_and_tcp_does_not() {
    let d = big(100);
    let q = query("big.default.svc.cluster.local.", A, None);
    let udp = match message::process(&d, &zone(), &q, Transport::Udp, true) {
        Step::Reply(b) => b,
        other => panic!("{other:?}"),
    };
    assert!(udp.len() <= 512, "{}", udp.len());
    let m = Message::from_vec(&udp).unwrap();
    assert!(m.metadata.truncation);
    assert!(
        !m.answers.is_empty() && m.answers.len() < 100,
        "{}",
        m.answers.len()
    );
    // A larger EDNS buffer fits all of them.
    let m = reply(
        &d,
        &query("big.default.svc.cluster.local.", A, Some(4096)),
        Transport::Udp,
    );
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    let m = reply(&d, &q, Transport::Tcp);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    // Small answers are not truncated.
    let m = reply(
        &d,
        &query("web.default.svc.cluster.local.", A, None),
        Transport::Udp,
    );
    assert!(!m.metadata.truncation);
}

#[test]
fn errors_on_the_wire() {
    let d = cluster();
    let zone = zone();
    // Shorter than a header: dropped.
    assert!(matches!(
        message::process(&d, &zone, &[1, 2, 3], Transport::Udp, true),
        Step::Drop
    ));
    // A response: dropped.
    let mut resp = query("web.default.svc.cluster.local.", A, None);
    resp[2] |= 0x80;
    assert!(matches!(
        message::process(&d, &zone, &resp, Transport::Udp, true),
        Step::Drop
    ));
    // A header that claims a question it does not carry: FORMERR, same ID.
    let mut bad = query("web.default.svc.cluster.local.", A, None);
    bad.truncate(14);
    let m = reply(&d, &bad, Transport::Udp);
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (0x1234, ResponseCode::FormErr)
    );
    // No question: FORMERR.
    let mut none = Message::new(7, MessageType::Query, OpCode::Query);
    none.metadata.recursion_desired = true;
    let m = reply(&d, &none.to_vec().unwrap(), Transport::Udp);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Another opcode: NOTIMP.
    let mut upd = query("web.default.svc.cluster.local.", A, None);
    upd[2] = (upd[2] & !0x78) | (5 << 3);
    let m = reply(&d, &upd, Transport::Udp);
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    // Not synced yet: SERVFAIL in the zone.
    let q = query("web.default.svc.cluster.local.", A, None);
    let Step::Reply(b) = message::process(&d, &zone, &q, Transport::Udp, false) else {
        panic!()
    };
    assert_eq!(
        Message::from_vec(&b).unwrap().metadata.response_code,
        ResponseCode::ServFail
    );
    // Outside the zone: forwarded (the server decides REFUSED or upstream).
    let q = query("example.org.", A, None);
    assert!(matches!(
        message::process(&d, &zone, &q, Transport::Udp, true),
        Step::Forward(_)
    ));
}

/// Random and mutated requests never panic; whatever comes back is a
/// response with the request's ID.
#[test]
fn fuzz_requests_never_panic() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let d = big(30);
    let zone = zone();
    let seeds: Vec<Vec<u8>> = vec![
        query("web.default.svc.cluster.local.", A, None),
        query("_pg._tcp.db.default.svc.cluster.local.", SRV, Some(4096)),
        query("big.default.svc.cluster.local.", A, None),
        query("7.0.42.10.in-addr.arpa.", PTR, None),
        query("alias.default.svc.cluster.local.", A, Some(512)),
        query("10-42-0-9.default.pod.cluster.local.", A, None),
    ];
    let mut rng = StdRng::seed_from_u64(0x05ee_dd15);
    for round in 0..20_000 {
        let mut bytes = if round % 10 == 0 {
            let n = rng.random_range(0..300);
            (0..n).map(|_| rng.random::<u8>()).collect()
        } else {
            seeds[rng.random_range(0..seeds.len())].clone()
        };
        for _ in 0..rng.random_range(0..6) {
            if bytes.is_empty() {
                break;
            }
            let i = rng.random_range(0..bytes.len());
            match rng.random_range(0..5) {
                0 => bytes[i] = rng.random(),
                1 => bytes.truncate(i),
                2 => bytes.insert(i, rng.random()),
                3 => {
                    bytes.remove(i);
                }
                _ => bytes[i] ^= 1 << rng.random_range(0..8),
            }
        }
        for transport in [Transport::Udp, Transport::Tcp] {
            match message::process(&d, &zone, &bytes, transport, true) {
                Step::Reply(out) => {
                    assert!(out.len() >= 12, "{bytes:02x?}");
                    assert_eq!(out[..2], bytes[..2], "{bytes:02x?}");
                    assert!(out[2] & 0x80 != 0, "a response: {bytes:02x?}");
                    if transport == Transport::Udp {
                        assert!(
                            out.len() <= usize::from(message::MAX_UDP_PAYLOAD),
                            "{bytes:02x?}"
                        );
                    }
                }
                Step::Drop | Step::Forward(_) | Step::Chase(..) => {}
            }
        }
    }
}

#[test]
fn resolv_conf_upstreams() {
    let text = "# comment\nsearch example\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\nnameserver 127.0.0.53\n";
    let skip = ["127.0.0.53:53".parse().unwrap()];
    assert_eq!(
        super::forward::upstreams_from_resolv_conf(text, &skip),
        vec![
            "192.0.2.1:53".parse().unwrap(),
            "[fe80::1]:53".parse().unwrap()
        ]
    );
}

#[test]
fn kube_dns_objects_compare_by_owned_fields() {
    use super::kube_dns::{KubeDns, covers, endpoint_slice};
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let want = KubeDns {
        cluster_ip: "10.43.0.10".parse().unwrap(),
        address: Some(ip),
        port: 53,
    };
    let mut live = endpoint_slice(&want, ip);
    live["metadata"]["resourceVersion"] = json!("7");
    live["metadata"]["labels"]["extra"] = json!("x");
    assert!(covers(&live, &endpoint_slice(&want, ip)));
    let moved = KubeDns { port: 5353, ..want };
    assert!(!covers(&live, &endpoint_slice(&moved, ip)));
    assert!(!covers(
        &live,
        &endpoint_slice(&want, "192.0.2.11".parse().unwrap())
    ));
}

const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[test]
fn recursion_is_allowed_from_loopback_and_the_listed_networks_only() {
    use super::Recursion;
    let policy = Recursion::From(vec!["10.42.0.0/16".parse().unwrap()]);
    for (client, allowed) in [
        ("127.0.0.1", true),
        ("127.3.2.1", true),
        ("::1", true),
        ("::ffff:10.42.9.9", true),
        ("10.42.0.0", true),
        ("10.42.255.255", true),
        ("10.43.0.1", false),
        ("192.0.2.7", false),
        ("2001:db8::1", false),
    ] {
        assert_eq!(policy.allows(client.parse().unwrap()), allowed, "{client}");
    }
    assert!(Recursion::Anyone.allows("192.0.2.7".parse().unwrap()));
    assert!(!Recursion::From(Vec::new()).allows("192.0.2.7".parse().unwrap()));
}

/// `client` gets REFUSED for a name outside the zone, yet an ExternalName
/// in the zone still gets its CNAME (with nothing chased upstream).
async fn assert_outside_names_refused(resolver: &super::Resolver, client: std::net::IpAddr) {
    let reply = resolver
        .respond(&query("example.org.", A, None), Transport::Udp, client)
        .await
        .unwrap();
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (0x1234, ResponseCode::Refused)
    );
    let reply = resolver
        .respond(
            &query("ext.default.svc.cluster.local.", A, None),
            Transport::Udp,
            client,
        )
        .await
        .unwrap();
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.response_code, NoError);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), CNAME);
}

#[tokio::test]
async fn outside_names_are_refused_without_upstreams_or_recursion() {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, RwLock};
    let resolver = |upstreams| {
        super::Resolver::new(
            Arc::new(RwLock::new(cluster())),
            Arc::new(AtomicBool::new(true)),
            zone(),
            upstreams,
        )
    };
    // No upstreams: refused to everyone.
    assert_outside_names_refused(&resolver(Vec::new()), LOCAL).await;
    // An upstream (counting what reaches it, never answering), but a client
    // outside the networks allowed recursion.
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let guarded = resolver(vec![upstream.local_addr().unwrap()]).with_recursion(
        super::Recursion::From(vec!["10.42.0.0/16".parse().unwrap()]),
    );
    assert_outside_names_refused(&guarded, "192.0.2.7".parse().unwrap()).await;
    let mut buf = [0u8; 512];
    let nothing = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        upstream.recv_from(&mut buf),
    )
    .await;
    assert!(nothing.is_err(), "the upstream was asked for an outsider");
}

#[test]
fn cache_keeps_upstream_answers_for_their_ttl() {
    use std::time::{Duration, Instant};

    use hickory_proto::rr::rdata::{A as ARecord, SOA as SoaRecord};
    use hickory_proto::rr::{RData, Record};

    use super::cache::{Cache, MAX_TTL, key_of};
    let t0 = Instant::now();
    let cache = Cache::default();
    let request = Message::from_vec(&query("Example.ORG.", A, None)).unwrap();
    let key = key_of(&request).unwrap();
    let mut reply = Message::new(1, MessageType::Response, OpCode::Query);
    reply.add_answer(Record::from_rdata(
        Name::from_ascii("example.org.").unwrap(),
        10,
        RData::A(ARecord::new(192, 0, 2, 1)),
    ));
    cache.put(key.clone(), &reply, t0);
    // Case does not matter; the TTL counts down; it expires.
    let lower = key_of(&Message::from_vec(&query("example.org.", A, None)).unwrap()).unwrap();
    assert_eq!(
        cache
            .get(&lower, t0 + Duration::from_secs(4))
            .unwrap()
            .answers[0]
            .ttl,
        6
    );
    assert!(cache.get(&key, t0 + Duration::from_secs(10)).is_none());
    // TTLs above 30 s are kept 30 s.
    reply.answers[0].ttl = 3600;
    cache.put(key.clone(), &reply, t0);
    assert_eq!(cache.get(&key, t0).unwrap().answers[0].ttl, 30);
    assert!(
        cache
            .get(&key, t0 + MAX_TTL - Duration::from_secs(1))
            .is_some()
    );
    assert!(cache.get(&key, t0 + MAX_TTL).is_none());
    // NXDOMAIN: the SOA's negative TTL (the smaller of its TTL and MINIMUM).
    let mut nx = Message::new(1, MessageType::Response, OpCode::Query);
    nx.metadata.response_code = ResponseCode::NXDomain;
    let zone = Name::from_ascii("org.").unwrap();
    nx.add_authority(Record::from_rdata(
        zone.clone(),
        900,
        RData::SOA(SoaRecord::new(zone.clone(), zone, 1, 1, 1, 1, 20)),
    ));
    cache.put(key.clone(), &nx, t0);
    let hit = cache.get(&key, t0 + Duration::from_secs(19)).unwrap();
    assert_eq!(hit.metadata.response_code, ResponseCode::NXDomain);
    assert!(cache.get(&key, t0 + Duration::from_secs(20)).is_none());
    // Not kept: SERVFAIL, truncated replies, negative replies without SOA.
    let mut fail = reply.clone();
    fail.metadata.response_code = ResponseCode::ServFail;
    let mut truncated = reply.clone();
    truncated.metadata.truncation = true;
    let mut bare = Message::new(1, MessageType::Response, OpCode::Query);
    bare.metadata.response_code = ResponseCode::NXDomain;
    for m in [fail, truncated, bare] {
        cache.put(key.clone(), &m, t0);
        assert!(cache.get(&key, t0).is_none(), "{m:?}");
    }
    // A hit becomes a reply to the new request: its ID and question.
    cache.put(key.clone(), &reply, t0);
    let hit = cache.get(&key, t0).unwrap();
    let bytes = message::from_cache(&request, hit, Transport::Udp);
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.queries[0].name().to_ascii(), "Example.ORG.");
    assert_eq!(m.answers.len(), 1);
}
