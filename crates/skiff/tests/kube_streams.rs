//! End to end: kube-rs's own streaming API (`Api::<Pod>::exec`, `attach`
//! and `portforward`, WebSocket `v5`/`v4.channel.k8s.io`) through the API
//! server, the kubelet and the built-in runtime's streaming server, unchanged
//! client code against the real server and agent: both output streams, the
//! exit status as a `metav1.Status`, stdin and its close, several ports in
//! one forwarder and upstream's error for a port nothing listens on.
//! Skipped without root or busybox-static.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::time::Duration;

use cluster::{Cluster, Names, container, merge, phase};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, AttachedProcess};
use kube::{Api, Client};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const NAMES: Names = Names {
    node: "skiff-kubews",
    bridge: "skiffkws0",
    nat_table: "skiff-kubews-nat",
    cluster_cidr: "10.250.0.0/16",
    scheduler: false,
};

/// What no step may take longer than (a hang fails instead of stalling).
const STEP: Duration = Duration::from_secs(30);

const PAGE: &str = "served by busybox httpd\n";

async fn client(c: &Cluster) -> Client {
    let kc = kube::config::Kubeconfig::read_from(c.dir.path().join("kubeconfig")).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in {STEP:?}"))
}

async fn read_all(r: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut out = Vec::new();
    r.unwrap().read_to_end(&mut out).await.unwrap();
    out
}

/// Waits for the process: its stdout, its stderr (empty when not asked
/// for), the `Status` from the error channel, and the stream task's result.
async fn finish(mut p: AttachedProcess) -> (String, String, Status) {
    let status = p.take_status().unwrap();
    let stderr = p.stderr();
    let stderr = async {
        match stderr {
            Some(r) => read_all(Some(r)).await,
            None => Vec::new(),
        }
    };
    let stdout = p.stdout();
    let (out, err) = tokio::join!(read_all(stdout), stderr);
    let status = status.await.expect("no status on the error channel");
    p.join().await.unwrap();
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        status,
    )
}

#[test]
fn kube_rs_exec_attach_and_port_forward() {
    let Some(c) = Cluster::start(NAMES) else {
        return;
    };
    // One pod for every case: an HTTP server on 80 and an echo server on
    // 81 (nothing on 82), and a second container that reads its stdin.
    let serve = format!(
        "mkdir -p /www && echo '{}' > /www/index.html && httpd -p 80 -h /www \
         && exec nc -ll -p 81 -e cat",
        PAGE.trim_end()
    );
    c.apply(&c.pod(
        "streams",
        json!({"containers": [
            container("main", &serve),
            merge(
                container("reader", "while read l; do echo \"got $l\"; done"),
                json!({"stdin": true}),
            ),
        ]}),
    ));
    c.wait_pod("streams", "Running", |p| phase(p) == "Running");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pods: Api<Pod> = Api::default_namespaced(client(&c).await);
        exec_output_and_status(&pods).await;
        exec_stdin(&pods).await;
        attach_stdin(&pods).await;
        port_forward(&pods).await;
    });
}

async fn exec_output_and_status(pods: &Api<Pod>) {
    let main = || AttachParams::default().container("main");

    // stdout and stderr apart; a zero exit is a Success status.
    let p = bounded(
        "exec",
        pods.exec(
            "streams",
            ["sh", "-c", "echo out; echo err >&2; echo more"],
            &main(),
        ),
    )
    .await
    .unwrap();
    let (out, err, status) = bounded("exec output", finish(p)).await;
    assert_eq!(out, "out\nmore\n");
    assert_eq!(err, "err\n");
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");
    assert_eq!(status.reason, None, "{status:?}");

    // A non-zero exit: Failure, reason NonZeroExitCode, and the code as the
    // ExitCode cause, as upstream's kubelet writes it.
    let p = pods
        .exec(
            "streams",
            ["sh", "-c", "echo out; echo err >&2; exit 3"],
            &main(),
        )
        .await
        .unwrap();
    let (out, err, status) = bounded("exec exit 3", finish(p)).await;
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert_eq!(status.status.as_deref(), Some("Failure"), "{status:?}");
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("command terminated with non-zero exit code"),
        "{message}"
    );
    let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(causes[0].message.as_deref(), Some("3"));

    // Output only on stderr, stdout not asked for.
    let mut p = pods
        .exec(
            "streams",
            ["sh", "-c", "echo out; echo only-err >&2"],
            &main().stdout(false),
        )
        .await
        .unwrap();
    assert!(p.stdout().is_none());
    let err = bounded("stderr only", read_all(p.stderr())).await;
    assert_eq!(String::from_utf8(err).unwrap(), "only-err\n");
    let status = bounded("status", p.take_status().unwrap()).await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");
}

async fn exec_stdin(pods: &Api<Pod>) {
    // Input reaches the process as it comes (an echo before stdin closes),
    // and closing stdin ends it (v5's CLOSE on channel 0).
    let ap = AttachParams::default()
        .container("main")
        .stdin(true)
        .stderr(false);
    let mut p = pods
        .exec("streams", ["sh", "-c", "cat; echo done"], &ap)
        .await
        .unwrap();
    let mut stdin = p.stdin().unwrap();
    let mut stdout = p.stdout().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    let mut line = [0u8; 6];
    bounded("echo before close", stdout.read_exact(&mut line))
        .await
        .unwrap();
    assert_eq!(&line, b"hello\n");
    stdin.write_all(b"world\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let rest = bounded("output after close", read_all(Some(stdout))).await;
    assert_eq!(String::from_utf8(rest).unwrap(), "world\ndone\n");
    let status = bounded("status", p.take_status().unwrap()).await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");
    p.join().await.unwrap();

    // A large input and its output at once, intact (flow control both ways).
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| b'a' + u8::try_from(i % 26).unwrap())
        .collect();
    let mut p = pods.exec("streams", ["cat"], &ap).await.unwrap();
    let mut stdin = p.stdin().unwrap();
    let stdout = p.stdout();
    let data = big.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&data).await.unwrap();
        stdin.shutdown().await.unwrap();
    });
    let back = bounded("large echo", read_all(stdout)).await;
    writer.await.unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back == big, "bytes differ");
    let status = bounded("status", p.take_status().unwrap()).await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");
}

async fn attach_stdin(pods: &Api<Pod>) {
    // The reader container's stdin and stdout, attached.
    let ap = AttachParams::default()
        .container("reader")
        .stdin(true)
        .stderr(false);
    let mut p = bounded("attach", pods.attach("streams", &ap))
        .await
        .unwrap();
    let mut stdin = p.stdin().unwrap();
    let mut stdout = p.stdout().unwrap();
    for word in ["ping", "pong"] {
        stdin
            .write_all(format!("{word}\n").as_bytes())
            .await
            .unwrap();
        let want = format!("got {word}\n");
        let mut line = vec![0u8; want.len()];
        bounded("attached echo", stdout.read_exact(&mut line))
            .await
            .unwrap();
        assert_eq!(String::from_utf8(line).unwrap(), want);
    }
    // Detaching leaves the container running.
    p.abort();
}

async fn port_forward(pods: &Api<Pod>) {
    let mut pf = bounded("portforward", pods.portforward("streams", &[80, 81, 82]))
        .await
        .unwrap();
    let mut http = pf.take_stream(80).unwrap();
    let mut echo = pf.take_stream(81).unwrap();
    let refused = pf.take_error(82).unwrap();

    // Nothing listens on 82: its error channel says so.
    let error = bounded("port 82's error", refused).await.unwrap();
    assert!(
        error.contains("failed to connect to localhost:82") && error.contains("connection refused"),
        "{error}"
    );

    // HTTP over port 80 while port 81 echoes, in the same forwarder.
    http.write_all(b"GET /index.html HTTP/1.0\r\nHost: streams\r\n\r\n")
        .await
        .unwrap();
    let sent: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let echo_sent = sent.clone();
    let echoed = async {
        let (mut r, mut w) = tokio::io::split(&mut echo);
        let write = async {
            w.write_all(&echo_sent).await.unwrap();
        };
        let mut back = vec![0u8; echo_sent.len()];
        let read = r.read_exact(&mut back);
        let ((), n) = tokio::join!(write, read);
        n.unwrap();
        back
    };
    // httpd answers and closes; the response ends where the page does.
    let response = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(PAGE.as_bytes()) {
            let n = http.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "response cut short: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    };
    let (response, back) = bounded("forwarded traffic", async {
        tokio::join!(response, echoed)
    })
    .await;
    assert!(
        response.starts_with("HTTP/1.") && response.contains(" 200 OK\r\n"),
        "{response}"
    );
    assert!(response.ends_with(&format!("\r\n\r\n{PAGE}")), "{response}");
    assert!(back == sent, "echoed bytes differ");

    // Done with every port: the forwarder closes the socket and the
    // server ends it cleanly.
    drop((http, echo));
    bounded("closing the forwarder", pf.join()).await.unwrap();
}
