//! The bridge network on the real kernel (root only): two "pods" in network
//! namespaces this test creates reach each other and the gateway, and
//! teardown leaves nothing behind. Traffic stays between those namespaces and
//! the test's own bridge; a guard deletes the bridge, the nftables table and
//! the namespaces even when an assertion fails.

use skiff_sys::process::is_root;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_runtime::network::masquerade::masquerade_ruleset;
use skiff_runtime::network::{BridgeNetwork, BridgeNetworkConfig, host_veth_name};

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program} {args:?}: {err}"))
}

/// Removes everything the test made, in reverse order, whatever happened.
struct Cleanup {
    namespaces: Vec<String>,
    bridge: String,
    table: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .output();
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn ping(ns: &str, target: IpAddr) -> bool {
    // A few tries: the first packet may wait for ARP on a fresh bridge port.
    (0..5).any(|_| {
        run(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "busybox",
                "ping",
                "-c1",
                "-W1",
                &target.to_string(),
            ],
        )
        .status
        .success()
    })
}

fn ip_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|name| name.parse::<Ipv4Addr>().is_ok())
        .collect()
}

/// An "outside" namespace on its own link to the host, with no route back to
/// the pod CIDR: a pod reaches it only when its traffic is masqueraded.
fn check_masquerade(cleanup: &Cleanup, tag: u32, pod_ns: &str, ruleset: &str) {
    let outside = &cleanup.namespaces[2];
    let host_if = format!("sktout{tag}");
    let host_ip = format!("198.18.{tag}.1/24");
    let outside_ip: IpAddr = format!("198.18.{tag}.2").parse().unwrap();
    for args in [
        vec![
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", outside,
        ],
        vec!["addr", "add", &host_ip, "dev", &host_if],
        vec!["link", "set", &host_if, "up"],
        vec![
            "-n",
            outside,
            "addr",
            "add",
            &format!("{outside_ip}/24"),
            "dev",
            "eth0",
        ],
        vec!["-n", outside, "link", "set", "eth0", "up"],
    ] {
        let out = run("ip", &args);
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    }
    assert!(
        ping(pod_ns, outside_ip),
        "masqueraded egress from {pod_ns} failed"
    );
    // Without the table the outside cannot answer: the rule is what works.
    let out = run("nft", &["delete", "table", "ip", &cleanup.table]);
    assert!(out.status.success(), "{out:?}");
    let unmasqueraded = run(
        "ip",
        &[
            "netns",
            "exec",
            pod_ns,
            "busybox",
            "ping",
            "-c1",
            "-W1",
            &outside_ip.to_string(),
        ],
    );
    assert!(
        !unmasqueraded.status.success(),
        "reply came back without masquerade"
    );
    // Put the table back so the clean-up check below means something.
    let mut nft = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    nft.stdin
        .take()
        .unwrap()
        .write_all(ruleset.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success());
    let _ = Command::new("ip").args(["link", "del", &host_if]).output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_two_pods_on_a_bridge_reach_each_other_and_clean_up() {
    if !is_root() {
        eprintln!("skipping: needs root for network namespaces");
        return;
    }
    let tag = std::process::id() % 50;
    let subnet = 200 + tag;
    let cleanup = Cleanup {
        namespaces: vec![
            format!("skt{tag}-a"),
            format!("skt{tag}-b"),
            format!("skt{tag}-out"),
        ],
        bridge: format!("sktbr{tag}"),
        table: format!("skiff-test-{tag}"),
    };
    for ns in &cleanup.namespaces {
        let out = run("ip", &["netns", "add", ns]);
        assert!(out.status.success(), "ip netns add {ns}: {out:?}");
    }
    let state = tempfile::tempdir().unwrap();
    let mut config = BridgeNetworkConfig::new(
        format!("10.244.{subnet}.0/24").parse().unwrap(),
        "10.244.0.0/16".parse().unwrap(),
        state.path(),
    );
    config.bridge_name = cleanup.bridge.clone();
    config.nat_table = cleanup.table.clone();
    let ipam_dir = config.ipam_dir.clone();
    let net = BridgeNetwork::new(config.clone()).unwrap();

    let netns = |ns: &str| PathBuf::from(format!("/run/netns/{ns}"));
    let (ns_a, ns_b) = (&cleanup.namespaces[0], &cleanup.namespaces[1]);
    let ip_a = net.setup("sandbox-a", &netns(ns_a)).await.unwrap().unwrap();
    let ip_b = net.setup("sandbox-b", &netns(ns_b)).await.unwrap().unwrap();
    let gateway = IpAddr::V4(Ipv4Addr::new(10, 244, subnet as u8, 1));
    assert_ne!(ip_a, ip_b);
    for ip in [ip_a, ip_b] {
        let IpAddr::V4(v4) = ip else {
            panic!("{ip} is not IPv4")
        };
        assert_eq!(v4.octets()[..3], [10, 244, subnet as u8]);
        assert!(v4.octets()[3] >= 2, "{ip} collides with network or gateway");
    }
    // Idempotent: the same sandbox keeps its address and stays wired.
    assert_eq!(
        net.setup("sandbox-a", &netns(ns_a)).await.unwrap(),
        Some(ip_a)
    );

    assert!(link_exists(&cleanup.bridge));
    assert!(link_exists(&host_veth_name("sandbox-a")));
    let routes = run("ip", &["-n", ns_a, "route", "show", "default"]);
    assert!(
        String::from_utf8_lossy(&routes.stdout).contains(&format!("via {gateway} dev eth0")),
        "{routes:?}"
    );
    // An IPv4 pod network: neither end of a pod's veth gets an IPv6
    // link-local address (none to detect duplicates of, per pod), while the
    // pod keeps IPv6 itself (::1 on lo).
    let out = |args: &[&str]| String::from_utf8_lossy(&run("ip", args).stdout).into_owned();
    let host_end = host_veth_name("sandbox-a");
    assert_eq!(out(&["-6", "addr", "show", "dev", &host_end]), "");
    assert!(out(&["-d", "link", "show", "dev", &host_end]).contains("addrgenmode none"));
    assert_eq!(out(&["-n", ns_a, "-6", "addr", "show", "dev", "eth0"]), "");
    assert!(out(&["-n", ns_a, "-6", "addr", "show", "dev", "lo"]).contains("::1/128"));
    assert!(ping(ns_a, ip_b), "{ns_a} cannot reach {ip_b}");
    assert!(ping(ns_b, ip_a), "{ns_b} cannot reach {ip_a}");
    assert!(ping(ns_a, gateway), "{ns_a} cannot reach the gateway");
    assert!(
        ping(ns_a, "127.0.0.1".parse().unwrap()),
        "lo is down in {ns_a}"
    );
    let table = run("nft", &["list", "table", "ip", &cleanup.table]);
    assert!(table.status.success(), "{table:?}");
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("masquerade"),
        "{table:?}"
    );
    assert_eq!(ip_files(&ipam_dir).len(), 2);
    let ruleset = masquerade_ruleset(
        &cleanup.table,
        net.config().pod_cidr,
        net.config().cluster_cidr,
    );
    check_masquerade(&cleanup, tag, ns_a, &ruleset);
    let hairpin = Path::new("/sys/class/net")
        .join(host_veth_name("sandbox-a"))
        .join("brport/hairpin_mode");
    assert_eq!(std::fs::read_to_string(hairpin).unwrap().trim(), "1");
    // No thread of this process was left inside a pod's namespace.
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        if let Ok(ns) = std::fs::read_link(task.join("ns/net")) {
            assert_eq!(ns, host_ns, "thread {} is in another netns", task.display());
        }
    }
    // A missing namespace fails setup and leaves neither address nor veth.
    let err = net
        .setup("sandbox-c", Path::new("/run/netns/skiff-test-missing"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("skiff-test-missing"), "{err}");
    assert!(!link_exists(&host_veth_name("sandbox-c")));
    assert_eq!(ip_files(&ipam_dir).len(), 2);

    // An agent restart: a fresh network over the same bridge, table and
    // records re-ensures the host side and keeps each sandbox's address.
    let restarted = BridgeNetwork::new(config).unwrap();
    assert_eq!(
        restarted.setup("sandbox-b", &netns(ns_b)).await.unwrap(),
        Some(ip_b)
    );
    assert!(ping(ns_b, ip_a), "{ns_b} cannot reach {ip_a} after restart");
    let ip_d = restarted
        .setup("sandbox-d", &netns(ns_a))
        .await
        .unwrap_err();
    // eth0 already exists in that namespace: refused, and rolled back.
    assert!(ip_d.to_string().contains("eth0"), "{ip_d}");
    assert_eq!(ip_files(&ipam_dir).len(), 2);

    net.teardown("sandbox-a", &netns(ns_a)).await.unwrap();
    net.teardown("sandbox-b", &netns(ns_b)).await.unwrap();
    net.teardown("sandbox-b", &netns(ns_b)).await.unwrap();
    assert!(!link_exists(&host_veth_name("sandbox-a")));
    assert!(!link_exists(&host_veth_name("sandbox-b")));
    let eth0 = run("ip", &["-n", ns_a, "link", "show", "eth0"]);
    assert!(!eth0.status.success(), "eth0 left in {ns_a}");
    assert!(ip_files(&ipam_dir).is_empty());

    net.remove_host_network().await.unwrap();
    assert!(!link_exists(&cleanup.bridge));
    let table = run("nft", &["list", "table", "ip", &cleanup.table]);
    assert!(
        !table.status.success(),
        "table {} left behind",
        cleanup.table
    );
    drop(cleanup);
}
