//! A non-blocking events.k8s.io/v1 event recorder: callers hand events to a
//! bounded channel and go on; a task takes them off and writes up to
//! [`MAX_WRITES_IN_FLIGHT`] at once (client-go's events library writes each
//! in a goroutine of its own), so a burst of events waits for the API
//! server's throughput, not for its latency times their number. A repeat of
//! an event written in the last six minutes (same type, action, reason and
//! object, as client-go's events library keys them) becomes a series: the
//! writer patches the first event's `series` instead of creating another. The
//! writer remembers a bounded number of recent events, so a controller that
//! writes tens of thousands keeps a few MB at most. When the channel is full
//! the event is dropped, so a slow API server never stalls the caller; the
//! drops are logged at most once every ten seconds, with their count, so a
//! busy scheduler does not also flood its log.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

use crate::rate::TokenBucket;

/// Events queued at most before new ones are dropped.
pub const DEFAULT_EVENT_QUEUE: usize = 1000;

/// Event writes (creations and series patches) in flight at once. At most
/// one per event: its repeats meanwhile only count, and the count goes out
/// when that write is done.
pub const MAX_WRITES_IN_FLIGHT: usize = 64;

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
    drops: Arc<Drops>,
}

/// How often a recorder that keeps dropping events logs it.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Events dropped since the last log line about them.
#[derive(Debug, Default)]
struct Drops(Mutex<DropState>);

#[derive(Debug, Default)]
struct DropState {
    unreported: u64,
    last_report: Option<Instant>,
}

impl Drops {
    /// Counts one dropped event at `now`; when a report is due (the first
    /// drop, then once per [`DROP_REPORT_EVERY`]) returns how many events
    /// it covers, this one included.
    fn count(&self, now: Instant) -> Option<u64> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.unreported += 1;
        let due = state
            .last_report
            .is_none_or(|at| now.saturating_duration_since(at) >= DROP_REPORT_EVERY);
        if !due {
            return None;
        }
        state.last_report = Some(now);
        Some(std::mem::take(&mut state.unreported))
    }
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
        // A bucket refilled at no rate never makes the writer wait.
        Self::spawn_limited(
            client,
            reporting_controller,
            reporting_instance,
            capacity,
            TokenBucket::new(0.0, 0),
        )
    }

    /// [`EventRecorder::spawn`] whose writer sends at most `limit`'s rate of
    /// requests (the kubelet's `--event-qps` / `--event-burst`, which limit
    /// its event client as upstream's do; a rate of 0 is no limit); events
    /// wait in the queue meanwhile.
    pub fn spawn_limited(
        client: kube::Client,
        reporting_controller: &str,
        reporting_instance: &str,
        capacity: usize,
        mut limit: TokenBucket,
    ) -> EventRecorder {
        let (tx, mut rx) = mpsc::channel::<PendingEvent>(capacity.max(1));
        let writer = Arc::new(EventWriter {
            client,
            controller: reporting_controller.to_owned(),
            instance: reporting_instance.to_owned(),
            recent: Mutex::new(RecentEvents::new(MAX_REMEMBERED)),
        });
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_WRITES_IN_FLIGHT));
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let wait = limit.reserve(tokio::time::Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                // Events wait in the channel (and past its capacity are
                // dropped) while every slot is taken.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer.write(ev).await;
                    drop(slot);
                });
            }
        });
        EventRecorder {
            tx,
            drops: Arc::default(),
        }
    }

    /// A recorder whose events go to the returned receiver (tests).
    pub fn channel(capacity: usize) -> (EventRecorder, mpsc::Receiver<PendingEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let rec = EventRecorder {
            tx,
            drops: Arc::default(),
        };
        (rec, rx)
    }
}

impl EventSink for EventRecorder {
    fn record(&self, event: PendingEvent) {
        if let Err(err) = self.tx.try_send(event) {
            let (kind, ev) = match err {
                mpsc::error::TrySendError::Full(ev) => ("full", ev),
                mpsc::error::TrySendError::Closed(ev) => ("closed", ev),
            };
            if let Some(dropped) = self.drops.count(Instant::now()) {
                tracing::warn!(
                    queue = kind,
                    dropped,
                    last.reason = %ev.reason,
                    last.note = %ev.note,
                    "dropping events"
                );
            }
        }
    }
}

/// How long a written event can still gain a series (client-go's events
/// library finishes a series after six minutes without a repeat).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Recent events remembered at most (client-go's event correlator keeps an
/// LRU cache of 4,096).
const MAX_REMEMBERED: usize = 4096;

/// What makes two events the same one repeated: client-go compares the
/// whole object reference, so the object at another resourceVersion is
/// another event (a StatefulSet's successive "create Pod" notes stay
/// apart). Kept as a 64-bit hash of those fields under a per-process
/// random key: a full key is ten strings, and the cache holds thousands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct EventKey(u64);

/// The per-process hash key of [`EventKey`]s (random, so that nobody can
/// choose object names whose events fold into one series).
static KEY_HASHER: std::sync::LazyLock<std::hash::RandomState> =
    std::sync::LazyLock::new(std::hash::RandomState::new);

impl EventKey {
    fn of(ev: &PendingEvent) -> EventKey {
        let r = &ev.regarding;
        EventKey(KEY_HASHER.hash_one((
            ev.normal,
            &ev.action,
            &ev.reason,
            [
                &r.api_version,
                &r.kind,
                &r.namespace,
                &r.name,
                &r.uid,
                &r.resource_version,
                &r.field_path,
            ],
        )))
    }
}

/// An event written recently: where it is and how often it happened.
#[derive(Debug, Clone)]
struct Written {
    namespace: String,
    /// Empty until its creation succeeds.
    name: String,
    /// How often it happened.
    count: i32,
    /// The count the API server has (1 once created, then the series').
    sent: i32,
    /// A write of it is in flight: repeats only count meanwhile.
    busy: bool,
    last_seen: Instant,
}

impl Written {
    /// Its series as the API server should have it.
    fn series(&self) -> Series {
        Series {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            count: self.count,
        }
    }

    /// A first occurrence, about to be created.
    fn creating(now: Instant) -> Written {
        Written {
            namespace: String::new(),
            name: String::new(),
            count: 1,
            sent: 0,
            busy: true,
            last_seen: now,
        }
    }
}

/// The recently written events, forgotten after [`SERIES_WINDOW`] or,
/// beyond `max`, oldest first.
#[derive(Debug)]
struct RecentEvents {
    max: usize,
    entries: HashMap<EventKey, Written>,
    swept: Instant,
}

impl RecentEvents {
    fn new(max: usize) -> RecentEvents {
        RecentEvents {
            max: max.max(1),
            entries: HashMap::new(),
            swept: Instant::now(),
        }
    }

    /// The event `key` names, if written within the window.
    fn get(&mut self, key: &EventKey, now: Instant) -> Option<&mut Written> {
        self.entries
            .get_mut(key)
            .filter(|w| now.duration_since(w.last_seen) < SERIES_WINDOW)
    }

    /// The entry of `key` whatever its age (a write of it just finished).
    fn entry(&mut self, key: &EventKey) -> Option<&mut Written> {
        self.entries.get_mut(key)
    }

    fn forget(&mut self, key: &EventKey) {
        self.entries.remove(key);
    }

    fn remember(&mut self, key: EventKey, written: Written, now: Instant) {
        self.entries.insert(key, written);
        // Expired entries go at most once a minute, or when the cache is
        // full; a full cache of live entries drops its older half.
        if self.entries.len() > self.max || now.duration_since(self.swept) > SWEEP_EVERY {
            self.swept = now;
            self.entries
                .retain(|_, w| now.duration_since(w.last_seen) < SERIES_WINDOW);
            if self.entries.len() > self.max {
                let mut seen: Vec<Instant> = self.entries.values().map(|w| w.last_seen).collect();
                seen.sort_unstable();
                let keep_from = seen[seen.len() / 2];
                self.entries.retain(|_, w| w.last_seen >= keep_from);
            }
        }
    }
}

/// How often expired events are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Writes events through the API, folding repeats into series.
struct EventWriter {
    client: kube::Client,
    controller: String,
    instance: String,
    recent: Mutex<RecentEvents>,
}

/// An event's series as a patch sets it.
struct Series {
    namespace: String,
    name: String,
    count: i32,
}

impl EventWriter {
    fn recent(&self) -> std::sync::MutexGuard<'_, RecentEvents> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `ev`, or only counts it when a write of the same event is in
    /// flight; then patches its series until the API server has its count.
    async fn write(&self, ev: PendingEvent) {
        let now = Instant::now();
        let key = EventKey::of(&ev);
        let repeat = {
            let mut recent = self.recent();
            match recent.get(&key, now) {
                Some(w) => {
                    w.count += 1;
                    w.last_seen = now;
                    if w.busy {
                        return;
                    }
                    w.busy = true;
                    Some(w.series())
                }
                None => {
                    recent.remember(key, Written::creating(now), now);
                    None
                }
            }
        };
        let mut sent = match repeat {
            None => self
                .create(ev)
                .await
                .map(|(namespace, name)| Sent::Created { namespace, name }),
            Some(series) => match self.patch(&series).await {
                Ok(()) => Ok(Sent::Patched {
                    count: series.count,
                }),
                // Gone (the event TTL removed it): start a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => self
                    .create(ev)
                    .await
                    .map(|(namespace, name)| Sent::Recreated { namespace, name }),
                Err(e) => Err(e),
            },
        };
        loop {
            match sent {
                Ok(done) => match self.after_write(&key, done) {
                    Some(series) => {
                        sent = self.patch(&series).await.map(|()| Sent::Patched {
                            count: series.count,
                        });
                    }
                    None => return,
                },
                Err(err) => {
                    tracing::warn!(error = %err, "cannot write event");
                    let mut recent = self.recent();
                    match recent.entry(&key) {
                        // Never created: a repeat tries again.
                        Some(w) if w.name.is_empty() => recent.forget(&key),
                        Some(w) => w.busy = false,
                        None => {}
                    }
                    return;
                }
            }
        }
    }

    /// Records a finished write; the series to patch when repeats came
    /// meanwhile.
    fn after_write(&self, key: &EventKey, sent: Sent) -> Option<Series> {
        let mut recent = self.recent();
        let w = recent.entry(key)?;
        match sent {
            Sent::Created { namespace, name } => {
                w.namespace = namespace;
                w.name = name;
                w.sent = 1;
            }
            Sent::Patched { count } => w.sent = w.sent.max(count),
            // Its series' event was gone: a new one was created.
            Sent::Recreated { namespace, name } => {
                w.namespace = namespace;
                w.name = name;
                w.count = 1;
                w.sent = 1;
            }
        }
        if w.count > w.sent {
            Some(w.series())
        } else {
            w.busy = false;
            None
        }
    }

    /// Sets an event's series. The answer is only checked, not decoded
    /// (see [`EventWriter::create`]).
    async fn patch(&self, series: &Series) -> Result<(), kube::Error> {
        let patch = json!({"series": {
            "count": series.count,
            "lastObservedTime": MicroTime(Timestamp::now()),
        }});
        let request = events_in(&series.namespace)
            .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
            .map_err(kube::Error::BuildRequest)?;
        self.client
            .request::<serde::de::IgnoredAny>(request)
            .await
            .map(drop)
    }

    /// Creates `ev`; its namespace and name.
    async fn create(&self, ev: PendingEvent) -> Result<(String, String), kube::Error> {
        /// The part of the answer a write needs: a whole Event decoded
        /// (with its managedFields) costs more than the rest of the write
        /// on the client's side.
        #[derive(serde::Deserialize)]
        struct Created {
            metadata: Named,
        }
        #[derive(serde::Deserialize)]
        struct Named {
            #[serde(default)]
            name: String,
        }
        let event = self.event(ev);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let body = serde_json::to_vec(&event).map_err(kube::Error::SerdeError)?;
        let request = events_in(&namespace)
            .create(&PostParams::default(), body)
            .map_err(kube::Error::BuildRequest)?;
        let created: Created = self.client.request(request).await?;
        Ok((namespace, created.metadata.name))
    }

    /// The Event object for `ev`: named `<object>.<nanoseconds in hex>`, in
    /// the object's namespace ("default" for cluster-scoped objects).
    fn event(&self, ev: PendingEvent) -> Event {
        let now = Timestamp::now();
        let regarding = ev.regarding;
        let namespace = regarding
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                ..Default::default()
            },
            action: Some(ev.action),
            reason: Some(ev.reason),
            note: Some(truncate_note(ev.note)),
            type_: Some(if ev.normal { "Normal" } else { "Warning" }.to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

/// Requests for the events of `namespace`.
fn events_in(namespace: &str) -> kube::core::Request {
    kube::core::Request::new(Event::url_path(&(), Some(namespace)))
}

/// What a write did.
enum Sent {
    Created { namespace: String, name: String },
    Patched { count: i32 },
    Recreated { namespace: String, name: String },
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
    fn drops_are_reported_once_per_interval_with_their_count() {
        let drops = Drops::default();
        let t0 = Instant::now();
        assert_eq!(drops.count(t0), Some(1));
        assert_eq!(drops.count(t0 + Duration::from_secs(1)), None);
        assert_eq!(drops.count(t0 + Duration::from_secs(9)), None);
        // The report covers the two held back and this one.
        assert_eq!(drops.count(t0 + DROP_REPORT_EVERY), Some(3));
        assert_eq!(drops.count(t0 + DROP_REPORT_EVERY), None);
        assert_eq!(drops.count(t0 + 2 * DROP_REPORT_EVERY), Some(2));
    }

    fn key(name: &str) -> EventKey {
        let mut e = ev("Created");
        e.regarding.name = Some(name.into());
        EventKey::of(&e)
    }

    fn written(name: &str, last_seen: Instant) -> Written {
        Written {
            namespace: "ns".into(),
            name: name.into(),
            count: 1,
            sent: 1,
            busy: false,
            last_seen,
        }
    }

    #[test]
    fn a_repeat_within_six_minutes_is_found_and_later_is_not() {
        let t0 = Instant::now();
        let mut recent = RecentEvents::new(10);
        recent.remember(key("a"), written("a.1", t0), t0);
        assert!(
            recent
                .get(&key("a"), t0 + Duration::from_secs(359))
                .is_some()
        );
        assert!(recent.get(&key("b"), t0).is_none());
        assert!(recent.get(&key("a"), t0 + SERIES_WINDOW).is_none());
        // Another reason or type for the same object is another event.
        let mut warning = ev("Created");
        warning.regarding.name = Some("a".into());
        warning.normal = false;
        assert!(recent.get(&EventKey::of(&warning), t0).is_none());
        // So is the object at another resourceVersion.
        let mut changed = ev("Created");
        changed.regarding.name = Some("a".into());
        changed.regarding.resource_version = Some("2".into());
        assert!(recent.get(&EventKey::of(&changed), t0).is_none());
    }

    #[test]
    fn expired_events_are_swept_and_a_full_cache_keeps_its_newer_half() {
        let t0 = Instant::now();
        let mut recent = RecentEvents::new(4);
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(i as u64);
            recent.remember(key(name), written(name, at), at);
        }
        assert_eq!(recent.entries.len(), 4);
        // A fifth overflows: the older half (a, b) goes.
        let t5 = t0 + Duration::from_secs(5);
        recent.remember(key("e"), written("e", t5), t5);
        let mut kept: Vec<&str> = recent.entries.values().map(|w| w.name.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["c", "d", "e"]);
        // Past the window, the next sweep forgets all but the new one.
        let late = t5 + SERIES_WINDOW;
        recent.remember(key("f"), written("f", late), late);
        let kept: Vec<&str> = recent.entries.values().map(|w| w.name.as_str()).collect();
        assert_eq!(kept, ["f"]);
    }

    /// A writer whose client is never called (the state machine only).
    fn idle_writer() -> EventWriter {
        let unused = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, _>(std::io::Error::other("not called"))
        });
        EventWriter {
            client: kube::Client::new(unused, "default"),
            controller: "c".into(),
            instance: "c-1".into(),
            recent: Mutex::new(RecentEvents::new(10)),
        }
    }

    #[tokio::test]
    async fn repeats_during_a_write_are_sent_when_it_finishes() {
        let writer = idle_writer();
        let now = Instant::now();
        let k = key("a");
        writer.recent().remember(k, Written::creating(now), now);
        // Two repeats while the creation is in flight only count.
        for _ in 0..2 {
            let mut recent = writer.recent();
            let w = recent.get(&k, now).unwrap();
            assert!(w.busy);
            w.count += 1;
        }
        let next = writer.after_write(
            &k,
            Sent::Created {
                namespace: "ns".into(),
                name: "a.1".into(),
            },
        );
        match next {
            Some(Series {
                namespace,
                name,
                count,
            }) => assert_eq!((namespace.as_str(), name.as_str(), count), ("ns", "a.1", 3)),
            None => panic!("the folded repeats must be patched in"),
        }
        assert!(writer.recent().entry(&k).unwrap().busy);
        assert!(writer.after_write(&k, Sent::Patched { count: 3 }).is_none());
        let w = writer.recent().entry(&k).cloned().unwrap();
        assert!(!w.busy);
        assert_eq!((w.count, w.sent), (3, 3));

        // The series' event was gone: the new one starts over at 1.
        writer.recent().entry(&k).unwrap().busy = true;
        let next = writer.after_write(
            &k,
            Sent::Recreated {
                namespace: "ns".into(),
                name: "a.2".into(),
            },
        );
        assert!(next.is_none());
        let w = writer.recent().entry(&k).cloned().unwrap();
        assert_eq!(
            (w.name.as_str(), w.count, w.sent, w.busy),
            ("a.2", 1, 1, false)
        );

        // An entry forgotten meanwhile (swept) gets no more writes.
        writer.recent().forget(&k);
        assert!(writer.after_write(&k, Sent::Patched { count: 4 }).is_none());
    }

    #[test]
    fn notes_are_truncated_to_one_kib() {
        assert_eq!(truncate_note("short".into()), "short");
        let long = "é".repeat(1000);
        let t = truncate_note(long);
        assert!(t.len() <= 1024 && t.ends_with("..."));
    }
}
