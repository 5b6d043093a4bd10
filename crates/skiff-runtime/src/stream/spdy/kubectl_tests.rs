//! Interoperability with the real client: `kubectl exec` over SPDY (client-go's
//! spdystream) against a stub API server on 127.0.0.1 that answers the pod
//! lookup and upgrades the exec request into [`accept`].
//!
//! Needs `kubectl` on PATH, hence ignored by default:
//! `cargo test -p skiff-runtime --lib kubectl -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{accept, negotiate};
use crate::stream::{Outcome, StreamOpts, Version};

const POD: &str = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"c","image":"x"}]},"status":{"phase":"Running"}}"#;

const API_V1: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]}]}"#;

/// Reads one request head; returns (request line, headers).
async fn read_head(conn: &mut TcpStream) -> Option<(String, Vec<(String, String)>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.split("\r\n");
    let request = lines.next()?.to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((request, headers))
}

/// The "process": upper-cases stdin to stdout, says something on stderr,
/// exits 3.
async fn serve(mut conn: TcpStream) {
    while let Some((request, headers)) = read_head(&mut conn).await {
        if let Some(path) = request.strip_prefix("GET ") {
            // Legacy discovery, then the pod.
            let path = path.split([' ', '?']).next().unwrap_or_default();
            let body = match path {
                "/api" => r#"{"kind":"APIVersions","versions":["v1"]}"#,
                "/apis" => r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#,
                "/api/v1" => API_V1,
                _ => POD,
            };
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(reply.as_bytes()).await.unwrap();
            continue;
        }
        assert!(
            request.starts_with("POST ") && request.contains("/exec?"),
            "{request}"
        );
        let offered: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == "x-stream-protocol-version")
            .map(|(_, v)| v.as_str())
            .collect();
        let version = negotiate(&offered).expect("a SPDY version");
        assert_eq!(version, Version::V4, "{offered:?}");
        let reply = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {}\r\n\r\n",
            version.name()
        );
        conn.write_all(reply.as_bytes()).await.unwrap();
        let opts = StreamOpts {
            stdin: request.contains("stdin=true"),
            stdout: request.contains("stdout=true"),
            stderr: request.contains("stderr=true"),
            tty: request.contains("tty=true"),
        };
        let mut session = accept(conn, version, opts).await.unwrap();
        if opts.tty {
            // Report the first terminal size and exit.
            let size = session.resize.as_mut().unwrap().recv().await.unwrap();
            let line = format!("size {}x{}\r\n", size.width, size.height);
            let stdout = session.stdout.unwrap();
            stdout.send(Bytes::from(line)).await.unwrap();
            drop(stdout);
            let cmd = vec!["sh".to_string()];
            session.finish.send(Outcome::exited(&cmd, 3)).unwrap();
            return;
        }
        let stdout = session.stdout.unwrap();
        let stderr = session.stderr.unwrap();
        let mut input = Vec::new();
        match session.stdin {
            Some(mut stdin) => {
                while let Some(chunk) = stdin.recv().await {
                    input.extend_from_slice(&chunk);
                }
            }
            None => input.extend_from_slice(b"no stdin\n"),
        }
        stdout
            .send(Bytes::from(input.to_ascii_uppercase()))
            .await
            .unwrap();
        stderr.send(Bytes::from_static(b"oops\n")).await.unwrap();
        drop((stdout, stderr));
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        session.finish.send(Outcome::exited(&cmd, 3)).unwrap();
        return;
    }
}

async fn stub_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(conn));
        }
    });
    port
}

fn kubectl(port: u16, exec_args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .env("KUBECONFIG", "/dev/null")
        .args(["--server", &format!("http://127.0.0.1:{port}"), "exec"])
        .args(exec_args)
        .args(["p", "--", "sh", "-c", "exit 3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

#[tokio::test]
#[ignore = "needs kubectl on PATH"]
async fn kubectl_exec_without_stdin_over_spdy() {
    let port = stub_server().await;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        kubectl(port, &[]).output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "NO STDIN\n",
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
}

#[tokio::test]
#[ignore = "needs kubectl on PATH"]
async fn kubectl_exec_over_spdy() {
    let port = stub_server().await;
    let mut kubectl = kubectl(port, &["-i"]).spawn().unwrap();
    let mut stdin = kubectl.stdin.take().unwrap();
    // More than the initial 64 KiB window.
    let input = "hello spdy\n".repeat(20_000);
    let feed = input.clone();
    // A kubectl that fails early stops reading; its stderr tells why.
    tokio::spawn(async move { stdin.write_all(feed.as_bytes()).await });
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        kubectl.wait_with_output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        input.to_uppercase(),
        "{stderr}"
    );
    assert!(stderr.contains("oops"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
}

#[tokio::test]
#[ignore = "needs kubectl and script (util-linux) on PATH"]
async fn kubectl_exec_tty_sends_resizes_over_spdy() {
    let port = stub_server().await;
    // script gives kubectl a terminal of a known size.
    let line = format!(
        "stty cols 91 rows 27; KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false KUBECONFIG=/dev/null \
         kubectl --server http://127.0.0.1:{port} exec -it p -- sh"
    );
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("size 91x27"), "{stdout}");
    assert_eq!(out.status.code(), Some(3), "{stdout}");
}
