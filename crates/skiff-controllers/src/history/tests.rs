#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use serde_json::json;

use super::*;

fn rev(
    name: &str,
    revision: i64,
    data: serde_json::Value,
    hash: Option<&str>,
) -> ControllerRevision {
    let mut labels = BTreeMap::new();
    if let Some(h) = hash {
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.to_owned(), h.to_owned());
    }
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("ns".to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

fn owner_ref() -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: "ds".into(),
        uid: "uid-1".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[test]
fn revision_names_cut_long_prefixes() {
    assert_eq!(controller_revision_name("web", "abc"), "web-abc");
    let long = "x".repeat(300);
    let name = controller_revision_name(&long, "h");
    assert_eq!(name.len(), 223 + 2);
    assert!(name.ends_with("x-h"));
    let exact = "y".repeat(223);
    assert_eq!(controller_revision_name(&exact, "h"), format!("{exact}-h"));
}

#[test]
fn hashes_depend_on_data_and_probe_only() {
    let a = rev("a", 1, json!({"spec": {"x": 1}}), None);
    let mut b = rev("b", 7, json!({"spec": {"x": 1}}), Some("zzz"));
    b.metadata.namespace = Some("other".into());
    let c = rev("c", 1, json!({"spec": {"x": 2}}), None);
    let h = |r: &ControllerRevision, p| hash_controller_revision(r, p);
    // Name, number, labels and namespace do not matter; data and probe do.
    assert_eq!(h(&a, None), h(&b, None));
    assert_ne!(h(&a, None), h(&c, None));
    assert_ne!(h(&a, None), h(&a, Some(0)));
    assert_ne!(h(&a, Some(0)), h(&a, Some(1)));
    assert_eq!(h(&a, Some(3)), h(&b, Some(3)));
    // The safe alphabet only: no vowels, no 0/1/3.
    let s = h(&a, Some(1));
    assert!(!s.is_empty());
    assert!(
        s.chars()
            .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch)),
        "{s}"
    );
}

#[test]
fn new_revisions_carry_template_labels_hash_and_owner() {
    let parent = ObjectMeta {
        name: Some("ds".into()),
        namespace: Some("ns".into()),
        uid: Some("uid-1".into()),
        ..ObjectMeta::default()
    };
    let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
    let data = json!({"spec": {"template": {"$patch": "replace"}}});
    let cr = new_controller_revision(
        &parent,
        owner_ref(),
        Some(&labels),
        data.clone(),
        3,
        Some(2),
    );
    let hash = revision_hash(&cr).unwrap().to_owned();
    assert_eq!(hash, hash_controller_revision(&cr, Some(2)));
    assert_eq!(
        cr.metadata.name.as_deref(),
        Some(format!("ds-{hash}").as_str())
    );
    assert_eq!(cr.metadata.namespace.as_deref(), Some("ns"));
    assert_eq!(cr.metadata.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(cr.revision, 3);
    assert_eq!(cr.data.as_ref().unwrap().0, data);
    assert!(is_controlled_by(&cr.metadata, "uid-1"));
    assert!(!is_controlled_by(&cr.metadata, "uid-2"));
    // Another collision count, another name.
    let other = new_controller_revision(&parent, owner_ref(), Some(&labels), data, 3, Some(3));
    assert_ne!(other.metadata.name, cr.metadata.name);
}

#[test]
fn sorting_is_by_revision_then_time_then_name() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let mut t1 = rev("b", 2, json!({}), None);
    t1.metadata.creation_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
    let mut t0 = rev("c", 2, json!({}), None);
    t0.metadata.creation_timestamp = Some(Time("2023-01-01T00:00:00Z".parse().unwrap()));
    let mut list: Vec<Arc<ControllerRevision>> = vec![
        Arc::new(rev("z", 3, json!({}), None)),
        Arc::new(t1),
        Arc::new(rev("a", 1, json!({}), None)),
        Arc::new(t0),
        Arc::new(rev("y", 3, json!({}), None)),
    ];
    sort_controller_revisions(&mut list);
    let names: Vec<_> = list
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "c", "b", "y", "z"]);
    assert_eq!(max_revision(&list), 3);
    assert_eq!(max_revision(&[]), 0);
}

#[test]
fn equality_is_by_data_unless_hashes_differ() {
    let cases = [
        // (a data, a hash, b data, b hash, equal)
        (json!({"x": 1}), None, json!({"x": 1}), None, true),
        (json!({"x": 1}), Some("h"), json!({"x": 1}), Some("h"), true),
        (
            json!({"x": 1}),
            Some("h"),
            json!({"x": 1}),
            Some("g"),
            false,
        ),
        (json!({"x": 1}), Some("h"), json!({"x": 1}), None, true),
        (json!({"x": 1}), None, json!({"x": 2}), None, false),
        // Empty values are absent values.
        (json!({"x": 1, "r": {}}), None, json!({"x": 1}), None, true),
        (
            json!({"x": 1, "l": []}),
            None,
            json!({"x": 1, "l": null}),
            None,
            true,
        ),
    ];
    for (i, (ad, ah, bd, bh, want)) in cases.into_iter().enumerate() {
        let a = rev("a", 1, ad, ah);
        let b = rev("b", 2, bd, bh);
        assert_eq!(equal_revision(&a, &b), want, "case {i}");
    }
    let list = vec![
        Arc::new(rev("a", 1, json!({"x": 1}), None)),
        Arc::new(rev("b", 2, json!({"x": 2}), None)),
        Arc::new(rev("c", 3, json!({"x": 1}), None)),
    ];
    let found = find_equal_revisions(&list, &rev("n", 9, json!({"x": 1}), None));
    let names: Vec<_> = found
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "c"]);
}

#[test]
fn truncation_keeps_the_limit_newest_and_live_revisions() {
    let old: Vec<Arc<ControllerRevision>> = [("r3", 3), ("r1", 1), ("r5", 5), ("r2", 2), ("r4", 4)]
        .into_iter()
        .map(|(n, v)| Arc::new(rev(n, v, json!({}), Some(n))))
        .collect();
    // (limit, live names, deleted)
    let cases: &[(i32, &[&str], &[&str])] = &[
        (10, &[], &[]),
        (5, &[], &[]),
        (3, &[], &["r1", "r2"]),
        (0, &[], &["r1", "r2", "r3", "r4", "r5"]),
        (3, &["r1"], &["r2", "r3"]),
        (3, &["r1", "r2", "r3", "r4"], &["r5"]),
        // Everything live: nothing can go, the limit is exceeded.
        (1, &["r1", "r2", "r3", "r4", "r5"], &[]),
        (-1, &[], &["r1", "r2", "r3", "r4", "r5"]),
    ];
    for (limit, live, want) in cases {
        let live: HashSet<&str> = live.iter().copied().collect();
        let got = revisions_to_truncate(&old, *limit, |r| {
            live.contains(revision_hash(r).unwrap_or(""))
        });
        assert_eq!(got, *want, "limit {limit} live {live:?}");
    }
}
