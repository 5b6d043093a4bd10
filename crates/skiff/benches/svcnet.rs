//! Service and DNS data path from a pod, on the two-node harness (root;
//! `cargo bench -p skiff --bench svcnet`): connection rate to a pod on the
//! other node through its Service's ClusterIP against straight to its pod IP,
//! and cluster DNS queries/s and latency through the kube-dns ClusterIP.
//! Prints a table; asserts nothing about speed.
//!
//! The load runs in the pods' network namespaces: this binary re-executes
//! itself under `nsenter --net=` as the client (in the client pod's
//! namespace) and as the server (a TCP listener in the backend pod's that
//! answers `ok` and closes), so neither side forks per connection.
//! `SVCNET_BENCH_SECONDS` (default 3) sets each row's length.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/cluster/mod.rs"]
mod cluster;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::container;
use cluster::multinode::{CLUSTER_DNS, MultiNode};
use serde_json::json;

/// Concurrent clients of each row.
const CLIENTS: usize = 4;
/// Rounds of each connection row.
const ROUNDS: usize = 3;
/// The backend's port for direct connections; the Service targets the next
/// one. (Two ports keep the backend's TIME_WAIT sockets of one path from
/// meeting the other's SYNs: the client picks its ports per destination,
/// and its TCP timestamps differ per destination address, so a SYN through
/// the ClusterIP that hits a TIME_WAIT left by a direct connection waits
/// for its retransmission.)
const PORT: u16 = 9000;
/// The name the DNS row asks for.
const NAME: &str = "bench.default.svc.cluster.local.";

fn main() {
    match std::env::var("SVCNET_ROLE").as_deref() {
        Ok("server") => return serve(),
        Ok(role) => return client(role),
        Err(_) => {}
    }
    let Some(mn) = MultiNode::start(2) else {
        return;
    };
    let seconds: u64 = std::env::var("SVCNET_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    mn.apply(&mn.pod_on(
        1,
        "backend",
        json!({"containers": [container("c", "sleep 3600")]}),
    ));
    mn.apply(&mn.pod_on(
        0,
        "client",
        json!({"containers": [container("c", "sleep 3600")]}),
    ));
    mn.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"selector": {"app": "backend"},
                 "ports": [{"port": 80, "targetPort": PORT + 1}]}}));
    let backend = mn.wait_running("backend");
    mn.wait_running("client");
    let svc = mn.get_json(&["get", "service", "bench"]).unwrap();
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_owned();
    let (backend_ns, client_ns) =
        mn.wait_for("the pods' namespaces", Duration::from_secs(10), || {
            Some((mn.pod_netns("backend")?, mn.pod_netns("client")?))
        });
    let _server = Killed(
        Command::new("nsenter")
            .arg(format!("--net={}", backend_ns.display()))
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .env("SVCNET_ROLE", "server")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let run = |role: &str, target: &str, secs: u64| -> Option<Row> {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", client_ns.display()))
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .env("SVCNET_ROLE", role)
            .env("SVCNET_TARGET", target)
            .env("SVCNET_SECONDS", secs.to_string())
            .output()
            .unwrap();
        Row::parse(&String::from_utf8_lossy(&out.stdout))
    };
    let direct = format!("{backend}:{PORT}");
    let via_service = format!("{cluster_ip}:80");
    let dns = format!("{CLUSTER_DNS}:53");
    // Warm up: the Service's rules and the kube-dns endpoint are live.
    for (role, target) in [
        ("connect", &direct),
        ("connect", &via_service),
        ("dns", &dns),
    ] {
        mn.wait_for(
            &format!("{role} {target} from the client pod"),
            Duration::from_secs(60),
            || run(role, target, 1).filter(|r| r.done > 0 && r.failed == 0),
        );
    }
    // The two connection paths alternate, round by round, so the machine's
    // other load weighs on both alike.
    let mut direct_rounds = Vec::new();
    let mut service_rounds = Vec::new();
    for _ in 0..ROUNDS {
        direct_rounds.push(run("connect", &direct, seconds).unwrap());
        service_rounds.push(run("connect", &via_service, seconds).unwrap());
    }
    let direct_row = Row::combine(&direct_rounds);
    let service_row = Row::combine(&service_rounds);
    let dns_row = run("dns", &dns, seconds).unwrap();

    println!(
        "\nService data path from a pod (two nodes, {CLIENTS} clients; connections: \
         {ROUNDS} alternating rounds of {seconds} s, p50/p99 the median round's; DNS: {seconds} s)\n"
    );
    println!(
        "| {:<44} | {:>10} | {:>8} | {:>8} | {:>6} |",
        "path", "per second", "p50 ms", "p99 ms", "failed"
    );
    println!(
        "|{:-<46}|{:->12}|{:->10}|{:->10}|{:->8}|",
        "", "", "", "", ""
    );
    for (what, r) in [
        (format!("TCP connect+reply, pod IP {direct}"), &direct_row),
        (
            format!("TCP connect+reply, ClusterIP {via_service}"),
            &service_row,
        ),
        (format!("DNS A {NAME} via {dns}"), &dns_row),
    ] {
        println!(
            "| {:<44} | {:>10.0} | {:>8.3} | {:>8.3} | {:>6} |",
            what,
            r.rate(),
            r.p50_ms,
            r.p99_ms,
            r.failed
        );
    }
    let per_round = |rounds: &[Row]| {
        let rates: Vec<String> = rounds.iter().map(|r| format!("{:.0}", r.rate())).collect();
        rates.join(" / ")
    };
    println!(
        "rounds per second: pod IP {}; ClusterIP {}",
        per_round(&direct_rounds),
        per_round(&service_rounds)
    );
    println!(
        "failures: pod IP [{}] ClusterIP [{}] DNS [{}]",
        direct_row.why, service_row.why, dns_row.why
    );
    println!(
        "\nClusterIP connection rate / direct: {:.1}% (target >= 90%)",
        100.0 * service_row.rate() / direct_row.rate()
    );
}

/// Kills the child (by its PID) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One row's figures, as the client prints them.
#[derive(Debug)]
struct Row {
    done: u64,
    failed: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The failures by kind (`kind=count,...`).
    why: String,
}

impl Row {
    fn parse(line: &str) -> Option<Row> {
        let mut w = line.split_whitespace();
        Some(Row {
            done: w.next()?.parse().ok()?,
            failed: w.next()?.parse().ok()?,
            seconds: w.next()?.parse().ok()?,
            p50_ms: w.next()?.parse().ok()?,
            p99_ms: w.next()?.parse().ok()?,
            why: w.next().unwrap_or_default().to_owned(),
        })
    }

    /// Rounds of one row as one: counts and time summed, the median
    /// round's percentiles.
    fn combine(rounds: &[Row]) -> Row {
        let median = |f: fn(&Row) -> f64| {
            let mut v: Vec<f64> = rounds.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or_default()
        };
        let why: Vec<&str> = rounds
            .iter()
            .map(|r| r.why.as_str())
            .filter(|w| !w.is_empty())
            .collect();
        Row {
            done: rounds.iter().map(|r| r.done).sum(),
            failed: rounds.iter().map(|r| r.failed).sum(),
            seconds: rounds.iter().map(|r| r.seconds).sum(),
            p50_ms: median(|r| r.p50_ms),
            p99_ms: median(|r| r.p99_ms),
            why: why.join(","),
        }
    }

    fn rate(&self) -> f64 {
        self.done as f64 / self.seconds
    }
}

/// The backend: answers `ok` to every connection and closes it.
fn serve() {
    let listeners = [PORT, PORT + 1].map(|p| TcpListener::bind(("0.0.0.0", p)).unwrap());
    let threads: Vec<_> = listeners
        .iter()
        .flat_map(|l| [l.try_clone().unwrap(), l.try_clone().unwrap()])
        .map(|l| {
            std::thread::spawn(move || {
                for mut conn in l.incoming().flatten() {
                    let _ = conn.write_all(b"ok\n");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// A load client: `connect` (TCP connect, read the reply to its end) or
/// `dns` (UDP A queries), from `CLIENTS` threads for `SVCNET_SECONDS`;
/// prints `done failed seconds p50_ms p99_ms`.
fn client(role: &str) {
    let target: SocketAddr = std::env::var("SVCNET_TARGET").unwrap().parse().unwrap();
    let seconds: u64 = std::env::var("SVCNET_SECONDS").unwrap().parse().unwrap();
    let dns = role == "dns";
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut failed = std::collections::BTreeMap::<String, u64>::new();
                let sock = dns.then(|| {
                    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                    s.connect(target).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    s
                });
                let mut id = u16::try_from(t).unwrap() << 12;
                while Instant::now() < until {
                    let began = Instant::now();
                    let ok = match &sock {
                        Some(s) => {
                            id = id.wrapping_add(1);
                            ask(s, id)
                        }
                        None => fetch(target),
                    };
                    match ok {
                        Ok(()) => latencies.push(began.elapsed()),
                        Err(why) => *failed.entry(why).or_default() += 1,
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut failed = std::collections::BTreeMap::<String, u64>::new();
    for t in threads {
        let (l, f) = t.join().unwrap();
        all.extend(l);
        for (why, n) in f {
            *failed.entry(why).or_default() += n;
        }
    }
    let why: Vec<String> = failed.iter().map(|(w, n)| format!("{w}={n}")).collect();
    let failed: u64 = failed.values().sum();
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{} {failed} {elapsed:.3} {:.3} {:.3} {}",
        all.len(),
        pct(0.50),
        pct(0.99),
        why.join(",")
    );
}

/// One connection: connect, read `ok` to the end; why it failed.
fn fetch(target: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(1))
        .map_err(|e| format!("connect:{:?}", e.kind()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .map_err(|e| format!("read:{:?}", e.kind()))?;
    if reply == b"ok\n" {
        Ok(())
    } else {
        Err("reply".to_owned())
    }
}

/// One A query for [`NAME`] with `id`; whether a reply with an answer came.
fn ask(sock: &UdpSocket, id: u16) -> Result<(), String> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in NAME.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send(&q).map_err(|e| format!("send:{:?}", e.kind()))?;
    let mut buf = [0u8; 512];
    loop {
        let n = sock
            .recv(&mut buf)
            .map_err(|e| format!("recv:{:?}", e.kind()))?;
        // A late reply to an earlier (timed out) query: skip it.
        if n >= 12 && buf[..2] == id.to_be_bytes() {
            let rcode = buf[3] & 0x0f;
            let answers = u16::from_be_bytes([buf[6], buf[7]]);
            return if rcode == 0 && answers > 0 {
                Ok(())
            } else {
                Err(format!("rcode:{rcode}"))
            };
        }
    }
}
