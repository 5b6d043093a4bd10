//! Probe worker loop: periods, thresholds, gating and stopping, on paused time
//! with a scripted exec runner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::tests::{FakeAnswer, FakeExec, exec_probe, local_target};
use super::*;

const OK: FakeAnswer = FakeAnswer::Exit(0, "");
const FAIL: FakeAnswer = FakeAnswer::Exit(1, "unhealthy");
const ERR: FakeAnswer = FakeAnswer::Error("exec failed");

struct Harness {
    fake: Arc<FakeExec>,
    updates: mpsc::Receiver<ProbeUpdate>,
    worker: ProbeWorker,
    begin: Instant,
}

impl Harness {
    fn new(probe: Probe, kind: ProbeKind, script: Vec<FakeAnswer>) -> Self {
        Self::spawn(probe, kind, script, None)
    }

    fn spawn(
        probe: Probe,
        kind: ProbeKind,
        script: Vec<FakeAnswer>,
        started: Option<watch::Receiver<bool>>,
    ) -> Self {
        let fake = Arc::new(FakeExec::new(script));
        let (tx, updates) = mpsc::channel(16);
        let (target, exec) = (local_target(), fake.clone() as Arc<dyn ExecRunner>);
        let (uid, name) = ("uid-1".to_string(), "app".to_string());
        let worker = match started {
            None => spawn_worker(probe, kind, target, exec, tx, uid, name),
            Some(rx) => spawn_gated_worker(probe, kind, target, exec, tx, uid, name, rx),
        };
        Harness {
            fake,
            updates,
            worker,
            begin: Instant::now(),
        }
    }

    /// The next update's result and when it came (seconds since spawn).
    async fn next(&mut self) -> (bool, u64) {
        let update = self.updates.recv().await.expect("worker sent an update");
        assert_eq!(update.pod_uid, "uid-1");
        assert_eq!(update.container_name, "app");
        (update.result, self.begin.elapsed().as_secs())
    }

    /// No update arrives within `secs` (a finished worker closes the channel).
    async fn quiet_for(&mut self, secs: u64) {
        let got = tokio::time::timeout(Duration::from_secs(secs), self.updates.recv()).await;
        assert!(!matches!(got, Ok(Some(_))), "unexpected update {got:?}");
    }

    fn calls(&self) -> usize {
        self.fake.calls.lock().unwrap().len()
    }
}

fn probe_with(period: i32, delay: i32, success: i32, failure: i32) -> Probe {
    Probe {
        period_seconds: Some(period),
        initial_delay_seconds: Some(delay),
        success_threshold: Some(success),
        failure_threshold: Some(failure),
        ..exec_probe(&["check"])
    }
}

#[test]
fn threshold_state_reports_first_decision_and_changes() {
    // (attempts, success threshold, failure threshold, expected reports)
    type Case = (&'static [bool], u32, u32, &'static [Option<bool>]);
    let cases: &[Case] = &[
        (
            &[false, false, false, true, true, false],
            1,
            3,
            &[None, None, Some(false), Some(true), None, None],
        ),
        (
            &[true, false, true, true, true],
            2,
            1,
            &[None, Some(false), None, Some(true), None],
        ),
        (
            &[false, true, false, false, true],
            1,
            2,
            &[None, Some(true), None, Some(false), Some(true)],
        ),
    ];
    for (attempts, s, f, want) in cases {
        let mut state = ThresholdState::new();
        let got: Vec<Option<bool>> = attempts.iter().map(|&a| state.observe(a, *s, *f)).collect();
        assert_eq!(&got, want, "{attempts:?} s={s} f={f}");
    }
}

#[tokio::test(start_paused = true)]
async fn readiness_reports_after_failure_threshold_then_on_change() {
    let script = vec![FAIL, FAIL, FAIL, OK, OK, FAIL, FAIL, FAIL];
    let mut h = Harness::new(probe_with(10, 0, 1, 3), ProbeKind::Readiness, script);
    // The first decisive result is sent even though it equals the initial
    // "not ready"; probes run at 0, 10, 20, ...
    assert_eq!(h.next().await, (false, 20));
    assert_eq!(h.next().await, (true, 30));
    assert_eq!(h.next().await, (false, 70));
    assert_eq!(h.calls(), 8);
    assert!(!h.worker.is_finished());
}

#[tokio::test(start_paused = true)]
async fn success_threshold_needs_consecutive_successes() {
    let script = vec![OK, FAIL, OK, OK];
    let mut h = Harness::new(probe_with(5, 0, 2, 1), ProbeKind::Readiness, script);
    assert_eq!(h.next().await, (false, 5));
    assert_eq!(h.next().await, (true, 15));
}

#[tokio::test(start_paused = true)]
async fn initial_delay_skips_ticks_and_liveness_failure_ends_the_worker() {
    let script = vec![FAIL, FAIL, FAIL, OK];
    let mut h = Harness::new(probe_with(10, 15, 1, 3), ProbeKind::Liveness, script);
    // Ticks at 0 and 10 fall inside the 15 s delay; probes at 20, 30, 40.
    assert_eq!(h.next().await, (false, 40));
    h.quiet_for(60).await;
    assert_eq!(h.calls(), 3);
    assert!(h.worker.is_finished());
}

#[tokio::test(start_paused = true)]
async fn default_timing_is_used_for_unset_fields() {
    let script = vec![FAIL, FAIL, FAIL];
    let mut h = Harness::new(exec_probe(&["check"]), ProbeKind::Liveness, script);
    assert_eq!(h.next().await, (false, 20));
}

#[tokio::test(start_paused = true)]
async fn errored_probes_are_retried_then_thrown_away() {
    // Tick 0: three errors (all retries) count for nothing. Tick 10: error,
    // then success on the retry.
    let script = vec![ERR, ERR, ERR, ERR, OK];
    let mut h = Harness::new(probe_with(10, 0, 1, 1), ProbeKind::Readiness, script);
    assert_eq!(h.next().await, (true, 10));
    assert_eq!(h.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn readiness_waits_for_startup_and_probes_when_started() {
    let (started_tx, started_rx) = watch::channel(false);
    let mut h = Harness::spawn(
        probe_with(10, 0, 1, 3),
        ProbeKind::Readiness,
        vec![OK],
        Some(started_rx),
    );
    h.quiet_for(35).await;
    assert_eq!(h.calls(), 0);
    started_tx.send(true).unwrap();
    // Probed at once, not at the next tick (40).
    assert_eq!(h.next().await, (true, 35));
}

#[tokio::test(start_paused = true)]
async fn startup_reports_once_and_stops() {
    let mut h = Harness::new(
        probe_with(1, 0, 1, 30),
        ProbeKind::Startup,
        vec![FAIL, FAIL, OK],
    );
    assert_eq!(h.next().await, (true, 2));
    h.quiet_for(10).await;
    assert_eq!(h.calls(), 3);
    assert!(h.worker.is_finished());

    let mut h = Harness::new(probe_with(1, 0, 1, 2), ProbeKind::Startup, vec![FAIL, FAIL]);
    assert_eq!(h.next().await, (false, 1));
    h.quiet_for(10).await;
    assert!(h.worker.is_finished());
}

#[tokio::test(start_paused = true)]
async fn stop_and_trigger() {
    let mut h = Harness::new(
        probe_with(100, 0, 1, 1),
        ProbeKind::Readiness,
        vec![FAIL, OK],
    );
    assert_eq!(h.next().await, (false, 0));
    tokio::time::sleep(Duration::from_secs(7)).await;
    h.worker.trigger();
    assert_eq!(h.next().await, (true, 7));
    let Harness {
        fake,
        mut updates,
        worker,
        ..
    } = h;
    worker.stop();
    tokio::time::sleep(Duration::from_secs(500)).await;
    assert_eq!(fake.calls.lock().unwrap().len(), 2);
    // The worker's sender is gone with it.
    assert!(updates.recv().await.is_none());
}

#[test]
fn events_use_upstream_wording() {
    let cases = [
        (ProbeOutcome::Success, None),
        (
            ProbeOutcome::Failure("HTTP probe failed with statuscode: 500".into()),
            Some((
                "Unhealthy",
                "Liveness probe failed: HTTP probe failed with statuscode: 500",
            )),
        ),
        (
            ProbeOutcome::Warning("Probe terminated redirects, Response body: ".into()),
            Some((
                "ProbeWarning",
                "Liveness probe warning: Probe terminated redirects, Response body: ",
            )),
        ),
        (
            ProbeOutcome::Unknown("strconv.Atoi: parsing \"http\": invalid syntax".into()),
            Some((
                "Unhealthy",
                "Liveness probe errored and resulted in unknown state: strconv.Atoi: parsing \"http\": invalid syntax",
            )),
        ),
    ];
    for (outcome, want) in cases {
        let got = ProbeEvent::for_outcome("u", "c", ProbeKind::Liveness, &outcome)
            .map(|e| (e.reason, e.message));
        assert_eq!(got, want.map(|(r, m)| (r, m.to_string())), "{outcome:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn worker_sends_an_event_per_unhealthy_attempt() {
    let fake = Arc::new(FakeExec::new(vec![FAIL, ERR, ERR, ERR, OK]));
    let (tx, mut updates) = mpsc::channel(4);
    let (events_tx, mut events) = mpsc::channel(8);
    let _worker = WorkerSpec::new(
        probe_with(10, 0, 1, 3),
        ProbeKind::Readiness,
        local_target(),
        fake,
        tx,
        "uid-1".into(),
        "app".into(),
    )
    .events(events_tx)
    .spawn();
    assert!(updates.recv().await.unwrap().result);
    let first = events.recv().await.unwrap();
    assert_eq!(
        (first.reason, first.message.as_str()),
        ("Unhealthy", "Readiness probe failed: unhealthy")
    );
    let second = events.recv().await.unwrap();
    assert_eq!(
        second.message,
        "Readiness probe errored and resulted in unknown state: exec failed"
    );
    // The success at 20 s raises no event.
    assert!(events.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn initial_delay_counts_from_when_the_container_started() {
    let (tx, mut updates) = mpsc::channel(4);
    let now = Instant::now();
    let since = now.checked_sub(Duration::from_secs(30)).unwrap_or(now);
    let delay = i32::try_from((now - since).as_secs()).unwrap() / 2;
    let _worker = WorkerSpec::new(
        probe_with(10, delay, 1, 1),
        ProbeKind::Readiness,
        local_target(),
        Arc::new(FakeExec::new(vec![OK])),
        tx,
        "uid-1".into(),
        "app".into(),
    )
    .running_since(since)
    .spawn();
    // Started long enough ago: the very first tick probes.
    assert!(updates.recv().await.unwrap().result);
    assert_eq!(now.elapsed(), Duration::ZERO);
}
