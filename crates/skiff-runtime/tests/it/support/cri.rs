//! The CRI harness shared by the runtime's root-only integration tests: a temp
//! dir with images imported, the built-in runtime served over a unix socket,
//! request builders, and cleanup that leaves the host as it was.
//!
//! Declared from the test binary's root (`main.rs`), not from `support/mod.rs`:
//! that one is also included by crates without tonic or the runtime.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub use skiff_sys::process::is_root;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_runtime::cri::api::image_service_server::ImageServiceServer;
use skiff_runtime::cri::api::runtime_service_client::RuntimeServiceClient;
use skiff_runtime::cri::api::runtime_service_server::RuntimeServiceServer;
use skiff_runtime::cri::api::{self, ContainerState};
use skiff_runtime::cri::{CriImageService, CriRuntimeService, connect, serve_unix};
use skiff_runtime::{
    ImageStore, NoopPodNetwork, PodNetwork, RegistryConfig, Runtime, RuntimeConfig, RuntimeDeps,
};
use tonic::transport::Channel;

use crate::support::{self, TestImage};

/// The busybox image every container runs unless a test says otherwise.
pub const IMAGE: &str = "docker.io/library/busybox:latest";

/// Whether these tests can run here (root, busybox-static); says why not.
pub fn runnable() -> bool {
    let ok = support::have_busybox() && is_root();
    if !ok {
        eprintln!("skipping: needs root and busybox-static");
    }
    ok
}

/// Mount points at or under `dir`, in mount order.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect()
}

/// A temp dir with an image store holding busybox (or the given images), and
/// the runtime's root, run and pod log dirs under it. Dropping it kills
/// container inits still running, detaches mounts under the temp dir and
/// removes pod cgroups, so a failed test leaves nothing on the host.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub store: Arc<ImageStore>,
    /// The pod network of the runtimes served from here (loopback only
    /// unless a test sets one).
    pub network: Arc<dyn PodNetwork>,
}

impl Env {
    /// None (after saying why) when not root or without busybox-static.
    pub fn new() -> Option<Self> {
        if !runnable() {
            return None;
        }
        Some(Self::with_images(&[(
            &support::busybox_image(),
            Some(IMAGE),
        )]))
    }

    /// An env importing `images` (with their refs) instead; check
    /// [`runnable`] first.
    pub fn with_images(images: &[(&TestImage, Option<&str>)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("images.tar");
        support::write_oci_archive(&archive, images);
        let store = Arc::new(ImageStore::open(&tmp.path().join("images")).unwrap());
        store.import(&archive).unwrap();
        Self {
            tmp,
            store,
            network: Arc::new(NoopPodNetwork),
        }
    }

    /// `rel` under the temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn root(&self) -> PathBuf {
        self.path("runtime")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.path("run")
    }

    /// The runtime's mount roots (its run dir and `containers/`, bound onto
    /// themselves while it runs; see `RuntimeConfig::trim_supervisor_mounts`).
    pub fn mount_roots(&self) -> [PathBuf; 2] {
        [self.run_dir(), self.root().join("containers")]
    }

    /// Mounts under the temp dir other than the mount roots: the pods'.
    pub fn pod_mounts(&self) -> Vec<String> {
        let roots = self.mount_roots();
        mounts_under(self.tmp.path())
            .into_iter()
            .filter(|m| !roots.iter().any(|r| r == Path::new(m)))
            .collect()
    }

    pub fn log_dir(&self) -> PathBuf {
        self.path("pods")
    }

    /// A fresh runtime on this env's root, serving the RuntimeService on
    /// `<name>.sock`.
    pub async fn serve(&self, name: &str) -> Server {
        self.serve_with(name, Services::Runtime).await
    }

    /// A fresh runtime on this env's root, serving `services` on
    /// `<name>.sock`; returns once a client is connected.
    pub async fn serve_with(&self, name: &str, services: Services) -> Server {
        let runtime = Runtime::open(
            RuntimeConfig {
                root: self.root(),
                run_dir: self.run_dir(),
                shim: vec![env!("CARGO_BIN_EXE_skiff-runtime-shim").into()],
                // As the agent runs it (Drop unmounts the roots with the rest).
                trim_supervisor_mounts: true,
            },
            RuntimeDeps {
                images: self.store.clone(),
                namespaces: Arc::new(skiff_sys::LinuxPodNamespaces),
                mounter: Arc::new(skiff_sys::LinuxMounter),
                network: self.network.clone(),
            },
        )
        .unwrap();
        let socket = self.path(&format!("{name}.sock"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(CriRuntimeService::new(Arc::new(
                runtime,
            ))))
            .add_optional_service(match services {
                Services::Runtime => None,
                Services::RuntimeAndImages => Some(ImageServiceServer::new(CriImageService::new(
                    self.store.clone(),
                    RegistryConfig::default(),
                ))),
            });
        let path = socket.clone();
        let task = tokio::spawn(async move {
            serve_unix(router, &path, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let channel = loop {
            if let Ok(c) = connect(&socket).await {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Server {
            client: RuntimeServiceClient::new(channel),
            socket,
            stop: Some(stop),
            task,
        }
    }
}

impl Env {
    /// What a restart of the host does to the runtime's pods (after the
    /// runtime stopped): their supervisors and containers die, first the
    /// supervisors, so no exit is recorded; every mount under the temp dir
    /// goes (namespace pins, rootfs mounts, the run dir's tmpfs) and with
    /// the namespaces their veths; the run dir is empty, pod cgroups are
    /// gone. Only processes this env's runtimes started (PID and start time
    /// as recorded) are killed.
    pub fn restart_host(&self) {
        self.power_off();
        let _ = std::fs::remove_dir_all(self.run_dir());
    }

    fn power_off(&self) {
        let records = std::fs::read_dir(self.root().join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read(entry.path().join("container.json")).ok())
            .filter_map(|data| serde_json::from_slice::<serde_json::Value>(&data).ok())
            .collect::<Vec<_>>();
        let kill = |pid: &serde_json::Value, ticks: &serde_json::Value| {
            let (Some(pid), Some(ticks)) = (pid.as_i64(), ticks.as_u64()) else {
                return;
            };
            let pid = pid as i32;
            if skiff_sys::process::process_start_ticks(pid) == Some(ticks) {
                let _ = skiff_sys::process::kill(pid, 9);
            }
        };
        for record in &records {
            kill(&record["shim"][0], &record["shim"][1]);
        }
        for record in &records {
            kill(&record["pid"], &record["start_ticks"]);
        }
        std::thread::sleep(Duration::from_millis(200));
        // Innermost first; detached, so busy mounts go too.
        for m in mounts_under(self.tmp.path()).iter().rev() {
            let _ = skiff_sys::Mounter::unmount(&skiff_sys::LinuxMounter, Path::new(m));
        }
        for entry in std::fs::read_dir(self.root().join("sandboxes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            let _ = skiff_sys::cgroups::remove_cgroup(&format!("/skiff/{id}"));
        }
    }
}

impl Drop for Env {
    /// Leaves the host as it was: as after a restart.
    fn drop(&mut self) {
        self.power_off();
    }
}

/// Which CRI services a [`Server`] exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Services {
    Runtime,
    RuntimeAndImages,
}

/// A served runtime and a RuntimeService client connected to it. Dropping it
/// stops the server; [`Server::shutdown`] also waits for it.
pub struct Server {
    pub client: RuntimeServiceClient<Channel>,
    pub socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The kubelet's CRI client (runtime and image services) on this socket.
    pub async fn kubelet_cri(&self) -> skiff_kubelet::cri::Cri {
        skiff_kubelet::cri::Cri::connect(&self.socket)
            .await
            .unwrap()
    }

    pub async fn shutdown(mut self) {
        drop(self.client);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }

    /// Runs a sandbox of `config`; returns its id with the config, as
    /// CreateContainer wants both.
    pub async fn run_sandbox(
        &mut self,
        config: api::PodSandboxConfig,
    ) -> (String, api::PodSandboxConfig) {
        let id = self
            .client
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        (id, config)
    }

    /// Creates container `name` running `command` of [`IMAGE`], logging to
    /// `<name>/0.log`, after `tweak` had its say on the config.
    pub async fn create(
        &mut self,
        sandbox: &(String, api::PodSandboxConfig),
        name: &str,
        command: &[&str],
        tweak: impl FnOnce(&mut api::ContainerConfig),
    ) -> String {
        let mut config = container_config(name, command);
        config.log_path = format!("{name}/0.log");
        tweak(&mut config);
        self.client
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: sandbox.0.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox.1.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id
    }

    pub async fn start(&mut self, id: &str) {
        self.client
            .start_container(api::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .unwrap();
    }

    /// Stops container `id`: SIGTERM, then SIGKILL after `timeout` seconds.
    pub async fn stop(&mut self, id: &str, timeout: i64) {
        self.client
            .stop_container(api::StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .unwrap();
    }

    pub async fn status(&mut self, id: &str) -> api::ContainerStatus {
        self.client
            .container_status(api::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
    }

    /// Polls until the container has exited; panics after 30 s.
    pub async fn wait_exited(&mut self, id: &str) -> api::ContainerStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let s = self.status(id).await;
            if s.state == ContainerState::ContainerExited as i32 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("container {id} did not exit");
    }

    /// Every sandbox the runtime lists.
    pub async fn sandboxes(&mut self) -> Vec<api::PodSandbox> {
        self.client
            .list_pod_sandbox(api::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items
    }

    /// Stops then removes the sandbox (both idempotent upstream).
    pub async fn remove_sandbox(&mut self, id: &str) {
        self.client
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap();
        self.client
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap();
    }
}

/// A sandbox config with just metadata: `name`, uid `uid-<name>`, namespace
/// `default`.
pub fn sandbox_config(name: &str) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        ..Default::default()
    }
}

/// A container config: `name` running `command` of [`IMAGE`], nothing else.
pub fn container_config(name: &str, command: &[&str]) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Polls `done` until it holds; panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
