//! The PersistentVolume binder against the real API server: claims bound
//! to the best volume on both sides with upstream's annotations (and shown
//! Bound by the real kubectl), pre-bound claims and volumes, claims left
//! Pending with upstream's events, released volumes and their reclaim
//! policies, lost claims, WaitForFirstConsumer and external provisioning.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use skiff_controllers::ControllerManagerOptions;
use support::{Cluster, wait_for};

const NS: &str = "default";

/// A cluster whose manager runs only the binder, resyncing every second so
/// that a claim waiting for a volume created later is bound soon.
async fn start() -> Cluster {
    let mut c = Cluster::start_bare(0).await;
    let mut opts = ControllerManagerOptions::new("pvbinder-test".to_owned());
    opts.leader_elect = false;
    opts.controllers = vec!["persistentvolume-binder".to_owned()];
    opts.pvclaimbinder_sync_period = Duration::from_secs(1);
    c.start_manager_with(opts);
    c
}

fn volumes(c: &Cluster) -> Api<PersistentVolume> {
    Api::all(c.client.clone())
}

fn claims(c: &Cluster) -> Api<PersistentVolumeClaim> {
    Api::namespaced(c.client.clone(), NS)
}

/// Creates a volume of `size` with `modes`, merged with `extra`.
async fn create_pv(c: &Cluster, name: &str, size: &str, modes: &[&str], extra: Value) {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": modes,
            "hostPath": {"path": format!("/tmp/{name}")},
        },
    });
    merge(&mut v, extra);
    let pv: PersistentVolume = serde_json::from_value(v).unwrap();
    volumes(c)
        .create(&PostParams::default(), &pv)
        .await
        .unwrap();
}

/// Creates a claim for `size` ReadWriteOnce, merged with `extra`.
async fn create_pvc(c: &Cluster, name: &str, size: &str, extra: Value) {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    });
    merge(&mut v, extra);
    let pvc: PersistentVolumeClaim = serde_json::from_value(v).unwrap();
    claims(c)
        .create(&PostParams::default(), &pvc)
        .await
        .unwrap();
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

async fn create_class(c: &Cluster, name: &str, provisioner: &str, mode: &str) {
    let sc: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": name},
        "provisioner": provisioner,
        "volumeBindingMode": mode,
    }))
    .unwrap();
    Api::<StorageClass>::all(c.client.clone())
        .create(&PostParams::default(), &sc)
        .await
        .unwrap();
}

fn pv_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn pvc_phase(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

async fn wait_pv_phase(c: &Cluster, name: &str, phase: &str) -> PersistentVolume {
    wait_for(&format!("volume {name} {phase}"), async || {
        let pv = volumes(c).get(name).await.unwrap();
        (pv_phase(&pv) == phase).then_some(pv)
    })
    .await
}

async fn wait_pvc_phase(c: &Cluster, name: &str, phase: &str) -> PersistentVolumeClaim {
    wait_for(&format!("claim {name} {phase}"), async || {
        let pvc = claims(c).get(name).await.unwrap();
        (pvc_phase(&pvc) == phase).then_some(pvc)
    })
    .await
}

/// The notes of the events with `reason` about object `name`.
async fn wait_event(c: &Cluster, name: &str, reason: &str) -> Vec<String> {
    wait_for(&format!("{reason} event of {name}"), async || {
        let notes: Vec<String> = c
            .events(NS, reason)
            .await
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.note)
            .collect();
        (!notes.is_empty()).then_some(notes)
    })
    .await
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_binds_to_the_smallest_fitting_volume_on_both_sides() {
    let c = start().await;
    create_pv(&c, "small", "1Gi", &["ReadWriteOnce"], json!({})).await;
    create_pv(&c, "big", "10Gi", &["ReadWriteOnce"], json!({})).await;
    create_pv(&c, "fit", "5Gi", &["ReadWriteOnce"], json!({})).await;
    // Smaller, but with more modes than asked: upstream looks at volumes
    // with the fewest extra modes first.
    let wide = ["ReadWriteOnce", "ReadOnlyMany"];
    create_pv(&c, "wide", "4Gi", &wide, json!({})).await;
    create_pv(&c, "rox", "4Gi", &["ReadOnlyMany"], json!({})).await;
    create_pv(
        &c,
        "classy",
        "5Gi",
        &["ReadWriteOnce"],
        json!({"spec": {"storageClassName": "fast"}}),
    )
    .await;
    for name in ["small", "big", "fit", "wide", "rox", "classy"] {
        wait_pv_phase(&c, name, "Available").await;
    }
    create_pvc(&c, "data", "3Gi", json!({})).await;
    let pvc = wait_pvc_phase(&c, "data", "Bound").await;
    let spec = pvc.spec.as_ref().unwrap();
    assert_eq!(spec.volume_name.as_deref(), Some("fit"));
    assert_eq!(annotation(&pvc.metadata, BIND_COMPLETED), Some("yes"));
    assert_eq!(annotation(&pvc.metadata, BOUND_BY_CONTROLLER), Some("yes"));
    let status = pvc.status.as_ref().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["storage"].0, "5Gi");
    assert_eq!(status.access_modes.as_deref().unwrap(), ["ReadWriteOnce"]);

    let pv = wait_pv_phase(&c, "fit", "Bound").await;
    let claim_ref = pv.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(claim_ref.kind.as_deref(), Some("PersistentVolumeClaim"));
    assert_eq!(claim_ref.namespace.as_deref(), Some(NS));
    assert_eq!(claim_ref.name.as_deref(), Some("data"));
    assert_eq!(claim_ref.uid, pvc.metadata.uid);
    assert!(claim_ref.resource_version.is_some());
    assert_eq!(annotation(&pv.metadata, BOUND_BY_CONTROLLER), Some("yes"));
    for name in ["small", "big", "wide", "rox", "classy"] {
        let other = volumes(&c).get(name).await.unwrap();
        assert_eq!(pv_phase(&other), "Available", "{name}");
        assert!(other.spec.unwrap().claim_ref.is_none(), "{name}");
    }

    let (ok, out) = c.kubectl(&["get", "pvc", "data", "-n", NS]).await;
    assert!(ok, "{out}");
    let row = out.lines().nth(1).unwrap_or_default();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..5], ["data", "Bound", "fit", "5Gi", "RWO"], "{out}");
    let (ok, out) = c.kubectl(&["get", "pv", "fit"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("Bound") && out.contains("default/data"),
        "{out}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_bound_claims_and_volumes() {
    let c = start().await;
    create_pv(&c, "small", "1Gi", &["ReadWriteOnce"], json!({})).await;
    create_pv(&c, "chosen", "8Gi", &["ReadWriteOnce"], json!({})).await;
    create_pv(
        &c,
        "reserved",
        "9Gi",
        &["ReadWriteOnce"],
        json!({"spec": {"claimRef": {"namespace": NS, "name": "wants-reserved"}}}),
    )
    .await;
    create_pv(&c, "tiny", "100Mi", &["ReadWriteOnce"], json!({})).await;
    for name in ["small", "chosen", "reserved", "tiny"] {
        wait_pv_phase(&c, name, "Available").await;
    }

    // The claim names its volume: it gets that one, not the smaller fit.
    create_pvc(
        &c,
        "named",
        "1Gi",
        json!({"spec": {"volumeName": "chosen"}}),
    )
    .await;
    let pvc = wait_pvc_phase(&c, "named", "Bound").await;
    assert_eq!(
        pvc.spec.as_ref().unwrap().volume_name.as_deref(),
        Some("chosen")
    );
    assert_eq!(annotation(&pvc.metadata, BIND_COMPLETED), Some("yes"));
    assert_eq!(
        annotation(&pvc.metadata, BOUND_BY_CONTROLLER),
        None,
        "the user bound the claim"
    );
    let pv = wait_pv_phase(&c, "chosen", "Bound").await;
    assert_eq!(annotation(&pv.metadata, BOUND_BY_CONTROLLER), Some("yes"));

    // The volume names the claim: the claim gets it, not the smaller fit.
    create_pvc(&c, "wants-reserved", "1Gi", json!({})).await;
    let pvc = wait_pvc_phase(&c, "wants-reserved", "Bound").await;
    assert_eq!(
        pvc.spec.as_ref().unwrap().volume_name.as_deref(),
        Some("reserved")
    );
    assert_eq!(annotation(&pvc.metadata, BOUND_BY_CONTROLLER), Some("yes"));
    let pv = wait_pv_phase(&c, "reserved", "Bound").await;
    assert_eq!(
        annotation(&pv.metadata, BOUND_BY_CONTROLLER),
        None,
        "the user bound the volume"
    );
    assert_eq!(pv.spec.unwrap().claim_ref.unwrap().uid, pvc.metadata.uid);

    // A named volume that does not fit: Pending, with upstream's event.
    create_pvc(
        &c,
        "too-big",
        "1Gi",
        json!({"spec": {"volumeName": "tiny"}}),
    )
    .await;
    let notes = wait_event(&c, "too-big", "VolumeMismatch").await;
    assert_eq!(
        notes[0],
        "Cannot bind to requested volume \"tiny\": requested PV is too small"
    );
    // A named volume already bound elsewhere.
    create_pvc(&c, "late", "1Gi", json!({"spec": {"volumeName": "chosen"}})).await;
    let notes = wait_event(&c, "late", "FailedBinding").await;
    assert_eq!(
        notes[0],
        "volume \"chosen\" already bound to a different claim."
    );
    for name in ["too-big", "late"] {
        wait_pvc_phase(&c, name, "Pending").await;
    }
    assert_eq!(
        pv_phase(&volumes(&c).get("tiny").await.unwrap()),
        "Available"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_without_a_match_waits_pending_until_a_volume_appears() {
    let c = start().await;
    create_pv(&c, "small", "1Gi", &["ReadWriteOnce"], json!({})).await;
    create_pvc(&c, "big", "50Gi", json!({})).await;
    let notes = wait_event(&c, "big", "FailedBinding").await;
    assert_eq!(
        notes[0],
        "no persistent volumes available for this claim and no storage class is set"
    );
    let pvc = wait_pvc_phase(&c, "big", "Pending").await;
    assert!(pvc.spec.unwrap().volume_name.is_none());
    let (ok, out) = c.kubectl(&["get", "pvc", "big", "-n", NS]).await;
    assert!(ok && out.contains("Pending"), "{out}");
    // A volume that fits, created later, is found by the periodic resync.
    create_pv(&c, "large", "60Gi", &["ReadWriteOnce"], json!({})).await;
    let pvc = wait_pvc_phase(&c, "big", "Bound").await;
    assert_eq!(pvc.spec.unwrap().volume_name.as_deref(), Some("large"));
    assert_eq!(
        pv_phase(&volumes(&c).get("small").await.unwrap()),
        "Available"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_volumes_follow_their_reclaim_policy_and_lost_claims() {
    let c = start().await;
    let policy = |p: &str| json!({"spec": {"persistentVolumeReclaimPolicy": p}});
    create_pv(&c, "retain", "1Gi", &["ReadWriteOnce"], policy("Retain")).await;
    create_pv(&c, "delete", "1Gi", &["ReadWriteOnce"], policy("Delete")).await;
    create_pv(&c, "recycle", "1Gi", &["ReadWriteOnce"], policy("Recycle")).await;
    let mut external = policy("Delete");
    external["metadata"] =
        json!({"annotations": {"pv.kubernetes.io/provisioned-by": "example.com/external"}});
    create_pv(&c, "external", "1Gi", &["ReadWriteOnce"], external).await;
    create_pv(&c, "doomed", "1Gi", &["ReadWriteOnce"], json!({})).await;
    let names = ["retain", "delete", "recycle", "external", "doomed"];
    for name in names {
        create_pvc(
            &c,
            &format!("c-{name}"),
            "1Gi",
            json!({"spec": {"volumeName": name}}),
        )
        .await;
    }
    for name in names {
        wait_pvc_phase(&c, &format!("c-{name}"), "Bound").await;
        wait_pv_phase(&c, name, "Bound").await;
    }

    for name in ["retain", "delete", "recycle", "external"] {
        claims(&c)
            .delete(&format!("c-{name}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    let pv = wait_pv_phase(&c, "retain", "Released").await;
    assert!(
        pv.spec.unwrap().claim_ref.is_some(),
        "Retain keeps the claimRef"
    );
    let pv = wait_pv_phase(&c, "delete", "Failed").await;
    let message =
        "error getting deleter volume plugin for volume \"delete\": no volume plugin matched";
    assert_eq!(pv.status.unwrap().message.as_deref(), Some(message));
    assert_eq!(
        wait_event(&c, "delete", "VolumeFailedDelete").await[0],
        message
    );
    let pv = wait_pv_phase(&c, "recycle", "Failed").await;
    assert_eq!(
        pv.status.unwrap().message.as_deref(),
        Some("No recycler plugin found for the volume!")
    );
    wait_event(&c, "recycle", "VolumeFailedRecycle").await;
    // An external provisioner's volume is left Released for it to delete.
    wait_pv_phase(&c, "external", "Released").await;

    // The volume of a bound claim is deleted: the claim is Lost.
    volumes(&c)
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    wait_pvc_phase(&c, "c-doomed", "Lost").await;
    let notes = wait_event(&c, "c-doomed", "ClaimLost").await;
    assert_eq!(
        notes[0],
        "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
    );
    // Resyncs change nothing further.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        pv_phase(&volumes(&c).get("retain").await.unwrap()),
        "Released"
    );
    assert_eq!(
        pv_phase(&volumes(&c).get("external").await.unwrap()),
        "Released"
    );
    assert_eq!(
        pvc_phase(&claims(&c).get("c-doomed").await.unwrap()),
        "Lost"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_binding_and_external_provisioning_wait_with_events() {
    let c = start().await;
    create_class(
        &c,
        "local",
        "kubernetes.io/no-provisioner",
        "WaitForFirstConsumer",
    )
    .await;
    create_class(&c, "ext", "example.com/ext", "Immediate").await;
    create_pv(
        &c,
        "local-pv",
        "1Gi",
        &["ReadWriteOnce"],
        json!({"spec": {"storageClassName": "local"}}),
    )
    .await;
    wait_pv_phase(&c, "local-pv", "Available").await;

    create_pvc(
        &c,
        "later",
        "1Gi",
        json!({"spec": {"storageClassName": "local"}}),
    )
    .await;
    let notes = wait_event(&c, "later", "WaitForFirstConsumer").await;
    assert_eq!(
        notes[0],
        "waiting for first consumer to be created before binding"
    );
    wait_pvc_phase(&c, "later", "Pending").await;
    // A pod that uses the claim but is not scheduled yet.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "user"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "later"}}],
        },
    }))
    .unwrap();
    c.pods(NS)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let notes = wait_event(&c, "later", "WaitForPodScheduled").await;
    assert_eq!(notes[0], "waiting for pod user to be scheduled");
    let pv = volumes(&c).get("local-pv").await.unwrap();
    assert_eq!(pv_phase(&pv), "Available");
    assert!(
        pv.spec.unwrap().claim_ref.is_none(),
        "the scheduler binds these"
    );

    create_pvc(
        &c,
        "provisioned",
        "1Gi",
        json!({"spec": {"storageClassName": "ext"}}),
    )
    .await;
    let notes = wait_event(&c, "provisioned", "ExternalProvisioning").await;
    assert_eq!(
        notes[0],
        "Waiting for a volume to be created either by the external provisioner 'example.com/ext' \
         or manually by the system administrator. If volume creation is delayed, please verify \
         that the provisioner is running and correctly registered."
    );
    let pvc = wait_pvc_phase(&c, "provisioned", "Pending").await;
    for key in [
        "volume.kubernetes.io/storage-provisioner",
        "volume.beta.kubernetes.io/storage-provisioner",
    ] {
        assert_eq!(
            annotation(&pvc.metadata, key),
            Some("example.com/ext"),
            "{key}"
        );
    }
    // The provisioner's volume, pre-bound to the claim, is bound.
    create_pv(
        &c,
        "pvc-provisioned",
        "1Gi",
        &["ReadWriteOnce"],
        json!({
            "metadata": {"annotations": {"pv.kubernetes.io/provisioned-by": "example.com/ext"}},
            "spec": {
                "storageClassName": "ext",
                "claimRef": {"namespace": NS, "name": "provisioned", "uid": pvc.metadata.uid},
            },
        }),
    )
    .await;
    let pvc = wait_pvc_phase(&c, "provisioned", "Bound").await;
    assert_eq!(
        pvc.spec.unwrap().volume_name.as_deref(),
        Some("pvc-provisioned")
    );
    wait_pv_phase(&c, "pvc-provisioned", "Bound").await;
    c.stop().await;
}
