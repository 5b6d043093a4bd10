#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::*;

const NOW: &str = "2026-01-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// A pod built from short attributes: node, phase, ready since (seconds
/// before NOW), restarts, created (seconds before NOW), deletion cost.
#[derive(Default, Clone)]
struct P {
    name: &'static str,
    node: &'static str,
    phase: &'static str,
    ready_for: Option<i64>,
    restarts: i32,
    age: Option<i64>,
    cost: Option<&'static str>,
}

fn ts(secs_ago: i64) -> String {
    (now() - k8s_openapi::jiff::SignedDuration::from_secs(secs_ago)).to_string()
}

fn pod(p: &P) -> Arc<CachedPod> {
    let mut v = json!({
        "metadata": {"name": p.name, "uid": format!("uid-{}", p.name)},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": p.phase,
                   "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false,
                                          "restartCount": p.restarts}]},
    });
    if !p.node.is_empty() {
        v["spec"]["nodeName"] = json!(p.node);
    }
    if let Some(age) = p.age {
        v["metadata"]["creationTimestamp"] = json!(ts(age));
    }
    if let Some(c) = p.cost {
        v["metadata"]["annotations"] = json!({POD_DELETION_COST: c});
    }
    let ready = match p.ready_for {
        Some(s) => json!({"type": "Ready", "status": "True", "lastTransitionTime": ts(s)}),
        None => json!({"type": "Ready", "status": "False"}),
    };
    v["status"]["conditions"] = json!([ready]);
    Arc::new(serde_json::from_value(v).unwrap())
}

fn base(name: &'static str) -> P {
    P {
        name,
        node: "n1",
        phase: "Running",
        ready_for: Some(1000),
        age: Some(2000),
        ..P::default()
    }
}

#[test]
fn pairs_order_as_upstream() {
    // (reason, first to delete, second); both have rank 0 unless stated.
    let cases: Vec<(&str, P, P)> = vec![
        (
            "unassigned before assigned",
            P {
                node: "",
                phase: "Pending",
                ready_for: None,
                ..base("a")
            },
            base("b"),
        ),
        (
            "pending before running",
            P {
                phase: "Pending",
                ready_for: None,
                ..base("a")
            },
            base("b"),
        ),
        (
            "pending before unknown",
            P {
                phase: "Pending",
                ..base("a")
            },
            P {
                phase: "Unknown",
                ..base("b")
            },
        ),
        (
            "unknown before running",
            P {
                phase: "Unknown",
                ..base("a")
            },
            base("b"),
        ),
        (
            "not ready before ready",
            P {
                ready_for: None,
                ..base("a")
            },
            base("b"),
        ),
        (
            "lower deletion cost first",
            P {
                cost: Some("-5"),
                ..base("a")
            },
            base("b"),
        ),
        (
            "deletion cost beats readiness age",
            P {
                cost: Some("1"),
                ready_for: Some(100_000),
                ..base("a")
            },
            P {
                cost: Some("2"),
                ready_for: Some(1),
                ..base("b")
            },
        ),
        (
            "ready for less time first (different log2 buckets)",
            P {
                ready_for: Some(10),
                ..base("a")
            },
            P {
                ready_for: Some(10_000),
                ..base("b")
            },
        ),
        (
            "more restarts first",
            P {
                restarts: 3,
                ..base("a")
            },
            base("b"),
        ),
        (
            "newer first (different buckets)",
            P {
                age: Some(100),
                ready_for: None,
                ..base("a")
            },
            P {
                age: Some(100_000),
                ready_for: None,
                ..base("b")
            },
        ),
        (
            "missing creation time first",
            P {
                age: None,
                ready_for: None,
                ..base("a")
            },
            P {
                ready_for: None,
                ..base("b")
            },
        ),
        (
            "same age bucket: lower uid first",
            P {
                age: Some(1500),
                ready_for: None,
                ..base("a")
            },
            P {
                age: Some(1600),
                ready_for: None,
                ..base("b")
            },
        ),
        (
            "same ready bucket decides by uid before restarts",
            P {
                ready_for: Some(1500),
                ..base("a")
            },
            P {
                ready_for: Some(1600),
                restarts: 9,
                ..base("b")
            },
        ),
    ];
    for (why, first, second) in cases {
        let (a, b) = (pod(&first), pod(&second));
        assert_eq!(compare(&a, 0, &b, 0, Some(now())), Ordering::Less, "{why}");
        assert_eq!(
            compare(&b, 0, &a, 0, Some(now())),
            Ordering::Greater,
            "{why} (reversed)"
        );
    }
}

#[test]
fn more_co_located_pods_first() {
    let (a, b) = (pod(&base("a")), pod(&base("b")));
    assert_eq!(compare(&a, 3, &b, 1, Some(now())), Ordering::Less);
    assert_eq!(compare(&a, 1, &b, 3, Some(now())), Ordering::Greater);
    // Readiness beats rank.
    let nr = pod(&P {
        ready_for: None,
        ..base("c")
    });
    assert_eq!(compare(&nr, 0, &a, 5, Some(now())), Ordering::Less);
}

#[test]
fn equal_pods_tie() {
    let (a, b) = (pod(&base("a")), pod(&base("a")));
    assert_eq!(compare(&a, 0, &b, 0, Some(now())), Ordering::Equal);
}

#[test]
fn pods_to_delete_ranks_by_siblings_on_the_node() {
    // Two of ours on n1 and one on n2; a sibling's pod also sits on n2,
    // and a terminated one on n3 does not count.
    let ours = vec![
        pod(&P {
            node: "n1",
            ..base("a")
        }),
        pod(&P {
            node: "n1",
            ..base("b")
        }),
        pod(&P {
            node: "n2",
            ..base("c")
        }),
        pod(&P {
            node: "n3",
            ..base("d")
        }),
    ];
    let mut related = ours.clone();
    related.push(pod(&P {
        node: "n2",
        ..base("s1")
    }));
    related.push(pod(&P {
        node: "n2",
        ..base("s2")
    }));
    related.push(pod(&P {
        node: "n3",
        phase: "Succeeded",
        ..base("s3")
    }));
    let names = |v: Vec<Arc<CachedPod>>| -> Vec<String> {
        v.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
    };
    // n2 holds three related pods: c goes first, then n1's two (by uid).
    assert_eq!(names(pods_to_delete(&ours, &related, 1, now())), ["c"]);
    assert_eq!(
        names(pods_to_delete(&ours, &related, 3, now())),
        ["c", "a", "b"]
    );
    assert_eq!(pods_to_delete(&ours, &related, 9, now()).len(), 4);
}

#[test]
fn whole_sort_puts_worst_pods_first() {
    let pods = vec![
        pod(&base("running-old")),
        pod(&P {
            node: "",
            phase: "Pending",
            ready_for: None,
            ..base("unassigned")
        }),
        pod(&P {
            ready_for: None,
            ..base("not-ready")
        }),
        pod(&P {
            phase: "Pending",
            ready_for: None,
            ..base("pending")
        }),
        pod(&P {
            ready_for: Some(5),
            ..base("just-ready")
        }),
    ];
    let got: Vec<String> = pods_to_delete(&pods, &pods, 4, now())
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(got, ["unassigned", "pending", "not-ready", "just-ready"]);
}

#[test]
fn bad_deletion_cost_counts_as_zero() {
    let p = pod(&P {
        cost: Some("lots"),
        ..base("a")
    });
    assert_eq!(deletion_cost(&p), 0);
    assert_eq!(
        deletion_cost(&pod(&P {
            cost: Some("-7"),
            ..base("a")
        })),
        -7
    );
}
