//! Requests the runtime passes to a running container's supervisor over its
//! control socket (CRI `ReopenContainerLog`, attach).

use std::time::Duration;

use super::{Runtime, RuntimeError};
use crate::container::Observed;
use crate::shim::attach::Wants;
use crate::shim::control::{self, ControlError};

/// How long the supervisor may take to connect and answer.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

impl From<ControlError> for RuntimeError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NoSocket(_) => RuntimeError::FailedPrecondition(e.to_string()),
            ControlError::Timeout { .. } => RuntimeError::DeadlineExceeded(e.to_string()),
            ControlError::Unreachable { .. }
            | ControlError::Failed(_)
            | ControlError::Protocol(_) => RuntimeError::Internal(e.to_string()),
        }
    }
}

impl Runtime {
    /// CRI `ReopenContainerLog`: the supervisor of running container `id`
    /// opens a fresh file at the container's log path (after the kubelet
    /// renamed the old one). Synchronous: once this returns `Ok`, output
    /// lands in the new file.
    pub async fn reopen_container_log(&self, id: &str) -> Result<(), RuntimeError> {
        let (record, observed) = self.container(id)?;
        if observed != Observed::Running {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id:?} is not running"
            )));
        }
        if record.log_path.is_empty() {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id:?} has no log path"
            )));
        }
        let socket = self.bundle_dir(&record).join(control::SOCKET_NAME);
        control::request(&socket, "reopen", CONTROL_TIMEOUT).await?;
        Ok(())
    }

    /// A connection attached to running container `id`'s stdio, carrying
    /// [`crate::shim::attach`] frames.
    pub async fn attach_connection(
        &self,
        id: &str,
        wants: Wants,
    ) -> Result<tokio::net::UnixStream, RuntimeError> {
        let (record, observed) = self.container(id)?;
        if observed != Observed::Running {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id:?} is not running"
            )));
        }
        let socket = self.bundle_dir(&record).join(control::SOCKET_NAME);
        let command = format!("attach {}", wants.args());
        let (_, conn) = control::open(&socket, &command, CONTROL_TIMEOUT).await?;
        Ok(conn)
    }
}
