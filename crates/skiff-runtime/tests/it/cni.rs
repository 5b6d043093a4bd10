//! The CNI pod network with Debian's containernetworking-plugins (bridge,
//! host-local, portmap, loopback in /usr/lib/cni) on the real kernel (root
//! only): two "pods" in network namespaces this test creates get addresses
//! from the chain, reach each other over the plugin's bridge, and DEL
//! releases everything. A guard removes the namespaces and the bridge even
//! when an assertion fails. Skipped without root or the plugins.

use skiff_sys::process::is_root;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_runtime::PodNetwork;
use skiff_runtime::network::cni::{CniConfig, CniNetwork};

const PLUGINS: &str = "/usr/lib/cni";

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program} {args:?}: {err}"))
}

struct Cleanup {
    namespaces: Vec<String>,
    bridge: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

fn ping(ns: &str, target: IpAddr) -> bool {
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

fn reserved(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cni_bridge_chain_connects_two_pods_and_del_releases_them() {
    if !is_root()
        || !Path::new(PLUGINS).join("bridge").exists()
        || !Path::new("/bin/busybox").exists()
    {
        eprintln!("skipping: needs root, busybox and containernetworking-plugins in {PLUGINS}");
        return;
    }
    let tag = std::process::id() % 50;
    let cleanup = Cleanup {
        namespaces: vec![format!("skcni{tag}-a"), format!("skcni{tag}-b")],
        bridge: format!("skcnibr{tag}"),
    };
    for ns in &cleanup.namespaces {
        let out = run("ip", &["netns", "add", ns]);
        assert!(out.status.success(), "ip netns add {ns}: {out:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (conf_dir, ipam_dir) = (dir.path().join("net.d"), dir.path().join("ipam"));
    std::fs::create_dir(&conf_dir).unwrap();
    let subnet = format!("10.245.{tag}.0/24");
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "skiff-cni-test",
        "plugins": [
            {"type": "bridge", "bridge": cleanup.bridge, "isGateway": true, "ipMasq": false,
             "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": ipam_dir, "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(
        conf_dir.join("10-test.conflist"),
        serde_json::to_vec(&conflist).unwrap(),
    )
    .unwrap();
    // Lexically later: never chosen.
    std::fs::write(
        conf_dir.join("20-unused.conf"),
        r#"{"cniVersion":"1.0.0","name":"unused","type":"does-not-exist"}"#,
    )
    .unwrap();
    let net = CniNetwork::new(CniConfig {
        conf_dir,
        bin_dirs: vec![PathBuf::from(PLUGINS)],
        state_dir: dir.path().join("state"),
        ifname: "eth0".into(),
    });
    assert!(net.ready().is_ok());
    let netns = |ns: &str| PathBuf::from(format!("/run/netns/{ns}"));
    let (ns_a, ns_b) = (&cleanup.namespaces[0], &cleanup.namespaces[1]);
    let ip_a = CniNetwork::setup(&net, "sandbox-a", &netns(ns_a))
        .await
        .unwrap()
        .unwrap();
    let ip_b = CniNetwork::setup(&net, "sandbox-b", &netns(ns_b))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(ip_a, ip_b);
    for ip in [ip_a, ip_b] {
        assert!(
            ip.to_string().starts_with(&format!("10.245.{tag}.")),
            "{ip} not from {subnet}"
        );
    }
    // Idempotent: the recorded address, no second ADD.
    assert_eq!(
        CniNetwork::setup(&net, "sandbox-a", &netns(ns_a))
            .await
            .unwrap(),
        Some(ip_a)
    );
    let network_dir = ipam_dir.join("skiff-cni-test");
    assert_eq!(reserved(&network_dir).len(), 2);
    let addr = run("ip", &["-n", ns_a, "-4", "addr", "show", "eth0"]);
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains(&format!("{ip_a}/24")),
        "{addr:?}"
    );
    let lo = run("ip", &["-n", ns_a, "link", "show", "lo"]);
    assert!(
        String::from_utf8_lossy(&lo.stdout).contains("UP"),
        "loopback plugin did not bring lo up: {lo:?}"
    );
    assert!(ping(ns_a, ip_b), "{ns_a} cannot reach {ip_b}");
    assert!(ping(ns_b, ip_a), "{ns_b} cannot reach {ip_a}");

    CniNetwork::teardown(&net, "sandbox-a", &netns(ns_a))
        .await
        .unwrap();
    CniNetwork::teardown(&net, "sandbox-b", &netns(ns_b))
        .await
        .unwrap();
    assert!(
        reserved(&network_dir).is_empty(),
        "host-local kept addresses"
    );
    let eth0 = run("ip", &["-n", ns_a, "link", "show", "eth0"]);
    assert!(!eth0.status.success(), "eth0 left in {ns_a}");
    let ports = run("ip", &["-o", "link", "show", "master", &cleanup.bridge]);
    assert!(
        String::from_utf8_lossy(&ports.stdout).trim().is_empty(),
        "veths left on the bridge: {ports:?}"
    );
    drop(cleanup);
}
