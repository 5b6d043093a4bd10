//! Two network namespaces joined by a veth pair, and tagged listeners in
//! them: the playground of the root tests and the benchmark. Everything is
//! removed on drop, whatever happened.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub use skiff_sys::process::is_root;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
}

/// Runs `work` on a thread inside namespace `ns` (created by `ip netns add`).
pub fn in_netns<T: Send>(ns: &str, work: impl FnOnce() -> T + Send) -> T {
    skiff_sys::net::run_in_netns(&PathBuf::from(format!("/run/netns/{ns}")), work).unwrap()
}

/// "client" (10.250.N.1) and "backend" (10.250.N.2 and .3) namespaces on a
/// veth pair; the client's default route points at the backend, so a
/// Service address without a rule goes nowhere (the backend does not
/// forward).
pub struct Pair {
    pub client: String,
    pub backend: String,
    pub subnet: u8,
    pub client_ip: Ipv4Addr,
    pub backend_ips: [Ipv4Addr; 2],
}

impl Pair {
    /// `None` (with a note) when not root or without `ip`/`nft`.
    pub fn create(tag: &str) -> Option<Pair> {
        if !is_root() || !have("ip") || !have("nft") {
            eprintln!("skipping: needs root, ip and nft");
            return None;
        }
        let pid = std::process::id();
        let subnet = 100 + (pid % 100) as u8;
        let pair = Pair {
            client: format!("sk{tag}{pid}c"),
            backend: format!("sk{tag}{pid}b"),
            subnet,
            client_ip: Ipv4Addr::new(10, 250, subnet, 1),
            backend_ips: [
                Ipv4Addr::new(10, 250, subnet, 2),
                Ipv4Addr::new(10, 250, subnet, 3),
            ],
        };
        for ns in [&pair.client, &pair.backend] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            run("ip", &["netns", "add", ns]);
        }
        let (c, b) = (pair.client.as_str(), pair.backend.as_str());
        run(
            "ip",
            &[
                "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b,
            ],
        );
        let cidr = |ip: Ipv4Addr| format!("{ip}/24");
        run(
            "ip",
            &["-n", c, "addr", "add", &cidr(pair.client_ip), "dev", "eth0"],
        );
        run(
            "ip",
            &[
                "-n",
                b,
                "addr",
                "add",
                &cidr(pair.backend_ips[0]),
                "dev",
                "eth0",
            ],
        );
        run(
            "ip",
            &[
                "-n",
                b,
                "addr",
                "add",
                &cidr(pair.backend_ips[1]),
                "dev",
                "eth0",
            ],
        );
        for ns in [c, b] {
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
            run("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        }
        run(
            "ip",
            &[
                "-n",
                c,
                "route",
                "add",
                "default",
                "via",
                &pair.backend_ips[0].to_string(),
            ],
        );
        Some(pair)
    }

    /// Writes `/proc/sys/<key>` inside the client namespace.
    pub fn sysctl_client(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        in_netns(&self.client, || std::fs::write(&path, value)).unwrap();
    }

    /// Feeds `script` to `nft -f -` inside the client namespace.
    pub fn nft_client(&self, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.client, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// `nft list table ip TABLE` in the client namespace ("" if absent).
    pub fn list_client_table(&self, table: &str) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "nft",
                "list",
                "table",
                "ip",
                table,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.client, &self.backend] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Stops a listener thread when dropped.
pub struct Server(Arc<AtomicBool>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A TCP listener at `addr` in `ns` that writes `tag` to every connection
/// and closes it.
pub fn serve_tcp(ns: &str, addr: SocketAddr, tag: &'static str) -> Server {
    let listener = in_netns(ns, || TcpListener::bind(addr)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.write_all(tag.as_bytes());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => break,
            }
        }
    });
    Server(stop)
}

/// A UDP socket at `addr` in `ns` that answers every datagram with `tag`.
pub fn serve_udp(ns: &str, addr: SocketAddr, tag: &'static str) -> Server {
    let socket = in_netns(ns, || UdpSocket::bind(addr)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !flag.load(Ordering::Relaxed) {
            if let Ok((_, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(tag.as_bytes(), from);
            }
        }
    });
    Server(stop)
}
