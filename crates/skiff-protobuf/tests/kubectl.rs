//! Golden tests against the real kubectl: each typed command is run twice
//! against a capture server, once with `--dry-run=client -o json` (kubectl
//! prints, in JSON, the very object it would send) and once for real (kubectl
//! POSTs that object as protobuf). The captured body must decode to exactly
//! the printed JSON, and encoding the printed JSON must give back kubectl's
//! bytes. No normalisation is applied.

mod capture;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use capture::Server;

const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// The kubectl binary of a minor version, `SKIFF_KUBECTL_1_33`-style
/// overridable. Missing kubectl fails the test: every machine of this kind
/// has it (see shared/HOST-NOTES.md).
fn kubectl(minor: &str) -> PathBuf {
    let var = format!("SKIFF_KUBECTL_{}", minor.replace('.', "_"));
    std::env::var_os(&var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(KUBECTL_DIR).join(format!("kubectl.{minor}")))
}

struct Kubectl {
    bin: PathBuf,
    server: Server,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(minor: &str) -> Result<Kubectl> {
        let bin = kubectl(minor);
        ensure!(
            bin.exists(),
            "kubectl {minor} not found at {} (set SKIFF_KUBECTL_{})",
            bin.display(),
            minor.replace('.', "_")
        );
        Ok(Kubectl {
            bin,
            server: Server::start()?,
            home: tempfile::tempdir()?,
        })
    }

    fn run(&self, args: &[String]) -> Result<String> {
        let home = self.home.path();
        let out = Command::new(&self.bin)
            .env("HOME", home)
            .env("KUBECONFIG", home.join("no-kubeconfig"))
            .arg(format!("--server={}", self.server.url()))
            .arg(format!("--cache-dir={}", home.join("cache").display()))
            .arg("--request-timeout=20s")
            .args(args)
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "kubectl {args:?} failed: {}{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// Runs a command for real and returns the one POST it made.
    fn capture(&self, args: &[String]) -> Result<capture::Post> {
        let before = self.server.post_count();
        self.run(args)?;
        let posts = self.server.posts_since(before);
        let [post] = posts.as_slice() else {
            bail!("expected one POST from {args:?}, got {}", posts.len());
        };
        Ok(post.clone())
    }

    /// The dry-run JSON, the captured body, and the checks between them.
    fn golden(&self, case: &Case) -> Result<()> {
        let args = &case.args;
        let printed: Value = {
            let out = self.run(&with_flags(args, &["--dry-run=client", "-o", "json"]))?;
            serde_json::from_str(&out)
                .with_context(|| format!("dry-run JSON of {args:?}: {out}"))?
        };
        let post = self.capture(args)?;
        if !case.protobuf {
            // kubectl's generic (unstructured) paths send JSON; they must still.
            ensure!(
                post.content_type == "application/json",
                "{args:?} sent {:?}, expected JSON",
                post.content_type
            );
            let sent: Value = serde_json::from_slice(&post.body)?;
            ensure!(sent == printed, "{args:?} sent {sent}, printed {printed}");
            return Ok(());
        }
        ensure!(
            skiff_protobuf::is_media_type(&post.content_type),
            "{args:?} sent {:?}, not protobuf",
            post.content_type
        );
        let decoded = skiff_protobuf::decode(&post.body).context("decoding kubectl's body")?;
        ensure!(
            decoded == printed,
            "decoded body differs from kubectl's JSON for {args:?}\n decoded: {decoded}\n printed: {printed}"
        );
        let encoded = skiff_protobuf::encode(&printed)?;
        ensure!(
            encoded == post.body,
            "encoding kubectl's JSON for {args:?} differs from its bytes\n ours:    {encoded:02x?}\n kubectl: {:02x?}",
            post.body
        );
        Ok(())
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// `args` with `flags` added before any `--` (after it they would be the
/// container's command).
fn with_flags(args: &[String], flags: &[&str]) -> Vec<String> {
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let mut out = args[..at].to_vec();
    out.extend(flags.iter().map(|f| (*f).to_owned()));
    out.extend_from_slice(&args[at..]);
    out
}

/// One kubectl command and whether it sends protobuf (typed clients) or
/// JSON (kubectl's unstructured paths: `run`, `expose`).
struct Case {
    args: Vec<String>,
    protobuf: bool,
}

/// Every command whose body we check against its dry-run JSON.
fn cases(files: &Path) -> Vec<Case> {
    let text = files.join("text.txt");
    let bin = files.join("bin.dat");
    let f = |p: &Path| p.display().to_string();
    vec![
        args(&[
            "create",
            "configmap",
            "c",
            "--from-literal=a=b",
            &format!("--from-file=text.txt={}", f(&text)),
            &format!("--from-file=bin.dat={}", f(&bin)),
        ]),
        args(&["create", "configmap", "empty"]),
        args(&[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=k=v",
            "--from-literal=blank=",
            "--type=Opaque",
        ]),
        args(&[
            "create",
            "secret",
            "docker-registry",
            "reg",
            "--docker-server=r.example",
            "--docker-username=u",
            "--docker-password=p",
        ]),
        args(&[
            "create",
            "deployment",
            "d",
            "--image=nginx:1.25",
            "--replicas=3",
            "--port=80",
        ]),
        args(&[
            "create",
            "deployment",
            "zero",
            "--image=nginx",
            "--image=busybox",
            "--replicas=0",
        ]),
        args(&[
            "create",
            "service",
            "clusterip",
            "s",
            "--tcp=80:8080",
            "--tcp=443:https",
        ]),
        args(&[
            "create",
            "service",
            "nodeport",
            "np",
            "--tcp=80:80",
            "--node-port=30080",
        ]),
        args(&[
            "create",
            "service",
            "externalname",
            "ext",
            "--external-name=example.com",
        ]),
        args(&["create", "job", "j", "--image=busybox", "--", "echo", "hi"]),
        args(&[
            "run",
            "p",
            "--image=nginx",
            "--labels=a=b",
            "--env=X=1",
            "--port=80",
            "--restart=Never",
            "--annotations=note=x",
        ]),
        args(&[
            "run",
            "shell",
            "--image=busybox",
            "--restart=OnFailure",
            "--command",
            "--",
            "sh",
            "-c",
            "sleep 1",
        ]),
        args(&["create", "namespace", "n"]),
        args(&[
            "create",
            "priorityclass",
            "pc",
            "--value=100",
            "--description=d",
            "--preemption-policy=Never",
            "--global-default=true",
        ]),
        args(&[
            "create",
            "role",
            "r",
            "--verb=get",
            "--verb=list",
            "--resource=pods",
            "--resource=deployments.apps",
            "--resource-name=x",
        ]),
        args(&[
            "create",
            "clusterrole",
            "agg",
            "--aggregation-rule=rbac.example.com/aggregate=true",
        ]),
        args(&[
            "create",
            "clusterrole",
            "reader",
            "--verb=get",
            "--non-resource-url=/logs/*",
        ]),
        args(&[
            "create",
            "rolebinding",
            "rb",
            "--role=r",
            "--user=u",
            "--group=g",
            "--serviceaccount=default:sa",
        ]),
        args(&[
            "create",
            "clusterrolebinding",
            "crb",
            "--clusterrole=reader",
            "--user=u",
        ]),
        args(&[
            "create",
            "cronjob",
            "cj",
            "--image=busybox",
            "--schedule=*/1 * * * *",
            "--",
            "date",
        ]),
        args(&[
            "create",
            "poddisruptionbudget",
            "pdb",
            "--selector=a=b",
            "--min-available=1",
        ]),
        args(&[
            "create",
            "pdb",
            "pdb2",
            "--selector=a=b",
            "--max-unavailable=50%",
        ]),
        args(&[
            "create",
            "ingress",
            "ing",
            "--class=nginx",
            "--rule=foo.com/bar=svc:80",
            "--rule=foo.com/api*=api:http,tls=cert",
            "--annotation=a=b",
        ]),
        args(&[
            "create",
            "quota",
            "q",
            "--hard=cpu=1,memory=1G,pods=2,requests.storage=10Gi",
            "--scopes=BestEffort",
        ]),
        args(&["create", "serviceaccount", "sa"]),
        args(&[
            "expose",
            "deployment",
            "d",
            "--port=80",
            "--target-port=8080",
            "--name=d-svc",
        ]),
    ]
    .into_iter()
    .map(|a| {
        // Without OpenAPI on the capture server, strict validation cannot run;
        // it only adds a query parameter, not a byte of the body.
        let protobuf = a[0] == "create";
        let args = if protobuf {
            with_flags(&a, &["--validate=false"])
        } else {
            a
        };
        Case { args, protobuf }
    })
    .collect()
}

fn run_all(minor: &str) -> Result<()> {
    let k = Kubectl::new(minor)?;
    let files = tempfile::tempdir()?;
    std::fs::write(files.path().join("text.txt"), "hello\nworld\n")?;
    std::fs::write(files.path().join("bin.dat"), [0xff, 0x00, 0x01, 0xfe])?;
    let mut failures = Vec::new();
    for case in &cases(files.path()) {
        if let Err(e) = k.golden(case) {
            failures.push(format!("{e:#}"));
        }
    }

    // `create token` has no dry-run; its TokenRequest is checked against the
    // JSON Go prints for the struct kubectl builds.
    match k.capture(&args(&[
        "create",
        "token",
        "sa",
        "--duration=10m",
        "--audience=api",
    ])) {
        Ok(post) => {
            let want = json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"creationTimestamp": null},
                "spec": {"audiences": ["api"], "expirationSeconds": 600, "boundObjectRef": null},
                "status": {"token": "", "expirationTimestamp": null}
            });
            let got = skiff_protobuf::decode(&post.body)?;
            if got != want || post.path != "/api/v1/namespaces/default/serviceaccounts/sa/token" {
                failures.push(format!("create token: {} {got}", post.path));
            }
            if skiff_protobuf::encode(&got)? != post.body {
                failures.push("create token: re-encoding differs".into());
            }
        }
        Err(e) => failures.push(format!("{e:#}")),
    }
    ensure!(
        failures.is_empty(),
        "kubectl {minor}:\n{}",
        failures.join("\n\n")
    );
    Ok(())
}

#[test]
fn kubectl_1_33_bodies_decode_to_their_dry_run_json() -> Result<()> {
    run_all("1.33")
}

#[test]
fn kubectl_1_32_bodies_decode_to_their_dry_run_json() -> Result<()> {
    run_all("1.32")
}
