//! `skiff server` runs cluster DNS: with the control plane only (no agent,
//! no root needed) and DNS on a free port of 127.0.0.1, a UDP query for
//! `kubernetes.default.svc.cluster.local` answers the `kubernetes` Service's
//! ClusterIP and `kubectl cluster-info` lists the DNS Service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the server (by its PID) when the test ends, even on failure.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, dns_port: u16) -> Server {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--bind-address",
            "127.0.0.1",
            "--https-listen-port",
        ])
        .arg(free_port().to_string())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--write-kubeconfig")
        .arg(dir.join("kubeconfig"))
        .args([
            "--disable-agent",
            "--disable-scheduler",
            "--disable-controller-manager",
        ])
        .args(["--node-ip", "127.0.0.1", "--dns-listen-address"])
        .arg(format!("127.0.0.1:{dns_port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Server(child)
}

/// A DNS question for `name` (type A, class IN) with ID `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// (rcode, the A records' addresses) of a reply to a one-question query
/// whose answers use name compression (as ours do).
fn parse(reply: &[u8], question_len: usize) -> (u8, Vec<String>) {
    let rcode = reply[3] & 0x0f;
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    let mut at = question_len;
    let mut out = Vec::new();
    for _ in 0..answers {
        // A compressed owner name (2 bytes), type, class, TTL, rdlength.
        let rtype = u16::from_be_bytes([reply[at + 2], reply[at + 3]]);
        let len = usize::from(u16::from_be_bytes([reply[at + 10], reply[at + 11]]));
        let data = &reply[at + 12..at + 12 + len];
        if rtype == 1 {
            out.push(format!("{}.{}.{}.{}", data[0], data[1], data[2], data[3]));
        }
        at += 12 + len;
    }
    (rcode, out)
}

#[test]
fn server_answers_cluster_names_and_lists_the_dns_service() {
    let dir = tempfile::tempdir().unwrap();
    let dns_port = free_port();
    let _server = start(dir.path(), dns_port);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let q = query(0x4242, "kubernetes.default.svc.cluster.local.");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        sock.send_to(&q, ("127.0.0.1", dns_port)).unwrap();
        let mut buf = [0u8; 512];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            assert_eq!(buf[..2], [0x42, 0x42]);
            let got = parse(&buf[..n], q.len());
            if got == (0, vec!["10.43.0.1".to_owned()]) {
                break;
            }
            last = Some(got);
        }
        assert!(
            Instant::now() < deadline,
            "no answer ({last:?}); server log:\n{}",
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // An unknown Service: NXDOMAIN.
    let q = query(7, "nope.default.svc.cluster.local.");
    sock.send_to(&q, ("127.0.0.1", dns_port)).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(parse(&buf[..n], q.len()).0, 3);

    if !Path::new(KUBECTL).exists() {
        eprintln!("kubectl 1.33 missing: cluster-info not checked");
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(dir.path().join("kubeconfig"))
            .env("HOME", dir.path())
            .arg("cluster-info")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("CoreDNS") && text.contains("services/kube-dns:dns/proxy") {
            break;
        }
        assert!(Instant::now() < deadline, "cluster-info: {text}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
