//! TEMPORARY minimal volume manager (replaced by the full module).
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};

pub trait ObjectSource: Send + Sync {
    fn get_configmap<'a>(&'a self, ns: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<ConfigMap>, String>>;
    fn get_secret<'a>(&'a self, ns: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Secret>, String>>;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VolumeError(String);

#[derive(Debug)]
pub struct VolumeManager {
    root: PathBuf,
}

impl VolumeManager {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
    pub async fn setup(&self, pod: &Pod, _source: &dyn ObjectSource) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut out = BTreeMap::new();
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let dir = self.root.join("pods").join(&uid).join("volumes").join("kubernetes.io~empty-dir").join(&v.name);
            std::fs::create_dir_all(&dir).map_err(|e| VolumeError(e.to_string()))?;
            out.insert(v.name.clone(), dir);
        }
        Ok(out)
    }
    pub async fn refresh(&self, _pod: &Pod, _source: &dyn ObjectSource) -> Result<bool, VolumeError> {
        Ok(false)
    }
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        let dir = self.root.join("pods").join(pod_uid);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(VolumeError(e.to_string())),
            _ => Ok(()),
        }
    }
    pub fn pod_dirs(&self) -> Vec<String> {
        Vec::new()
    }
}
