//! The in-process API (`ApiServer::in_process_admin`) that `skiff server`
//! gives its scheduler and controller manager: kube-rs on top of it reads,
//! writes and watches what HTTPS clients see, gets the same Status errors,
//! is counted in the same metrics, works from a runtime of its own (as the
//! scheduler's) without the server's own tasks ending with that runtime,
//! and its watches end when the server shuts down.

use crate::support::{self, Events, metrics, next_event};

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::ObjectMeta;

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some([("k".to_owned(), name.to_owned())].into()),
        ..Default::default()
    }
}

/// The next event on `w` is `name` being added.
async fn next_added(w: &mut Events, name: &str) {
    assert_eq!(next_event(w).await, ("ADDED", name.to_owned()));
}

fn post_count(metrics: &str, resource: &str, code: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("verb=\"POST\"")
                && l.contains(&format!("resource=\"{resource}\""))
                && l.contains(&format!("code=\"{code}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_client_on_its_own_runtime_serves_the_api_as_https_does() {
    let dir = tempfile::tempdir().unwrap();
    let (server, https) = support::start(dir.path(), 0).await;
    let api = server.in_process_admin();
    let kubeconfig = support::kubeconfig_path(dir.path());

    // As the scheduler does: a runtime and a thread of its own, which end
    // before the server does.
    let seen = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = kube::Client::new(api, "default");
            let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
            // Its first request may be the watch cache's first use.
            let mut watch = cms
                .watch(&WatchParams::default(), "0")
                .await
                .unwrap()
                .boxed();
            let made = cms
                .create(&PostParams::default(), &cm("made-in-process"))
                .await
                .unwrap();
            assert!(made.metadata.uid.is_some(), "{made:?}");
            next_added(&mut watch, "made-in-process").await;

            // A write over HTTPS reaches the in-process watch.
            let other: Api<ConfigMap> =
                Api::default_namespaced(support::client(kubeconfig.parent().unwrap()).await);
            other
                .create(&PostParams::default(), &cm("made-over-https"))
                .await
                .unwrap();
            next_added(&mut watch, "made-over-https").await;

            // Bad input gets the same Status as over HTTPS.
            let err = cms
                .create(&PostParams::default(), &cm("Not_A_Name"))
                .await
                .unwrap_err();
            let kube::Error::Api(status) = err else {
                panic!("not a Status: {err:?}")
            };
            assert_eq!(status.code, 422, "{status:?}");
            assert_eq!(status.reason, "Invalid", "{status:?}");
            assert!(status.message.contains("Not_A_Name"), "{status:?}");

            let names: Vec<String> = cms
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|c| c.metadata.name)
                .collect();
            names
        })
    })
    .join()
    .unwrap();
    assert_eq!(seen, ["made-in-process", "made-over-https"]);

    // The in-process write is the one HTTPS clients read, and its
    // requests count in the server's metrics like any other.
    let cms: Api<ConfigMap> = Api::default_namespaced(https.clone());
    let got = cms.get("made-in-process").await.unwrap();
    assert_eq!(
        got.data.unwrap().get("k").map(String::as_str),
        Some("made-in-process")
    );
    let metrics = metrics(&https).await;
    assert_eq!(post_count(&metrics, "configmaps", "201"), 2, "{metrics}");
    assert_eq!(post_count(&metrics, "configmaps", "422"), 1, "{metrics}");

    // The server's own tasks (the watch cache's reflector) did not end
    // with the runtime that happened to use them first.
    let mut watch = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut names = Vec::new();
    for _ in 0..2 {
        names.push(next_event(&mut watch).await);
    }
    names.sort();
    assert_eq!(
        names,
        [
            ("ADDED", "made-in-process".to_owned()),
            ("ADDED", "made-over-https".to_owned())
        ]
    );
    cms.create(&PostParams::default(), &cm("after-that-runtime"))
        .await
        .unwrap();
    next_added(&mut watch, "after-that-runtime").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_watches_end_when_the_server_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path(), 0).await;
    let client = kube::Client::new(server.in_process_admin(), "default");
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    cms.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let mut watch = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    next_added(&mut watch, "before").await;

    let shutdown = tokio::spawn(server.shutdown());
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = watch.next().await {
            if let Ok(WatchEvent::Added(c) | WatchEvent::Modified(c)) = ev {
                panic!("event after shutdown began: {c:?}");
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the in-process watch outlived the server");
    tokio::time::timeout(Duration::from_secs(20), shutdown)
        .await
        .expect("shutdown hung")
        .unwrap();
}
