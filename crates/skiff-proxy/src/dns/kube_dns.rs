//! The `kube-system/kube-dns` Service (ClusterIP `--cluster-dns`, no
//! selector, labelled as upstream's so `kubectl cluster-info` lists it) and
//! its EndpointSlice (and legacy Endpoints) pointing at this server's DNS
//! listener (unless that is a loopback address: the API refuses those as
//! endpoints), kept through the API by server-side apply: written at start,
//! checked every [`RECHECK`] and written again when missing or changed.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

/// The Service's namespace and name.
pub const NAMESPACE: &str = "kube-system";
/// The Service's (and its EndpointSlice's) name.
pub const NAME: &str = "kube-dns";
/// Field manager of the applies and managed-by value of the slice.
pub const MANAGER: &str = "skiff-dns";
/// How often the objects are checked.
pub const RECHECK: Duration = Duration::from_secs(30);
/// Wait after a failed write before the next try.
const RETRY: Duration = Duration::from_secs(2);

/// What the objects say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeDns {
    /// The Service's ClusterIP.
    pub cluster_ip: IpAddr,
    /// The listener's address (the endpoint); `None` when it is a loopback
    /// address, which pods cannot reach and EndpointSlices may not hold.
    pub address: Option<IpAddr>,
    /// The listener's port (UDP and TCP).
    pub port: u16,
}

/// The Service as applied.
pub fn service(want: &KubeDns) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {
            "k8s-app": "kube-dns",
            "kubernetes.io/cluster-service": "true",
            "kubernetes.io/name": "CoreDNS",
        }},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": want.cluster_ip.to_string(),
            "clusterIPs": [want.cluster_ip.to_string()],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": want.port},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": want.port},
            ],
        },
    })
}

/// The EndpointSlice as applied to point at `address`.
pub fn endpoint_slice(want: &KubeDns, address: IpAddr) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {
            "kubernetes.io/service-name": NAME,
            "endpointslice.kubernetes.io/managed-by": MANAGER,
            "k8s-app": "kube-dns",
        }},
        "addressType": if address.is_ipv6() { "IPv6" } else { "IPv4" },
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
        "ports": [
            {"name": "dns", "port": want.port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": want.port, "protocol": "TCP"},
        ],
    })
}

/// The (legacy) Endpoints as applied, for clients that still read them;
/// marked so the mirroring controller does not copy them into a second
/// EndpointSlice.
pub fn endpoints(want: &KubeDns, address: IpAddr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {
            "endpointslice.kubernetes.io/skip-mirror": "true",
            "k8s-app": "kube-dns",
        }},
        "subsets": [{
            "addresses": [{"ip": address.to_string()}],
            "ports": [
                {"name": "dns", "port": want.port, "protocol": "UDP"},
                {"name": "dns-tcp", "port": want.port, "protocol": "TCP"},
            ],
        }],
    })
}

/// Whether `live` (a JSON object) already says everything `want` does:
/// each field of `want` present with the same value (lists compared whole).
pub fn covers(live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| l.get(k).is_some_and(|lv| covers(lv, wv))),
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(lv, wv)| covers(lv, wv))
        }
        _ => live == want,
    }
}

/// Keeps the objects until `shutdown`.
pub async fn maintain(
    client: kube::Client,
    want: KubeDns,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if want.address.is_none() {
        tracing::warn!(
            port = want.port,
            "cluster DNS listens on a loopback address, which pods cannot reach: kube-system/kube-dns gets no endpoint"
        );
    }
    let mut logged = false;
    loop {
        let wait = match reconcile(&client, &want).await {
            Ok(()) => {
                logged = false;
                RECHECK
            }
            Err(err) => {
                // Logged once per failure streak: a taken ClusterIP fails
                // the same way every time.
                if !logged {
                    tracing::error!(error = %err, cluster_ip = %want.cluster_ip,
                        "cannot write the kube-system/kube-dns Service or EndpointSlice; retrying");
                    logged = true;
                }
                RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Writes whichever of the two objects is missing or differs.
pub async fn reconcile(client: &kube::Client, want: &KubeDns) -> Result<(), kube::Error> {
    let params = PatchParams::apply(MANAGER).force();
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let svc = service(want);
    let live = services.get_opt(NAME).await?;
    if !live
        .and_then(|l| serde_json::to_value(l).ok())
        .is_some_and(|l| covers(&l, &svc))
    {
        services.patch(NAME, &params, &Patch::Apply(&svc)).await?;
        tracing::info!(cluster_ip = %want.cluster_ip, "wrote the kube-system/kube-dns Service");
    }
    let Some(address) = want.address else {
        return Ok(());
    };
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let slice = endpoint_slice(want, address);
    let live = slices.get_opt(NAME).await?;
    if !live
        .and_then(|l| serde_json::to_value(l).ok())
        .is_some_and(|l| covers(&l, &slice))
    {
        slices.patch(NAME, &params, &Patch::Apply(&slice)).await?;
        tracing::info!(%address, port = want.port,
            "wrote the kube-system/kube-dns EndpointSlice");
    }
    let legacy: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let eps = endpoints(want, address);
    let live = legacy.get_opt(NAME).await?;
    if !live
        .and_then(|l| serde_json::to_value(l).ok())
        .is_some_and(|l| covers(&l, &eps))
    {
        legacy.patch(NAME, &params, &Patch::Apply(&eps)).await?;
    }
    Ok(())
}
