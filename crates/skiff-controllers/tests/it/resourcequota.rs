//! ResourceQuota admission in the API server and the resourcequota
//! controller in the manager, against the real API server: limits enforced
//! with upstream's messages, usage released by deletions, concurrent
//! creates never overshooting, and `kubectl describe quota`.

use crate::support;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use support::{Cluster, wait_for};

fn quotas(c: &Cluster) -> Api<ResourceQuota> {
    Api::namespaced(c.client.clone(), "default")
}

/// Creates quota `name` with `hard` and waits until the controller has
/// written its status (admission ignores a quota until then).
async fn create_quota(c: &Cluster, name: &str, hard: Value) {
    let q: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"hard": hard}}))
            .unwrap();
    quotas(c).create(&PostParams::default(), &q).await.unwrap();
    wait_for(&format!("status of quota {name}"), async || {
        let q = quotas(c).get(name).await.unwrap();
        q.status.and_then(|s| s.used).map(|_| ())
    })
    .await;
}

/// `status.used[resource]` of quota `name` equals `want`.
async fn wait_used(c: &Cluster, name: &str, resource: &str, want: &str) {
    wait_for(&format!("{name} used {resource}={want}"), async || {
        let q = quotas(c).get(name).await.unwrap();
        let used = q.status.and_then(|s| s.used).unwrap_or_default();
        (used.get(resource).map(|q| q.0.as_str()) == Some(want)).then_some(())
    })
    .await;
}

fn pod(name: &str, resources: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]},
    }))
    .unwrap()
}

/// The 403 message of a refused create, or None if it was created.
async fn create_pod(c: &Cluster, p: &Pod) -> Option<String> {
    match c.pods("default").create(&PostParams::default(), p).await {
        Ok(_) => None,
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert_eq!(s.reason, "Forbidden");
            Some(s.message)
        }
        Err(e) => panic!("create failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_count_is_enforced_and_released_by_deletion() {
    let c = Cluster::start(0).await;
    create_quota(&c, "q", json!({"pods": "2"})).await;
    wait_used(&c, "q", "pods", "0").await;
    for name in ["p0", "p1"] {
        assert_eq!(create_pod(&c, &pod(name, json!({}))).await, None);
    }
    wait_used(&c, "q", "pods", "2").await;
    assert_eq!(
        create_pod(&c, &pod("p2", json!({}))).await.as_deref(),
        Some(
            "pods \"p2\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        )
    );
    c.pods("default")
        .delete("p0", &DeleteParams::default())
        .await
        .unwrap();
    // The controller recounts once it sees the deletion.
    wait_used(&c, "q", "pods", "1").await;
    assert_eq!(create_pod(&c, &pod("p2", json!({}))).await, None);
    assert!(create_pod(&c, &pod("p3", json!({}))).await.is_some());
    wait_used(&c, "q", "pods", "2").await;

    // A pod that finished no longer counts.
    let mut status = c.pods("default").get_status("p1").await.unwrap();
    status.status.get_or_insert_default().phase = Some("Succeeded".to_owned());
    c.pods("default")
        .replace_status("p1", &PostParams::default(), &status)
        .await
        .unwrap();
    wait_used(&c, "q", "pods", "1").await;
    assert_eq!(create_pod(&c, &pod("p3", json!({}))).await, None);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_requests_and_limits() {
    let c = Cluster::start(0).await;
    create_quota(
        &c,
        "compute",
        json!({"requests.cpu": "1", "limits.memory": "1Gi"}),
    )
    .await;
    let sized = json!({"requests": {"cpu": "600m"}, "limits": {"memory": "512Mi"}});
    assert_eq!(create_pod(&c, &pod("a", sized.clone())).await, None);
    wait_used(&c, "compute", "requests.cpu", "600m").await;
    wait_used(&c, "compute", "limits.memory", "512Mi").await;
    assert_eq!(
        create_pod(&c, &pod("b", sized)).await.as_deref(),
        Some(
            "pods \"b\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"
        )
    );
    assert_eq!(
        create_pod(&c, &pod("bare", json!({}))).await.as_deref(),
        Some(
            "pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: c; requests.cpu for: c"
        )
    );
    let small = json!({"requests": {"cpu": "400m"}, "limits": {"memory": "512Mi"}});
    assert_eq!(create_pod(&c, &pod("c", small)).await, None);
    wait_used(&c, "compute", "requests.cpu", "1").await;
    wait_used(&c, "compute", "limits.memory", "1Gi").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_counts() {
    let c = Cluster::start(0).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
    };
    cms.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    create_quota(&c, "cm", json!({"count/configmaps": "2"})).await;
    // The controller counts what existed before the quota.
    wait_used(&c, "cm", "count/configmaps", "1").await;
    cms.create(&PostParams::default(), &cm("second"))
        .await
        .unwrap();
    let err = cms
        .create(&PostParams::default(), &cm("third"))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "configmaps \"third\" is forbidden: exceeded quota: cm, requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2"
    );
    cms.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    wait_used(&c, "cm", "count/configmaps", "1").await;
    cms.create(&PostParams::default(), &cm("third"))
        .await
        .unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_exceed_the_quota() {
    let c = Cluster::start(0).await;
    create_quota(&c, "q", json!({"pods": "5"})).await;
    let creates = (0..20).map(|i| {
        let api = c.pods("default");
        async move {
            api.create(&PostParams::default(), &pod(&format!("p{i}"), json!({})))
                .await
        }
    });
    let results = futures::future::join_all(creates).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        if let Err(kube::Error::Api(s)) = r {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(s.message.contains("exceeded quota: q"), "{}", s.message);
        } else {
            assert!(r.is_ok(), "{r:?}");
        }
    }
    assert_eq!(created, 5);
    let pods = c.pods("default").list(&Default::default()).await.unwrap();
    assert_eq!(pods.items.len(), 5);
    wait_used(&c, "q", "pods", "5").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_quota_shows_used_and_hard() {
    let c = Cluster::start(0).await;
    create_quota(&c, "q", json!({"pods": "3", "requests.memory": "1Gi"})).await;
    let p = pod("a", json!({"requests": {"memory": "256Mi"}}));
    assert_eq!(create_pod(&c, &p).await, None);
    wait_used(&c, "q", "requests.memory", "256Mi").await;
    let out = tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["describe", "quota", "q", "-n", "default"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.contains(&vec!["Resource", "Used", "Hard"]), "{text}");
    assert!(rows.contains(&vec!["pods", "1", "3"]), "{text}");
    assert!(
        rows.contains(&vec!["requests.memory", "256Mi", "1Gi"]),
        "{text}"
    );
    c.stop().await;
}
