//! The generic REST store through the real HTTPS server, driven by kube-rs
//! with typed k8s-openapi objects and by kubectl: create/get/list/update/
//! delete/watch, selectors, paging, optimistic concurrency, dry run, the
//! namespace lifecycle, Status errors, and state kept across a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::ObjectMeta;
use support::{KUBECTL_133, Kubectl, start};

fn cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected a Status error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_crud_with_typed_client() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms
        .create(
            &PostParams::default(),
            &cm("a", &[("env", "prod")], &[("k", "v")]),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert_eq!(meta.uid.as_ref().map(String::len), Some(36));
    assert!(meta.creation_timestamp.is_some());
    let rv: i64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    assert!(rv > 0);

    let got = cms.get("a").await.unwrap();
    assert_eq!(got.data, created.data);
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );

    // AlreadyExists, NotFound: upstream's reasons and messages.
    let err = api_status(
        cms.create(&PostParams::default(), &cm("a", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.message, "configmaps \"a\" already exists");
    let err = api_status(cms.get("missing").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "configmaps \"missing\" not found");

    // Update with the current resourceVersion works; a stale one conflicts.
    let mut changed = got.clone();
    changed.data = Some(BTreeMap::from([("k".to_owned(), "v2".to_owned())]));
    let updated = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        got.metadata.resource_version
    );
    assert_eq!(updated.metadata.uid, got.metadata.uid);
    let err = api_status(
        cms.replace("a", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );

    // Selectors.
    cms.create(&PostParams::default(), &cm("b", &[("env", "dev")], &[]))
        .await
        .unwrap();
    let prod = cms
        .list(&ListParams::default().labels("env=prod"))
        .await
        .unwrap();
    assert_eq!(prod.items.len(), 1);
    assert_eq!(prod.items[0].metadata.name.as_deref(), Some("a"));
    let not_prod = cms
        .list(&ListParams::default().labels("env!=prod"))
        .await
        .unwrap();
    assert_eq!(not_prod.items.len(), 1);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let err = api_status(
        cms.list(&ListParams::default().labels("env in ("))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    let err = api_status(
        cms.list(&ListParams::default().fields("data.k=v"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);

    // Dry run writes nothing.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    cms.create(&dry, &cm("dry", &[], &[])).await.unwrap();
    assert!(cms.get_opt("dry").await.unwrap().is_none());

    // Delete; then it is gone.
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("a").await.unwrap().is_none());
    let err = api_status(cms.delete("a", &DeleteParams::default()).await.unwrap_err());
    assert_eq!(err.code, 404);

    // Invalid names are 422 with field causes.
    let err = api_status(
        cms.create(&PostParams::default(), &cm("Bad_Name", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(
        err.message
            .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name"),
        "{}",
        err.message
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_exist_and_guard_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.iter().any(|n| n == ns), "{ns} missing from {names:?}");
    }
    let system = nss.get("kube-system").await.unwrap();
    assert_eq!(system.status.unwrap().phase.as_deref(), Some("Active"));
    assert_eq!(
        system
            .metadata
            .labels
            .unwrap()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("kube-system")
    );

    // Creating in a missing namespace is 404 on the namespace.
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let err = api_status(
        missing
            .create(&PostParams::default(), &cm("x", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
    assert_eq!(err.message, "namespaces \"nope\" not found");

    // Deleting a namespace leaves it Terminating (its finalizer is the
    // namespace controller's), and no new content may be created in it.
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("team".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    nss.create(&PostParams::default(), &ns).await.unwrap();
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    let team = nss.get("team").await.unwrap();
    assert!(team.metadata.deletion_timestamp.is_some());
    assert_eq!(team.status.unwrap().phase.as_deref(), Some("Terminating"));
    let in_team: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let err = api_status(
        in_team
            .create(&PostParams::default(), &cm("x", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    assert!(
        err.message.contains("because it is being terminated"),
        "{}",
        err.message
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_consistent_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        cms.create(
            &PostParams::default(),
            &cm(
                &format!("p{i:02}"),
                &[("i", if i % 2 == 0 { "even" } else { "odd" })],
                &[],
            ),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(4);
    let mut first_rv = None;
    loop {
        let page = cms.list(&params).await.unwrap();
        first_rv.get_or_insert(page.metadata.resource_version.clone());
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        // Writes between pages do not show up in later pages.
        cms.create(
            &PostParams::default(),
            &cm(&format!("late{}", names.len()), &[], &[]),
        )
        .await
        .unwrap();
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    assert_eq!(names, expected);

    // Paging with a selector still fills pages.
    let page = cms
        .list(&ListParams::default().labels("i=odd").limit(5))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert!(
        page.items
            .iter()
            .all(|c| c.metadata.labels.as_ref().unwrap()["i"] == "odd")
    );
    let odd_after = |page: &kube::core::ObjectList<ConfigMap>| {
        ListParams::default()
            .labels("i=odd")
            .limit(100)
            .continue_token(page.metadata.continue_.as_deref().unwrap())
    };
    let rest = cms.list(&odd_after(&page)).await.unwrap();
    assert_eq!(page.items.len() + rest.items.len(), 12);

    // After a write the continuation is read from the store: the same
    // snapshot and selection, each item whole with its own resourceVersion.
    let page = cms
        .list(&ListParams::default().labels("i=odd").limit(5))
        .await
        .unwrap();
    cms.create(
        &PostParams::default(),
        &cm("late-odd", &[("i", "odd")], &[]),
    )
    .await
    .unwrap();
    let rest = cms.list(&odd_after(&page)).await.unwrap();
    assert_eq!(
        rest.metadata.resource_version,
        page.metadata.resource_version
    );
    assert_eq!(rest.items.len(), 7);
    for item in &rest.items {
        let live = cms
            .get(item.metadata.name.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(item.metadata.labels.as_ref().unwrap()["i"], "odd");
        assert_eq!(item.metadata.uid, live.metadata.uid);
        assert_eq!(
            item.metadata.resource_version,
            live.metadata.resource_version
        );
        assert_eq!(item.metadata.managed_fields, live.metadata.managed_fields);
    }
    // An exact revision is read from the store too, field selector and all.
    let exact = cms
        .list(
            &ListParams::default()
                .fields("metadata.name=p03")
                .at(page.metadata.resource_version.as_deref().unwrap())
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap();
    let names: Vec<_> = exact
        .items
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["p03"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_changes_and_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let port = server.local_addr().port();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start_rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = cms
        .watch(&WatchParams::default().labels("w=1"), &start_rv)
        .await
        .unwrap()
        .boxed();
    let a = cms
        .create(&PostParams::default(), &cm("a", &[("w", "1")], &[]))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("other", &[("w", "2")], &[]))
        .await
        .unwrap();
    let mut a2 = a.clone();
    a2.data = Some(BTreeMap::from([("x".to_owned(), "y".to_owned())]));
    let a2 = cms.replace("a", &PostParams::default(), &a2).await.unwrap();
    // Relabelled out of the selector: the watcher sees it leave.
    let mut a3 = a2.clone();
    a3.metadata.labels = Some(BTreeMap::from([("w".to_owned(), "0".to_owned())]));
    cms.replace("a", &PostParams::default(), &a3).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            WatchEvent::Added(c) => seen.push(("ADDED", c.metadata.name.unwrap())),
            WatchEvent::Modified(c) => seen.push(("MODIFIED", c.metadata.name.unwrap())),
            WatchEvent::Deleted(c) => seen.push(("DELETED", c.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            ("ADDED", "a".to_owned()),
            ("MODIFIED", "a".to_owned()),
            ("DELETED", "a".to_owned())
        ]
    );
    drop(w);
    let last_rv = a2.metadata.resource_version.clone().unwrap();
    server.shutdown().await;

    // A restarted server keeps everything, and a watch resumes from a
    // resourceVersion handed out before the restart.
    let (server, client) = start(dir.path(), port).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    assert_eq!(
        cms.get("a").await.unwrap().metadata.labels.unwrap()["w"],
        "0"
    );
    let mut w = cms
        .watch(&WatchParams::default(), &last_rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(10), w.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, WatchEvent::Modified(ref c) if c.metadata.labels.as_ref().unwrap()["w"] == "0"),
        "{ev:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_lists_watches_and_deletes_from_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _client) = start(dir.path(), 0).await;
    let manifest = dir.path().join("objects.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: team\n  labels: {app: web}\ndata:\n  mode: fast\n",
    )
    .unwrap();
    let k = Kubectl::new(KUBECTL_133, dir.path());
    let m = manifest.to_str().unwrap();
    let out = k.ok(&["create", "-f", m, "--validate=false"]).await;
    assert_eq!(out, "namespace/team created\nconfigmap/settings created\n");
    let out = k
        .ok(&[
            "get",
            "cm",
            "-A",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .await;
    assert_eq!(out, "settings");
    let out = k
        .ok(&[
            "-n",
            "team",
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.data.mode}",
        ])
        .await;
    assert_eq!(out, "fast");
    let out = k.ok(&["-n", "team", "delete", "cm", "settings"]).await;
    assert_eq!(out, "configmap \"settings\" deleted\n");
    let (ok, _, err) = k.run(&["-n", "team", "get", "cm", "settings"]).await;
    assert!(!ok);
    assert!(err.contains("configmaps \"settings\" not found"), "{err}");
    server.shutdown().await;
}

/// Patches without a resourceVersion never fail with a conflict: racing
/// writers make the server re-apply them to the newer object, as upstream's
/// GuaranteedUpdate does; a patch that names a stale resourceVersion still
/// gets 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_without_a_resource_version_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("shared".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let writers = 16;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let cms = cms.clone();
        tasks.spawn(async move {
            for round in 0..5 {
                let patch = serde_json::json!({"data": {format!("w{w}"): format!("{round}")}});
                cms.patch(
                    "shared",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .map_err(|e| format!("writer {w} round {round}: {e}"))?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let data = cms.get("shared").await.unwrap().data.unwrap();
    assert_eq!(data.len(), writers);
    assert!(data.values().all(|v| v == "4"), "{data:?}");

    // The original resourceVersion is long gone: a patch naming it is a conflict.
    let stale = serde_json::json!({
        "metadata": {"resourceVersion": created.metadata.resource_version.unwrap()},
        "data": {"late": "x"},
    });
    let err = cms
        .patch(
            "shared",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&stale),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("expected 409, got {other}"),
    }
    server.shutdown().await;
}
