//! Unit tests for port resolution, timing defaults, command expansion, and the
//! exec and tcpSocket handlers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

pub(super) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub(super) fn named_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        ..Default::default()
    }
}

pub(super) fn local_target() -> ProbeTarget {
    ProbeTarget {
        pod_ip: Some(LOCALHOST),
        container_id: "c1".to_string(),
        ..Default::default()
    }
}

/// An exec runner that answers from a script and records the commands it ran.
pub(super) struct FakeExec {
    /// Each call pops the front; an empty script answers exit 0.
    pub(super) script: Mutex<Vec<FakeAnswer>>,
    pub(super) calls: Mutex<Vec<(String, Vec<String>, Duration)>>,
}

#[derive(Clone)]
pub(super) enum FakeAnswer {
    Exit(i32, &'static str),
    Error(&'static str),
    Hang,
}

impl FakeExec {
    pub(super) fn new(script: Vec<FakeAnswer>) -> Self {
        FakeExec {
            script: Mutex::new(script),
            calls: Mutex::new(Vec::new()),
        }
    }
}

impl ExecRunner for FakeExec {
    fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(i32, Vec<u8>), String>> {
        self.calls
            .lock()
            .unwrap()
            .push((container_id.to_string(), cmd, timeout));
        let answer = {
            let mut script = self.script.lock().unwrap();
            if script.is_empty() {
                FakeAnswer::Exit(0, "")
            } else {
                script.remove(0)
            }
        };
        async move {
            match answer {
                FakeAnswer::Exit(code, out) => Ok((code, out.as_bytes().to_vec())),
                FakeAnswer::Error(e) => Err(e.to_string()),
                FakeAnswer::Hang => std::future::pending().await,
            }
        }
        .boxed()
    }
}

pub(super) fn exec_probe(cmd: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(cmd.iter().map(|s| s.to_string()).collect()),
        }),
        ..Default::default()
    }
}

#[test]
fn resolve_container_port_follows_upstream() {
    let ports = vec![named_port("http", 8080), named_port("zero", 0)];
    let cases: Vec<(IntOrString, Result<u16, String>)> = vec![
        (IntOrString::Int(80), Ok(80)),
        (IntOrString::String("http".into()), Ok(8080)),
        // A number written as a string still works (upstream's last resort).
        (IntOrString::String("9090".into()), Ok(9090)),
        (
            IntOrString::String("metrics".into()),
            Err("strconv.Atoi: parsing \"metrics\": invalid syntax".into()),
        ),
        (IntOrString::Int(0), Err("invalid port number: 0".into())),
        (
            IntOrString::Int(65536),
            Err("invalid port number: 65536".into()),
        ),
        (IntOrString::Int(-1), Err("invalid port number: -1".into())),
        (
            IntOrString::String("zero".into()),
            Err("invalid port number: 0".into()),
        ),
    ];
    for (port, want) in cases {
        assert_eq!(resolve_container_port(&port, &ports), want, "{port:?}");
    }
}

#[test]
fn timing_defaults_apply_to_unset_and_zero_fields() {
    let unset = ProbeTiming::of(&Probe::default());
    let zero = ProbeTiming::of(&Probe {
        initial_delay_seconds: Some(0),
        period_seconds: Some(0),
        timeout_seconds: Some(0),
        success_threshold: Some(0),
        failure_threshold: Some(0),
        ..Default::default()
    });
    let want = ProbeTiming {
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        success_threshold: 1,
        failure_threshold: 3,
    };
    assert_eq!(unset, want);
    assert_eq!(zero, want);
    let set = ProbeTiming::of(&Probe {
        initial_delay_seconds: Some(7),
        period_seconds: Some(2),
        timeout_seconds: Some(5),
        success_threshold: Some(2),
        failure_threshold: Some(4),
        ..Default::default()
    });
    assert_eq!(
        set,
        ProbeTiming {
            initial_delay: Duration::from_secs(7),
            period: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            success_threshold: 2,
            failure_threshold: 4,
        }
    );
}

#[test]
fn initial_results_match_upstream() {
    assert_eq!(ProbeKind::Liveness.initial_result(), Some(true));
    assert_eq!(ProbeKind::Readiness.initial_result(), Some(false));
    assert_eq!(ProbeKind::Startup.initial_result(), None);
    assert_eq!(ProbeKind::Startup.to_string(), "Startup");
}

#[test]
fn expand_command_uses_static_env() {
    let env = vec![
        ("PORT".to_string(), "8080".to_string()),
        ("NAME".to_string(), "web".to_string()),
    ];
    let cases = [
        ("$(PORT)", "8080"),
        ("--port=$(PORT)/$(NAME)", "--port=8080/web"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(PORT)", "$(PORT)"),
        ("$$$(PORT)", "$8080"),
        ("cost $5", "cost $5"),
        ("trailing $", "trailing $"),
        ("$(PORT", "$(PORT"),
        ("plain", "plain"),
    ];
    for (input, want) in cases {
        assert_eq!(
            expand_command(&[input.to_string()], &env),
            vec![want.to_string()],
            "{input}"
        );
    }
}

#[test]
fn go_duration_formats_whole_seconds() {
    assert_eq!(go_duration(Duration::from_secs(1)), "1s");
    assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
}

#[tokio::test]
async fn exec_probe_judges_exit_code_and_keeps_output() {
    let fake = FakeExec::new(vec![
        FakeAnswer::Exit(0, "ok\n"),
        FakeAnswer::Exit(1, "cat: /tmp/healthy: No such file or directory\n"),
        FakeAnswer::Error("container not running"),
    ]);
    let mut target = local_target();
    target.env = vec![("FILE".to_string(), "/tmp/healthy".to_string())];
    let probe = exec_probe(&["cat", "$(FILE)"]);
    let kind = ProbeKind::Liveness;
    assert_eq!(
        run_probe(&probe, kind, &target, &fake).await,
        ProbeOutcome::Success
    );
    assert_eq!(
        run_probe(&probe, kind, &target, &fake).await,
        ProbeOutcome::Failure("cat: /tmp/healthy: No such file or directory\n".to_string())
    );
    assert_eq!(
        run_probe(&probe, kind, &target, &fake).await,
        ProbeOutcome::Unknown("container not running".to_string())
    );
    let calls = fake.calls.lock().unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].0, "c1");
    assert_eq!(
        calls[0].1,
        vec!["cat".to_string(), "/tmp/healthy".to_string()]
    );
    assert_eq!(calls[0].2, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn exec_probe_times_out_with_upstream_message() {
    let fake = FakeExec::new(vec![FakeAnswer::Hang]);
    let mut probe = exec_probe(&["sh", "-c", "sleep 10"]);
    probe.timeout_seconds = Some(3);
    let begin = tokio::time::Instant::now();
    let outcome = run_probe(&probe, ProbeKind::Readiness, &local_target(), &fake).await;
    assert_eq!(
        outcome,
        ProbeOutcome::Failure("command \"sh -c sleep 10\" timed out".to_string())
    );
    assert_eq!(begin.elapsed(), Duration::from_secs(3));
}

#[tokio::test]
async fn exec_probe_output_is_capped_at_10_kib() {
    let big: &'static str = Box::leak("x".repeat(20 * 1024).into_boxed_str());
    let fake = FakeExec::new(vec![FakeAnswer::Exit(2, big)]);
    let outcome = run_probe(
        &exec_probe(&["false"]),
        ProbeKind::Liveness,
        &local_target(),
        &fake,
    )
    .await;
    match outcome {
        ProbeOutcome::Failure(out) => assert_eq!(out.len(), 10 * 1024),
        other => panic!("want failure, got {other:?}"),
    }
}

fn tcp_probe(port: IntOrString) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction { host: None, port }),
        ..Default::default()
    }
}

/// A port on 127.0.0.1 that nothing listens on.
pub(super) async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn tcp_probe_connects_or_reports_go_dial_error() {
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let open = listener.local_addr().unwrap().port();
    let fake = FakeExec::new(vec![]);
    let mut target = local_target();
    target.container_ports = vec![named_port("svc", i32::from(open))];

    let by_name = tcp_probe(IntOrString::String("svc".into()));
    assert_eq!(
        run_probe(&by_name, ProbeKind::Liveness, &target, &fake).await,
        ProbeOutcome::Success
    );

    let closed = closed_port().await;
    let refused = tcp_probe(IntOrString::Int(i32::from(closed)));
    assert_eq!(
        run_probe(&refused, ProbeKind::Liveness, &target, &fake).await,
        ProbeOutcome::Failure(format!(
            "dial tcp 127.0.0.1:{closed}: connect: connection refused"
        ))
    );

    let unknown = tcp_probe(IntOrString::String("nope".into()));
    assert_eq!(
        run_probe(&unknown, ProbeKind::Liveness, &target, &fake).await,
        ProbeOutcome::Unknown("strconv.Atoi: parsing \"nope\": invalid syntax".to_string())
    );
}

#[tokio::test]
async fn probe_without_pod_ip_is_unknown() {
    let fake = FakeExec::new(vec![]);
    let target = ProbeTarget::default();
    let outcome = run_probe(
        &tcp_probe(IntOrString::Int(80)),
        ProbeKind::Readiness,
        &target,
        &fake,
    )
    .await;
    assert!(matches!(outcome, ProbeOutcome::Unknown(_)), "{outcome:?}");
}

#[tokio::test]
async fn probe_without_handler_is_unknown() {
    let fake = FakeExec::new(vec![]);
    let outcome = run_probe(
        &Probe::default(),
        ProbeKind::Readiness,
        &local_target(),
        &fake,
    )
    .await;
    assert!(matches!(outcome, ProbeOutcome::Unknown(_)), "{outcome:?}");
}
