//! Exec, attach and port-forward for the kubelet server: finds the running container among the
//! kubelet's pods and asks the runtime (CRI `Exec`) for a streaming URL.

use k8s_cri::v1 as api;

use crate::cri::Cri;
use crate::logs::PodLogs;
use crate::server::stream::BoxFuture;
use crate::server::{ContainerStreamer, ExecParams, PortForwardParams};

/// [`ContainerStreamer`] over the kubelet's pods and its runtime.
#[derive(Debug, Clone)]
pub struct CriStreamer {
    pods: PodLogs,
    cri: Cri,
}

impl CriStreamer {
    /// A streamer over `pods` and `cri`.
    pub fn new(pods: PodLogs, cri: Cri) -> CriStreamer {
        CriStreamer { pods, cri }
    }
}

/// A runtime error as upstream's streaming `WriteError` answers it.
fn runtime_error(status: &tonic::Status) -> (u16, String) {
    let code = match status.code() {
        tonic::Code::NotFound => 404,
        tonic::Code::ResourceExhausted => 429,
        _ => 500,
    };
    let name = format!("{:?}", status.code());
    (
        code,
        format!("rpc error: code = {name} desc = {}", status.message()),
    )
}

impl CriStreamer {
    /// CRI `Exec` (with a command) or `Attach` for `params`.
    fn url(&self, params: ExecParams, attach: bool) -> BoxFuture<Result<String, (u16, String)>> {
        let found = self
            .pods
            .running_container(&params.namespace, &params.pod, &params.container);
        let mut cri = self.cri.clone();
        Box::pin(async move {
            let container_id = found?;
            let f = params.flags;
            let url = if attach {
                cri.runtime
                    .attach(api::AttachRequest {
                        container_id,
                        tty: f.tty,
                        stdin: f.stdin,
                        stdout: f.stdout,
                        stderr: f.stderr,
                    })
                    .await
                    .map(|r| r.into_inner().url)
            } else {
                cri.runtime
                    .exec(api::ExecRequest {
                        container_id,
                        cmd: params.command,
                        tty: f.tty,
                        stdin: f.stdin,
                        stdout: f.stdout,
                        stderr: f.stderr,
                    })
                    .await
                    .map(|r| r.into_inner().url)
            };
            url.map_err(|s| runtime_error(&s))
        })
    }
}

impl ContainerStreamer for CriStreamer {
    fn exec_url(&self, params: ExecParams) -> BoxFuture<Result<String, (u16, String)>> {
        self.url(params, false)
    }

    fn attach_url(&self, params: ExecParams) -> BoxFuture<Result<String, (u16, String)>> {
        self.url(params, true)
    }

    fn port_forward_url(
        &self,
        params: PortForwardParams,
    ) -> BoxFuture<Result<String, (u16, String)>> {
        let found = self
            .pods
            .ready_sandbox(&params.namespace, &params.pod, params.uid.as_deref());
        let mut cri = self.cri.clone();
        Box::pin(async move {
            let pod_sandbox_id = found?;
            cri.runtime
                .port_forward(api::PortForwardRequest {
                    pod_sandbox_id,
                    port: params.ports.into_iter().map(i32::from).collect(),
                })
                .await
                .map(|r| r.into_inner().url)
                .map_err(|s| runtime_error(&s))
        })
    }
}
