//! End to end: `kubectl exec`, `kubectl attach` and `kubectl run -i`
//! through the API server, the kubelet and the built-in runtime's streaming
//! server, with the real kubectl (1.33, and 1.32 where installed):
//! stdout/stderr, stdin, exit codes, terminals and upstream's errors.
//! Skipped without root or busybox-static.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use cluster::{Cluster, IMAGE, Names, container, phase};
use serde_json::json;

const NAMES: Names = Names {
    node: "skiff-exec",
    bridge: "skiffexec0",
    nat_table: "skiff-exec-nat",
    cluster_cidr: "10.245.0.0/16",
    scheduler: true,
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

    // SPDY/3.1, kubectl's fallback (and older clients' only protocol).
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let out = exec(
        &spdy,
        &["-i", "shell", "--", "sh", "-c", "cat; echo err >&2; exit 3"],
        &big,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(out.stdout == big, "{} bytes back", out.stdout.len());
    assert!(
        text(&out.stderr).starts_with("err\n"),
        "{}",
        text(&out.stderr)
    );
    let script = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "stty cols 99 rows 33; KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false {KUBECTL} --kubeconfig {} exec -it shell -- sh -c 'tty; stty size'",
            c.dir.path().join("kubeconfig").display()
        ))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = text(&script.stdout);
    assert!(
        shown.contains("/dev/pts/0") && shown.contains("33 99"),
        "{shown}"
    );

    // The official Python client's stream().
    let python =
        std::env::var("SKIFF_PYTHON").unwrap_or_else(|_| "/opt/skiff-py/bin/python".into());
    // Bounded: a hang shows as a traceback, not a stuck test.
    let out = std::process::Command::new("timeout")
        .args(["-s", "ABRT", "60"])
        .arg(&python)
        .args(["-X", "faulthandler"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/exec_stream.py"
        ))
        .arg(c.dir.path().join("kubeconfig"))
        .arg("shell")
        .output()
        .unwrap_or_else(|e| panic!("running {python} (install it with scripts/test): {e}"));
    assert!(
        out.status.success(),
        "python stream():\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
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

/// Runs `command` under script(1), so kubectl's stdin is a terminal fed
/// with `input`; returns what the terminal showed.
fn on_terminal(command: &str, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    // Keep the terminal open until the session ends by itself.
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    text(&out.stdout)
}

#[test]
fn kubectl_attach_and_run_interactive() {
    // Its own node, bridge and CIDR: the tests of a binary run at once.
    let names = Names {
        node: "skiff-attach",
        bridge: "skiffattach0",
        nat_table: "skiff-attach-nat",
        cluster_cidr: "10.246.0.0/16",
        scheduler: true,
    };
    let Some(c) = Cluster::start(names) else {
        return;
    };
    let kubeconfig = c.dir.path().join("kubeconfig");

    // stdin + stdinOnce without a terminal: attached input reaches the
    // container, its end closes the container's stdin, the container ends
    // and so does the attach.
    let mut reader = container("main", "while read l; do echo got $l; done; echo bye");
    reader["stdin"] = json!(true);
    reader["stdinOnce"] = json!(true);
    c.apply(&c.pod(
        "reader",
        json!({"restartPolicy": "Never", "containers": [reader]}),
    ));
    c.wait_pod("reader", "Running", |p| phase(p) == "Running");
    let out = c.kubectl_with(KUBECTL, &[], &["attach", "-i", "reader"], b"a\nb\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "got a\ngot b\nbye\n",
        "{}\n{}",
        text(&out.stderr),
        c.logs(&["reader"])
    );
    let p = c.wait_pod("reader", "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    // The log has what the container wrote.
    assert_eq!(
        c.logs(&["reader"]),
        "got a\ngot b\nbye\n",
        "the container log"
    );

    // The same over SPDY.
    let mut reader = container("main", "read l; echo spdy $l");
    reader["stdin"] = json!(true);
    reader["stdinOnce"] = json!(true);
    c.apply(&c.pod(
        "reader2",
        json!({"restartPolicy": "Never", "containers": [reader]}),
    ));
    c.wait_pod("reader2", "Running", |p| phase(p) == "Running");
    let out = c.kubectl_with(
        KUBECTL,
        &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")],
        &["attach", "-i", "reader2"],
        b"x\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "spdy x\n");

    // A terminal container: the shell's prompt (no newline) shows, typed
    // input runs, and the terminal output is in the log too.
    let mut term = container("main", "exec sh");
    term["command"] = json!(["sh"]);
    term["stdin"] = json!(true);
    term["tty"] = json!(true);
    c.apply(&c.pod(
        "term",
        json!({"restartPolicy": "Never", "containers": [term]}),
    ));
    c.wait_pod("term", "Running", |p| phase(p) == "Running");
    let shown = on_terminal(
        &format!(
            "{KUBECTL} --kubeconfig {} attach -it term",
            kubeconfig.display()
        ),
        b"echo sum-$((40+2)); tty\nexit 7\n",
    );
    assert!(shown.contains("sum-42"), "{shown}");
    assert!(
        shown.contains("/dev/console") || shown.contains("/dev/pts/"),
        "{shown}"
    );
    let p = c.wait_pod("term", "Failed", |p| phase(p) == "Failed");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        7
    );

    // kubectl run -i --rm: scheduled, attached, deleted afterwards.
    let out = c.kubectl_with(
        KUBECTL,
        &[],
        &[
            "run",
            "oneshot",
            "-i",
            "--rm",
            "--restart=Never",
            "--image",
            IMAGE,
            "--image-pull-policy=IfNotPresent",
            "--",
            "sh",
            "-c",
            "read x; echo got $x",
        ],
        b"hello\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("got hello"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("pod \"oneshot\" deleted"),
        "{}",
        text(&out.stdout)
    );

    // Attaching to a finished container is refused with a reason.
    let out = c.kubectl_with(KUBECTL, &[], &["attach", "reader"], b"");
    assert!(!out.status.success());
}
