#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use serde_json::json;

use super::*;

/// Records tmpfs mounts; answers `is_mount_point` from what it mounted.
#[derive(Debug, Default)]
struct FakeMounter {
    mounted: Mutex<BTreeSet<PathBuf>>,
    tmpfs_mounts: Mutex<Vec<(PathBuf, Option<u64>)>>,
    unmounts: Mutex<Vec<PathBuf>>,
}

impl Mounter for FakeMounter {
    fn mount_overlay(&self, _: &[PathBuf], _: &Path, _: &Path, _: &Path) -> io::Result<()> {
        Err(io::Error::other("not used"))
    }
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> io::Result<()> {
        self.mounted.lock().unwrap().insert(target.to_path_buf());
        self.tmpfs_mounts
            .lock()
            .unwrap()
            .push((target.to_path_buf(), size_bytes));
        Ok(())
    }
    fn unmount(&self, target: &Path) -> io::Result<()> {
        self.mounted.lock().unwrap().remove(target);
        self.unmounts.lock().unwrap().push(target.to_path_buf());
        Ok(())
    }
    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        Ok(self.mounted.lock().unwrap().contains(path))
    }
}

/// (namespace, service account, audience, expiration seconds, bound pod UID).
type TokenRequestRecord = (String, String, Option<String>, i64, Option<String>);

/// An in-memory API: ConfigMaps and Secrets by (namespace, name).
#[derive(Debug, Default)]
struct FakeSource {
    configmaps: Mutex<BTreeMap<(String, String), ConfigMap>>,
    secrets: Mutex<BTreeMap<(String, String), Secret>>,
    token_calls: AtomicUsize,
    token_requests: Mutex<Vec<TokenRequestRecord>>,
}

impl FakeSource {
    fn put_configmap(&self, name: &str, data: &[(&str, &str)]) {
        let cm = ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ConfigMap::default()
        };
        self.configmaps
            .lock()
            .unwrap()
            .insert(("ns".into(), name.into()), cm);
    }
    fn put_secret(&self, name: &str, data: &[(&str, &[u8])]) {
        let secret = Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        self.secrets
            .lock()
            .unwrap()
            .insert(("ns".into(), name.into()), secret);
    }
}

impl ObjectSource for FakeSource {
    fn get_configmap<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, String>> {
        let key = (namespace.to_string(), name.to_string());
        let found = self.configmaps.lock().unwrap().get(&key).cloned();
        async move { Ok(found) }.boxed()
    }
    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, String>> {
        let key = (namespace.to_string(), name.to_string());
        let found = self.secrets.lock().unwrap().get(&key).cloned();
        async move { Ok(found) }.boxed()
    }
    fn service_account_token<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
        audience: Option<&'a str>,
        expiration_seconds: i64,
        pod: &'a Pod,
    ) -> BoxFuture<'a, Result<String, String>> {
        let n = self.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.token_requests.lock().unwrap().push((
            namespace.to_string(),
            service_account.to_string(),
            audience.map(str::to_string),
            expiration_seconds,
            pod.metadata.uid.clone(),
        ));
        async move {
            if service_account == "missing" {
                Err("serviceaccounts \"missing\" not found".to_string())
            } else {
                Ok(format!("token-{n}"))
            }
        }
        .boxed()
    }
}

struct Fixture {
    _root: tempfile::TempDir,
    root: PathBuf,
    mounter: Arc<FakeMounter>,
    manager: VolumeManager,
    source: FakeSource,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let mounter = Arc::new(FakeMounter::default());
    let manager = VolumeManager::new(root.path().to_path_buf(), mounter.clone());
    Fixture {
        root: root.path().to_path_buf(),
        _root: root,
        mounter,
        manager,
        source: FakeSource::default(),
    }
}

fn pod(volumes: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": "web", "namespace": "ns", "uid": "uid-1",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": "say \"hi\"\nbye"}
        },
        "spec": {
            "containers": [{
                "name": "c",
                "resources": {
                    "limits": {"cpu": "250m", "memory": "64Mi"},
                    "requests": {"cpu": "100m", "memory": "32Mi"}
                }
            }],
            "volumes": volumes
        }
    }))
    .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The user-visible names in a volume dir (no `..` entries).
fn visible(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect()
}

#[tokio::test]
async fn empty_dir_on_disk_and_in_memory() {
    let f = fixture();
    let p = pod(json!([
        {"name": "scratch", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "32Mi"}},
        {"name": "mem-unlimited", "emptyDir": {"medium": "Memory"}}
    ]));
    let paths = f.manager.setup(&p, &f.source).await.unwrap();
    let vols = f.root.join("pods/uid-1/volumes/kubernetes.io~empty-dir");
    assert_eq!(paths["scratch"], vols.join("scratch"));
    assert_eq!(paths["mem"], vols.join("mem"));
    assert_eq!(mode(&paths["scratch"]), 0o777);
    // The pod's memory limit (64Mi) bounds a volume without sizeLimit.
    assert_eq!(
        *f.mounter.tmpfs_mounts.lock().unwrap(),
        vec![
            (vols.join("mem"), Some(32 << 20)),
            (vols.join("mem-unlimited"), Some(64 << 20))
        ]
    );

    // Setting up again mounts nothing new.
    f.manager.setup(&p, &f.source).await.unwrap();
    assert_eq!(f.mounter.tmpfs_mounts.lock().unwrap().len(), 2);

    assert_eq!(f.manager.pod_dirs(), vec!["uid-1".to_string()]);
    f.manager.teardown("uid-1").await.unwrap();
    let unmounted: BTreeSet<PathBuf> = f.mounter.unmounts.lock().unwrap().iter().cloned().collect();
    assert_eq!(
        unmounted,
        BTreeSet::from([vols.join("mem"), vols.join("mem-unlimited")])
    );
    assert!(!f.root.join("pods/uid-1").exists());
    assert!(f.manager.pod_dirs().is_empty());
    // Idempotent.
    f.manager.teardown("uid-1").await.unwrap();
    assert!(f.manager.teardown("../x").await.is_err());
}

#[test]
fn tmpfs_size_follows_allocatable_pod_limit_and_size_limit() {
    let q = |s: &str| Quantity::parse(s).unwrap();
    let mi = 1u64 << 20;
    let with_limits = |limits: &[Option<&str>], init: &[Option<&str>], size_limit: Option<&str>| {
        let res = |l: &Option<&str>| match l {
            Some(l) => json!({"limits": {"memory": l}}),
            None => json!({}),
        };
        let containers: Vec<_> = limits
            .iter()
            .enumerate()
            .map(|(i, l)| json!({"name": format!("c{i}"), "resources": res(l)}))
            .collect();
        let inits: Vec<_> = init
            .iter()
            .enumerate()
            .map(|(i, l)| json!({"name": format!("i{i}"), "resources": res(l)}))
            .collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"uid": "u"},
            "spec": {"containers": containers, "initContainers": inits}
        }))
        .unwrap();
        let limit =
            size_limit.map(|s| k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.into()));
        (pod, limit)
    };
    let none = VolumeManager::new(
        PathBuf::from("/nonexistent"),
        Arc::new(FakeMounter::default()),
    );
    let node = VolumeManager::new(
        PathBuf::from("/nonexistent"),
        Arc::new(FakeMounter::default()),
    )
    .with_node_allocatable(BTreeMap::from([("memory".to_string(), q("1Gi"))]));
    // (manager, container limits, init container limits, sizeLimit, want)
    type Case<'a> = (
        &'a VolumeManager,
        &'a [Option<&'a str>],
        &'a [Option<&'a str>],
        Option<&'a str>,
        Option<u64>,
    );
    let cases: &[Case] = &[
        (&none, &[None], &[], None, None),
        (&none, &[None], &[], Some("16Mi"), Some(16 * mi)),
        (&node, &[None], &[], None, Some(1024 * mi)),
        (
            &node,
            &[Some("64Mi"), Some("32Mi")],
            &[],
            None,
            Some(96 * mi),
        ),
        // One container without a limit: the pod has no memory limit.
        (&node, &[Some("64Mi"), None], &[], None, Some(1024 * mi)),
        (
            &node,
            &[Some("64Mi")],
            &[Some("128Mi")],
            None,
            Some(128 * mi),
        ),
        (&node, &[Some("64Mi")], &[], Some("16Mi"), Some(16 * mi)),
        // A sizeLimit above what the pod may use is ignored.
        (&node, &[Some("64Mi")], &[], Some("2Gi"), Some(64 * mi)),
        (&node, &[None], &[], Some("0"), Some(1024 * mi)),
    ];
    for (manager, limits, init, size_limit, want) in cases {
        let (pod, limit) = with_limits(limits, init, *size_limit);
        assert_eq!(
            manager.tmpfs_size(&pod, limit.as_ref()).unwrap(),
            *want,
            "{limits:?} {init:?} {size_limit:?}"
        );
    }
}

#[tokio::test]
async fn empty_dir_unknown_medium() {
    let f = fixture();
    let p = pod(json!([{"name": "v", "emptyDir": {"medium": "Disk"}}]));
    let err = f.manager.setup(&p, &f.source).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"MountVolume.SetUp failed for volume "v" : unknown storage medium "Disk""#
    );
}

#[tokio::test]
async fn configmap_keys_items_modes_and_binary_data() {
    let f = fixture();
    let mut cm = ConfigMap {
        data: Some(BTreeMap::from([
            ("a".to_string(), "alpha".to_string()),
            ("b".to_string(), "beta".to_string()),
        ])),
        binary_data: Some(BTreeMap::from([(
            "bin".to_string(),
            ByteString(vec![0, 1, 2]),
        )])),
        ..ConfigMap::default()
    };
    f.source
        .configmaps
        .lock()
        .unwrap()
        .insert(("ns".into(), "cfg".into()), cm.clone());
    let p = pod(json!([
        {"name": "all", "configMap": {"name": "cfg"}},
        {"name": "some", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [
            {"key": "a", "path": "dir/sub/a.txt"},
            {"key": "bin", "path": "bin", "mode": 0o400}
        ]}}
    ]));
    let paths = f.manager.setup(&p, &f.source).await.unwrap();
    let all = &paths["all"];
    assert!(all.ends_with("pods/uid-1/volumes/kubernetes.io~configmap/all"));
    assert_eq!(
        visible(all),
        BTreeSet::from(["a".into(), "b".into(), "bin".into()])
    );
    assert_eq!(read(&all.join("a")), "alpha");
    assert_eq!(std::fs::read(all.join("bin")).unwrap(), vec![0, 1, 2]);
    assert_eq!(mode(&all.join("a")), 0o644);
    assert_eq!(mode(all), 0o777);

    let some = &paths["some"];
    assert_eq!(visible(some), BTreeSet::from(["dir".into(), "bin".into()]));
    assert_eq!(read(&some.join("dir/sub/a.txt")), "alpha");
    assert_eq!(mode(&some.join("dir/sub/a.txt")), 0o600);
    assert_eq!(mode(&some.join("bin")), 0o400);
    // configMap volumes are on disk: nothing mounted.
    assert!(f.mounter.tmpfs_mounts.lock().unwrap().is_empty());

    // Refresh: unchanged, then changed content and a removed key.
    assert!(!f.manager.refresh(&p, &f.source).await.unwrap());
    cm.data = Some(BTreeMap::from([("a".to_string(), "ALPHA".to_string())]));
    f.source
        .configmaps
        .lock()
        .unwrap()
        .insert(("ns".into(), "cfg".into()), cm);
    assert!(f.manager.refresh(&p, &f.source).await.unwrap());
    assert_eq!(read(&all.join("a")), "ALPHA");
    assert!(std::fs::symlink_metadata(all.join("b")).is_err());
    assert_eq!(read(&some.join("dir/sub/a.txt")), "ALPHA");
    assert!(!f.manager.refresh(&p, &f.source).await.unwrap());
}

#[tokio::test]
async fn configmap_and_secret_missing_objects_and_keys() {
    let f = fixture();
    f.source.put_configmap("cfg", &[("present", "x")]);
    let cases = [
        (
            json!({"name": "v", "configMap": {"name": "nope"}}),
            Some(r#"MountVolume.SetUp failed for volume "v" : configmap "nope" not found"#),
        ),
        (
            json!({"name": "v", "secret": {"secretName": "nope"}}),
            Some(r#"MountVolume.SetUp failed for volume "v" : secret "nope" not found"#),
        ),
        (
            json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "k"}]}}),
            Some(
                r#"MountVolume.SetUp failed for volume "v" : configmap references non-existent config key: k"#,
            ),
        ),
        (
            json!({"name": "v", "configMap": {"name": "nope", "optional": true}}),
            None,
        ),
        (
            json!({"name": "v", "secret": {"secretName": "nope", "optional": true}}),
            None,
        ),
        (
            json!({"name": "v", "configMap": {"name": "cfg", "optional": true, "items": [{"key": "k", "path": "k"}]}}),
            None,
        ),
    ];
    for (volume, want) in cases {
        let p = pod(json!([volume]));
        let got = f.manager.setup(&p, &f.source).await;
        match want {
            Some(want) => assert_eq!(got.unwrap_err().to_string(), want, "{volume}"),
            None => {
                let dir = &got.unwrap()["v"];
                assert!(visible(dir).is_empty(), "{volume}");
                assert!(std::fs::symlink_metadata(dir.join("..data")).is_ok());
            }
        }
        f.manager.teardown("uid-1").await.unwrap();
    }
}

#[tokio::test]
async fn secret_volume_is_tmpfs_backed() {
    let f = fixture();
    f.source
        .put_secret("s", &[("token", b"abc"), ("other", b"x")]);
    let p = pod(
        json!([{"name": "creds", "secret": {"secretName": "s", "items": [
            {"key": "token", "path": "token"}
        ]}}]),
    );
    let paths = f.manager.setup(&p, &f.source).await.unwrap();
    let dir = &paths["creds"];
    assert!(dir.ends_with("volumes/kubernetes.io~secret/creds"));
    assert_eq!(visible(dir), BTreeSet::from(["token".into()]));
    assert_eq!(read(&dir.join("token")), "abc");
    assert_eq!(
        *f.mounter.tmpfs_mounts.lock().unwrap(),
        vec![(dir.clone(), Some(64 << 20))],
        "sized by the pod's memory limit, as upstream's wrapped emptyDir"
    );

    // Item key removed from the secret: refresh fails, old content stays.
    f.source.put_secret("s", &[("other", b"x")]);
    let err = f.manager.refresh(&p, &f.source).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"MountVolume.SetUp failed for volume "creds" : references non-existent secret key: token"#
    );
    assert_eq!(read(&dir.join("token")), "abc");
}

#[tokio::test]
async fn downward_api_fields_and_resources() {
    let f = fixture();
    let p = pod(json!([{"name": "info", "downwardAPI": {"items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
        {"path": "cpu_limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}},
        {"path": "cpu_limit_cores", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
        {"path": "mem_request", "resourceFieldRef": {"containerName": "c", "resource": "requests.memory", "divisor": "1Mi"}},
        {"path": "mem_limit", "mode": 0o400, "resourceFieldRef": {"containerName": "c", "resource": "limits.memory"}}
    ]}}]));
    let paths = f.manager.setup(&p, &f.source).await.unwrap();
    let dir = &paths["info"];
    assert!(dir.ends_with("volumes/kubernetes.io~downward-api/info"));
    let cases = [
        ("name", "web"),
        ("ns", "ns"),
        ("uid", "uid-1"),
        ("labels", "app=\"web\"\ntier=\"front\""),
        ("annotations", "note=\"say \\\"hi\\\"\\nbye\""),
        ("app", "web"),
        ("cpu_limit", "250"),
        ("cpu_limit_cores", "1"),
        ("mem_request", "32"),
        ("mem_limit", "67108864"),
    ];
    for (file, want) in cases {
        assert_eq!(read(&dir.join(file)), want, "{file}");
    }
    assert_eq!(mode(&dir.join("mem_limit")), 0o400);
    assert_eq!(mode(&dir.join("name")), 0o644);

    // Labels change: refresh rewrites the file.
    let mut p2 = p.clone();
    p2.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("tier".into(), "back".into());
    assert!(f.manager.refresh(&p2, &f.source).await.unwrap());
    assert_eq!(read(&dir.join("labels")), "app=\"web\"\ntier=\"back\"");
}

#[tokio::test]
async fn downward_api_errors_and_node_allocatable() {
    let root = tempfile::tempdir().unwrap();
    let alloc = BTreeMap::from([
        ("cpu".to_string(), Quantity::parse("4").unwrap()),
        ("memory".to_string(), Quantity::parse("8Gi").unwrap()),
    ]);
    let manager = VolumeManager::new(root.path().to_path_buf(), Arc::new(FakeMounter::default()))
        .with_node_allocatable(alloc);
    let source = FakeSource::default();
    let mut p = pod(json!([{"name": "info", "downwardAPI": {"items": [
        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Gi"}}
    ]}}]));
    p.spec.as_mut().unwrap().containers[0].resources = None;
    let paths = manager.setup(&p, &source).await.unwrap();
    assert_eq!(read(&paths["info"].join("cpu")), "4000");
    assert_eq!(read(&paths["info"].join("mem")), "8");

    let bad = pod(json!([{"name": "info", "downwardAPI": {"items": [
        {"path": "a", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}},
        {"path": "b", "fieldRef": {"fieldPath": "spec.nodeName"}}
    ]}}]));
    let err = manager.setup(&bad, &source).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"MountVolume.SetUp failed for volume "info" : [container nope not found, unsupported fieldPath: spec.nodeName]"#
    );
}

#[tokio::test(start_paused = true)]
async fn projected_sources_and_token_refresh() {
    let f = fixture();
    f.source.put_configmap("cfg", &[("ca.crt", "CA")]);
    f.source.put_secret("s", &[("pw", b"secret")]);
    let p = pod(
        json!([{"name": "kube-api-access", "projected": {"defaultMode": 0o440, "sources": [
            {"serviceAccountToken": {"path": "token", "audience": "api"}},
            {"configMap": {"name": "cfg", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"secret": {"name": "s"}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
        ]}}]),
    );
    let paths = f.manager.setup(&p, &f.source).await.unwrap();
    let dir = &paths["kube-api-access"];
    assert!(dir.ends_with("volumes/kubernetes.io~projected/kube-api-access"));
    assert_eq!(
        visible(dir),
        BTreeSet::from([
            "token".into(),
            "ca.crt".into(),
            "pw".into(),
            "namespace".into()
        ])
    );
    assert_eq!(read(&dir.join("token")), "token-1");
    assert_eq!(read(&dir.join("ca.crt")), "CA");
    assert_eq!(read(&dir.join("pw")), "secret");
    assert_eq!(read(&dir.join("namespace")), "ns");
    assert_eq!(mode(&dir.join("token")), 0o440);
    assert_eq!(mode(&dir.join("ca.crt")), 0o440);
    assert_eq!(
        f.source.token_requests.lock().unwrap()[0],
        (
            "ns".to_string(),
            "default".to_string(),
            Some("api".to_string()),
            3600,
            Some("uid-1".to_string())
        )
    );
    assert_eq!(f.mounter.tmpfs_mounts.lock().unwrap().len(), 1);

    // The token is reused until 80% of its hour has passed.
    tokio::time::advance(std::time::Duration::from_secs(2800)).await;
    assert!(!f.manager.refresh(&p, &f.source).await.unwrap());
    assert_eq!(f.source.token_calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(std::time::Duration::from_secs(100)).await;
    assert!(f.manager.refresh(&p, &f.source).await.unwrap());
    assert_eq!(read(&dir.join("token")), "token-2");

    // Teardown forgets the pod's tokens.
    f.manager.teardown("uid-1").await.unwrap();
    f.manager.setup(&p, &f.source).await.unwrap();
    assert_eq!(f.source.token_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn projected_errors_are_aggregated() {
    let f = fixture();
    let mut p = pod(json!([{"name": "v", "projected": {"sources": [
        {"configMap": {"name": "a"}},
        {"secret": {"name": "b"}},
        {"secret": {"name": "c", "optional": true}},
        {"serviceAccountToken": {"path": "token"}}
    ]}}]));
    p.spec.as_mut().unwrap().service_account_name = Some("missing".into());
    let err = f.manager.setup(&p, &f.source).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"MountVolume.SetUp failed for volume "v" : [configmap "a" not found, secret "b" not found, failed to fetch token: serviceaccounts "missing" not found]"#
    );
}

#[tokio::test]
async fn host_path_and_unsupported_volumes() {
    let f = fixture();
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let p = pod(json!([
        {"name": "d", "hostPath": {"path": host.path(), "type": "Directory"}},
        {"name": "f", "hostPath": {"path": file, "type": "File"}}
    ]));
    let paths = f.manager.setup(&p, &f.source).await.unwrap();
    assert_eq!(paths["d"], host.path());
    assert_eq!(paths["f"], file);
    // hostPath volumes make no pod dir of their own.
    assert!(f.manager.pod_dirs().is_empty());

    let p = pod(json!([{"name": "d", "hostPath": {"path": file, "type": "Directory"}}]));
    let err = f.manager.setup(&p, &f.source).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"MountVolume.SetUp failed for volume "d" : hostPath type check failed: {} is not a directory, it's a File"#,
            file.display()
        )
    );

    let p = pod(json!([{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]));
    let err = f.manager.setup(&p, &f.source).await.unwrap_err();
    assert!(matches!(err, VolumeError::SetUp { ref volume, .. } if volume == "data"));
}

#[tokio::test]
async fn real_tmpfs_setup_and_teardown() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: needs root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let manager = VolumeManager::new(root.path().to_path_buf(), Arc::new(skiff_sys::LinuxMounter));
    let source = FakeSource::default();
    source.put_secret("s", &[("k", b"v")]);
    let p = pod(json!([
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "sec", "secret": {"secretName": "s"}}
    ]));
    let paths = manager.setup(&p, &source).await.unwrap();
    for name in ["mem", "sec"] {
        assert!(
            skiff_sys::mount::is_mount_point(&paths[name]).unwrap(),
            "{name}"
        );
    }
    assert_eq!(read(&paths["sec"].join("k")), "v");
    // Again: no second mount stacked on the first.
    manager.setup(&p, &source).await.unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let pod_dir = root.path().join("pods/uid-1");
    assert_eq!(skiff_sys::mount::mounts_under(&info, &pod_dir).len(), 2);

    // A bind mount of a host dir below the pod dir (as a subPath would be)
    // is unmounted, never deleted through.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("precious"), "keep").unwrap();
    let bind = pod_dir.join("volume-subpaths/v/c/0");
    std::fs::create_dir_all(&bind).unwrap();
    rustix::mount::mount_bind(host.path(), &bind).unwrap();

    manager.teardown("uid-1").await.unwrap();
    assert!(!pod_dir.exists());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(skiff_sys::mount::mounts_under(&info, &pod_dir).is_empty());
    assert_eq!(read(&host.path().join("precious")), "keep");
}

#[test]
fn fs_user_is_the_one_shared_run_as_user() {
    let cases = [
        (
            json!({"securityContext": {"runAsUser": 1000}, "containers": [{"name": "a"}, {"name": "b"}]}),
            Some(1000),
        ),
        (json!({"containers": [{"name": "a"}]}), None),
        (
            json!({"securityContext": {"runAsUser": 1000}, "containers": [
                {"name": "a"}, {"name": "b", "securityContext": {"runAsUser": 2000}}
            ]}),
            None,
        ),
        (
            json!({"containers": [
                {"name": "a", "securityContext": {"runAsUser": 7}},
                {"name": "b", "securityContext": {"runAsUser": 7}}
            ], "initContainers": [{"name": "i", "securityContext": {"runAsUser": 7}}]}),
            Some(7),
        ),
        (
            json!({"containers": [{"name": "a", "securityContext": {"runAsUser": 7}}],
                   "initContainers": [{"name": "i"}]}),
            None,
        ),
    ];
    for (spec, want) in cases {
        let pod: Pod = serde_json::from_value(json!({"spec": spec})).unwrap();
        assert_eq!(fs_user(&pod), want, "{spec}");
    }
}

#[tokio::test]
async fn fs_group_and_fs_user_ownership() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: needs root");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let f = fixture();
    f.source.put_configmap("cfg", &[("conf", "x")]);
    f.source.put_secret("s", &[("key", b"k")]);
    let mut p = pod(json!([
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    ]));
    p.spec.as_mut().unwrap().security_context =
        Some(serde_json::from_value(json!({"fsGroup": 1234, "runAsUser": 1000})).unwrap());
    let paths = f.manager.setup(&p, &f.source).await.unwrap();
    let meta = |path: PathBuf| std::fs::metadata(path).unwrap();

    let conf = meta(paths["cfg"].join("conf"));
    assert_eq!((conf.mode() & 0o7777, conf.gid()), (0o644, 1234));
    let key = meta(paths["sec"].join("key"));
    assert_eq!((key.mode() & 0o7777, key.gid()), (0o440, 1234));
    let token = meta(paths["tok"].join("token"));
    assert_eq!(
        (token.mode() & 0o7777, token.uid(), token.gid()),
        (0o640, 1000, 1234)
    );
    let generation = meta(paths["cfg"].join("..data"));
    assert_eq!(generation.gid(), 1234);
    assert_ne!(generation.mode() & 0o2000, 0, "set-group-ID generation dir");
    let scratch = meta(paths["scratch"].clone());
    assert_eq!((scratch.mode() & 0o7777, scratch.gid()), (0o2777, 1234));

    // The group's read bits are part of the expected modes: no rewrite.
    assert!(!f.manager.refresh(&p, &f.source).await.unwrap());
}
