//! A multi-node cluster on one machine (root only), for e2e tests of pod
//! traffic across nodes, Services, DNS and NetworkPolicy:
//!
//! - `skiff server --disable-agent` in the root network namespace, bound to
//!   the first address of a test bridge (198.18.T.1, the benchmark range);
//! - one `skiff agent` per node, each started inside its own network
//!   namespace (`nsenter --net`, so it shares the host's mounts and cgroups
//!   as a real node's agent would its host's) with its own data dir, pod log
//!   dir and node name, joined to the bridge by a veth with the address
//!   198.18.T.(10+i); its podCIDR comes from the server's node IPAM;
//! - a guard nftables table in the root namespace dropping traffic to the
//!   cluster and service CIDRs on the uplink (the default route's interface),
//!   so no test packet leaves the machine.
//!
//! Everything the harness made — agents and the containers they left, mounts
//! under the temp dir, namespaces, veths, bridge, guard — is removed on drop,
//! also after a failed assertion. [`MultiNode`] derefs to the server's
//! [`Cluster`], so `kubectl`, `apply`, `wait_pod` and friends work as in the
//! single-node tests; [`MultiNode::pod_on`] pins a pod to a node and
//! [`MultiNode::exec`] runs `kubectl exec`.
//!
//! ```ignore
//! let Some(mn) = MultiNode::start(2) else { return };   // skipped unless root
//! mn.apply(&mn.pod_on(1, "web", json!({"containers": [container("c", "httpd -f -p 80")]})));
//! ```
//!
//! What keeps concurrent runs apart: the tag T (claimed by creating the
//! bridge `skmnbrT`), which names the namespaces, veths and guard table.
//! Inside each node namespace the agent uses the default bridge (`skiff0`)
//! and nftables table names: namespaces keep them apart.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Cluster, Names, ServerOpts, is_root, merge, support, write_airgap_busybox};

/// The pod range of multi-node clusters (each node gets a /24 of it).
pub const CLUSTER_CIDR: &str = "10.241.0.0/16";
/// The Service range of multi-node clusters.
pub const SERVICE_CIDR: &str = "10.242.0.0/16";
/// The `kube-dns` ClusterIP of multi-node clusters (pods' nameserver): the
/// `.10` of [`SERVICE_CIDR`], as 10.43.0.10 is of the default range.
pub const CLUSTER_DNS: &str = "10.242.0.10";

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().unwrap()
}

fn must(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The host side of the test network; removed on drop.
pub struct TestNet {
    /// The tag T in every name and in 198.18.T.0/24.
    pub tag: u8,
    /// The root-namespace bridge, holding 198.18.T.1/24.
    pub bridge: String,
    /// Node namespaces, created so far.
    pub namespaces: Vec<String>,
    /// Root-side veth ends.
    pub veths: Vec<String>,
    /// The guard table (family ip), once installed.
    pub guard_table: Option<String>,
}

impl TestNet {
    /// Claims a free tag by creating its bridge, and brings it up with the
    /// gateway address. Bridged traffic between nodes skips the host's
    /// netfilter (`nf_call_iptables 0`): the host's firewall is not the test's.
    fn create() -> TestNet {
        let start = std::process::id() % 100;
        for i in 0..100 {
            let tag = u8::try_from(100 + (start + i) % 100).unwrap();
            let bridge = format!("skmnbr{tag}");
            let out = ip(&["link", "add", &bridge, "type", "bridge"]);
            if !out.status.success() {
                continue;
            }
            let net = TestNet {
                tag,
                bridge,
                namespaces: Vec::new(),
                veths: Vec::new(),
                guard_table: None,
            };
            must(&[
                "link",
                "set",
                &net.bridge,
                "type",
                "bridge",
                "nf_call_iptables",
                "0",
            ]);
            must(&[
                "addr",
                "add",
                &format!("{}/24", net.gateway()),
                "dev",
                &net.bridge,
            ]);
            must(&["link", "set", &net.bridge, "up"]);
            return net;
        }
        panic!("no free test network tag (bridges skmnbr100..199 all exist)");
    }

    /// 198.18.T.1: the server's address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.tag, 1)
    }

    /// 198.18.T.(10+i): node i's address.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.tag, 10 + u8::try_from(i).unwrap())
    }

    /// Creates node i's namespace, wired to the bridge.
    fn add_node(&mut self, i: usize) -> String {
        let ns = format!("skmn{}-n{i}", self.tag);
        let veth = format!("skmn{}v{i}", self.tag);
        must(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        self.veths.push(veth.clone());
        must(&["link", "set", &veth, "master", &self.bridge, "up"]);
        must(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", self.node_ip(i)),
            "dev",
            "eth0",
        ]);
        must(&["-n", &ns, "link", "set", "eth0", "up"]);
        must(&["-n", &ns, "link", "set", "lo", "up"]);
        // A default route as real nodes have: traffic no proxy rule takes
        // is routed (and the proxy's filter chains see it, e.g. to reject
        // a Service without endpoints) rather than failing in the node's
        // routing; the guard keeps it on the machine.
        must(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &self.gateway().to_string(),
        ]);
        ns
    }

    /// Drops traffic to the cluster and service CIDRs leaving by the uplink.
    fn install_guard(&mut self) {
        let routes = ip(&["-j", "route", "show", "default"]);
        let routes: Value = serde_json::from_slice(&routes.stdout).unwrap_or(Value::Null);
        let uplinks: Vec<String> = routes
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["dev"].as_str().map(str::to_owned))
            .collect();
        let table = format!("skmn{}-guard", self.tag);
        let mut script = format!("table ip {table} {{\n");
        for (chain, hook) in [("guard_output", "output"), ("guard_forward", "forward")] {
            script.push_str(&format!(
                "  chain {chain} {{\n    type filter hook {hook} priority -300; policy accept;\n"
            ));
            for uplink in &uplinks {
                script.push_str(&format!(
                    "    oifname \"{uplink}\" ip daddr {{ {CLUSTER_CIDR}, {SERVICE_CIDR} }} drop\n"
                ));
            }
            script.push_str("  }\n");
        }
        script.push_str("}\n");
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        nft.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success(), "guard rules:\n{script}");
        self.guard_table = Some(table);
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        for veth in &self.veths {
            let _ = ip(&["link", "del", veth]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        if let Some(table) = &self.guard_table {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", table])
                .output();
        }
    }
}

/// One node: its agent process and where it keeps things.
pub struct Node {
    /// The Node's name.
    pub name: String,
    /// Its network namespace (under /run/netns).
    pub netns: String,
    /// Its InternalIP.
    pub ip: Ipv4Addr,
    /// Its data dir; pod logs go to `<dir>/logs`.
    pub dir: PathBuf,
    agent: Option<Child>,
}

impl Node {
    fn runtime_containers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.join("data/agent/runtime/containers"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    /// Runs `ip ARGS` inside this node's namespace.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.netns.as_str()];
        all.extend(args);
        let out = ip(&all);
        assert!(out.status.success(), "ip {all:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the skiff binary inside this node's namespace (e.g. `agent --cleanup`).
    pub fn skiff(&self, args: &[&str]) -> std::process::Output {
        nsenter(&self.netns)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `nsenter --net` into this node's namespace running `program` (e.g.
    /// the host's busybox, as the node's host would).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(program);
        cmd
    }

    fn stop(&mut self) {
        let stopped = self.agent.is_some();
        self.stop_agent();
        if stopped {
            super::remove_cgroup_root(&self.name);
        }
    }

    fn stop_agent(&mut self) {
        // The agent leaves containers running by design: kill them first.
        for dir in self.runtime_containers() {
            if let Ok(data) = std::fs::read(dir.join("container.json"))
                && let Ok(v) = serde_json::from_slice::<Value>(&data)
                && let Some(pid) = v["pid"].as_i64()
            {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &agent.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = agent.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = agent.kill();
        let _ = agent.wait();
    }
}

/// `nsenter --net=/run/netns/NS -- skiff`: only the network namespace
/// changes (`ip netns exec` would also remount /sys, hiding the cgroups).
fn nsenter(netns: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{netns}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_skiff"));
    cmd
}

/// A hook run for node i (1-based) with its namespace and address, after
/// the namespace exists and before the agent starts.
pub type BeforeAgent = Box<dyn Fn(usize, &str, Ipv4Addr)>;

/// What [`MultiNode::start_with`] sets up.
#[derive(Default)]
pub struct Options {
    /// How many nodes (agents).
    pub nodes: usize,
    /// More `skiff server` flags.
    pub server_args: Vec<String>,
    /// More flags for every `skiff agent`.
    pub agent_args: Vec<String>,
    /// E.g. to plant state a previous run would have left.
    pub before_agent: Option<BeforeAgent>,
}

/// The server, its nodes and their network. Fields drop in order: nodes
/// (agents and containers), then the server (and mounts under the temp
/// dir), then the network.
pub struct MultiNode {
    pub nodes: Vec<Node>,
    pub cluster: Cluster,
    pub net: TestNet,
}

impl std::ops::Deref for MultiNode {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl MultiNode {
    /// A cluster of `count` nodes, all Ready with a podCIDR; `None` (test
    /// skipped) without root, busybox-static or nsenter.
    pub fn start(count: usize) -> Option<MultiNode> {
        Self::start_with(Options {
            nodes: count,
            ..Options::default()
        })
    }

    /// As [`MultiNode::start`], with more flags or set-up (see [`Options`]).
    pub fn start_with(opts: Options) -> Option<MultiNode> {
        if !is_root() || !support::have_busybox() || !Path::new("/usr/bin/nsenter").exists() {
            eprintln!("skipped: needs root, busybox-static and nsenter");
            return None;
        }
        let mut net = TestNet::create();
        net.install_guard();
        let tag = net.tag;
        let gateway = net.gateway().to_string();
        // Names are 'static in the single-node harness; these live as long as the test.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let names = Names {
            node: leak(format!("skmn{tag}-none")),
            bridge: leak(net.bridge.clone()),
            nat_table: leak(format!("skmn{tag}-nat")),
            cluster_cidr: CLUSTER_CIDR,
            scheduler: true,
        };
        let cluster = Cluster::start_with(
            names,
            ServerOpts {
                bind_address: Some(gateway.clone()),
                disable_agent: true,
                extra_args: [
                    "--service-cidr".into(),
                    SERVICE_CIDR.into(),
                    "--tls-san".into(),
                    gateway.clone(),
                    // Cluster DNS where the nodes' pods reach it (through
                    // the kube-dns Service, masqueraded by their node); its
                    // ClusterIP is the .10 of the range, CLUSTER_DNS.
                    "--dns-listen-address".into(),
                    gateway,
                    // No upstream: a name outside the cluster never leaves
                    // the machine.
                    "--dns-resolv-conf".into(),
                    "/dev/null".into(),
                ]
                .into_iter()
                .chain(opts.server_args.iter().cloned())
                .collect(),
            },
        );
        let mut mn = MultiNode {
            nodes: Vec::new(),
            cluster,
            net,
        };
        for i in 1..=opts.nodes {
            let netns = mn.net.add_node(i);
            if let Some(hook) = &opts.before_agent {
                hook(i, &netns, mn.net.node_ip(i));
            }
            let node = mn.spawn_agent(i, netns, &opts.agent_args);
            mn.nodes.push(node);
        }
        for i in 0..opts.nodes {
            mn.wait_node_ready(i);
        }
        Some(mn)
    }

    fn spawn_agent(&self, i: usize, netns: String, extra: &[String]) -> Node {
        let name = format!("skmn{}-n{i}", self.net.tag);
        let dir = self.cluster.dir.path().join(format!("node{i}"));
        let data = dir.join("data");
        write_airgap_busybox(&data);
        let ip = self.net.node_ip(i);
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let ca = skiff_apiserver::pki::client_ca_file(&self.cluster.dir.path().join("data"));
        let agent = nsenter(&netns)
            .arg("agent")
            .arg("--kubeconfig")
            .arg(self.cluster.dir.path().join("kubeconfig"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--node-name", &name, "--node-ip", &ip.to_string()])
            .args(["--cluster-cidr", CLUSTER_CIDR, "--cluster-dns", CLUSTER_DNS])
            .arg("--client-ca-file")
            .arg(ca)
            .arg("--pod-log-dir")
            .arg(dir.join("logs"))
            .arg("--cgroup-root")
            .arg(super::cgroup_root(&name))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Node {
            name,
            netns,
            ip,
            dir,
            agent: Some(agent),
        }
    }

    /// Waits until node `index` (0-based) is Ready with a podCIDR; returns the Node.
    pub fn wait_node_ready(&self, index: usize) -> Value {
        let node = &self.nodes[index];
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(n) = self.get_json(&["get", "node", &node.name]) {
                let ready = n["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                if ready && n["spec"]["podCIDR"].is_string() {
                    return n;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "node {} not Ready with a podCIDR\nagent log tail:\n{}",
                    node.name,
                    self.agent_log_tail(index)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last lines of node `index`'s agent log.
    pub fn agent_log_tail(&self, index: usize) -> String {
        let log =
            std::fs::read_to_string(self.nodes[index].dir.join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A pod manifest in `default` bound to node `index` (0-based).
    pub fn pod_on(&self, index: usize, name: &str, spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
               "spec": merge(json!({"nodeName": self.nodes[index].name,
                                    "terminationGracePeriodSeconds": 1}), spec)})
    }

    /// Waits for the pod to be Running with all containers ready; returns its IP.
    pub fn wait_running(&self, pod: &str) -> Ipv4Addr {
        let p = self.wait_pod(pod, "Running and Ready", |p| {
            p["status"]["phase"] == "Running"
                && p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        });
        p["status"]["podIP"].as_str().unwrap().parse().unwrap()
    }

    /// The network namespace of pod `pod` (in `default`), as
    /// `/proc/PID/ns/net` of one of its running containers: a process
    /// started with `nsenter --net=` on it talks as the pod would.
    pub fn pod_netns(&self, pod: &str) -> Option<PathBuf> {
        self.nodes
            .iter()
            .flat_map(Node::runtime_containers)
            .find_map(|dir| {
                let data = std::fs::read(dir.join("container.json")).ok()?;
                let v: Value = serde_json::from_slice(&data).ok()?;
                let labels = &v["labels"];
                let ours = labels["io.kubernetes.pod.name"] == pod
                    && labels["io.kubernetes.pod.namespace"] == "default";
                let pid = v["pid"].as_i64().filter(|_| ours)?;
                let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
                path.exists().then_some(path)
            })
    }

    /// `kubectl exec POD -- ARGS`: (success, stdout, stderr).
    pub fn exec(&self, pod: &str, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["exec", pod, "--"];
        all.extend(args);
        let out = self.kubectl(&all);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }
}
