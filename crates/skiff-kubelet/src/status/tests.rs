#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}))
        .unwrap()
}

fn t(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn running(name: &str) -> RuntimeContainer {
    RuntimeContainer {
        name: name.to_owned(),
        container_id: format!("containerd://{name}"),
        image: "img".to_owned(),
        image_id: "img@sha256:00".to_owned(),
        state: RuntimeState::Running { started_at: t(100) },
        restart_count: 0,
        last_termination: None,
        startup_probe: None,
        readiness_probe: None,
    }
}

fn exited(name: &str, code: i32) -> RuntimeContainer {
    RuntimeContainer {
        state: RuntimeState::Exited(Exited {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.to_owned(),
            ..Exited::default()
        }),
        ..running(name)
    }
}

fn generate(pod: &Pod, containers: Vec<RuntimeContainer>, terminal: bool) -> PodStatus {
    let runtime = RuntimePod {
        sandbox_ready: true,
        pod_ips: vec!["10.42.0.5".to_owned()],
        containers,
        waiting: Default::default(),
    };
    let now = t(200);
    generate_pod_status(StatusInput {
        pod,
        runtime: &runtime,
        host_ips: &["192.168.0.1".to_owned()],
        pod_is_terminal: terminal,
        now: &now,
    })
}

fn cond<'a>(s: &'a PodStatus, type_: &str) -> &'a PodCondition {
    s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

fn two_containers(policy: &str) -> Pod {
    pod(
        json!({"restartPolicy": policy, "containers": [{"name": "b", "image": "img"}, {"name": "a", "image": "img"}]}),
    )
}

#[test]
fn phase_per_restart_policy() {
    // (restart policy, exit codes of a and b, pod terminal, phase)
    let cases = [
        ("Always", [0, 0], false, "Running"),
        ("OnFailure", [0, 0], false, "Succeeded"),
        ("Never", [0, 0], false, "Succeeded"),
        ("Always", [0, 1], false, "Running"),
        ("OnFailure", [0, 1], false, "Running"),
        ("Never", [0, 1], false, "Failed"),
        ("Always", [0, 0], true, "Succeeded"),
        ("Always", [0, 1], true, "Failed"),
        ("OnFailure", [1, 1], true, "Failed"),
    ];
    for (policy, [a, b], terminal, want) in cases {
        let p = two_containers(policy);
        let s = generate(&p, vec![exited("a", a), exited("b", b)], terminal);
        assert_eq!(
            s.phase.as_deref(),
            Some(want),
            "{policy} {a} {b} {terminal}"
        );
    }
}

#[test]
fn phase_pending_until_every_container_runs() {
    let p = two_containers("Always");
    assert_eq!(
        generate(&p, vec![], false).phase.as_deref(),
        Some("Pending")
    );
    assert_eq!(
        generate(&p, vec![running("a")], false).phase.as_deref(),
        Some("Pending")
    );
    let created = RuntimeContainer {
        state: RuntimeState::Created,
        ..running("b")
    };
    assert_eq!(
        generate(&p, vec![running("a"), created], false)
            .phase
            .as_deref(),
        Some("Pending")
    );
    let s = generate(&p, vec![running("a"), exited("b", 1)], false);
    assert_eq!(s.phase.as_deref(), Some("Running"));
}

#[test]
fn running_pod_is_ready_with_all_fields() {
    let p = two_containers("Always");
    let s = generate(&p, vec![running("a"), running("b")], false);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    for type_ in [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ] {
        let c = cond(&s, type_);
        assert_eq!(c.status, "True", "{type_}");
        assert_eq!(c.last_transition_time, Some(t(200)), "{type_}");
    }
    let names: Vec<_> = s
        .container_statuses
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"], "sorted by name");
    let a = &s.container_statuses.as_ref().unwrap()[0];
    assert!(a.ready);
    assert_eq!(a.started, Some(true));
    assert_eq!(a.container_id.as_deref(), Some("containerd://a"));
    assert_eq!(a.image_id, "img@sha256:00");
    assert_eq!(
        a.state
            .as_ref()
            .unwrap()
            .running
            .as_ref()
            .unwrap()
            .started_at,
        Some(t(100))
    );
    assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
    assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "10.42.0.5");
    assert_eq!(s.host_ip.as_deref(), Some("192.168.0.1"));
    assert_eq!(s.host_ips.as_ref().unwrap()[0].ip, "192.168.0.1");
    assert_eq!(s.start_time, Some(t(200)));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    assert!(s.init_container_statuses.is_none());
}

#[test]
fn unready_and_unknown_containers_are_named_in_messages() {
    let p = pod(json!({"containers": [
        {"name": "a", "image": "img", "readinessProbe": {"exec": {"command": ["true"]}}},
        {"name": "b", "image": "img", "readinessProbe": {"exec": {"command": ["true"]}}},
        {"name": "c", "image": "img"},
    ]}));
    // a's probe has not run yet, b's failed, c is unknown to the runtime.
    let b = RuntimeContainer {
        readiness_probe: Some(false),
        ..running("b")
    };
    let s = generate(&p, vec![running("a"), b], false);
    let ready = cond(&s, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some(CONTAINERS_NOT_READY));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [a b c]")
    );
    // c has a default waiting status, so it is unready, not unknown.
    let c = &s.container_statuses.as_ref().unwrap()[2];
    assert_eq!(
        c.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some(CONTAINER_CREATING)
    );
    assert_eq!(cond(&s, "ContainersReady").message, ready.message);

    // The probe succeeding makes the container ready.
    let a = RuntimeContainer {
        readiness_probe: Some(true),
        ..running("a")
    };
    let b = RuntimeContainer {
        readiness_probe: Some(true),
        ..running("b")
    };
    let s = generate(&p, vec![a, b, running("c")], false);
    assert_eq!(cond(&s, "Ready").status, "True");
}

#[test]
fn unknown_message_comes_from_the_condition_generator() {
    let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(json!({
        "containers": [{"name": "a"}, {"name": "b"}]
    }))
    .unwrap();
    let c = conditions::containers_ready(&spec, Some(&[]), "Pending");
    assert_eq!(
        c.message.as_deref(),
        Some("containers with unknown status: [a b]")
    );
    let c = conditions::containers_ready(&spec, None, "Pending");
    assert_eq!(c.reason.as_deref(), Some(UNKNOWN_CONTAINER_STATUSES));
}

#[test]
fn startup_probe_gates_started_and_ready() {
    let p = pod(json!({"containers": [
        {"name": "a", "image": "img", "startupProbe": {"exec": {"command": ["true"]}}},
    ]}));
    let s = generate(&p, vec![running("a")], false);
    let a = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(a.started, Some(false));
    assert!(!a.ready);
    let done = RuntimeContainer {
        startup_probe: Some(true),
        ..running("a")
    };
    let s = generate(&p, vec![done], false);
    let a = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(a.started, Some(true));
    assert!(a.ready);
}

#[test]
fn completed_and_failed_pods() {
    let p = two_containers("Never");
    let s = generate(&p, vec![exited("a", 0), exited("b", 0)], false);
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    let ready = cond(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("False", Some(POD_COMPLETED))
    );
    let s = generate(&p, vec![exited("a", 0), exited("b", 2)], false);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(
        cond(&s, "ContainersReady").reason.as_deref(),
        Some(POD_FAILED)
    );
    let b = &s.container_statuses.as_ref().unwrap()[1];
    let term = b.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (2, Some("Error")));
}

fn with_init(policy: &str) -> Pod {
    pod(json!({"restartPolicy": policy,
        "initContainers": [{"name": "setup", "image": "img"}, {"name": "migrate", "image": "img"}],
        "containers": [{"name": "app", "image": "img"}]}))
}

#[test]
fn init_containers_gate_initialization() {
    let p = with_init("Always");
    let s = generate(&p, vec![exited("setup", 0), running("migrate")], false);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let init = cond(&s, "Initialized");
    assert_eq!(init.status, "False");
    assert_eq!(init.reason.as_deref(), Some(CONTAINERS_NOT_INITIALIZED));
    assert_eq!(
        init.message.as_deref(),
        Some("containers with incomplete status: [migrate]")
    );
    let inits = s.init_container_statuses.as_ref().unwrap();
    assert_eq!(inits[0].name, "setup", "spec order");
    assert!(inits[0].ready, "an init container that exited 0 is ready");
    assert!(!inits[1].ready);
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        app.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some(POD_INITIALIZING)
    );
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("containers with unready status: [app]")
    );

    let s = generate(
        &p,
        vec![exited("setup", 0), exited("migrate", 0), running("app")],
        false,
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s, "Initialized").status, "True");
    assert_eq!(cond(&s, "Ready").status, "True");
}

#[test]
fn failed_init_container_fails_only_never_pods() {
    for (policy, want) in [
        ("Never", "Failed"),
        ("OnFailure", "Pending"),
        ("Always", "Pending"),
    ] {
        let s = generate(&with_init(policy), vec![exited("setup", 1)], false);
        assert_eq!(s.phase.as_deref(), Some(want), "{policy}");
    }
}

#[test]
fn sidecar_must_start_and_be_ready() {
    let p = pod(json!({
        "initContainers": [{"name": "proxy", "image": "img", "restartPolicy": "Always",
            "readinessProbe": {"exec": {"command": ["true"]}}}],
        "containers": [{"name": "app", "image": "img"}]}));
    let s = generate(&p, vec![running("proxy"), running("app")], false);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s, "Initialized").status, "True");
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("containers with unready status: [proxy]")
    );
}

#[test]
fn readiness_gates() {
    let mut p = pod(
        json!({"readinessGates": [{"conditionType": "example.com/lb"}],
        "containers": [{"name": "a", "image": "img"}]}),
    );
    let s = generate(&p, vec![running("a")], false);
    let ready = cond(&s, "Ready");
    assert_eq!(ready.reason.as_deref(), Some(READINESS_GATES_NOT_READY));
    assert_eq!(
        ready.message.as_deref(),
        Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist.")
    );
    p.status = Some(PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "example.com/lb".to_owned(),
            status: "False".to_owned(),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    let s = generate(&p, vec![running("a")], false);
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("the status of pod readiness gate \"example.com/lb\" is not \"True\", but False")
    );
    assert_eq!(cond(&s, "example.com/lb").status, "False", "kept");
}

#[test]
fn transition_times_and_scheduled_condition_carry_over() {
    let mut p = two_containers("Always");
    p.status = Some(PodStatus {
        start_time: Some(t(50)),
        qos_class: Some("BestEffort".to_owned()),
        conditions: Some(vec![
            PodCondition {
                type_: "PodScheduled".to_owned(),
                status: "True".to_owned(),
                last_transition_time: Some(t(10)),
                ..PodCondition::default()
            },
            PodCondition {
                type_: "Ready".to_owned(),
                status: "False".to_owned(),
                last_transition_time: Some(t(60)),
                ..PodCondition::default()
            },
            PodCondition {
                type_: "Initialized".to_owned(),
                status: "True".to_owned(),
                last_transition_time: Some(t(70)),
                ..PodCondition::default()
            },
        ]),
        ..PodStatus::default()
    });
    let s = generate(&p, vec![running("a"), running("b")], false);
    assert_eq!(s.start_time, Some(t(50)));
    assert_eq!(cond(&s, "PodScheduled").last_transition_time, Some(t(10)));
    assert_eq!(cond(&s, "Initialized").last_transition_time, Some(t(70)));
    assert_eq!(
        cond(&s, "Ready").last_transition_time,
        Some(t(200)),
        "changed"
    );
    let scheduled = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .filter(|c| c.type_ == "PodScheduled")
        .count();
    assert_eq!(scheduled, 1);
}

#[test]
fn qos_classes() {
    let cases = [
        (json!({}), "BestEffort"),
        (json!({"requests": {"cpu": "0"}}), "BestEffort"),
        (json!({"requests": {"cpu": "100m"}}), "Burstable"),
        (
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}),
            "Guaranteed",
        ),
        (
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}),
            "Guaranteed",
        ),
        (
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}),
            "Burstable",
        ),
        (
            json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}),
            "Burstable",
        ),
    ];
    for (resources, want) in cases {
        let p = pod(json!({"containers": [{"name": "a", "resources": resources}]}));
        assert_eq!(compute_pod_qos(&p), want, "{resources}");
    }
    // Guaranteed needs every container (init included) to limit both.
    let p = pod(json!({
        "initContainers": [{"name": "i"}],
        "containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}));
    assert_eq!(compute_pod_qos(&p), "Burstable");
    // The class in the status never changes.
    let mut p = pod(json!({"containers": [{"name": "a"}]}));
    p.status = Some(PodStatus {
        qos_class: Some("Burstable".to_owned()),
        ..PodStatus::default()
    });
    assert_eq!(pod_qos(&p), "Burstable");
}

#[test]
fn waiting_reasons_override_state_and_keep_the_last_exit() {
    let p = two_containers("Always");
    let mut crashed = exited("a", 2);
    crashed.restart_count = 3;
    let mut runtime = RuntimePod {
        sandbox_ready: true,
        pod_ips: vec!["10.42.0.5".to_owned()],
        containers: vec![crashed, running("b")],
        waiting: Default::default(),
    };
    runtime.waiting.insert(
        "a".to_owned(),
        Waiting {
            reason: "CrashLoopBackOff".to_owned(),
            message: "back-off 40s restarting failed container=a pod=p_default()".to_owned(),
        },
    );
    // A container that never got created waits with the pull error.
    let p2 = pod(json!({"containers": [{"name": "c", "image": "nope"}]}));
    let mut runtime2 = RuntimePod::default();
    runtime2.waiting.insert(
        "c".to_owned(),
        Waiting {
            reason: "ErrImagePull".to_owned(),
            message: "pull failed".to_owned(),
        },
    );
    let now = t(200);
    let input = |pod, runtime| StatusInput {
        pod,
        runtime,
        host_ips: &[],
        pod_is_terminal: false,
        now: &now,
    };
    let s = generate_pod_status(input(&p, &runtime));
    let a = s
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "a")
        .unwrap();
    let w = a.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(w.message.as_deref().unwrap().starts_with("back-off 40s"));
    assert_eq!(
        a.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        2
    );
    assert_eq!((a.restart_count, a.ready), (3, false));
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s, "Ready").status, "False");

    let s2 = generate_pod_status(input(&p2, &runtime2));
    let c = &s2.container_statuses.as_ref().unwrap()[0];
    let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(
        (w.reason.as_deref(), w.message.as_deref()),
        (Some("ErrImagePull"), Some("pull failed"))
    );
    assert_eq!(s2.phase.as_deref(), Some("Pending"));
}

/// A time `secs` plus `nanos` into that second, as the runtime reports.
fn t_ns(secs: i64, nanos: i32) -> Time {
    Time(Timestamp::new(secs, nanos).unwrap())
}

#[test]
fn status_times_are_whole_seconds_so_the_api_copy_compares_equal() {
    // The runtime's times have nanoseconds; the API keeps seconds. A status
    // that kept the nanoseconds would differ from the stored copy at every
    // sync and be written again for nothing.
    let p = pod(
        json!({"restartPolicy": "Always", "initContainers": [{"name": "init", "image": "img"}],
        "containers": [{"name": "a", "image": "img"}]}),
    );
    let mut a = running("a");
    a.state = RuntimeState::Running {
        started_at: t_ns(100, 123_456_789),
    };
    a.restart_count = 1;
    a.last_termination = Some(Exited {
        exit_code: 1,
        reason: "Error".to_owned(),
        started_at: Some(t_ns(90, 1)),
        finished_at: Some(t_ns(95, 999_999_999)),
        ..Exited::default()
    });
    let mut init = exited("init", 0);
    init.state = RuntimeState::Exited(Exited {
        exit_code: 0,
        reason: "Completed".to_owned(),
        started_at: Some(t_ns(80, 5)),
        finished_at: Some(t_ns(81, 500_000_000)),
        ..Exited::default()
    });
    let runtime = RuntimePod {
        sandbox_ready: true,
        pod_ips: vec!["10.42.0.5".to_owned()],
        containers: vec![init, a],
        waiting: Default::default(),
    };
    let now = t_ns(200, 750_000_000);
    let generate_for = |pod: &Pod| {
        generate_pod_status(StatusInput {
            pod,
            runtime: &runtime,
            host_ips: &["192.168.0.1".to_owned()],
            pod_is_terminal: false,
            now: &now,
        })
    };
    let status = generate_for(&p);

    let a = &status.container_statuses.as_ref().unwrap()[0];
    let started = a.state.as_ref().unwrap().running.as_ref().unwrap();
    assert_eq!(started.started_at, Some(t(100)));
    let last = a.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (last.started_at.clone(), last.finished_at.clone()),
        (Some(t(90)), Some(t(95)))
    );
    let init = &status.init_container_statuses.as_ref().unwrap()[0];
    let done = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (done.started_at.clone(), done.finished_at.clone()),
        (Some(t(80)), Some(t(81)))
    );
    assert_eq!(status.start_time, Some(t(200)));
    assert_eq!(cond(&status, "Ready").last_transition_time, Some(t(200)));

    // What the API hands back (times in seconds) equals what was computed,
    // and computing again from it gives the same status: nothing to write.
    let stored: PodStatus = serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
    assert_eq!(stored, status);
    let mut p2 = p.clone();
    p2.status = Some(stored);
    assert_eq!(generate_for(&p2), status);
}
