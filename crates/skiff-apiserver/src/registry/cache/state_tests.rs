#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use skiff_api::resources;
use skiff_api::selector;

use serde_json::Value;

use super::*;
use crate::registry::set_rv;

const CM: &str = "/registry/configmaps/";

fn cm_value(ns: &str, name: &str, rev: Revision) -> Value {
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}}});
    set_rv(&mut obj, rev);
    obj
}

fn cached(obj: &Value) -> CachedObject {
    CachedObject::new(configmaps(), obj).unwrap()
}

fn cm(ns: &str, name: &str, rev: Revision) -> (String, CachedObject) {
    (format!("{CM}{ns}/{name}"), cached(&cm_value(ns, name, rev)))
}

fn put(ns: &str, name: &str, rev: Revision) -> Change {
    let (key, obj) = cm(ns, name, rev);
    Change::Put { key, rev, obj }
}

fn configmaps() -> &'static ResourceInfo {
    resources::by_gvr("", "v1", "configmaps").unwrap()
}

fn config(watcher_buffer: usize, min_events: usize, max_events: usize) -> CacheConfig {
    CacheConfig {
        watcher_buffer,
        min_events,
        max_events,
        min_age: Duration::from_secs(3600),
    }
}

fn drain(rx: &mut mpsc::Receiver<Arc<CachedEvent>>) -> Vec<(Revision, String)> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        out.push((ev.rev, ev.key.clone()));
    }
    out
}

#[test]
fn not_ready_until_listed() {
    let mut state = CacheState::new(CacheConfig::default());
    assert_eq!(
        state.watch(CM, CM, Start::Objects).unwrap_err(),
        NotServed::NotReady
    );
    let everything = (Selector::everything(), FieldSelector::everything());
    assert!(
        state
            .list(configmaps(), CM, &everything.0, &everything.1, 0)
            .is_none()
    );
    state.replace(7, vec![cm("a", "x", 3)]);
    assert_eq!(state.revision(), 7);
    assert!(state.watch(CM, CM, Start::Objects).is_ok());
}

#[test]
fn resumed_watch_gets_exactly_the_later_events_in_order() {
    let mut state = CacheState::new(CacheConfig::default());
    state.replace(10, vec![cm("a", "x", 5)]);
    for (rev, name) in [(11, "p"), (12, "q"), (13, "r"), (14, "s")] {
        state.apply(put("a", name, rev));
    }
    // Events of other resources move the revision but are not delivered.
    state.apply(Change::Put {
        key: "/registry/secrets/a/s".into(),
        rev: 15,
        obj: cached(&json!({"metadata": {"name": "s"}})),
    });
    let mut reg = state.watch(CM, CM, Start::After(12)).unwrap();
    assert_eq!(reg.revision, 15);
    let Initial::Events(events) = reg.initial else {
        panic!("expected events")
    };
    let revs: Vec<_> = events.iter().map(|e| e.rev).collect();
    assert_eq!(revs, vec![13, 14]);
    state.apply(put("b", "t", 16));
    state.apply(Change::Delete {
        key: format!("{CM}a/p"),
        rev: 17,
    });
    assert_eq!(
        drain(&mut reg.events),
        vec![(16, format!("{CM}b/t")), (17, format!("{CM}a/p"))]
    );
}

#[test]
fn deletes_carry_the_last_state_at_the_delete_revision() {
    let mut state = CacheState::new(CacheConfig::default());
    state.replace(3, vec![cm("a", "x", 2)]);
    let mut reg = state.watch(CM, CM, Start::Now).unwrap();
    state.apply(Change::Delete {
        key: format!("{CM}a/x"),
        rev: 4,
    });
    let ev = reg.events.try_recv().unwrap();
    assert_eq!(ev.kind, EventKind::Delete);
    let last = ev.obj.decode();
    assert_eq!(last["metadata"]["resourceVersion"], "4");
    assert_eq!(last["metadata"]["name"], "x");
}

#[test]
fn namespace_watchers_only_get_their_namespace() {
    let mut state = CacheState::new(CacheConfig::default());
    state.replace(1, vec![cm("a", "x", 1), cm("b", "y", 1)]);
    let reg = state.watch(CM, &format!("{CM}a/"), Start::Objects).unwrap();
    let Initial::Objects(objects) = reg.initial else {
        panic!("expected objects")
    };
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].decode()["metadata"]["name"], "x");
    let mut events = reg.events;
    state.apply(put("b", "z", 2));
    state.apply(put("a", "w", 3));
    assert_eq!(drain(&mut events), vec![(3, format!("{CM}a/w"))]);
}

#[test]
fn window_keeps_at_most_max_events_and_older_revisions_are_too_old() {
    let mut state = CacheState::new(config(16, 2, 3));
    state.replace(100, Vec::new());
    for rev in 101..=110 {
        state.apply(put("a", &format!("o{rev}"), rev));
    }
    // Kept: 108, 109, 110; every event after 107 is there.
    assert_eq!(
        state.watch(CM, CM, Start::After(106)).unwrap_err(),
        NotServed::TooOld { oldest: 107 }
    );
    let reg = state.watch(CM, CM, Start::After(107)).unwrap();
    let Initial::Events(events) = reg.initial else {
        panic!("expected events")
    };
    assert_eq!(
        events.iter().map(|e| e.rev).collect::<Vec<_>>(),
        vec![108, 109, 110]
    );
    assert_eq!(state.stats().events, 3);
}

#[test]
fn slow_watcher_is_closed_without_holding_back_others() {
    let mut state = CacheState::new(config(4, 100, 1000));
    state.replace(1, Vec::new());
    let mut slow = state.watch(CM, CM, Start::Now).unwrap().events;
    let mut fast = state.watch(CM, CM, Start::Now).unwrap().events;
    let mut fast_seen = Vec::new();
    for rev in 2..=20 {
        state.apply(put("a", &format!("o{rev}"), rev));
        fast_seen.extend(drain(&mut fast).into_iter().map(|(r, _)| r));
    }
    assert_eq!(fast_seen, (2..=20).collect::<Vec<_>>());
    // The slow one got what fitted in its buffer, then its channel closed.
    assert_eq!(
        drain(&mut slow)
            .into_iter()
            .map(|(r, _)| r)
            .collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    assert!(slow.is_closed());
    assert_eq!(state.stats().watchers, 1);
}

#[test]
fn relist_closes_watchers_and_replaces_objects() {
    let mut state = CacheState::new(CacheConfig::default());
    state.replace(5, vec![cm("a", "x", 5)]);
    let mut reg = state.watch(CM, CM, Start::Now).unwrap();
    state.replace(9, vec![cm("a", "y", 8)]);
    assert!(reg.events.try_recv().is_err());
    assert!(reg.events.is_closed());
    let everything = (Selector::everything(), FieldSelector::everything());
    let page = state
        .list(configmaps(), CM, &everything.0, &everything.1, 0)
        .unwrap();
    assert_eq!(page.revision, 9);
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].decode()["metadata"]["name"], "y");
    assert_eq!(
        state.watch(CM, CM, Start::After(8)).unwrap_err(),
        NotServed::TooOld { oldest: 9 }
    );
}

#[test]
fn lists_page_in_key_order_with_selectors() {
    let mut state = CacheState::new(CacheConfig::default());
    let objects = (0..10).map(|i| cm("a", &format!("o{i}"), 2)).collect();
    state.replace(2, objects);
    let info = configmaps();
    let none = (Selector::everything(), FieldSelector::everything());
    let page = state.list(info, CM, &none.0, &none.1, 4).unwrap();
    let names: Vec<_> = page
        .items
        .iter()
        .map(|o| o.decode()["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["o0", "o1", "o2", "o3"]);
    assert_eq!(
        page.continue_after.as_deref(),
        Some("/registry/configmaps/a/o3")
    );
    assert_eq!(page.remaining, Some(6));
    // The next page continues after the last key handed out.
    let next = state
        .list_after(
            info,
            CM,
            page.continue_after.as_deref(),
            &none.0,
            &none.1,
            4,
        )
        .unwrap();
    let names: Vec<_> = next
        .items
        .iter()
        .map(|o| o.decode()["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["o4", "o5", "o6", "o7"]);
    assert_eq!(next.remaining, Some(2));
    let labels = selector::labels::parse("app in (o1,o9)").unwrap();
    let page = state.list(info, CM, &labels, &none.1, 1).unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.continue_after.as_deref(),
        Some("/registry/configmaps/a/o1")
    );
    assert_eq!(page.remaining, None, "unknown with selectors");
    let page = state.list(info, CM, &labels, &none.1, 2).unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.continue_after, None, "o9 is the last key");
}

#[test]
fn lines_are_rendered_once_per_output() {
    let mut state = CacheState::new(CacheConfig::default());
    state.replace(1, Vec::new());
    let mut reg = state.watch(CM, CM, Start::Now).unwrap();
    state.apply(put("a", "x", 2));
    let ev = reg.events.try_recv().unwrap();
    let mut renders = 0;
    for _ in 0..3 {
        let line = ev.line(configmaps(), "ADDED", Output::Json, |_| {
            renders += 1;
            Bytes::from_static(b"x")
        });
        assert_eq!(line, Bytes::from_static(b"x"));
    }
    ev.line(configmaps(), "ADDED", Output::Metadata, |_| {
        renders += 1;
        Bytes::new()
    });
    assert_eq!(renders, 2);
}

/// Rough memory use of 100,000 small objects (run by hand with
/// `--ignored --nocapture`; RSS is noisy when tests share the process).
#[test]
#[ignore]
fn memory_of_100k_small_objects() {
    let rss = || {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 4096
    };
    let before = rss();
    let mut state = CacheState::new(CacheConfig::default());
    let objects = (0..100_000)
        .map(|i| {
            let name = format!("cm-{i}");
            let mut obj = cm_value("default", &name, i + 1);
            obj["data"] = json!({"key": "value"});
            obj["metadata"]["uid"] = json!("0b6a2a8e-6e4b-4a39-9d5d-0c8f0e1b2c3d");
            obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            (format!("{CM}default/{name}"), cached(&obj))
        })
        .collect();
    state.replace(100_001, objects);
    for rev in 100_002..110_002 {
        state.apply(put("default", &format!("cm-{}", rev % 100_000), rev));
    }
    let used = rss().saturating_sub(before);
    println!("100k objects + 10k events: {} MiB", used >> 20);
    assert_eq!(state.stats().objects, 100_000);
    assert!(used < 400 << 20, "{} MiB", used >> 20);
}

#[test]
fn events_are_left_to_the_store_but_move_the_revision() {
    let core = resources::by_gvr("", "v1", "events").unwrap();
    let new = resources::by_gvr("events.k8s.io", "v1", "events").unwrap();
    assert!(!super::super::holds(core) && !super::super::holds(new));
    assert!(super::super::holds(configmaps()));
    let mut state = CacheState::new(CacheConfig::default());
    state.replace(10, vec![cm("a", "x", 5)]);
    let ev = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "e", "namespace": "a", "resourceVersion": "11"},
        "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Scheduled"});
    let key = format!("{}a/e", core.storage_prefix);
    state.apply(Change::Put {
        key: key.clone(),
        rev: 11,
        obj: CachedObject::new(core, &ev).unwrap(),
    });
    // The revision moves (consistent reads of other resources wait on it),
    // but nothing is held, listed or watchable for events.
    assert_eq!(state.revision(), 11);
    assert!(state.get(&key).is_none());
    let everything = (Selector::everything(), FieldSelector::everything());
    assert!(
        state
            .list(core, core.storage_prefix, &everything.0, &everything.1, 0)
            .is_none()
    );
    assert_eq!(
        state
            .watch(core.storage_prefix, core.storage_prefix, Start::Objects)
            .unwrap_err(),
        NotServed::NotReady
    );
    assert_eq!(state.stats().objects, 1);
    assert_eq!(state.stats().events, 0);
}
