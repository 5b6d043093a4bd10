//! Cluster DNS against the real API server, over real UDP and TCP on
//! 127.0.0.1: answers follow Services and EndpointSlices as they change,
//! UDP truncates where TCP does not, names outside the zone go to a fake
//! upstream, and the `kube-dns` Service and EndpointSlice point at the
//! listener (`kubectl cluster-info` lists it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_proxy::dns::kube_dns::{self, KubeDns};
use skiff_proxy::dns::{DnsConfig, DnsServer, Recursion};
use skiff_store::AnyStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

async fn start_api(dir: &Path) -> (ApiServer, kube::Client) {
    let store = AnyStore::open(&[], dir).await.unwrap();
    let mut config = ApiServerConfig::new(dir);
    config.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.port = 0;
    config.write_kubeconfig = Some(dir.join("kubeconfig.yaml"));
    let server = ApiServer::start(config, store).await.unwrap();
    let kc = kube::config::Kubeconfig::read_from(dir.join("kubeconfig.yaml")).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    (server, kube::Client::try_from(cfg).unwrap())
}

fn query_bytes(id: u16, name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server).await.unwrap();
    let id = rand_id();
    sock.send(&query_bytes(id, name, qtype, false))
        .await
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
        .await
        .expect("UDP reply")
        .unwrap();
    assert!(n <= 512, "UDP reply of {n} bytes to a query without EDNS");
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, id);
    m
}

async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let id = rand_id();
    let q = query_bytes(id, name, qtype, false);
    stream.write_u16(q.len() as u16).await.unwrap();
    stream.write_all(&q).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read_u16())
        .await
        .expect("TCP reply")
        .unwrap();
    let mut buf = vec![0u8; usize::from(n)];
    stream.read_exact(&mut buf).await.unwrap();
    let m = Message::from_vec(&buf).unwrap();
    assert_eq!(m.metadata.id, id);
    m
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(100);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn addresses(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .map(|r| r.data.to_string())
        .collect();
    v.sort();
    v
}

/// Asks (UDP and TCP) until the addresses are `want`; panics after 20 s.
async fn wait_for(server: SocketAddr, name: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let udp = ask_udp(server, name, RecordType::A).await;
        let tcp = ask_tcp(server, name, RecordType::A).await;
        let (u, t) = (addresses(&udp), addresses(&tcp));
        if u == want && t == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: UDP {u:?} ({:?}), TCP {t:?}, want {want:?}",
            udp.metadata.response_code
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fake upstream on 127.0.0.1 (UDP and TCP, one port) that answers every
/// A question with 192.0.2.7.
async fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    // The TCP port the OS gave UDP may be taken by another process: try
    // again with a new one, as the DNS server's own listener does.
    let mut tries = 0;
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        match TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, tcp, addr),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => tries += 1,
            Err(e) => panic!("fake upstream on {addr}: {e}"),
        }
    };
    fn answer(bytes: &[u8]) -> Vec<u8> {
        let q = Message::from_vec(bytes).unwrap();
        let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        m.metadata.recursion_available = true;
        m.add_queries(q.queries.clone());
        let name = q.queries[0].name().clone();
        m.add_answer(Record::from_rdata(
            name,
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
        ));
        m.to_vec().unwrap()
    }
    let counter = asked.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = udp.send_to(&answer(&buf[..n]), peer).await;
        }
    });
    let counter = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let n = s.read_u16().await.unwrap();
                let mut buf = vec![0u8; usize::from(n)];
                s.read_exact(&mut buf).await.unwrap();
                let reply = answer(&buf);
                s.write_u16(reply.len() as u16).await.unwrap();
                s.write_all(&reply).await.unwrap();
            });
        }
    });
    (addr, asked)
}

async fn create<K>(api: &Api<K>, obj: Value)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let obj: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_udp_and_tcp_follows_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (api, client) = start_api(dir.path()).await;
    let (upstream, asked) = fake_upstream().await;
    let dns = DnsServer::bind(
        DnsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: IpAddr::V4(Ipv4Addr::LOCALHOST),
            cluster_domain: "cluster.local".into(),
            cluster_dns: "10.43.0.10".parse().unwrap(),
            upstreams: Some(vec![upstream]),
            publish_service: true,
            // Loopback clients (these tests) are always allowed.
            recursion: Recursion::From(Vec::new()),
        },
        client.clone(),
    )
    .await
    .unwrap();
    let addr = dns.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(dns.run(stop_rx));

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    create(
        &services,
        json!({"metadata": {"name": "web"}, "spec": {
        "clusterIP": "10.43.0.50", "ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    create(
        &services,
        json!({"metadata": {"name": "db"}, "spec": {
        "clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
    )
    .await;
    create(&slices, json!({
        "metadata": {"name": "db-abc", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": true}}],
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]})).await;

    wait_for(addr, "web.default.svc.cluster.local.", &["10.43.0.50"]).await;
    wait_for(addr, "db.default.svc.cluster.local.", &["10.42.0.7"]).await;
    wait_for(addr, "db-0.db.default.svc.cluster.local.", &["10.42.0.7"]).await;

    // An update changes the answer: a second ready endpoint, the first not ready.
    slices
        .patch(
            "db-abc",
            &PatchParams::default(),
            &Patch::Merge(json!({"endpoints": [
            {"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": false}},
            {"addresses": ["10.42.1.8"], "hostname": "db-1", "conditions": {"ready": true}}]})),
        )
        .await
        .unwrap();
    wait_for(addr, "db.default.svc.cluster.local.", &["10.42.1.8"]).await;
    let gone = ask_udp(addr, "db-0.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(gone.authorities[0].record_type(), RecordType::SOA);
    // Deleting the Service makes its name NXDOMAIN.
    services.delete("web", &Default::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ask_tcp(addr, "web.default.svc.cluster.local.", RecordType::A)
        .await
        .metadata
        .response_code
        != ResponseCode::NXDomain
    {
        assert!(
            Instant::now() < deadline,
            "web still answered after its deletion"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A headless Service too big for 512 bytes: UDP truncates, TCP does not.
    create(
        &services,
        json!({"metadata": {"name": "big"}, "spec": {
        "clusterIP": "None", "ports": [{"name": "p", "port": 1}]}}),
    )
    .await;
    let endpoints: Vec<Value> = (1..=60)
        .map(|i| json!({"addresses": [format!("10.42.9.{i}")], "conditions": {"ready": true}}))
        .collect();
    create(
        &slices,
        json!({
        "metadata": {"name": "big-1", "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "p", "port": 1, "protocol": "TCP"}]}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tcp = ask_tcp(addr, "big.default.svc.cluster.local.", RecordType::A).await;
        if tcp.answers.len() == 60 {
            assert!(!tcp.metadata.truncation);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "big: {} answers over TCP",
            tcp.answers.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let udp = ask_udp(addr, "big.default.svc.cluster.local.", RecordType::A).await;
    assert!(
        udp.metadata.truncation,
        "60 A records do not fit in 512 bytes"
    );
    assert!(udp.answers.len() < 60);

    // Names outside the zone go to the upstream, over either transport;
    // a repeated question is answered from the cache.
    for (name, asks) in [("udp.example.test.", 1), ("tcp.example.test.", 2)] {
        for round in 0..2 {
            let m = if name.starts_with("udp") {
                ask_udp(addr, name, RecordType::A).await
            } else {
                ask_tcp(addr, name, RecordType::A).await
            };
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert_eq!(addresses(&m), ["192.0.2.7"]);
            if round == 1 {
                assert!(m.answers[0].ttl <= 30, "cached: {}", m.answers[0].ttl);
            }
        }
        assert_eq!(asked.load(Ordering::SeqCst), asks, "{name}");
    }

    // An ExternalName: the CNAME, then the target's records from upstream.
    create(
        &services,
        json!({"metadata": {"name": "ext"}, "spec": {
        "type": "ExternalName", "externalName": "example.test"}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = ask_udp(addr, "ext.default.svc.cluster.local.", RecordType::A).await;
        if m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty() {
            let kinds: Vec<RecordType> = m.answers.iter().map(Record::record_type).collect();
            assert_eq!(kinds, [RecordType::CNAME, RecordType::A]);
            assert_eq!(addresses(&m), ["192.0.2.7"]);
            break;
        }
        assert!(Instant::now() < deadline, "ext: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The kube-dns Service. A loopback listener gets no EndpointSlice (the
    // API refuses loopback endpoints, and pods could not reach it).
    let sys_svcs: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let sys_slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    let deadline = Instant::now() + Duration::from_secs(20);
    let svc = loop {
        if let Some(s) = sys_svcs.get_opt("kube-dns").await.unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "kube-dns not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.43.0.10"));
    assert!(spec.selector.unwrap_or_default().is_empty());
    let labels = svc.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/cluster-service"], "true");
    assert_eq!(labels["k8s-app"], "kube-dns");
    let ports: Vec<(String, i32, String)> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap()))
        .collect();
    assert_eq!(
        ports,
        [
            ("dns".to_owned(), 53, "UDP".to_owned()),
            ("dns-tcp".to_owned(), 53, "TCP".to_owned())
        ]
    );
    assert!(sys_slices.get_opt("kube-dns").await.unwrap().is_none());
    // A listener on a routable address (a documentation address here: the
    // object is written, no traffic goes there) gets its EndpointSlice, and
    // a moved listener moves it.
    for port in [5353, 5354] {
        let want = KubeDns {
            cluster_ip: "10.43.0.10".parse().unwrap(),
            address: Some("192.0.2.10".parse().unwrap()),
            port,
        };
        kube_dns::reconcile(&client, &want).await.unwrap();
        let slice = sys_slices.get("kube-dns").await.unwrap();
        assert_eq!(slice.endpoints[0].addresses, ["192.0.2.10"]);
        assert_eq!(
            slice.endpoints[0].conditions.as_ref().unwrap().ready,
            Some(true)
        );
        let slice_ports: Vec<(i32, String)> = slice
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.port.unwrap(), p.protocol.unwrap()))
            .collect();
        assert_eq!(
            slice_ports,
            [
                (i32::from(port), "UDP".to_owned()),
                (i32::from(port), "TCP".to_owned())
            ]
        );
        let labels = slice.metadata.labels.unwrap();
        assert_eq!(
            labels["endpointslice.kubernetes.io/managed-by"],
            "skiff-dns"
        );
        assert_eq!(labels["kubernetes.io/service-name"], "kube-dns");
    }
    let eps =
        Api::<k8s_openapi::api::core::v1::Endpoints>::namespaced(client.clone(), "kube-system")
            .get("kube-dns")
            .await
            .unwrap();
    let subset = &eps.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "192.0.2.10");
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 5354);
    assert_eq!(
        eps.metadata.labels.unwrap()["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );
    // Reconciling again without a change writes nothing.
    let before = sys_slices
        .get("kube-dns")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let want = KubeDns {
        cluster_ip: "10.43.0.10".parse().unwrap(),
        address: Some("192.0.2.10".parse().unwrap()),
        port: 5354,
    };
    kube_dns::reconcile(&client, &want).await.unwrap();
    let after = sys_slices
        .get("kube-dns")
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(before, after);
    // And its own name resolves to the ClusterIP.
    wait_for(
        addr,
        "kube-dns.kube-system.svc.cluster.local.",
        &["10.43.0.10"],
    )
    .await;

    if Path::new(KUBECTL).exists() {
        let out = tokio::task::spawn_blocking({
            let kubeconfig = dir.path().join("kubeconfig.yaml");
            let home = dir.path().to_path_buf();
            move || {
                std::process::Command::new(KUBECTL)
                    .arg("--kubeconfig")
                    .arg(kubeconfig)
                    .env("HOME", home)
                    .args(["cluster-info"])
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("CoreDNS")
                && text.contains("/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy"),
            "{text}"
        );
    } else {
        eprintln!("kubectl 1.33 missing: cluster-info not checked");
    }

    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    api.shutdown().await;
}
