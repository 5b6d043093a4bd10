//! The CRI `RuntimeService` over [`Runtime`]: request validation, filters and
//! the mapping of records to CRI messages.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::api::{self, runtime_service_server::RuntimeService};
use super::stats::{StatsCollector, blocking};
use crate::container::{ContainerRecord, Observed};
use crate::runtime::{Runtime, RuntimeError};
use crate::sandbox::{SandboxRecord, SandboxState};
use crate::stream::server::{StreamingServer, UrlError};

/// The CRI `RuntimeService` of the built-in runtime.
#[derive(Debug, Clone)]
pub struct CriRuntimeService {
    runtime: Arc<Runtime>,
    streaming: Option<Arc<StreamingServer>>,
    stats: Arc<StatsCollector>,
}

impl CriRuntimeService {
    /// A service over `runtime` (without a streaming server, `Exec` and
    /// `Attach` answer Unimplemented).
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self {
            stats: Arc::new(StatsCollector::new(runtime.clone())),
            runtime,
            streaming: None,
        }
    }

    /// Hands out `Exec`/`Attach` URLs on `server`.
    pub fn with_streaming(mut self, server: Arc<StreamingServer>) -> Self {
        self.streaming = Some(server);
        self
    }

    /// The streaming server, for running container `id` (as containerd:
    /// the container must exist and run).
    fn streaming_for(&self, id: &str) -> Result<&StreamingServer, Status> {
        let streaming = self
            .streaming
            .as_deref()
            .ok_or_else(|| Status::unimplemented("the streaming server is not running"))?;
        let (_, observed) = self.runtime.container(id)?;
        if observed != Observed::Running {
            return Err(Status::failed_precondition(format!(
                "container {id:?} is not running"
            )));
        }
        Ok(streaming)
    }
}

impl From<UrlError> for Status {
    fn from(e: UrlError) -> Self {
        match e {
            UrlError::InvalidArgument(m) => Status::invalid_argument(m),
            UrlError::ResourceExhausted => Status::resource_exhausted(e.to_string()),
        }
    }
}

impl From<RuntimeError> for Status {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::NotFound(m) => Status::not_found(m),
            RuntimeError::InvalidArgument(m) => Status::invalid_argument(m),
            RuntimeError::FailedPrecondition(m) => Status::failed_precondition(m),
            RuntimeError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            RuntimeError::Internal(m) => Status::internal(m),
        }
    }
}

fn hash(m: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn sandbox_state(s: SandboxState) -> api::PodSandboxState {
    match s {
        SandboxState::Ready => api::PodSandboxState::SandboxReady,
        SandboxState::NotReady => api::PodSandboxState::SandboxNotready,
    }
}

fn sandbox_metadata(s: &SandboxRecord) -> api::PodSandboxMetadata {
    api::PodSandboxMetadata {
        name: s.name.clone(),
        uid: s.uid.clone(),
        namespace: s.namespace.clone(),
        attempt: s.attempt,
    }
}

fn container_state(o: &Observed) -> api::ContainerState {
    match o {
        Observed::Created => api::ContainerState::ContainerCreated,
        Observed::Running => api::ContainerState::ContainerRunning,
        Observed::Exited { .. } => api::ContainerState::ContainerExited,
    }
}

fn to_container(r: &ContainerRecord, o: &Observed) -> api::Container {
    api::Container {
        id: r.id.clone(),
        pod_sandbox_id: r.sandbox_id.clone(),
        metadata: Some(api::ContainerMetadata {
            name: r.name.clone(),
            attempt: r.attempt,
        }),
        image: Some(api::ImageSpec {
            image: r.image.clone(),
            ..Default::default()
        }),
        image_ref: r.image_ref.clone(),
        state: container_state(o) as i32,
        created_at: r.created_at,
        labels: hash(&r.labels),
        annotations: hash(&r.annotations),
        ..Default::default()
    }
}

fn to_status(r: &ContainerRecord, o: &Observed) -> api::ContainerStatus {
    let (exit_code, finished_at, reason, message) = match o {
        Observed::Exited {
            exit_code,
            finished_at,
            reason,
            message,
        } => (
            *exit_code,
            *finished_at,
            (*reason).to_owned(),
            message.clone(),
        ),
        _ => (0, 0, String::new(), String::new()),
    };
    api::ContainerStatus {
        id: r.id.clone(),
        metadata: Some(api::ContainerMetadata {
            name: r.name.clone(),
            attempt: r.attempt,
        }),
        state: container_state(o) as i32,
        created_at: r.created_at,
        started_at: if r.pid.is_some() { r.started_at } else { 0 },
        finished_at,
        exit_code,
        image: Some(api::ImageSpec {
            image: r.image.clone(),
            ..Default::default()
        }),
        image_ref: r.image_ref.clone(),
        reason,
        message,
        labels: hash(&r.labels),
        annotations: hash(&r.annotations),
        mounts: r
            .mounts
            .iter()
            .map(|m| api::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                ..Default::default()
            })
            .collect(),
        log_path: r.log_path.clone(),
        resources: Some(api::ContainerResources {
            linux: Some(api::LinuxContainerResources {
                cpu_period: r.resources.cpu_period,
                cpu_quota: r.resources.cpu_quota,
                cpu_shares: r.resources.cpu_shares,
                memory_limit_in_bytes: r.resources.memory_limit_in_bytes,
                oom_score_adj: r.resources.oom_score_adj,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// CRI filters match an ID exactly or by unique-enough prefix, as containerd does.
fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

fn labels_match(
    selector: &HashMap<String, String>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RuntimeService for CriRuntimeService {
    async fn version(
        &self,
        _request: Request<api::VersionRequest>,
    ) -> Result<Response<api::VersionResponse>, Status> {
        Ok(Response::new(api::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "skiff".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<api::RunPodSandboxRequest>,
    ) -> Result<Response<api::RunPodSandboxResponse>, Status> {
        let config = request
            .into_inner()
            .config
            .ok_or_else(|| Status::invalid_argument("sandbox config is required"))?;
        let pod_sandbox_id = self.runtime.run_pod_sandbox(&config).await?;
        Ok(Response::new(api::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<api::StopPodSandboxRequest>,
    ) -> Result<Response<api::StopPodSandboxResponse>, Status> {
        self.runtime
            .stop_pod_sandbox(&request.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(api::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<api::RemovePodSandboxRequest>,
    ) -> Result<Response<api::RemovePodSandboxResponse>, Status> {
        self.runtime
            .remove_pod_sandbox(&request.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(api::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<api::PodSandboxStatusRequest>,
    ) -> Result<Response<api::PodSandboxStatusResponse>, Status> {
        let s = self.runtime.sandbox(&request.into_inner().pod_sandbox_id)?;
        let status = api::PodSandboxStatus {
            id: s.id.clone(),
            metadata: Some(sandbox_metadata(&s)),
            state: sandbox_state(s.state) as i32,
            created_at: s.created_at,
            network: Some(api::PodSandboxNetworkStatus {
                ip: s.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                ..Default::default()
            }),
            linux: Some(api::LinuxPodSandboxStatus {
                namespaces: Some(api::Namespace {
                    options: Some(api::NamespaceOption {
                        network: api::NamespaceMode::Pod as i32,
                        pid: api::NamespaceMode::Container as i32,
                        ipc: api::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                }),
            }),
            labels: hash(&s.labels),
            annotations: hash(&s.annotations),
            ..Default::default()
        };
        Ok(Response::new(api::PodSandboxStatusResponse {
            status: Some(status),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<api::ListPodSandboxRequest>,
    ) -> Result<Response<api::ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let items = self
            .runtime
            .list_sandboxes()
            .into_iter()
            .filter(|s| id_matches(&filter.id, &s.id))
            .filter(|s| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|v| v.state == sandbox_state(s.state) as i32)
            })
            .filter(|s| s.matches_labels(&filter.label_selector))
            .map(|s| api::PodSandbox {
                id: s.id.clone(),
                metadata: Some(sandbox_metadata(&s)),
                state: sandbox_state(s.state) as i32,
                created_at: s.created_at,
                labels: hash(&s.labels),
                annotations: hash(&s.annotations),
                runtime_handler: String::new(),
            })
            .collect();
        Ok(Response::new(api::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<api::CreateContainerRequest>,
    ) -> Result<Response<api::CreateContainerResponse>, Status> {
        let req = request.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("container config is required"))?;
        let runtime = self.runtime.clone();
        let container_id = tokio::task::spawn_blocking(move || {
            runtime.create_container(&req.pod_sandbox_id, &config)
        })
        .await
        .map_err(|e| Status::internal(format!("create container: {e}")))??;
        Ok(Response::new(api::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        request: Request<api::StartContainerRequest>,
    ) -> Result<Response<api::StartContainerResponse>, Status> {
        self.runtime
            .start_container(&request.into_inner().container_id)
            .await?;
        Ok(Response::new(api::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<api::StopContainerRequest>,
    ) -> Result<Response<api::StopContainerResponse>, Status> {
        let req = request.into_inner();
        self.runtime
            .stop_container(&req.container_id, req.timeout)
            .await?;
        Ok(Response::new(api::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<api::RemoveContainerRequest>,
    ) -> Result<Response<api::RemoveContainerResponse>, Status> {
        self.runtime
            .remove_container(&request.into_inner().container_id)
            .await?;
        Ok(Response::new(api::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<api::ListContainersRequest>,
    ) -> Result<Response<api::ListContainersResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let containers = self
            .runtime
            .list_containers_where(|r| {
                id_matches(&filter.id, &r.id)
                    && id_matches(&filter.pod_sandbox_id, &r.sandbox_id)
                    && labels_match(&filter.label_selector, &r.labels)
            })
            .into_iter()
            .filter(|(_, o)| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|v| v.state == container_state(o) as i32)
            })
            .map(|(r, o)| to_container(&r, &o))
            .collect();
        Ok(Response::new(api::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<api::ContainerStatusRequest>,
    ) -> Result<Response<api::ContainerStatusResponse>, Status> {
        let (r, o) = self.runtime.container(&request.into_inner().container_id)?;
        Ok(Response::new(api::ContainerStatusResponse {
            status: Some(to_status(&r, &o)),
            ..Default::default()
        }))
    }

    async fn update_container_resources(
        &self,
        request: Request<api::UpdateContainerResourcesRequest>,
    ) -> Result<Response<api::UpdateContainerResourcesResponse>, Status> {
        let req = request.into_inner();
        let linux = req.linux.unwrap_or_default();
        self.runtime
            .update_container_resources(&req.container_id, &linux)?;
        Ok(Response::new(api::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<api::ReopenContainerLogRequest>,
    ) -> Result<Response<api::ReopenContainerLogResponse>, Status> {
        let id = request.into_inner().container_id;
        self.runtime.reopen_container_log(&id).await?;
        Ok(Response::new(api::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<api::ExecSyncRequest>,
    ) -> Result<Response<api::ExecSyncResponse>, Status> {
        let req = request.into_inner();
        let (stdout, stderr, exit_code) = self
            .runtime
            .exec_sync(&req.container_id, req.cmd, req.timeout)
            .await?;
        Ok(Response::new(api::ExecSyncResponse {
            stdout,
            stderr,
            exit_code,
        }))
    }

    async fn exec(
        &self,
        request: Request<api::ExecRequest>,
    ) -> Result<Response<api::ExecResponse>, Status> {
        let req = request.into_inner();
        let url = self.streaming_for(&req.container_id)?.exec_url(&req)?;
        Ok(Response::new(api::ExecResponse { url }))
    }

    async fn attach(
        &self,
        request: Request<api::AttachRequest>,
    ) -> Result<Response<api::AttachResponse>, Status> {
        let req = request.into_inner();
        let url = self.streaming_for(&req.container_id)?.attach_url(&req)?;
        Ok(Response::new(api::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<api::PortForwardRequest>,
    ) -> Result<Response<api::PortForwardResponse>, Status> {
        let req = request.into_inner();
        let streaming = self
            .streaming
            .as_deref()
            .ok_or_else(|| Status::unimplemented("the streaming server is not running"))?;
        if !req.pod_sandbox_id.is_empty() {
            // As containerd: the sandbox must exist and be ready.
            let sandbox = self.runtime.sandbox(&req.pod_sandbox_id)?;
            if sandbox.state != SandboxState::Ready {
                return Err(Status::failed_precondition(format!(
                    "pod sandbox {:?} is not running",
                    req.pod_sandbox_id
                )));
            }
        }
        let url = streaming.port_forward_url(&req)?;
        Ok(Response::new(api::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        request: Request<api::ContainerStatsRequest>,
    ) -> Result<Response<api::ContainerStatsResponse>, Status> {
        let id = request.into_inner().container_id;
        let stats = blocking(&self.stats, move |s| s.container_stats(&id)).await??;
        Ok(Response::new(api::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<api::ListContainerStatsRequest>,
    ) -> Result<Response<api::ListContainerStatsResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let stats = blocking(&self.stats, move |s| s.list_container_stats(&filter)).await?;
        Ok(Response::new(api::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<api::PodSandboxStatsRequest>,
    ) -> Result<Response<api::PodSandboxStatsResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let stats = blocking(&self.stats, move |s| s.pod_sandbox_stats(&id)).await??;
        Ok(Response::new(api::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<api::ListPodSandboxStatsRequest>,
    ) -> Result<Response<api::ListPodSandboxStatsResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let stats = blocking(&self.stats, move |s| s.list_pod_sandbox_stats(&filter)).await?;
        Ok(Response::new(api::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<api::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<api::UpdateRuntimeConfigResponse>, Status> {
        let cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        // The kubelet may send a comma-separated dual-stack list; we route IPv4.
        if let Some(first) = cidr.split(',').map(str::trim).find(|c| !c.is_empty()) {
            self.runtime
                .network()
                .set_pod_cidr(first)
                .map_err(|e| Status::invalid_argument(format!("podCIDR {first:?}: {e}")))?;
        }
        Ok(Response::new(api::UpdateRuntimeConfigResponse {}))
    }

    async fn status(
        &self,
        _request: Request<api::StatusRequest>,
    ) -> Result<Response<api::StatusResponse>, Status> {
        let ready = api::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        let network = match self.runtime.network().ready() {
            Ok(()) => api::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            Err(message) => api::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message,
            },
        };
        Ok(Response::new(api::StatusResponse {
            status: Some(api::RuntimeStatus {
                conditions: vec![ready, network],
            }),
            ..Default::default()
        }))
    }

    async fn checkpoint_container(
        &self,
        _request: Request<api::CheckpointContainerRequest>,
    ) -> Result<Response<api::CheckpointContainerResponse>, Status> {
        Err(Status::unimplemented(
            "CheckpointContainer is not supported",
        ))
    }

    type GetContainerEventsStream = Stream<api::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _request: Request<api::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(Status::unimplemented(
            "GetContainerEvents is not implemented yet",
        ))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<api::ListMetricDescriptorsRequest>,
    ) -> Result<Response<api::ListMetricDescriptorsResponse>, Status> {
        Err(Status::unimplemented(
            "ListMetricDescriptors is not implemented",
        ))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<api::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<api::ListPodSandboxMetricsResponse>, Status> {
        Err(Status::unimplemented(
            "ListPodSandboxMetrics is not implemented",
        ))
    }

    async fn runtime_config(
        &self,
        _request: Request<api::RuntimeConfigRequest>,
    ) -> Result<Response<api::RuntimeConfigResponse>, Status> {
        Ok(Response::new(api::RuntimeConfigResponse {
            linux: Some(api::LinuxRuntimeConfiguration {
                cgroup_driver: api::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}
