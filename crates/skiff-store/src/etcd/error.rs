//! How etcd's failures map onto [`StoreError`].
//!
//! The line that matters is between "etcd answered, and said no" and "we do
//! not know what happened". Only the first may become [`StoreError::Io`],
//! whose contract is that nothing was applied; everything that could be a
//! lost connection, a timeout or a leader change (including the gRPC codes
//! tonic reports for broken HTTP/2 streams: `Unknown`, `Internal`,
//! `Cancelled`) becomes [`StoreError::Unavailable`], which callers may retry
//! and which says the write may or may not have been applied.

use tonic::Code;

use crate::StoreError;

/// etcd's `ErrCompacted` ("etcdserver: mvcc: required revision has been compacted").
const COMPACTED: &str = "required revision has been compacted";
/// etcd's `ErrFutureRev` ("etcdserver: mvcc: required revision is a future revision").
const FUTURE_REVISION: &str = "required revision is a future revision";
/// etcd's `ErrRequestTooLarge` ("etcdserver: request is too large").
const TOO_LARGE: &str = "request is too large";
/// etcd's `ErrTooManyRequests`: the member's apply loop is behind; nothing was applied.
const TOO_MANY_REQUESTS: &str = "too many requests";

/// An etcd failure, sorted into the cases an operation handles itself and the
/// rest, already mapped.
#[derive(Debug)]
pub(super) enum Failure {
    /// The revision asked for is older than etcd's compacted revision.
    Compacted,
    /// The revision asked for has not been written yet.
    FutureRevision,
    /// The request exceeds etcd's `--max-request-bytes`.
    TooLarge,
    /// No connection to the chosen endpoint could be made, so the request
    /// was never sent: safe to send again, even a write.
    NotSent(StoreError),
    /// Anything else.
    Other(StoreError),
}

impl Failure {
    /// The [`StoreError`] for a failure the operation has no special meaning for.
    pub(super) fn into_store_error(self) -> StoreError {
        match self {
            Failure::Compacted => StoreError::Io(format!("etcdserver: mvcc: {COMPACTED}")),
            Failure::FutureRevision => {
                StoreError::Io(format!("etcdserver: mvcc: {FUTURE_REVISION}"))
            }
            Failure::TooLarge => StoreError::Io(format!("etcdserver: {TOO_LARGE}")),
            Failure::NotSent(e) | Failure::Other(e) => e,
        }
    }
}

impl From<etcd_client::Error> for Failure {
    fn from(e: etcd_client::Error) -> Self {
        classify(e)
    }
}

/// Sorts an etcd-client error.
pub(super) fn classify(e: etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => classify_status(&status),
        // No connection, a broken connection or a closed request channel:
        // the request may or may not have reached etcd.
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) => {
            Failure::Other(StoreError::Unavailable(e.to_string()))
        }
        E::InvalidArgs(_) | E::InvalidUri(_) | E::EndpointError(_) | E::EndpointsNotManaged => {
            Failure::Other(StoreError::Open(e.to_string()))
        }
        other => Failure::Other(StoreError::Io(other.to_string())),
    }
}

fn classify_status(status: &tonic::Status) -> Failure {
    if caused_by_connect_error(status) {
        return Failure::NotSent(StoreError::Unavailable(describe(status)));
    }
    let message = status.message();
    match status.code() {
        Code::OutOfRange if message.contains(COMPACTED) => Failure::Compacted,
        Code::OutOfRange if message.contains(FUTURE_REVISION) => Failure::FutureRevision,
        Code::InvalidArgument if message.contains(TOO_LARGE) => Failure::TooLarge,
        Code::ResourceExhausted if message.contains(TOO_MANY_REQUESTS) => {
            Failure::Other(StoreError::Unavailable(describe(status)))
        }
        // etcd's definite refusals: nothing was applied.
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Unauthenticated
        | Code::DataLoss => Failure::Other(StoreError::Io(describe(status))),
        // Unavailable, DeadlineExceeded, and what tonic makes of a broken
        // connection (Unknown, Internal, Cancelled): outcome unknown.
        _ => Failure::Other(StoreError::Unavailable(describe(status))),
    }
}

/// True when tonic failed to connect to the endpoint (its `ConnectError` is
/// in the status's source chain): the request did not leave this process.
fn caused_by_connect_error(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The error for a request that did not finish within the request timeout.
pub(super) fn timed_out(what: &str, after: std::time::Duration) -> StoreError {
    StoreError::Unavailable(format!("etcd {what} timed out after {after:?}"))
}

/// The error for a response that lacks something etcd always sends.
pub(super) fn malformed(what: &str) -> StoreError {
    StoreError::Io(format!("malformed etcd response: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg))
    }

    #[test]
    fn revision_errors() {
        assert!(matches!(
            classify(status(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted"
            )),
            Failure::Compacted
        ));
        assert!(matches!(
            classify(status(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision"
            )),
            Failure::FutureRevision
        ));
        assert!(matches!(
            classify(status(
                Code::InvalidArgument,
                "etcdserver: request is too large"
            )),
            Failure::TooLarge
        ));
    }

    #[test]
    fn uncertain_outcomes_are_unavailable() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Unknown,
            Code::Internal,
            Code::Cancelled,
        ] {
            assert!(
                matches!(
                    classify(status(code, "x")),
                    Failure::Other(StoreError::Unavailable(_))
                ),
                "{code:?}"
            );
        }
        assert!(matches!(
            classify(status(
                Code::ResourceExhausted,
                "etcdserver: too many requests"
            )),
            Failure::Other(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn refusals_are_io() {
        assert!(matches!(
            classify(status(
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded"
            )),
            Failure::Other(StoreError::Io(_))
        ));
        assert!(matches!(
            classify(status(
                Code::PermissionDenied,
                "etcdserver: permission denied"
            )),
            Failure::Other(StoreError::Io(_))
        ));
    }
}
