//! The controller manager's metrics against the real API server: on the API
//! server's `/metrics` as `skiff server` serves them (read with the real
//! kubectl), and on the standalone manager's plain-HTTP listener.

use crate::support;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use skiff_apiserver::metrics::SharedCollector;
use skiff_controllers::ControllerManagerOptions;
use support::{Cluster, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The value of the sample `series` (`name{labels}`) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok())?
    })
}

const RS_ADDS: &str = r#"workqueue_adds_total{name="replicaset"}"#;
const RS_SUCCESSES: &str =
    r#"skiff_controller_syncs_total{controller="replicaset",result="success"}"#;
const RS_WORKERS: &str = r#"skiff_controller_workers{controller="replicaset"}"#;
const LEADER: &str = r#"leader_election_master_status{name="kube-controller-manager"}"#;

async fn create_rs(c: &Cluster, name: &str, replicas: i32) {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }))
    .unwrap();
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &rs).await.unwrap();
}

/// `kubectl get --raw /metrics`.
async fn kubectl_metrics(c: &Cluster) -> String {
    let out = tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["get", "--raw", "/metrics"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_queues_and_syncs_show_on_the_api_servers_metrics() {
    let mut leader = ControllerManagerOptions::new("first".into());
    leader.concurrent_replicaset_syncs = 3;
    let served = leader.metrics.clone();
    let mut c = Cluster::start_serving(0, vec![SharedCollector(Arc::new(served.clone()))]).await;
    c.start_manager_with(leader);
    wait_for("first to lead", async || {
        (sample(&served.encode_text(), LEADER) == Some(1.0)).then_some(())
    })
    .await;
    // A standby in the same process reports into its own metrics.
    let standby = ControllerManagerOptions::new("second".into());
    let standby_metrics = standby.metrics.clone();
    c.start_manager_with(standby);

    create_rs(&c, "served", 2).await;
    wait_for("2 pods", async || {
        (c.active_pods("default", "app=served").await.len() == 2).then_some(())
    })
    .await;
    let text = wait_for("replicaset syncs on /metrics", async || {
        let text = kubectl_metrics(&c).await;
        (sample(&text, RS_SUCCESSES)? >= 1.0).then_some(text)
    })
    .await;
    assert!(sample(&text, RS_ADDS).unwrap() >= 1.0, "{text}");
    assert_eq!(sample(&text, RS_WORKERS), Some(3.0), "{text}");
    assert_eq!(sample(&text, LEADER), Some(1.0), "{text}");
    // Every controller's queue is there under upstream's name, and every
    // controller's workers.
    for name in [
        "deployment",
        "job",
        "daemonset",
        "statefulset",
        "endpoint",
        "namespace",
    ] {
        let series = format!(r#"workqueue_depth{{name="{name}"}}"#);
        assert!(sample(&text, &series).is_some(), "no {series} in\n{text}");
    }
    assert_eq!(
        sample(
            &text,
            r#"skiff_controller_workers{controller="deployment"}"#
        ),
        Some(5.0)
    );
    assert!(
        text.contains(r#"skiff_controller_sync_duration_seconds_count{controller="replicaset",result="success"}"#),
        "{text}"
    );
    assert!(
        text.contains("# TYPE workqueue_work_duration_seconds histogram"),
        "{text}"
    );
    // The API server's own metrics are still there.
    assert!(text.contains("apiserver_request_total{"), "{text}");

    // The standby runs no controllers: it counts nothing and says so.
    let standby_text = standby_metrics.encode_text();
    assert_eq!(sample(&standby_text, LEADER), Some(0.0), "{standby_text}");
    assert_eq!(sample(&standby_text, RS_ADDS), None, "{standby_text}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_listener_serves_the_managers_metrics() {
    let mut c = Cluster::start_serving(0, Vec::new()).await;
    let mut opts = ControllerManagerOptions::new("solo".into());
    opts.leader_elect = false;
    opts.concurrent_replicaset_syncs = 2;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let serving = tokio::spawn(skiff_client::metrics_listener::serve(
        listener,
        opts.metrics.clone(),
        stop_rx,
    ));
    c.start_manager_with(opts);
    create_rs(&c, "solo", 1).await;

    let get = async |path: &str| {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let text = wait_for("replicaset syncs on the listener", async || {
        let r = get("/metrics").await;
        let (head, body) = r.split_once("\r\n\r\n")?;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        (sample(body, RS_SUCCESSES)? >= 1.0).then(|| body.to_owned())
    })
    .await;
    assert!(sample(&text, RS_ADDS).unwrap() >= 1.0, "{text}");
    assert_eq!(sample(&text, RS_WORKERS), Some(2.0), "{text}");
    // As upstream: no leader election, no election status.
    assert!(!text.contains("leader_election_master_status{"), "{text}");
    let r = get("/healthz").await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("ok"),
        "{r}"
    );

    stop_tx.send_replace(true);
    serving.await.unwrap();
    c.stop().await;
}
