//! A non-blocking events.k8s.io/v1 event recorder: callers hand events to a
//! bounded channel and go on; one task writes them (with kube-runtime's
//! series aggregation). When the channel is full the event is dropped and
//! logged, so a slow API server never stalls the caller.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

/// Events queued at most before new ones are dropped.
pub const DEFAULT_EVENT_QUEUE: usize = 1000;

/// One event to write.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    /// The object the event is about.
    pub regarding: ObjectReference,
    /// `Normal` (true) or `Warning` (false).
    pub normal: bool,
    /// Short reason, e.g. `FailedScheduling`.
    pub reason: String,
    /// What was attempted, e.g. `Scheduling`.
    pub action: String,
    /// The human message.
    pub note: String,
}

/// Where a recorder's events go: the API server, or a channel in tests.
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Queues `event` without waiting.
    fn record(&self, event: PendingEvent);
}

/// Queues events for a background writer; cloning is cheap.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<PendingEvent>,
}

impl EventRecorder {
    /// A recorder whose events a task spawned here writes through `client`
    /// as `reporting_controller` / `reporting_instance`. The task ends when
    /// every clone of the recorder is dropped.
    pub fn spawn(
        client: kube::Client,
        reporting_controller: &str,
        reporting_instance: &str,
        capacity: usize,
    ) -> EventRecorder {
        let (tx, mut rx) = mpsc::channel::<PendingEvent>(capacity.max(1));
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: reporting_controller.to_owned(),
                instance: Some(reporting_instance.to_owned()),
            },
        );
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let event = Event {
                    type_: if ev.normal {
                        EventType::Normal
                    } else {
                        EventType::Warning
                    },
                    reason: ev.reason,
                    note: Some(truncate_note(ev.note)),
                    action: ev.action,
                    secondary: None,
                };
                if let Err(err) = recorder.publish(&event, &ev.regarding).await {
                    tracing::warn!(error = %err, reason = %event.reason, "cannot write event");
                }
            }
        });
        EventRecorder { tx }
    }

    /// A recorder whose events go to the returned receiver (tests).
    pub fn channel(capacity: usize) -> (EventRecorder, mpsc::Receiver<PendingEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (EventRecorder { tx }, rx)
    }
}

impl EventSink for EventRecorder {
    fn record(&self, event: PendingEvent) {
        if let Err(err) = self.tx.try_send(event) {
            let (kind, ev) = match err {
                mpsc::error::TrySendError::Full(ev) => ("full", ev),
                mpsc::error::TrySendError::Closed(ev) => ("closed", ev),
            };
            tracing::warn!(queue = kind, reason = %ev.reason, note = %ev.note, "dropping event");
        }
    }
}

/// Events.k8s.io notes are limited to 1 KiB (upstream truncates, as here,
/// on a character boundary).
fn truncate_note(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ev(reason: &str) -> PendingEvent {
        PendingEvent {
            regarding: ObjectReference::default(),
            normal: true,
            reason: reason.into(),
            action: "Binding".into(),
            note: "n".into(),
        }
    }

    #[tokio::test]
    async fn full_queue_drops_instead_of_blocking() {
        let (rec, mut rx) = EventRecorder::channel(2);
        rec.record(ev("a"));
        rec.record(ev("b"));
        rec.record(ev("c"));
        assert_eq!(rx.recv().await.unwrap().reason, "a");
        assert_eq!(rx.recv().await.unwrap().reason, "b");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn notes_are_truncated_to_one_kib() {
        assert_eq!(truncate_note("short".into()), "short");
        let long = "é".repeat(1000);
        let t = truncate_note(long);
        assert!(t.len() <= 1024 && t.ends_with("..."));
    }
}
