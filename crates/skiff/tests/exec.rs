//! End to end: `kubectl exec` through the API server, the kubelet and the
//! built-in runtime's streaming server, with the real kubectl (1.33, and
//! 1.32 where installed): stdout/stderr, stdin, exit codes, terminals and
//! upstream's errors. Skipped without root or busybox-static.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use cluster::{Cluster, Names, container, phase};
use serde_json::json;

const NAMES: Names = Names {
    node: "skiff-exec",
    bridge: "skiffexec0",
    nat_table: "skiff-exec-nat",
    cluster_cidr: "10.245.0.0/16",
};
const KUBECTL: &str = "/usr/bin/kubectl";
const KUBECTL_132: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn kubectl_exec_streams_and_reports_exit_codes() {
    let Some(c) = Cluster::start(NAMES) else {
        return;
    };
    c.apply(&c.pod(
        "shell",
        json!({"containers": [container("main", "echo started; sleep 3600")]}),
    ));
    c.wait_pod("shell", "Running", |p| phase(p) == "Running");
    let exec = |env: &[(&str, &str)], args: &[&str], stdin: &[u8]| {
        let mut a = vec!["exec"];
        a.extend(args);
        c.kubectl_with(KUBECTL, env, &a, stdin)
    };

    // stdout and stderr apart; the exit code comes back as kubectl's.
    let out = exec(
        &[],
        &["shell", "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("err\n"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );

    // stdin reaches the process and its end closes the process's stdin.
    let out = exec(
        &[],
        &["-i", "shell", "--", "sh", "-c", "cat; echo done"],
        b"hello\nworld\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\nworld\ndone\n");

    // A large stdin and output pass intact.
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| b'a' + u8::try_from(i % 26).unwrap())
        .collect();
    let out = exec(&[], &["-i", "shell", "--", "cat"], &big);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), big.len());
    assert!(out.stdout == big);

    // The process runs in the container: its filesystem, its environment.
    let out = exec(&[], &["shell", "--", "cat", "/etc/hostname"], b"");
    assert_eq!(text(&out.stdout).trim(), "shell", "{}", text(&out.stderr));

    // A command that does not exist fails, without taking anything down.
    let out = exec(&[], &["shell", "--", "/no/such/binary"], b"");
    assert!(!out.status.success());
    let out = exec(&[], &["shell", "--", "true"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Upstream's API errors.
    let out = exec(&[], &["shell", "-c", "nope", "--", "true"], b"");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("container nope is not valid for pod shell"),
        "{}",
        text(&out.stderr)
    );
    let out = exec(&[], &["ghost", "--", "true"], b"");
    assert!(
        text(&out.stderr).contains("pods \"ghost\" not found"),
        "{}",
        text(&out.stderr)
    );

    // A terminal: kubectl -t needs its own stdin to be one, which script(1)
    // provides. The process sees a tty of kubectl's size.
    let script = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "stty cols 123 rows 45; {KUBECTL} --kubeconfig {} exec -it shell -- sh -c 'tty; stty size; exit 4'",
            c.dir.path().join("kubeconfig").display()
        ))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = text(&script.stdout);
    assert!(shown.contains("/dev/pts/"), "{shown}");
    assert!(shown.contains("45 123"), "{shown}");
    assert!(
        shown.contains("command terminated with exit code 4"),
        "{shown}"
    );

    // kubectl 1.32 speaks the same protocol.
    if std::path::Path::new(KUBECTL_132).exists() {
        let out = c.kubectl_with(
            KUBECTL_132,
            &[],
            &[
                "exec",
                "-i",
                "shell",
                "--",
                "sh",
                "-c",
                "read x; echo got $x; exit 2",
            ],
            b"it\n",
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "got it\n");
    }
}
