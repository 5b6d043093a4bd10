//! What a new cluster has (the `default/kubernetes` Service, Endpoints and
//! EndpointSlice, the system PriorityClasses) and Service IP / NodePort
//! allocation: in range, never doubled (also under concurrent creates),
//! released on delete, kept across restarts.

use crate::support;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::ObjectMeta;
use support::start;

fn svc(name: &str, ty: &str, cluster_ip: Option<&str>, node_port: Option<i32>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(ty.to_owned()),
            cluster_ip: cluster_ip.map(str::to_owned),
            ports: Some(vec![ServicePort {
                port: 80,
                node_port,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn status_of(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected a Status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_cluster_has_the_kubernetes_service_and_system_priority_classes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let port = i32::from(server.local_addr().port());
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let k = svcs.get("kubernetes").await.unwrap();
    let spec = k.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.43.0.1"));
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let p = &spec.ports.unwrap()[0];
    assert_eq!((p.name.as_deref(), p.port), (Some("https"), 443));
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let e = eps.get("kubernetes").await.unwrap();
    let subset = &e.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "127.0.0.1");
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, port);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let s = slices.get("kubernetes").await.unwrap();
    assert_eq!(s.address_type, "IPv4");
    assert_eq!(s.endpoints[0].addresses, ["127.0.0.1"]);
    let pcs: Api<PriorityClass> = Api::all(client.clone());
    assert_eq!(
        pcs.get("system-node-critical").await.unwrap().value,
        2_000_001_000
    );
    assert_eq!(
        pcs.get("system-cluster-critical").await.unwrap().value,
        2_000_000_000
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_and_node_ports_are_allocated_once_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let port = server.local_addr().port();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // Concurrent creates never share an address or a port.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let svcs = svcs.clone();
        tasks.push(tokio::spawn(async move {
            svcs.create(
                &PostParams::default(),
                &svc(&format!("s{i}"), "NodePort", None, None),
            )
            .await
            .unwrap()
        }));
    }
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for t in tasks {
        let s = t.await.unwrap().spec.unwrap();
        let ip: Ipv4Addr = s.cluster_ip.clone().unwrap().parse().unwrap();
        assert_eq!(ip.octets()[..2], [10, 43]);
        assert_ne!(ip, Ipv4Addr::new(10, 43, 0, 1));
        assert_eq!(s.cluster_ips.unwrap(), [ip.to_string()]);
        assert!(ips.insert(ip), "{ip} handed out twice");
        let np = s.ports.unwrap()[0].node_port.unwrap();
        assert!((30000..=32767).contains(&np));
        assert!(ports.insert(np), "nodePort {np} handed out twice");
    }

    // Asking for a taken IP or port is 422 with upstream's message.
    let taken_ip = ips.iter().next().unwrap().to_string();
    let err = status_of(
        svcs.create(&pp, &svc("dup", "ClusterIP", Some(&taken_ip), None))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("provided IP is already allocated"),
        "{}",
        err.message
    );
    let taken_port = *ports.iter().next().unwrap();
    let err = status_of(
        svcs.create(&pp, &svc("dup", "NodePort", None, Some(taken_port)))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("provided port is already allocated"),
        "{}",
        err.message
    );
    let err = status_of(
        svcs.create(&pp, &svc("out", "ClusterIP", Some("10.99.0.5"), None))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    // The failed create leaked nothing: the "dup" name is free and so is a
    // fresh port asked for explicitly (one the 30 random ones missed).
    let free_port = (30000..=32767).rev().find(|p| !ports.contains(p)).unwrap();
    let fresh = svcs
        .create(&pp, &svc("dup", "NodePort", None, Some(free_port)))
        .await
        .unwrap();
    assert_eq!(
        fresh.spec.unwrap().ports.unwrap()[0].node_port,
        Some(free_port)
    );

    // Deleting a Service releases its IP and port.
    let s0 = svcs.get("s0").await.unwrap().spec.unwrap();
    let (ip0, np0) = (
        s0.cluster_ip.unwrap(),
        s0.ports.unwrap()[0].node_port.unwrap(),
    );
    svcs.delete("s0", &DeleteParams::default()).await.unwrap();
    svcs.create(&pp, &svc("again", "NodePort", Some(&ip0), Some(np0)))
        .await
        .unwrap();

    // Headless services get no IP.
    let headless = svcs
        .create(&pp, &svc("headless", "ClusterIP", Some("None"), None))
        .await
        .unwrap();
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));

    // Updates keep the allocations.
    let mut s1 = svcs.get("s1").await.unwrap();
    let before = s1.spec.clone().unwrap();
    let spec = s1.spec.as_mut().unwrap();
    spec.cluster_ip = None;
    spec.cluster_ips = None;
    spec.ports.as_mut().unwrap()[0].node_port = None;
    let after = svcs.replace("s1", &pp, &s1).await.unwrap().spec.unwrap();
    assert_eq!(after.cluster_ip, before.cluster_ip);
    assert_eq!(
        after.ports.unwrap()[0].node_port,
        before.ports.unwrap()[0].node_port
    );
    server.shutdown().await;

    // After a restart the allocations are still held.
    let (server, client) = start(dir.path(), port).await;
    let svcs: Api<Service> = Api::namespaced(client, "default");
    let err = status_of(
        svcs.create(&pp, &svc("late", "ClusterIP", Some(&ip0), None))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{}", err.message);
    server.shutdown().await;
}
