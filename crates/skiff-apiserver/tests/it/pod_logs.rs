//! `kubectl logs` end to end: the real kubectl against the real server,
//! which reaches a fake kubelet (skiff-kubelet's log server over temp files)
//! on 127.0.0.1 with its kubelet client certificate.

use crate::support;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, LogParams, Patch, PatchParams, PostParams};
use skiff_kubelet::server::{self as kubelet, LogLocator, LogTarget};
use support::{KUBECTL_133, Kubectl, start};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Log files by (pod, container); every container of the test "runs".
struct Files {
    files: HashMap<(String, String), PathBuf>,
    running: Arc<AtomicBool>,
}

impl LogLocator for Files {
    fn locate(
        &self,
        _namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogTarget, (u16, String)> {
        if previous {
            return Err((
                400,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            ));
        }
        let running = self.running.clone();
        match self.files.get(&(pod.to_owned(), container.to_owned())) {
            Some(path) => Ok(LogTarget {
                path: path.clone(),
                running: Arc::new(move || running.load(Ordering::SeqCst)),
            }),
            None => Err((
                404,
                format!("container {container:?} not found in pod {pod:?}"),
            )),
        }
    }
}

fn record(t: time::OffsetDateTime, stream: &str, line: &str) -> String {
    let t = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!("{t} {stream} F {line}\n")
}

fn append(path: &Path, s: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

async fn create_node(nodes: &Api<Node>, name: &str, port: u16) {
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = serde_json::json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                      {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn create_pod(pods: &Api<Pod>, name: &str, node: Option<&str>, containers: &[&str]) {
    let containers: Vec<_> = containers
        .iter()
        .map(|c| serde_json::json!({"name": c, "image": "busybox"}))
        .collect();
    let mut spec = serde_json::json!({"containers": containers});
    if let Some(node) = node {
        spec["nodeName"] = serde_json::json!(node);
    }
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

#[tokio::test]
async fn kubectl_logs_through_the_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let old = now - time::Duration::days(2);
    let app_log = logs.join("app.log");
    std::fs::write(
        &app_log,
        record(old, "stdout", "one")
            + &record(old, "stderr", "two")
            + &record(now, "stdout", "three"),
    )
    .unwrap();
    let a_log = logs.join("a.log");
    std::fs::write(&a_log, record(now, "stdout", "from a")).unwrap();
    let b_log = logs.join("b.log");
    std::fs::write(&b_log, record(now, "stdout", "from b")).unwrap();

    // The fake kubelet: trusts the cluster's client CA, serves with a
    // certificate the API server does not check.
    let pki = server.pki();
    let serving = pki
        .issue_serving_cert("node-1", &["127.0.0.1".to_owned()])
        .unwrap();
    let tls = kubelet::tls_config(
        &[pki.client_ca_der().clone()],
        vec![serving.cert_der().clone()],
        serving.key_der(),
    )
    .unwrap();
    let kubelet_server = kubelet::KubeletServer::bind(kubelet::KubeletServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls,
    })
    .await
    .unwrap();
    let kubelet_port = kubelet_server.local_addr().unwrap().port();
    let running = Arc::new(AtomicBool::new(true));
    let files = Files {
        files: HashMap::from([
            (("single".into(), "app".into()), app_log.clone()),
            (("multi".into(), "a".into()), a_log),
            (("multi".into(), "b".into()), b_log),
        ]),
        running: running.clone(),
    };
    let (stop_kubelet, kubelet_stopped) = tokio::sync::oneshot::channel::<()>();
    let kubelet_task = tokio::spawn(kubelet_server.serve(Arc::new(files), None, async {
        let _ = kubelet_stopped.await;
    }));

    let nodes: Api<Node> = Api::all(client.clone());
    create_node(&nodes, "node-1", kubelet_port).await;
    // A node whose kubelet is not there: a port nothing listens on.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    create_node(&nodes, "node-gone", closed_port).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_pod(&pods, "single", Some("node-1"), &["app"]).await;
    create_pod(&pods, "multi", Some("node-1"), &["a", "b"]).await;
    create_pod(&pods, "lost", Some("node-gone"), &["app"]).await;
    create_pod(&pods, "pending", None, &["app"]).await;

    let k = Kubectl::new(KUBECTL_133, dir.path());
    assert_eq!(k.ok(&["logs", "single"]).await, "one\ntwo\nthree\n");
    assert_eq!(k.ok(&["logs", "pod/single", "--tail=1"]).await, "three\n");
    assert_eq!(k.ok(&["logs", "single", "--since=1h"]).await, "three\n");
    let since_time = (now - time::Duration::hours(1))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(
        k.ok(&["logs", "single", &format!("--since-time={since_time}")])
            .await,
        "three\n"
    );
    assert_eq!(
        k.ok(&["logs", "single", "--limit-bytes=6"]).await,
        "one\ntw"
    );
    let stamped = k.ok(&["logs", "single", "--timestamps"]).await;
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 3, "{stamped}");
    let first = record(old, "stdout", "one");
    let first_ts = first.split(' ').next().unwrap();
    assert_eq!(lines[0], format!("{first_ts} one"));
    assert!(lines[2].ends_with("Z three"), "{stamped}");

    // Containers: named, unknown, ambiguous.
    assert_eq!(k.ok(&["logs", "multi", "-c", "b"]).await, "from b\n");
    let (ok, _, err) = k.run(&["logs", "multi", "-c", "x"]).await;
    assert!(!ok);
    assert!(
        err.contains("container x is not valid for pod multi"),
        "{err}"
    );
    let err = pods.logs("multi", &LogParams::default()).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert_eq!(
                s.message,
                "a container name must be specified for pod multi, choose one of: [a b]"
            );
        }
        other => panic!("{other:?}"),
    }
    // The kubelet's own errors come through.
    let (ok, _, err) = k.run(&["logs", "single", "--previous"]).await;
    assert!(!ok);
    assert!(
        err.contains(
            "Error from server (BadRequest): previous terminated container \"app\" in pod \"single\" not found"
        ),
        "{err}"
    );
    // Validation of the options.
    let params = LogParams {
        tail_lines: Some(-1),
        ..Default::default()
    };
    match pods.logs("single", &params).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!(s.code, 422, "{s:?}"),
        other => panic!("{other:?}"),
    }
    let (ok, _, err) = k.run(&["logs", "missing"]).await;
    assert!(!ok && err.contains("pods \"missing\" not found"), "{err}");
    // A kubelet that cannot be reached.
    let (ok, _, err) = k.run(&["logs", "lost"]).await;
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "Get \"https://127.0.0.1:{closed_port}/containerLogs/default/lost/app\": dial tcp 127.0.0.1:{closed_port}: connect: connection refused"
        )),
        "{err}"
    );
    // Not scheduled yet: nothing to show.
    assert_eq!(k.ok(&["logs", "pending"]).await, "");

    // -f: appended lines arrive while kubectl runs.
    let mut child = tokio::process::Command::new(k.bin)
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .env("HOME", &k.home)
        .args(["logs", "-f", "single", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let next = async |out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>| {
        tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .expect("kubectl logs -f printed nothing in time")
            .unwrap()
            .expect("kubectl logs -f ended")
    };
    assert_eq!(next(&mut out).await, "three");
    append(
        &app_log,
        &record(time::OffsetDateTime::now_utc(), "stdout", "four"),
    );
    assert_eq!(next(&mut out).await, "four");
    append(
        &app_log,
        &record(time::OffsetDateTime::now_utc(), "stderr", "five"),
    );
    assert_eq!(next(&mut out).await, "five");
    // Only this child is killed (tokio signals its own PID).
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    // When the container stops, -f ends by itself.
    let mut child = tokio::process::Command::new(k.bin)
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .env("HOME", &k.home)
        .args(["logs", "-f", "single", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next(&mut out).await, "five");
    running.store(false, Ordering::SeqCst);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("kubectl logs -f ends when the container stops")
        .unwrap();
    assert!(status.success());

    let _ = stop_kubelet.send(());
    tokio::time::timeout(Duration::from_secs(20), kubelet_task)
        .await
        .unwrap()
        .unwrap();
    server.shutdown().await;
}
