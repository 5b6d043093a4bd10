//! The proxy's rules on the real kernel (root only, no cluster): a "client"
//! network namespace holds the ruleset and reaches Service addresses that
//! are DNATed to listeners in a "backend" namespace, over a veth pair this
//! test creates. Traffic never leaves those two namespaces; a guard removes
//! them even when an assertion fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_proxy::{Cidr, Proxier, ProxyConfig};
use skiff_sys::conntrack::ConntrackCli;
use skiff_sys::nft::NftCli;
use support::{Pair, in_netns, serve_tcp, serve_udp};

fn service(name: &str, ip: Ipv4Addr, spec: serde_json::Value) -> Service {
    let mut base = json!({"clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()],
        "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]});
    for (k, v) in spec.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": base}),
    )
    .unwrap()
}

fn slice(service: &str, protocol: &str, endpoints: &[SocketAddr]) -> Vec<EndpointSlice> {
    // One slice per endpoint: each carries its own port number, as slices of
    // pods whose named targetPort resolves differently do.
    endpoints
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("{service}-{i}"), "namespace": "default",
                             "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "ports": [{"name": "p", "port": addr.port(), "protocol": protocol}],
                "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": true}}]}))
            .unwrap()
        })
        .collect()
}

/// A reject (TCP reset / ICMP port unreachable), as opposed to a timeout.
fn refused(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::PermissionDenied
    )
}

/// Connects from the client namespace and reads the backend's tag.
fn fetch(ns: &str, addr: SocketAddr) -> std::io::Result<String> {
    in_netns(ns, move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut out = String::new();
        stream.read_to_string(&mut out)?;
        Ok(out)
    })
}

fn udp_fetch(ns: &str, addr: SocketAddr) -> std::io::Result<String> {
    in_netns(ns, move || {
        // Connected, so an ICMP port unreachable surfaces as ECONNREFUSED.
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect(addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 64];
        // UDP may lose the first datagram to ARP: a few tries.
        let mut last = None;
        for _ in 0..5 {
            socket.send(b"ping")?;
            match socket.recv(&mut buf) {
                Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if refused(&e) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_rules_route_service_traffic_between_namespaces() {
    let Some(pair) = Pair::create("px") else {
        return;
    };
    let (client_ip, backend_a, backend_b) =
        (pair.client_ip, pair.backend_ips[0], pair.backend_ips[1]);
    let _a = serve_tcp(&pair.backend, SocketAddr::from((backend_a, 8080)), "A");
    let _b = serve_tcp(&pair.backend, SocketAddr::from((backend_b, 9090)), "B");
    let _u = serve_udp(&pair.backend, SocketAddr::from((backend_a, 5353)), "U");

    let net = pair.subnet;
    let vip = |last: u8| Ipv4Addr::new(10, 96, net, last);
    let config = ProxyConfig {
        table: "skiff-proxy-test".into(),
        node_name: "node-a".into(),
        nodeport_addresses: vec![client_ip, Ipv4Addr::LOCALHOST],
        cluster_cidr: Some(Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16).unwrap()),
    };
    let mut proxier = Proxier::new(
        config.clone(),
        NftCli::new().in_netns(&pair.client),
        ConntrackCli::new().in_netns(&pair.client),
    )
    .unwrap();
    pair.sysctl_client("net/ipv4/conf/all/route_localnet", "1");

    let web = service(
        "web",
        vip(10),
        json!({"type": "NodePort", "ports": [{"name": "p", "port": 80, "protocol": "TCP", "nodePort": 30080}]}),
    );
    let empty = service("empty", vip(11), json!({}));
    let sticky = service("sticky", vip(13), json!({"sessionAffinity": "ClientIP"}));
    let dns = service(
        "dns",
        vip(12),
        json!({"ports": [{"name": "p", "port": 53, "protocol": "UDP"}]}),
    );
    let ep_a = SocketAddr::from((backend_a, 8080));
    let ep_b = SocketAddr::from((backend_b, 9090));
    let mut slices = slice("web", "TCP", &[ep_a]);
    slices.extend(slice("dns", "UDP", &[SocketAddr::from((backend_a, 5353))]));
    slices.extend(slice("sticky", "TCP", &[ep_a, ep_b]));
    let services = [web.clone(), empty.clone(), dns.clone(), sticky.clone()];
    let svc_refs: Vec<&Service> = services.iter().collect();
    let refs: Vec<&EndpointSlice> = slices.iter().collect();

    // The table starts with stale junk from "a previous run": replaced.
    pair.nft_client("add table ip skiff-proxy-test\nadd chain ip skiff-proxy-test stale\n");
    let out = proxier.sync(&svc_refs, &refs, None).await.unwrap();
    assert!(out.full);
    assert!(
        !pair
            .list_client_table("skiff-proxy-test")
            .contains("chain stale")
    );

    // One endpoint: ClusterIP, NodePort on the node's address and on 127.0.0.1.
    assert_eq!(
        fetch(&pair.client, SocketAddr::from((vip(10), 80))).unwrap(),
        "A"
    );
    assert_eq!(
        fetch(&pair.client, SocketAddr::from((client_ip, 30080))).unwrap(),
        "A"
    );
    assert_eq!(
        fetch(&pair.client, SocketAddr::from((Ipv4Addr::LOCALHOST, 30080))).unwrap(),
        "A"
    );
    assert_eq!(
        udp_fetch(&pair.client, SocketAddr::from((vip(12), 53))).unwrap(),
        "U"
    );

    // No endpoints: refused at once, not a hang. (The client here is the
    // rules' own host, so the reject in the output hook fails connect()
    // with EPERM; a pod behind a bridge gets the TCP reset itself.)
    let started = Instant::now();
    let err = fetch(&pair.client, SocketAddr::from((vip(11), 80))).unwrap_err();
    assert!(refused(&err), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Session affinity: every connection of this client lands on one endpoint.
    let first = fetch(&pair.client, SocketAddr::from((vip(13), 80))).unwrap();
    for _ in 0..15 {
        assert_eq!(
            fetch(&pair.client, SocketAddr::from((vip(13), 80))).unwrap(),
            first
        );
    }

    // A second endpoint (an incremental sync): both get traffic.
    let mut slices2 = slices.clone();
    slices2.retain(|s| s.metadata.name.as_deref() != Some("web-0"));
    slices2.extend(slice("web", "TCP", &[ep_a, ep_b]));
    let refs2: Vec<&EndpointSlice> = slices2.iter().collect();
    let out = proxier.sync(&svc_refs, &refs2, None).await.unwrap();
    assert!(out.applied && !out.full);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(fetch(&pair.client, SocketAddr::from((vip(10), 80))).unwrap());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["A", "B"]);
    // Affinity state survived the incremental sync.
    assert_eq!(
        fetch(&pair.client, SocketAddr::from((vip(13), 80))).unwrap(),
        first
    );

    // The UDP Service loses its endpoint: it now rejects (ICMP port
    // unreachable, seen as ConnectionRefused by the next receive).
    let mut slices3 = slices2.clone();
    slices3.retain(|s| s.metadata.name.as_deref() != Some("dns-0"));
    let refs3: Vec<&EndpointSlice> = slices3.iter().collect();
    proxier.sync(&svc_refs, &refs3, None).await.unwrap();
    let err = udp_fetch(&pair.client, SocketAddr::from((vip(12), 53))).unwrap_err();
    assert!(refused(&err), "{err}");

    // Someone deletes the table by hand: the periodic check notices and
    // the next sync puts it back whole.
    assert!(proxier.verify().await.unwrap());
    pair.nft_client("delete table ip skiff-proxy-test\n");
    assert!(!proxier.verify().await.unwrap());
    let out = proxier.sync(&svc_refs, &refs3, None).await.unwrap();
    assert!(out.applied && out.full);
    assert_eq!(
        fetch(&pair.client, SocketAddr::from((vip(10), 80)))
            .unwrap()
            .len(),
        1
    );
    assert!(proxier.verify().await.unwrap());

    // Clean uninstall removes the table.
    skiff_proxy::proxier::cleanup(&NftCli::new().in_netns(&pair.client), &config.table)
        .await
        .unwrap();
    assert_eq!(pair.list_client_table("skiff-proxy-test"), "");
}

/// A TCP listener at `addr` in `ns` that writes the peer address it sees.
fn serve_peer(ns: &str, addr: SocketAddr) {
    use std::io::Write as _;
    let listener = in_netns(ns, || std::net::TcpListener::bind(addr)).unwrap();
    // Ends with the process (the namespace goes with the test's guard).
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let peer = stream
                .peer_addr()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let _ = stream.write_all(peer.as_bytes());
        }
    });
}

/// Connects from `ns` to `addr`: (our local address, the peer the listener saw).
fn peer_seen(ns: &str, addr: SocketAddr) -> (SocketAddr, String) {
    in_netns(ns, move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let local = stream.local_addr().unwrap();
        let mut seen = String::new();
        stream.read_to_string(&mut seen).unwrap();
        (local, seen)
    })
}

/// Hairpin: an endpoint reaching itself through its Service is masqueraded
/// (upstream marks this in the endpoint chain; here it is one lookup of
/// source . destination in postrouting). Seen from the listener, such a
/// connection comes from a port the kernel chose (`masquerade
/// fully-random`); one to another endpoint keeps the client's own port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_masquerades_an_endpoint_reaching_itself() {
    let Some(pair) = Pair::create("hp") else {
        return;
    };
    let client_ip = pair.client_ip;
    let itself = SocketAddr::from((client_ip, 7070));
    let other = SocketAddr::from((pair.backend_ips[0], 7070));
    serve_peer(&pair.client, itself);
    serve_peer(&pair.backend, other);
    let vip = |last: u8| Ipv4Addr::new(10, 96, pair.subnet, last);
    // The client counts as a pod (inside the cluster CIDR), so the
    // off-cluster masquerade rule leaves it alone: only hairpin rewrites.
    let config = ProxyConfig {
        table: "skiff-proxy-test".into(),
        node_name: "node-a".into(),
        nodeport_addresses: vec![client_ip],
        cluster_cidr: Some(Cidr::new(Ipv4Addr::new(10, 250, 0, 0), 16).unwrap()),
    };
    let mut proxier = Proxier::new(
        config,
        NftCli::new().in_netns(&pair.client),
        ConntrackCli::new().in_netns(&pair.client),
    )
    .unwrap();
    let services = [
        service("self", vip(14), json!({})),
        service("other", vip(15), json!({})),
    ];
    let mut slices = slice("self", "TCP", &[itself]);
    slices.extend(slice("other", "TCP", &[other]));
    let svc_refs: Vec<&Service> = services.iter().collect();
    let refs: Vec<&EndpointSlice> = slices.iter().collect();
    proxier.sync(&svc_refs, &refs, None).await.unwrap();

    let (local, seen) = peer_seen(&pair.client, SocketAddr::from((vip(15), 80)));
    assert_eq!(seen, local.to_string(), "no masquerade to another endpoint");
    // A random port equals the original one with odds of 1 in ~64k; three
    // tries make a false failure practically impossible.
    let mut rewritten = Vec::new();
    for _ in 0..3 {
        let (local, seen) = peer_seen(&pair.client, SocketAddr::from((vip(14), 80)));
        let seen: SocketAddr = seen.parse().unwrap();
        assert_eq!(seen.ip(), local.ip());
        rewritten.push(seen.port() != local.port());
    }
    assert!(rewritten.contains(&true), "hairpin not masqueraded");

    // A ClusterIP Service's endpoints are map elements: one endpoint
    // replaced by two others in an incremental sync, then back to one.
    let _a = serve_tcp(
        &pair.backend,
        SocketAddr::from((pair.backend_ips[0], 8081)),
        "A",
    );
    let _b = serve_tcp(
        &pair.backend,
        SocketAddr::from((pair.backend_ips[1], 8082)),
        "B",
    );
    let other_b = SocketAddr::from((pair.backend_ips[1], 8082));
    let other_a = SocketAddr::from((pair.backend_ips[0], 8081));
    for (endpoints, want) in [
        (vec![other_b], vec!["B"]),
        (vec![other_a, other_b], vec!["A", "B"]),
        (vec![other_a], vec!["A"]),
    ] {
        let mut slices = slice("self", "TCP", &[itself]);
        slices.extend(slice("other", "TCP", &endpoints));
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        let out = proxier.sync(&svc_refs, &refs, None).await.unwrap();
        assert!(out.applied && !out.full);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..60 {
            seen.insert(fetch(&pair.client, SocketAddr::from((vip(15), 80))).unwrap());
            if seen.len() == want.len() {
                break;
            }
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), want);
    }
}

/// `nft -j list map ip TABLE MAP` in the client namespace, parsed.
fn list_map_json(pair: &Pair, table: &str, map: &str) -> serde_json::Value {
    list_json(pair, "map", table, map)
}

/// `nft -j list KIND ip TABLE NAME` in the client namespace, parsed.
fn list_json(pair: &Pair, kind: &str, table: &str, name: &str) -> serde_json::Value {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.client,
            "nft",
            "-j",
            "list",
            kind,
            "ip",
            table,
            name,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "list {kind} {name}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `elem` array of the one set or map in a `nft -j list` answer.
fn elements(listing: &serde_json::Value) -> Vec<serde_json::Value> {
    listing["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("map").or_else(|| o.get("set")))
        .and_then(|m| m.get("elem"))
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_full_sync_loads_elements_over_netlink_and_serves_throughout() {
    let Some(pair) = Pair::create("ps") else {
        return;
    };
    let (client_ip, backend_a, backend_b) =
        (pair.client_ip, pair.backend_ips[0], pair.backend_ips[1]);
    let _a = serve_tcp(&pair.backend, SocketAddr::from((backend_a, 8080)), "A");
    let _b = serve_tcp(&pair.backend, SocketAddr::from((backend_b, 9090)), "B");
    let net = pair.subnet;
    let vip = |last: u8| Ipv4Addr::new(10, 96, net, last);
    let table = "skiff-proxy-staged";
    let config = ProxyConfig {
        table: table.into(),
        node_name: "node-a".into(),
        nodeport_addresses: vec![client_ip],
        cluster_cidr: Some(Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16).unwrap()),
    };
    let proxier = |config: &ProxyConfig| {
        Proxier::new(
            config.clone(),
            NftCli::new().in_netns(&pair.client),
            ConntrackCli::new().in_netns(&pair.client),
        )
        .unwrap()
        .with_staged_elements(0)
    };
    let ep_a = SocketAddr::from((backend_a, 8080));
    let ep_b = SocketAddr::from((backend_b, 9090));
    let mut services = vec![
        service("web", vip(10), json!({})),
        service("empty", vip(11), json!({})),
        service(
            "np",
            vip(12),
            json!({"type": "NodePort", "ports": [{"name": "p", "port": 80, "protocol": "TCP", "nodePort": 30080}]}),
        ),
    ];
    let mut slices = slice("web", "TCP", &[ep_a, ep_b]);
    slices.extend(slice("np", "TCP", &[ep_a]));
    // Enough other Services (addresses nothing answers on) that the
    // endpoint map takes several netlink messages.
    for i in 0..300u32 {
        let name = format!("filler-{i}");
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 97, 0, 0)) + i);
        services.push(service(&name, ip, json!({})));
        let eps: Vec<SocketAddr> = (0..8u32)
            .map(|j| {
                SocketAddr::from((
                    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 98, 0, 0)) + i * 8 + j),
                    8080,
                ))
            })
            .collect();
        slices.extend(slice(&name, "TCP", &eps));
    }
    let svc_refs: Vec<&Service> = services.iter().collect();
    let refs: Vec<&EndpointSlice> = slices.iter().collect();

    // Stale objects of "a previous run" are in the way: gone after.
    pair.nft_client(&format!(
        "add table ip {table}\nadd chain ip {table} stale\n\
         add map ip {table} stale-map {{ type ipv4_addr : verdict; }}\n\
         add element ip {table} stale-map {{ 10.96.{net}.99 : goto stale }}\n"
    ));
    let mut first = proxier(&config);
    let out = first.sync(&svc_refs, &refs, None).await.unwrap();
    assert!(out.full);
    let listed = pair.list_client_table(table);
    assert!(!listed.contains("stale"), "{listed}");

    // The kernel holds what was sent, as nft reads it back: every
    // endpoint element (web's 2, 300 × 8 others), keyed ClusterIP . port .
    // index, and the dispatch verdicts.
    let eps = elements(&list_map_json(&pair, table, "service-endpoints-tcp"));
    assert_eq!(eps.len(), 2 + 300 * 8);
    let web_vip = vip(10).to_string();
    let web_eps: Vec<&serde_json::Value> = eps
        .iter()
        .filter(|e| e[0]["concat"][0] == web_vip.as_str())
        .collect();
    assert_eq!(web_eps.len(), 2, "{web_eps:?}");
    let mut picked: Vec<(u64, String, u64)> = web_eps
        .iter()
        .map(|e| {
            assert_eq!(e[0]["concat"][1], 80);
            (
                e[0]["concat"][2].as_u64().unwrap(),
                e[1]["concat"][0].as_str().unwrap().to_string(),
                e[1]["concat"][1].as_u64().unwrap(),
            )
        })
        .collect();
    picked.sort();
    assert_eq!(
        picked,
        [
            (0, backend_a.to_string(), 8080),
            (1, backend_b.to_string(), 9090)
        ]
    );
    let ips = elements(&list_map_json(&pair, table, "service-ips"));
    let web = ips
        .iter()
        .find(|e| e[0]["concat"][0] == web_vip.as_str())
        .unwrap();
    assert_eq!(web[0]["concat"][1], "tcp");
    assert_eq!(web[1]["goto"]["target"], "pick-tcp-2");
    let nodeports = elements(&list_map_json(&pair, table, "service-nodeports"));
    assert_eq!(nodeports.len(), 1, "{nodeports:?}");
    assert_eq!(nodeports[0][0]["concat"], json!(["tcp", 30080]));
    let empty = elements(&list_map_json(&pair, table, "no-endpoint-services"));
    assert_eq!(empty.len(), 1, "{empty:?}");
    assert_eq!(
        empty[0][0]["concat"],
        json!([vip(11).to_string(), "tcp", 80])
    );
    assert_eq!(
        elements(&list_json(&pair, "set", table, "nodeport-ips")),
        [json!(client_ip.to_string())]
    );
    let hairpin = elements(&list_json(&pair, "set", table, "hairpin-endpoints"));
    let a = backend_a.to_string();
    assert!(hairpin.contains(&json!({"concat": [a, a]})), "{hairpin:?}");

    // And it serves: both endpoints, the NodePort, a reject without any.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(fetch(&pair.client, SocketAddr::from((vip(10), 80))).unwrap());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["A", "B"]);
    assert_eq!(
        fetch(&pair.client, SocketAddr::from((client_ip, 30080))).unwrap(),
        "A"
    );
    let err = fetch(&pair.client, SocketAddr::from((vip(11), 80))).unwrap_err();
    assert!(refused(&err), "{err}");

    // A restarted agent replaces the table in place, under fresh set
    // names, while connections keep being served.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = pair.client.clone();
    let flag = stop.clone();
    let target = SocketAddr::from((vip(10), 80));
    let load = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, Vec::new());
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            match fetch(&client, target) {
                Ok(_) => ok += 1,
                Err(e) => failed.push(e.to_string()),
            }
        }
        (ok, failed)
    });
    let mut second = proxier(&config);
    let out = second.sync(&svc_refs, &refs, None).await.unwrap();
    assert!(out.full);
    // At least one more connection after the switch.
    let done = fetch(&pair.client, target).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    assert!(failed.is_empty(), "{ok} served, failed: {failed:?}");
    assert_eq!(done.len(), 1);
    let listed = pair.list_client_table(table);
    assert!(listed.contains("map service-ips-g1 {"), "{listed}");
    assert!(!listed.contains("map service-ips {"), "{listed}");
    assert_eq!(
        elements(&list_map_json(&pair, table, "service-endpoints-tcp-g1")).len(),
        2 + 300 * 8
    );

    // Changes after it go to the fresh sets: web loses endpoint A.
    services.truncate(3);
    let mut slices2 = slice("web", "TCP", &[ep_b]);
    slices2.extend(slice("np", "TCP", &[ep_a]));
    let svc_refs: Vec<&Service> = services.iter().collect();
    let refs2: Vec<&EndpointSlice> = slices2.iter().collect();
    let out = second.sync(&svc_refs, &refs2, None).await.unwrap();
    assert!(out.applied && !out.full);
    for _ in 0..10 {
        assert_eq!(
            fetch(&pair.client, SocketAddr::from((vip(10), 80))).unwrap(),
            "B"
        );
    }
    assert_eq!(
        elements(&list_map_json(&pair, table, "service-endpoints-tcp-g1")).len(),
        1
    );

    skiff_proxy::proxier::cleanup(&NftCli::new().in_netns(&pair.client), table)
        .await
        .unwrap();
    assert_eq!(pair.list_client_table(table), "");
}
