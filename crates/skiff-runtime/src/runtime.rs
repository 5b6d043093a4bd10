//! The runtime core behind the CRI `RuntimeService`: sandboxes and containers,
//! persisted under the runtime's root so a new `Runtime` on the same root
//! re-adopts what is still running.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use skiff_sys::{Mounter, PodNamespacePaths, PodNamespaces};
use tokio::io::AsyncBufReadExt;

use crate::container::spec::{
    SpecInputs, build_spec, host_bounding_mask, host_nofile_limit, parse_signal, resolv_conf,
};
use crate::container::{
    ContainerRecord, MountRecord, Observed, ResourcesRecord, StdioRecord, observe,
};
use crate::cri::api;
use crate::images::ImageStore;
use crate::sandbox::{PodNetwork, SandboxRecord, SandboxState};
use crate::shim::zygote::{RequestError, Zygote};
use crate::shim::{ExecArgs, ExecResult, ExitRecord, RunArgs, StartReport};

mod log_control;
mod records;
pub(crate) mod stats;

use records::{
    CONTAINER_RECORD, RecordPaths, encode, load_all, load_containers, save, save_blocking,
    store_record,
};

/// Errors of runtime operations, mapped to gRPC codes by the CRI service.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Unknown sandbox, container or image.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be satisfied as given.
    #[error("{0}")]
    InvalidArgument(String),
    /// The object is in the wrong state for the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A wait ran out of time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// The directory a container's log is written in, if it has a log.
fn log_dir(record: &ContainerRecord) -> Option<&Path> {
    Path::new(&record.log_path)
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
}

fn internal(what: &str) -> impl Fn(std::io::Error) -> RuntimeError + '_ {
    move |e| RuntimeError::Internal(format!("{what}: {e}"))
}

/// Where the runtime keeps its state and how it starts supervisors.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Persistent state: `sandboxes/<id>/sandbox.json`; `containers/<id>/`
    /// with the overlay's `upper` and `work` (the container's writable
    /// layer), the record once the container has started, and the exit
    /// record. (`oci/` and the bundles in `containers/<id>/` are an older
    /// agent's layout, still found for its containers.)
    pub root: PathBuf,
    /// What is rebuilt for every start and dies with the host's namespaces
    /// and mounts: pinned namespaces (`netns/`, `ipcns/`, `utsns/`), OCI
    /// bundles with the rootfs mount points and supervisor sockets
    /// (`containers/<id>/`, with the record of a container not started
    /// yet), the files a
    /// pod's containers share (`sandboxes/<id>/`). With
    /// `trim_supervisor_mounts` it is a tmpfs (as runc and containerd keep
    /// theirs under /run): a new file there costs far less than on a disk.
    pub run_dir: PathBuf,
    /// The supervisor command: program and leading arguments (`run`/`exec` follow).
    pub shim: Vec<OsString>,
    /// Keep per-pod mounts under mount roots (`run_dir` and `root/containers`
    /// bound onto themselves) that each supervisor drops from its own mount
    /// namespace, so starting a container costs the same with 1 or 100 pods
    /// (see `skiff_sys::mount_view`). The roots stay mounted while pods'
    /// mounts live below them; [`Runtime::release_mount_roots`] removes them.
    pub trim_supervisor_mounts: bool,
}

/// The OS seams the runtime uses, injected so tests can replace them.
#[derive(Debug, Clone)]
pub struct RuntimeDeps {
    /// The image store.
    pub images: Arc<ImageStore>,
    /// Pod namespaces.
    pub namespaces: Arc<dyn PodNamespaces>,
    /// Rootfs mounts.
    pub mounter: Arc<dyn Mounter>,
    /// Pod networking.
    pub network: Arc<dyn PodNetwork>,
}

/// The built-in runtime.
#[derive(Debug)]
pub struct Runtime {
    config: RuntimeConfig,
    deps: RuntimeDeps,
    sandboxes: Mutex<BTreeMap<String, SandboxRecord>>,
    containers: Mutex<BTreeMap<String, ContainerRecord>>,
    /// Serialises start/stop/remove of one container.
    container_ops: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counter: AtomicU64,
    /// The mount roots supervisors drop (empty: they keep the host's view).
    mount_roots: Vec<PathBuf>,
    /// The host's mounts without `mount_roots`, which supervisors copy.
    mount_template: Option<skiff_sys::mount_view::MountTemplate>,
    /// This boot of the host (recorded in sandboxes and started containers).
    boot_id: Option<String>,
    /// Containers whose supervisor this runtime started and has not reaped
    /// yet: a child of this process, so its PID cannot be reused meanwhile.
    /// They count as running (unless their exit is recorded) without a
    /// look at /proc, as [`Runtime::init_alive`] would find the supervisor
    /// alive; a kubelet relists every container after each change.
    supervised: Arc<Mutex<HashSet<String>>>,
    /// The supervisor zygote, once started (see [`crate::shim::zygote`]).
    zygote: Arc<Mutex<Option<Zygote>>>,
}

/// A supervisor this runtime started, until it ends.
enum Supervisor {
    /// Forked by the zygote (which reaps it).
    Forked {
        pid: i32,
        pidfd: std::os::fd::OwnedFd,
    },
    /// Executed as a child of this process.
    Executed {
        pid: i32,
        child: tokio::process::Child,
    },
}

impl Supervisor {
    fn pid(&self) -> i32 {
        match self {
            Supervisor::Forked { pid, .. } | Supervisor::Executed { pid, .. } => *pid,
        }
    }

    /// Waits for the supervisor to end (reaping it if it is our child).
    async fn ended(self) {
        match self {
            Supervisor::Forked { pid, pidfd } => {
                if let Err(e) = skiff_sys::process::pidfd_exited(pidfd).await {
                    tracing::warn!(pid, "cannot watch the supervisor's pidfd: {e}");
                }
            }
            Supervisor::Executed { mut child, .. } => {
                let _ = child.wait().await;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated in a
    // way that matters more than losing the runtime: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Now in Unix nanoseconds.
pub fn now_nanos() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

impl Runtime {
    /// Opens the runtime on `config.root`, re-adopting persisted sandboxes and containers.
    pub fn open(config: RuntimeConfig, deps: RuntimeDeps) -> Result<Self, RuntimeError> {
        for dir in ["sandboxes", "containers"] {
            // One subtree per sandbox or container (see `skiff_sys::dir_layout`).
            skiff_sys::dir_layout::create_parent_of_subtrees(&config.root.join(dir))
                .map_err(internal("create root"))?;
        }
        let mount_roots = if config.trim_supervisor_mounts {
            open_mount_roots(&config)
        } else {
            Vec::new()
        };
        let mount_template = skiff_sys::mount_view::MountTemplate::new(&mount_roots)
            .inspect_err(|e| {
                tracing::warn!(error = %e, "no mount template; supervisors copy the host's mounts");
            })
            .ok()
            .flatten();
        let boot_id = skiff_sys::process::boot_id();
        // Read once the run dir's root is in place (where the pins are, what
        // supervisors see).
        let sandboxes = load_all::<SandboxRecord>(&config.root.join("sandboxes"), "sandbox.json")
            .into_iter()
            .map(|s| {
                let s = mark_lost_sandbox(&config, deps.namespaces.as_ref(), boot_id.as_deref(), s);
                (s.id.clone(), s)
            })
            .collect();
        let containers = load_containers(&config);
        Ok(Self {
            config,
            deps,
            sandboxes: Mutex::new(sandboxes),
            containers: Mutex::new(containers),
            container_ops: Mutex::new(BTreeMap::new()),
            counter: AtomicU64::new(0),
            mount_roots,
            mount_template,
            boot_id,
            supervised: Arc::default(),
            zygote: Arc::default(),
        })
    }

    /// Unmounts the mount roots that no pod mount is below any more (on
    /// shutdown; roots still in use stay for the next agent).
    pub fn release_mount_roots(&self) {
        for root in &self.mount_roots {
            let released = if *root == self.config.run_dir {
                skiff_sys::mount_view::release_tmpfs_mount_root(root)
            } else {
                skiff_sys::mount_view::release_mount_root(root)
            };
            if let Err(e) = released {
                tracing::warn!(root = %root.display(), error = %e, "releasing a mount root");
            }
        }
    }

    /// Every host path the supervisor of `record` (or its container) uses
    /// after it starts: the sandbox's namespace pins, the rootfs, each bind
    /// source and the log's directory, which it writes and reopens.
    fn supervisor_host_paths(&self, record: &ContainerRecord) -> Vec<PathBuf> {
        let pins = self.namespace_paths(&record.sandbox_id);
        [
            pins.net,
            pins.ipc,
            pins.uts,
            self.bundle_dir(record).join("rootfs"),
        ]
        .into_iter()
        .chain(record.mounts.iter().map(|m| PathBuf::from(&m.host_path)))
        .chain(log_dir(record).map(Path::to_path_buf))
        .collect()
    }

    /// The mounts the supervisor of `record` drops from its view and the
    /// host paths it keeps: none when a mount must propagate back to the
    /// host (the trimmed namespace is only downstream of it). It keeps what
    /// it uses below a mount root; starting from a mount template that does
    /// not follow the host, everything it uses (a volume or log disk mounted
    /// since the template was made is not in it).
    fn supervisor_mounts(&self, record: &ContainerRecord) -> (Vec<PathBuf>, Vec<PathBuf>) {
        if self.mount_roots.is_empty() || record.mounts.iter().any(|m| m.bidirectional) {
            return (Vec::new(), Vec::new());
        }
        let keep_all = self
            .mount_template
            .as_ref()
            .is_some_and(|t| !t.follows_host());
        let keep = self
            .supervisor_host_paths(record)
            .into_iter()
            .filter(|p| keep_all || self.mount_roots.iter().any(|root| p.starts_with(root)))
            .collect();
        (self.mount_roots.clone(), keep)
    }

    fn mount_template_path(&self) -> Option<PathBuf> {
        self.mount_template
            .as_ref()
            .map(skiff_sys::mount_view::MountTemplate::path)
    }

    fn new_id(&self, seed: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(format!("{seed}/{}/{n}/{}", now_nanos(), std::process::id()));
        hex::encode(h.finalize())
    }

    /// Sandbox `id`'s record.
    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.config.root.join("sandboxes").join(id)
    }

    /// The files sandbox `id`'s containers share (`resolv.conf`, `hostname`).
    fn sandbox_run_dir(&self, id: &str) -> PathBuf {
        self.config.run_dir.join("sandboxes").join(id)
    }

    /// Where sandbox `id`'s shared files are: an older agent's sandbox has
    /// them beside its record.
    fn sandbox_files_dir(&self, id: &str) -> PathBuf {
        let run = self.sandbox_run_dir(id);
        if run.exists() {
            return run;
        }
        let old = self.sandbox_dir(id);
        if old.join("hostname").exists() {
            old
        } else {
            run
        }
    }

    /// Container `id`'s persistent state: record, writable layer, exit record.
    fn container_dir(&self, id: &str) -> PathBuf {
        self.config.root.join("containers").join(id)
    }

    /// The container's OCI bundle, supervisor log and sockets.
    fn bundle_dir(&self, record: &ContainerRecord) -> PathBuf {
        if record.bundle_in_run_dir {
            self.run_bundle_dir(&record.id)
        } else {
            self.container_dir(&record.id)
        }
    }

    /// Where a new container `id`'s bundle goes.
    fn run_bundle_dir(&self, id: &str) -> PathBuf {
        self.config.run_dir.join("containers").join(id)
    }

    /// Where an agent that ran libcontainer kept the container's state
    /// (`oci/` under the run dir, or under the root in the oldest layout).
    fn state_root(&self, record: &ContainerRecord) -> PathBuf {
        if record.bundle_in_run_dir {
            self.config.run_dir.join("oci")
        } else {
            self.config.root.join("oci")
        }
    }

    /// The pinned namespaces of sandbox `id`.
    pub fn namespace_paths(&self, id: &str) -> PodNamespacePaths {
        PodNamespacePaths::new(&self.config.run_dir, id)
    }

    // ---- sandboxes ----

    /// Creates a sandbox: namespaces, then networking.
    pub async fn run_pod_sandbox(
        &self,
        config: &api::PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let meta = config.metadata.clone().unwrap_or_default();
        if meta.name.is_empty() {
            return Err(RuntimeError::InvalidArgument(
                "sandbox metadata.name is required".into(),
            ));
        }
        let id = self.new_id(&format!(
            "{}/{}/{}/{}",
            meta.namespace, meta.name, meta.uid, meta.attempt
        ));
        let hostname = if config.hostname.is_empty() {
            meta.name.clone()
        } else {
            config.hostname.clone()
        };
        let began = std::time::Instant::now();
        let paths = self.namespace_paths(&id);
        let namespaces = self.deps.namespaces.clone();
        let (p, h) = (paths.clone(), hostname.clone());
        tokio::task::spawn_blocking(move || namespaces.create(&p, &h))
            .await
            .map_err(|e| RuntimeError::Internal(e.to_string()))?
            .map_err(internal("create pod namespaces"))?;
        let namespaces_done = began.elapsed();
        let ip = match self.deps.network.setup(&id, &paths.net).await {
            Ok(ip) => ip,
            Err(e) => {
                let _ = self.deps.namespaces.remove(&paths);
                return Err(RuntimeError::Internal(format!("set up pod network: {e}")));
            }
        };
        let record = SandboxRecord {
            id: id.clone(),
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            attempt: meta.attempt,
            labels: config.labels.clone().into_iter().collect(),
            annotations: config.annotations.clone().into_iter().collect(),
            hostname,
            log_directory: config.log_directory.clone(),
            cgroup_parent: config
                .linux
                .as_ref()
                .map(|l| l.cgroup_parent.clone())
                .unwrap_or_default(),
            created_at: now_nanos(),
            state: SandboxState::Ready,
            ip,
            boot_id: self.boot_id.clone(),
            network_torn_down: false,
        };
        let dirs = (self.sandbox_dir(&id), self.sandbox_run_dir(&id));
        let (dns, files_record) = (config.dns_config.clone(), record.clone());
        let network_done = began.elapsed();
        tokio::task::spawn_blocking(move || {
            write_sandbox_files(&dirs.0, &dirs.1, dns.as_ref(), &files_record)
        })
        .await
        .map_err(|e| RuntimeError::Internal(e.to_string()))??;
        lock(&self.sandboxes).insert(id.clone(), record);
        tracing::debug!(
            sandbox = %id,
            namespaces = ?namespaces_done,
            network = ?network_done,
            total = ?began.elapsed(),
            "sandbox created"
        );
        Ok(id)
    }

    /// The pod network the runtime wires sandboxes into.
    pub fn network(&self) -> &dyn PodNetwork {
        self.deps.network.as_ref()
    }

    /// The sandbox `id`.
    pub fn sandbox(&self, id: &str) -> Result<SandboxRecord, RuntimeError> {
        lock(&self.sandboxes)
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(format!("pod sandbox {id:?} not found")))
    }

    /// Every sandbox.
    pub fn list_sandboxes(&self) -> Vec<SandboxRecord> {
        lock(&self.sandboxes).values().cloned().collect()
    }

    fn containers_of(&self, sandbox_id: &str) -> Vec<String> {
        lock(&self.containers)
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .map(|c| c.id.clone())
            .collect()
    }

    /// Stops a sandbox: kills its containers and tears down its network. Idempotent.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let mut record = match self.sandbox(id) {
            Ok(r) => r,
            // Already removed: stopping is idempotent.
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        for cid in self.containers_of(id) {
            self.stop_container(&cid, 0).await?;
        }
        if !record.network_torn_down {
            // A namespace that died with the host is no path at all (as
            // containerd passes an empty one): the network releases the
            // address and whatever of the veth is left.
            let netns = self.namespace_paths(id).net;
            let netns = if self.deps.namespaces.is_pinned(&netns) {
                netns
            } else {
                PathBuf::new()
            };
            self.deps
                .network
                .teardown(id, &netns)
                .await
                .map_err(internal("tear down pod network"))?;
            record.state = SandboxState::NotReady;
            record.network_torn_down = true;
            save_blocking(self.sandbox_dir(id).join("sandbox.json"), &record).await?;
            lock(&self.sandboxes).insert(id.to_owned(), record);
        }
        Ok(())
    }

    /// Removes a sandbox, its containers, namespaces and cgroups. Idempotent.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let record = match self.sandbox(id) {
            Ok(r) => r,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod_sandbox(id).await?;
        for cid in self.containers_of(id) {
            self.remove_container(&cid).await?;
        }
        self.deps
            .namespaces
            .remove(&self.namespace_paths(id))
            .map_err(internal("remove pod namespaces"))?;
        if record.cgroup_parent.is_empty() {
            skiff_sys::cgroups::remove_cgroup(&default_pod_cgroup(id))
                .map_err(internal("remove pod cgroup"))?;
        }
        for dir in [self.sandbox_run_dir(id), self.sandbox_dir(id)] {
            remove_dir(&dir).map_err(internal("remove sandbox dir"))?;
        }
        lock(&self.sandboxes).remove(id);
        Ok(())
    }

    // ---- containers ----

    /// Creates a container in `sandbox_id`: overlay rootfs, OCI bundle, record.
    /// Blocking (directories on the disk, a mount that waits on the kernel's
    /// mount lock): async callers run it on a blocking thread.
    pub fn create_container(
        &self,
        sandbox_id: &str,
        config: &api::ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let sandbox = self.sandbox(sandbox_id)?;
        if sandbox.state != SandboxState::Ready {
            return Err(RuntimeError::FailedPrecondition(format!(
                "pod sandbox {sandbox_id:?} is not ready"
            )));
        }
        let meta = config.metadata.clone().unwrap_or_default();
        if meta.name.is_empty() {
            return Err(RuntimeError::InvalidArgument(
                "container metadata.name is required".into(),
            ));
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let images = &self.deps.images;
        let image = images
            .resolve(&image_name)
            .map_err(|e| RuntimeError::Internal(e.to_string()))?
            .ok_or_else(|| RuntimeError::NotFound(format!("image {image_name:?} not found")))?;
        let image_config = images
            .config(&image)
            .map_err(|e| RuntimeError::Internal(e.to_string()))?
            .config
            .unwrap_or_default();
        let lowerdirs = images
            .rootfs_lowerdirs(&image)
            .map_err(|e| RuntimeError::Internal(e.to_string()))?;

        let id = self.new_id(&format!("{sandbox_id}/{}/{}", meta.name, meta.attempt));
        let (dir, bundle) = (self.container_dir(&id), self.run_bundle_dir(&id));
        let (rootfs, upper, work) = (bundle.join("rootfs"), dir.join("upper"), dir.join("work"));
        for d in [&rootfs, &upper, &work] {
            std::fs::create_dir_all(d).map_err(internal("create container dir"))?;
        }
        let cgroups_path = if sandbox.cgroup_parent.is_empty() {
            format!("{}/{id}", default_pod_cgroup(sandbox_id))
        } else {
            format!("{}/{id}", sandbox.cgroup_parent.trim_end_matches('/'))
        };
        let result = (|| {
            self.deps
                .mounter
                .mount_overlay(&lowerdirs, &upper, &work, &rootfs)
                .map_err(internal("mount rootfs"))?;
            let spec = build_spec(&SpecInputs {
                config,
                image: &image_config,
                hostname: &sandbox.hostname,
                namespaces: &self.namespace_paths(sandbox_id),
                cgroups_path: &cgroups_path,
                rootfs: &rootfs,
                bounding_mask: host_bounding_mask(),
                nofile: host_nofile_limit(),
                sandbox_files: ["resolv.conf", "hostname"]
                    .iter()
                    .map(|f| {
                        let host = self.sandbox_files_dir(sandbox_id).join(f);
                        (format!("/etc/{f}"), host.to_string_lossy().into_owned())
                    })
                    .collect(),
            })
            .map_err(RuntimeError::InvalidArgument)?;
            // No fsync: the bundle is read once, by this container's
            // supervisor, and a container never starts after a crash of the
            // host (containerd keeps bundles under /run).
            let path = bundle.join("config.json");
            let data = encode(&path, &spec)?;
            std::fs::write(&path, data).map_err(internal("write config.json"))
        })();
        if let Err(e) = result {
            let _ = self.deps.mounter.unmount(&rootfs);
            let _ = std::fs::remove_dir_all(&bundle);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let log_path = if config.log_path.is_empty() || sandbox.log_directory.is_empty() {
            config.log_path.clone()
        } else {
            Path::new(&sandbox.log_directory)
                .join(&config.log_path)
                .to_string_lossy()
                .into_owned()
        };
        let r = config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .unwrap_or_default();
        let record = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox_id.to_owned(),
            name: meta.name,
            attempt: meta.attempt,
            image: image_name,
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.to_string()),
            labels: config.labels.clone().into_iter().collect(),
            annotations: config.annotations.clone().into_iter().collect(),
            log_path,
            mounts: config
                .mounts
                .iter()
                .map(|m| MountRecord {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    readonly: m.readonly,
                    bidirectional: m.propagation
                        == api::MountPropagation::PropagationBidirectional as i32,
                })
                .collect(),
            resources: ResourcesRecord {
                cpu_period: r.cpu_period,
                cpu_quota: r.cpu_quota,
                cpu_shares: r.cpu_shares,
                memory_limit_in_bytes: r.memory_limit_in_bytes,
                oom_score_adj: r.oom_score_adj.max(0),
            },
            cgroups_path,
            created_at: now_nanos(),
            started_at: 0,
            pid: None,
            start_ticks: 0,
            shim: None,
            stop_signal: image_config
                .stop_signal
                .as_deref()
                .and_then(parse_signal)
                .unwrap_or(libc_signal::SIGTERM),
            start_error: None,
            stdio: StdioRecord {
                stdin: config.stdin,
                stdin_once: config.stdin_once,
                tty: config.tty,
            },
            bundle_in_run_dir: true,
            boot_id: None,
        };
        if let Err(e) = store_record(&self.record_paths(&record), &record) {
            let _ = self.deps.mounter.unmount(&rootfs);
            let _ = std::fs::remove_dir_all(&bundle);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        lock(&self.containers).insert(id.clone(), record);
        Ok(id)
    }

    fn record(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        lock(&self.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id:?} not found")))
    }

    /// Where `record` is stored (see [`store_record`]).
    fn record_paths(&self, record: &ContainerRecord) -> RecordPaths {
        RecordPaths {
            disk: self.container_dir(&record.id).join(CONTAINER_RECORD),
            run: record
                .bundle_in_run_dir
                .then(|| self.run_bundle_dir(&record.id).join(CONTAINER_RECORD)),
        }
    }

    /// [`Runtime::persist`] from async code (see [`save_blocking`]).
    async fn persist_blocking(&self, record: ContainerRecord) -> Result<(), RuntimeError> {
        let (paths, stored) = (self.record_paths(&record), record.clone());
        tokio::task::spawn_blocking(move || store_record(&paths, &stored))
            .await
            .map_err(|e| RuntimeError::Internal(e.to_string()))??;
        lock(&self.containers).insert(record.id.clone(), record);
        Ok(())
    }

    fn persist(&self, record: ContainerRecord) -> Result<(), RuntimeError> {
        store_record(&self.record_paths(&record), &record)?;
        lock(&self.containers).insert(record.id.clone(), record);
        Ok(())
    }

    fn exit_record(&self, id: &str) -> Option<ExitRecord> {
        let data = std::fs::read(self.container_dir(id).join("exit.json")).ok()?;
        serde_json::from_slice(&data).ok()
    }

    fn alive(pid: i32, start_ticks: u64) -> bool {
        match skiff_sys::process::live_process_start_ticks(pid) {
            Some(ticks) => start_ticks == 0 || ticks == start_ticks,
            None => false,
        }
    }

    /// Whether the container still counts as running: its init lives, or its
    /// supervisor does (it reaped the init and is about to record the exit).
    /// Never when it started in another boot of the host: what runs under
    /// its PIDs now is something else.
    fn init_alive(&self, record: &ContainerRecord) -> bool {
        let Some(pid) = record.pid else { return false };
        if lock(&self.supervised).contains(&record.id) {
            return true;
        }
        if record.started_in_other_boot(self.boot_id.as_deref()) {
            return false;
        }
        Self::alive(pid, record.start_ticks) || record.shim.is_some_and(|(p, t)| Self::alive(p, t))
    }

    /// A container's record and observed state.
    pub fn container(&self, id: &str) -> Result<(ContainerRecord, Observed), RuntimeError> {
        let record = self.record(id)?;
        let observed = observe(
            &record,
            self.exit_record(id).as_ref(),
            self.init_alive(&record),
        );
        Ok((record, observed))
    }

    /// Every container with its observed state.
    pub fn list_containers(&self) -> Vec<(ContainerRecord, Observed)> {
        self.list_containers_where(|_| true)
    }

    /// The containers whose record passes `keep`, with their observed state.
    /// Only those are observed (an exit file and /proc read each): a pod's
    /// lookup on a full node costs one container's observation, not all.
    pub fn list_containers_where(
        &self,
        keep: impl Fn(&ContainerRecord) -> bool,
    ) -> Vec<(ContainerRecord, Observed)> {
        let records: Vec<ContainerRecord> = lock(&self.containers)
            .values()
            .filter(|r| keep(r))
            .cloned()
            .collect();
        records
            .into_iter()
            .map(|r| {
                let o = observe(&r, self.exit_record(&r.id).as_ref(), self.init_alive(&r));
                (r, o)
            })
            .collect()
    }

    async fn lock_container(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let op = lock(&self.container_ops)
            .entry(id.to_owned())
            .or_default()
            .clone();
        op.lock_owned().await
    }

    /// Starts a created container under a new supervisor process.
    pub async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let _op = self.lock_container(id).await;
        let (mut record, observed) = self.container(id)?;
        if observed != Observed::Created {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id:?} is not in the created state"
            )));
        }
        let bundle = self.bundle_dir(&record);
        let (detach_mounts, keep_mounts) = self.supervisor_mounts(&record);
        // The supervisor would make the log's directory, but one it keeps
        // from the host's view must be there before it starts.
        if let Some(dir) = log_dir(&record)
            && keep_mounts.iter().any(|kept| kept == dir)
        {
            std::fs::create_dir_all(dir).map_err(internal("create log directory"))?;
        }
        let args = RunArgs {
            id: id.to_owned(),
            bundle: bundle.clone(),
            log_path: (!record.log_path.is_empty()).then(|| PathBuf::from(&record.log_path)),
            exit_file: self.container_dir(id).join("exit.json"),
            cgroups_path: record.cgroups_path.clone(),
            control_socket: Some(bundle.join(crate::shim::control::SOCKET_NAME)),
            stdin: record.stdio.stdin,
            stdin_once: record.stdio.stdin_once,
            tty: record.stdio.tty,
            detach_mounts,
            keep_mounts,
            mount_template: self.mount_template_path(),
        };
        // Taken before the shim starts it: a short-lived container can exit
        // (and its shim stamp the finish) before the shim's report arrives.
        record.started_at = now_nanos();
        record.boot_id.clone_from(&self.boot_id);
        let began = std::time::Instant::now();
        let report = self.spawn_run_shim(&args, &bundle).await;
        tracing::debug!(container = %id, shim = ?began.elapsed(), "supervisor reported");
        match report {
            Ok((StartReport::Started { pid, start_ticks }, shim)) => {
                record.pid = Some(pid);
                record.start_ticks = start_ticks;
                record.shim = shim;
                self.persist_blocking(record).await
            }
            Ok((StartReport::Failed(msg), _)) | Err(msg) => {
                record.start_error = Some(msg.clone());
                self.persist_blocking(record).await?;
                Err(RuntimeError::Internal(format!(
                    "start container {id:?}: {msg}"
                )))
            }
        }
    }

    fn shim_command(&self) -> Result<tokio::process::Command, RuntimeError> {
        let (program, prefix) = self
            .config
            .shim
            .split_first()
            .ok_or_else(|| RuntimeError::Internal("no supervisor command configured".into()))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(prefix).stdin(Stdio::null());
        Ok(cmd)
    }

    /// Starts the supervisor; returns its report and its PID + start ticks.
    async fn spawn_run_shim(
        &self,
        args: &RunArgs,
        dir: &Path,
    ) -> Result<(StartReport, Option<(i32, u64)>), String> {
        let shim_log = std::fs::File::create(dir.join("shim.log")).map_err(|e| e.to_string())?;
        let (report, report_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let supervisor = self.start_supervisor(args, report_w, shim_log).await?;
        let shim = supervisor.as_ref().map(|s| {
            (
                s.pid(),
                skiff_sys::process::process_start_ticks(s.pid()).unwrap_or(0),
            )
        });
        if let Some(supervisor) = supervisor {
            let (supervised, id) = (self.supervised.clone(), args.id.clone());
            lock(&supervised).insert(id.clone());
            tokio::spawn(async move {
                supervisor.ended().await;
                lock(&supervised).remove(&id);
            });
        }
        // The report's pipe closes without one when the supervisor ends
        // first (every copy of its write end is the supervisor's by now).
        let line = async {
            let report = tokio::net::unix::pipe::Receiver::from_owned_fd(report.into())?;
            let mut line = String::new();
            tokio::io::BufReader::new(report)
                .read_line(&mut line)
                .await
                .map(|_| line)
        };
        let line = tokio::time::timeout(Duration::from_secs(60), line)
            .await
            .map_err(|_| "timed out waiting for the supervisor".to_owned())?
            .map_err(|e| format!("read supervisor report: {e}"))?;
        if line.trim().is_empty() {
            let log = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
            return Err(format!(
                "supervisor exited without a report: {}",
                log.trim()
            ));
        }
        let report =
            serde_json::from_str(line.trim()).map_err(|e| format!("bad supervisor report: {e}"))?;
        Ok((report, shim))
    }

    /// Starts a supervisor for `args` writing its report to `report` and its
    /// own messages to `log`: forked by the zygote (started on first use,
    /// and again after it ended), else by executing the supervisor command.
    /// `None`: the zygote took the request but did not answer; whether a
    /// supervisor runs, its report tells.
    async fn start_supervisor(
        &self,
        args: &RunArgs,
        report: std::io::PipeWriter,
        log: std::fs::File,
    ) -> Result<Option<Supervisor>, String> {
        use std::os::fd::AsFd;
        let zygote = self.zygote.clone();
        let command = self.shim_command().map_err(|e| e.to_string())?;
        let request = args.clone();
        let (report, log, outcome) = tokio::task::spawn_blocking(move || {
            let mut kept = lock(&zygote);
            let z = match kept.take() {
                Some(z) => z,
                None => match Zygote::start(command) {
                    Ok(started) => started,
                    Err(e) => {
                        let outcome = Err(RequestError::NotSent(format!("start zygote: {e}")));
                        return (report, log, outcome);
                    }
                },
            };
            let outcome = z.spawn(&request, report.as_fd(), log.as_fd());
            // After a failure it is dropped (its socket closes, so it ends)
            // and the next request starts a new one.
            if outcome.is_ok() {
                *kept = Some(z);
            }
            (report, log, outcome)
        })
        .await
        .map_err(|e| format!("zygote request: {e}"))?;
        match outcome {
            Ok((pid, pidfd)) => Ok(Some(Supervisor::Forked { pid, pidfd })),
            Err(RequestError::NoReply(msg)) => {
                tracing::warn!(container = %args.id, "supervisor zygote: {msg}");
                Ok(None)
            }
            Err(RequestError::NotSent(msg)) => {
                tracing::warn!(container = %args.id, "supervisor zygote: {msg}; executing the supervisor");
                let json = serde_json::to_string(args).map_err(|e| e.to_string())?;
                let mut cmd = self.shim_command().map_err(|e| e.to_string())?;
                // Its own process group: signals to the agent's group don't reach it.
                cmd.arg("run")
                    .arg(json)
                    .stdout(report)
                    .stderr(log)
                    .process_group(0);
                let child = cmd.spawn().map_err(|e| format!("spawn supervisor: {e}"))?;
                let pid = child
                    .id()
                    .and_then(|p| i32::try_from(p).ok())
                    .ok_or("the supervisor ended at once")?;
                Ok(Some(Supervisor::Executed { pid, child }))
            }
        }
    }

    /// Waits until the container's exit is recorded or its supervisor is gone.
    async fn wait_exit(&self, id: &str, pid: i32, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.exit_record(id).is_some() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            if !skiff_sys::process::process_exists(pid) {
                // Give the supervisor a moment to write the record after reaping.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops a running container: SIGTERM, then SIGKILL after `timeout_secs`.
    /// Stopping a container that is not running is not an error.
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<(), RuntimeError> {
        let _op = self.lock_container(id).await;
        self.stop_locked(id, timeout_secs).await
    }

    async fn stop_locked(&self, id: &str, timeout_secs: i64) -> Result<(), RuntimeError> {
        let (record, observed) = self.container(id)?;
        let (Observed::Running, Some(pid)) = (observed, record.pid) else {
            return Ok(());
        };
        if timeout_secs > 0 {
            let _ = skiff_sys::process::kill(pid, record.stop_signal);
            let limit = Duration::from_secs(u64::try_from(timeout_secs).unwrap_or(0));
            if self.wait_exit(id, pid, limit).await {
                return Ok(());
            }
        }
        let _ = skiff_sys::process::kill(pid, libc_signal::SIGKILL);
        if self.wait_exit(id, pid, Duration::from_secs(10)).await {
            return Ok(());
        }
        if !self.init_alive(&record) {
            // The supervisor is gone too: nothing left to wait for.
            return Ok(());
        }
        Err(RuntimeError::DeadlineExceeded(format!(
            "container {id:?} did not stop after SIGKILL"
        )))
    }

    /// Removes a container (killing it if it runs). Idempotent.
    pub async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let _op = self.lock_container(id).await;
        let record = match self.record(id) {
            Ok(r) => r,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_locked(id, 0).await?;
        let bundle = self.bundle_dir(&record);
        self.deps
            .mounter
            .unmount(&bundle.join("rootfs"))
            .map_err(internal("unmount rootfs"))?;
        // The supervisor removes the cgroup; this covers a container that
        // never started or a supervisor that died. Containers started by
        // agents that ran libcontainer also left its state here.
        let state = self.state_root(&record).join(id);
        if state.exists() {
            let _ = std::fs::remove_dir_all(&state);
        }
        let _ = skiff_sys::cgroups::remove_cgroup(&record.cgroups_path);
        for dir in [bundle, self.container_dir(id)] {
            remove_dir(&dir).map_err(internal("remove container dir"))?;
        }
        lock(&self.containers).remove(id);
        lock(&self.container_ops).remove(id);
        Ok(())
    }

    /// Runs `cmd` in a running container; returns stdout, stderr and exit code.
    /// `timeout_secs` 0 means no timeout.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_secs: i64,
    ) -> Result<(Vec<u8>, Vec<u8>, i32), RuntimeError> {
        let mut exec = self.exec_command(id, &cmd, timeout_secs, false)?;
        exec.command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = exec
            .command
            .spawn()
            .map_err(internal("spawn exec supervisor"))?;
        let output = child
            .wait_with_output()
            .await
            .map_err(internal("exec supervisor"))?;
        let code = exec.result(&output.stderr)?;
        Ok((output.stdout, output.stderr, code))
    }

    /// Prepares an exec of `cmd` in running container `id`: the supervisor
    /// command, without stdio (the caller sets it and spawns). With `tty`
    /// the supervisor makes its stdin (a terminal) the controlling terminal.
    pub fn exec_command(
        &self,
        id: &str,
        cmd: &[String],
        timeout_secs: i64,
        tty: bool,
    ) -> Result<ExecCommand, RuntimeError> {
        let (record, observed) = self.container(id)?;
        if observed != Observed::Running {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id:?} is not running"
            )));
        }
        if cmd.is_empty() {
            return Err(RuntimeError::InvalidArgument(
                "exec command is empty".into(),
            ));
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir = self.bundle_dir(&record);
        let result_file = dir.join(format!("exec-{n}.json"));
        let pid_file = dir.join(format!("exec-{n}.pid"));
        let timeout_ms = u64::try_from(timeout_secs)
            .ok()
            .filter(|t| *t > 0)
            .map(|t| t * 1000);
        let pid = record.pid.ok_or_else(|| {
            RuntimeError::FailedPrecondition(format!("container {id:?} has no process"))
        })?;
        let args = ExecArgs {
            id: id.to_owned(),
            bundle: dir.clone(),
            pid,
            cgroups_path: record.cgroups_path.clone(),
            args: cmd.to_vec(),
            timeout_ms,
            result_file: result_file.clone(),
            tty,
            pid_file: Some(pid_file.clone()),
            detach_mounts: self.supervisor_mounts(&record).0,
            mount_template: self.mount_template_path(),
        };
        let json =
            serde_json::to_string(&args).map_err(|e| RuntimeError::Internal(e.to_string()))?;
        let mut command = self.shim_command()?;
        command.arg("exec").arg(json);
        Ok(ExecCommand {
            command,
            cmd: cmd.to_vec(),
            timeout_secs,
            result_file,
            pid_file,
        })
    }

    /// Applies new CPU and memory limits to a container's cgroup.
    pub fn update_container_resources(
        &self,
        id: &str,
        r: &api::LinuxContainerResources,
    ) -> Result<(), RuntimeError> {
        let (mut record, observed) = self.container(id)?;
        if matches!(observed, Observed::Running) {
            crate::cgroup_limits::apply(&record.cgroups_path, r)
                .map_err(internal("update cgroup"))?;
        }
        record.resources = ResourcesRecord {
            cpu_period: r.cpu_period,
            cpu_quota: r.cpu_quota,
            cpu_shares: r.cpu_shares,
            memory_limit_in_bytes: r.memory_limit_in_bytes,
            oom_score_adj: r.oom_score_adj.max(0),
        };
        self.persist(record)
    }
}

/// An exec's supervisor command, ready for stdio and spawning, and where
/// its outcome will be.
#[derive(Debug)]
pub struct ExecCommand {
    /// The supervisor (`runtime-shim exec ...`).
    pub command: tokio::process::Command,
    cmd: Vec<String>,
    timeout_secs: i64,
    result_file: PathBuf,
    pid_file: PathBuf,
}

impl ExecCommand {
    /// The command being run.
    pub fn cmd(&self) -> &[String] {
        &self.cmd
    }

    /// Kills the exec'd process (the client went away): the supervisor then
    /// reaps it and ends.
    pub fn kill(&self) {
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = skiff_sys::process::kill(pid, libc_signal::SIGKILL);
        }
    }

    /// The exit code, once the supervisor has ended (`supervisor_stderr` is
    /// its stderr, for the error when it left no result).
    pub fn result(&self, supervisor_stderr: &[u8]) -> Result<i32, RuntimeError> {
        let result: Option<ExecResult> = std::fs::read(&self.result_file)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok());
        let _ = std::fs::remove_file(&self.result_file);
        let _ = std::fs::remove_file(&self.pid_file);
        match result {
            Some(ExecResult::Exited(code)) => Ok(code),
            Some(ExecResult::TimedOut) => Err(RuntimeError::DeadlineExceeded(format!(
                "command {:?} timed out after {}s",
                self.cmd, self.timeout_secs
            ))),
            Some(ExecResult::Failed(msg)) => Err(RuntimeError::Internal(msg)),
            None => Err(RuntimeError::Internal(format!(
                "exec supervisor failed: {}",
                String::from_utf8_lossy(supervisor_stderr).trim()
            ))),
        }
    }
}

/// Signal numbers (Linux; identical on every architecture we build for).
mod libc_signal {
    pub const SIGKILL: i32 = 9;
    pub const SIGTERM: i32 = 15;
}

/// A new sandbox's directory: the files every container of the pod shares
/// (as containerd provides them) and its record.
fn write_sandbox_files(
    dir: &Path,
    run_dir: &Path,
    dns: Option<&api::DnsConfig>,
    record: &SandboxRecord,
) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(run_dir).map_err(internal("create sandbox dir"))?;
    let resolv = match dns {
        Some(dns) => resolv_conf(dns),
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    std::fs::write(run_dir.join("resolv.conf"), resolv).map_err(internal("write resolv.conf"))?;
    std::fs::write(run_dir.join("hostname"), format!("{}\n", record.hostname))
        .map_err(internal("write hostname"))?;
    std::fs::create_dir_all(dir).map_err(internal("create sandbox dir"))?;
    save(&dir.join("sandbox.json"), record)
}

/// `record` as it is now: a sandbox recorded Ready whose namespaces died
/// with the host (or were unmounted) is NotReady, persisted so, and keeps
/// its address until StopPodSandbox tears its network down. Upstream
/// (containerd) reports such a sandbox NotReady too: its pause process is
/// gone.
fn mark_lost_sandbox(
    config: &RuntimeConfig,
    namespaces: &dyn PodNamespaces,
    boot_id: Option<&str>,
    mut record: SandboxRecord,
) -> SandboxRecord {
    let pins = PodNamespacePaths::new(&config.run_dir, &record.id);
    let pinned = || {
        [&pins.net, &pins.ipc, &pins.uts]
            .into_iter()
            .all(|p| namespaces.is_pinned(p))
    };
    if !record.lost(boot_id, pinned) {
        return record;
    }
    record.state = SandboxState::NotReady;
    let path = config
        .root
        .join("sandboxes")
        .join(&record.id)
        .join("sandbox.json");
    match save(&path, &record) {
        Ok(()) => {
            tracing::info!(sandbox = %record.id, "sandbox's namespaces are gone (a restart of the host?): not ready")
        }
        // Still NotReady for this runtime; found again by the next one.
        Err(e) => tracing::warn!(sandbox = %record.id, error = %e, "recording a lost sandbox"),
    }
    record
}

/// Removes `dir` and what is in it, if it exists.
fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes the runtime's per-pod mount directories mount roots; the ones that
/// could not be made are left out (their supervisors see those mounts).
fn open_mount_roots(config: &RuntimeConfig) -> Vec<PathBuf> {
    // The run dir holds only what dies with the host (namespace pins,
    // rootfs mount points, bundles): a tmpfs, as containerd keeps its state
    // under /run. `containers/` holds the rootfs mounts of an older agent's
    // containers.
    let run_dir = config.run_dir.clone();
    [run_dir.clone(), config.root.join("containers")]
        .into_iter()
        .filter(|dir| {
            let ensured = if *dir == run_dir {
                skiff_sys::mount_view::ensure_tmpfs_mount_root(dir)
            } else {
                skiff_sys::mount_view::ensure_mount_root(dir)
            };
            match ensured {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot make a mount root; supervisors will see its mounts");
                    false
                }
            }
        })
        .collect()
}

/// The cgroup of a sandbox without a `cgroup_parent`.
pub fn default_pod_cgroup(sandbox_id: &str) -> String {
    format!("/skiff/{sandbox_id}")
}
