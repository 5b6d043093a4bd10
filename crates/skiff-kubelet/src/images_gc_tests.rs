use super::*;

fn image(id: &str, size: u64) -> ImageInfo {
    ImageInfo {
        id: id.into(),
        repo_tags: vec![format!("example.com/{id}:latest")],
        repo_digests: vec![format!("example.com/{id}@sha256:{id}{id}")],
        size,
        pinned: false,
    }
}

#[test]
fn policy_validation_as_upstream() {
    let p = |high, low| ImageGcPolicy {
        high_threshold_percent: high,
        low_threshold_percent: low,
        min_age: Duration::ZERO,
    };
    let cases = [
        (p(85, 80), None),
        (p(100, 80), None),
        (p(1, 0), None),
        (
            p(101, 80),
            Some(
                "imageGCHighThresholdPercent (--image-gc-high-threshold) 101 must be between 0 and 100, inclusive",
            ),
        ),
        (
            p(85, -1),
            Some(
                "imageGCLowThresholdPercent (--image-gc-low-threshold) -1 must be between 0 and 100, inclusive",
            ),
        ),
        (
            p(80, 80),
            Some(
                "imageGCLowThresholdPercent (--image-gc-low-threshold) 80 must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) 80",
            ),
        ),
        (p(50, 90), Some("must be less than")),
    ];
    for (policy, want) in cases {
        match (policy.validate(), want) {
            (Ok(()), None) => {}
            (Err(e), Some(w)) => {
                assert!(e.starts_with("invalid configuration: "), "{e}");
                assert!(e.contains(w), "{policy:?}: {e}");
            }
            (got, want) => panic!("{policy:?}: got {got:?}, want {want:?}"),
        }
    }
    assert!(ImageGcPolicy::default().validate().is_ok());
    assert!(ImageGcPolicy::default().enabled());
    assert!(!p(100, 80).enabled());
    assert_eq!(ImageGcPolicy::default().min_age, Duration::from_secs(120));
}

#[test]
fn amount_to_free_between_thresholds() {
    let fs = |capacity_bytes, available_bytes| FsCapacity {
        capacity_bytes,
        available_bytes,
    };
    let policy = ImageGcPolicy::default();
    let cases = [
        ("under the high threshold", fs(1000, 160), None),
        (
            "15.1% free is 85% used: integer percent as upstream",
            fs(1000, 151),
            Some(49),
        ),
        ("exactly at 85%", fs(1000, 150), Some(200 - 150)),
        ("full", fs(1000, 0), Some(200)),
        ("available above capacity is clamped", fs(1000, 5000), None),
        ("no capacity", fs(0, 0), None),
        (
            "integer percent rounds as upstream",
            fs(1000, 159),
            Some(200 - 159),
        ),
    ];
    for (name, fs, want) in cases {
        assert_eq!(amount_to_free(&policy, fs), want, "{name}");
    }
    let low = ImageGcPolicy {
        high_threshold_percent: 0,
        low_threshold_percent: 0,
        min_age: Duration::ZERO,
    };
    assert_eq!(amount_to_free(&low, fs(100, 100)), Some(0));
    assert_eq!(amount_to_free(&low, fs(100, 40)), Some(60));
}

/// The eviction order and where a walk stops, over a history of detections.
#[tokio::test(start_paused = true)]
async fn eviction_order_and_stopping() {
    let mut state = ImageGcState::default();
    let a = image("a", 100);
    let f = image("f", 150);
    let b = image("b", 200);
    let c = image("c", 300);
    let mut d = image("d", 50);
    d.pinned = true;
    let e = image("e", 400);
    // Start-up: a, f, d are already there, nothing runs.
    let start = Instant::now();
    state.detect(&[a.clone(), f.clone(), d.clone()], &[], None);
    assert_eq!(state.record("a").unwrap().first_detected, None);

    // b and c appear; a container uses b (by repo digest) and c (by tag).
    tokio::time::advance(Duration::from_secs(60)).await;
    let t1 = Instant::now();
    let all = vec![a.clone(), f.clone(), d.clone(), b.clone(), c.clone()];
    let in_use = state.detect(
        &all,
        &[b.repo_digests[0].clone(), c.repo_tags[0].clone()],
        Some(t1),
    );
    assert_eq!(in_use, HashSet::from(["b".to_owned(), "c".to_owned()]));
    assert_eq!(state.record("b").unwrap().last_used, Some(t1));

    // Later: b's container is gone, c's still runs (by ID), e was just pulled.
    tokio::time::advance(Duration::from_secs(600)).await;
    let now = Instant::now();
    let mut all = all;
    all.push(e.clone());
    let in_use = state.detect(&all, std::slice::from_ref(&c.id), Some(now));
    assert_eq!(in_use, HashSet::from(["c".to_owned()]));
    assert!(now.duration_since(start) > DEFAULT_IMAGE_MINIMUM_GC_AGE);

    let order = state.eviction_order(&all, &in_use, now, DEFAULT_IMAGE_MINIMUM_GC_AGE);
    let ids: Vec<&str> = order.iter().map(|c| c.id.as_str()).collect();
    // Never used first (start-up ones tie, by ID), then b (used at t1);
    // c in use, d pinned, e too young.
    assert_eq!(ids, ["a", "f", "b"]);

    // A min age longer than b's age keeps b too (it was detected at t1).
    let strict = state.eviction_order(&all, &in_use, now, Duration::from_secs(601));
    let ids: Vec<&str> = strict.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a", "f"]);

    struct Case {
        name: &'static str,
        to_free: u64,
        failing: &'static [&'static str],
        removed: &'static [&'static str],
        freed: u64,
        errors: usize,
    }
    let cases = [
        Case {
            name: "nothing to free",
            to_free: 0,
            failing: &[],
            removed: &[],
            freed: 0,
            errors: 0,
        },
        Case {
            name: "one is enough",
            to_free: 100,
            failing: &[],
            removed: &["a"],
            freed: 100,
            errors: 0,
        },
        Case {
            name: "stops once enough",
            to_free: 101,
            failing: &[],
            removed: &["a", "f"],
            freed: 250,
            errors: 0,
        },
        Case {
            name: "not enough eligible",
            to_free: 10_000,
            failing: &[],
            removed: &["a", "f", "b"],
            freed: 450,
            errors: 0,
        },
        Case {
            name: "goes past a failure",
            to_free: 101,
            failing: &["a"],
            removed: &["f"],
            freed: 150,
            errors: 1,
        },
    ];
    for case in cases {
        let mut walk = FreeWalk::new(order.clone(), case.to_free);
        while let Some(c) = walk.next_candidate() {
            let result = if case.failing.contains(&c.id.as_str()) {
                Err(format!("{} busy", c.id))
            } else {
                Ok(())
            };
            walk.report(&c, result);
        }
        let out = walk.finish();
        assert_eq!(out.removed, case.removed, "{}", case.name);
        assert_eq!(out.freed, case.freed, "{}", case.name);
        assert_eq!(out.errors.len(), case.errors, "{}", case.name);
    }

    // Removed images leave the records; vanished ones too.
    state.forget("a");
    assert!(state.record("a").is_none());
    state.detect(std::slice::from_ref(&c), &[], Some(now));
    assert!(state.record("f").is_none() && state.record("c").is_some());
}

#[tokio::test(start_paused = true)]
async fn used_at_the_gc_instant_is_not_evicted() {
    let mut state = ImageGcState::default();
    let a = image("a", 1);
    state.detect(std::slice::from_ref(&a), &[], None);
    let now = Instant::now();
    // Used by a container that went away between detection and eviction.
    state.detect(
        std::slice::from_ref(&a),
        std::slice::from_ref(&a.id),
        Some(now),
    );
    let order = state.eviction_order(
        std::slice::from_ref(&a),
        &HashSet::new(),
        now,
        Duration::ZERO,
    );
    assert!(order.is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    let later = state.eviction_order(&[a], &HashSet::new(), Instant::now(), Duration::ZERO);
    assert_eq!(later.len(), 1);
}

#[test]
fn statvfs_reports_a_real_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = StatvfsFs.stat(tmp.path()).unwrap();
    assert!(fs.capacity_bytes > 0);
    assert!(fs.available_bytes <= fs.capacity_bytes);
    assert!(StatvfsFs.stat(&tmp.path().join("missing")).is_err());
}

#[test]
fn events_are_about_the_node() {
    let r = node_reference("node-a");
    assert_eq!(r.kind.as_deref(), Some("Node"));
    assert_eq!(r.name.as_deref(), Some("node-a"));
    assert_eq!(r.uid.as_deref(), Some("node-a"));
}
