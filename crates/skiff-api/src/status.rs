//! API errors as `metav1.Status`, with upstream's reasons, codes and message
//! shapes (`k8s.io/apimachinery/pkg/api/errors`).
//!
//! Handlers return [`ApiError`]; the server writes [`ApiError::status`] with the
//! HTTP code [`ApiError::code`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, Status, StatusCause, StatusDetails,
};

use crate::field::ErrorList;
use crate::quote::go_quote;
use crate::resources::ResourceInfo;

/// The cause upstream gives for a failed optimistic-concurrency update.
pub const OPTIMISTIC_LOCK_ERROR_MSG: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// `resource` or `resource.group`, upstream's `GroupResource.String()`.
pub fn qualified_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

fn quote_qualified(group: &str, resource: &str) -> String {
    go_quote(&qualified_resource(group, resource))
}

fn invalid_message(group: &str, kind: &str, name: &str, errors: &ErrorList) -> String {
    let head = format!(
        "{} {} is invalid",
        qualified_resource(group, kind),
        go_quote(name)
    );
    match errors.aggregate_message() {
        Some(agg) => format!("{head}: {agg}"),
        None => head,
    }
}

fn forbidden_message(group: &str, resource: &str, name: &str, reason: &str) -> String {
    if group.is_empty() && resource.is_empty() {
        format!("forbidden: {reason}")
    } else if name.is_empty() {
        format!(
            "{} is forbidden: {reason}",
            qualified_resource(group, resource)
        )
    } else {
        format!(
            "{} {} is forbidden: {reason}",
            qualified_resource(group, resource),
            go_quote(name)
        )
    }
}

fn unauthorized_message(message: &str) -> &str {
    if message.is_empty() {
        "not authorized"
    } else {
        message
    }
}

/// An error the API server returns to a client, always as a `metav1.Status`.
///
/// `group`/`resource` are the API group and plural resource of the request
/// (`""`/`pods`, `apps`/`deployments`); `kind` is the object's kind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 404 NotFound: `pods "x" not found`.
    #[error("{} {} not found", qualified_resource(.group, .resource), go_quote(.name))]
    NotFound {
        /// API group.
        group: String,
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
    },
    /// 409 AlreadyExists: `pods "x" already exists`.
    #[error("{} {} already exists", qualified_resource(.group, .resource), go_quote(.name))]
    AlreadyExists {
        /// API group.
        group: String,
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
    },
    /// 409 Conflict: `Operation cannot be fulfilled on pods "x": <reason>`.
    #[error("Operation cannot be fulfilled on {} {}: {reason}", qualified_resource(.group, .resource), go_quote(.name))]
    Conflict {
        /// API group.
        group: String,
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
        /// Why; usually [`OPTIMISTIC_LOCK_ERROR_MSG`].
        reason: String,
    },
    /// 422 Invalid: `Pod "x" is invalid: [...]`, with one cause per field error.
    #[error("{}", invalid_message(.group, .kind, .name, .errors))]
    Invalid {
        /// API group.
        group: String,
        /// Kind of the object.
        kind: String,
        /// Object name.
        name: String,
        /// The field errors.
        errors: ErrorList,
    },
    /// 400 BadRequest with the given message.
    #[error("{0}")]
    BadRequest(String),
    /// 422 with reason Invalid and the given message, without field causes
    /// (upstream's generic 422, e.g. a patch that cannot be applied).
    #[error("{0}")]
    Unprocessable(String),
    /// 405 MethodNotAllowed: `<action> is not supported on resources of kind "pods"`.
    #[error("{action} is not supported on resources of kind {}", quote_qualified(.group, .resource))]
    MethodNotAllowed {
        /// API group.
        group: String,
        /// Plural resource name (with `/subresource` where relevant).
        resource: String,
        /// The verb, e.g. `create`.
        action: String,
    },
    /// 410 Gone with the given message.
    #[error("{0}")]
    Gone(String),
    /// 410 Expired with the given message, e.g. a compacted resourceVersion.
    #[error("{0}")]
    Expired(String),
    /// 403 Forbidden: `pods "x" is forbidden: <reason>`.
    #[error("{}", forbidden_message(.group, .resource, .name, .reason))]
    Forbidden {
        /// API group (may be empty).
        group: String,
        /// Plural resource name (may be empty for non-resource requests).
        resource: String,
        /// Object name (may be empty).
        name: String,
        /// Why.
        reason: String,
    },
    /// 401 Unauthorized; an empty message reads `not authorized`.
    #[error("{}", unauthorized_message(.0))]
    Unauthorized(String),
    /// 429 TooManyRequests with a retry hint.
    #[error("{message}")]
    TooManyRequests {
        /// Message.
        message: String,
        /// Seconds the client should wait; 0 for no hint.
        retry_after_seconds: i32,
    },
    /// 413 RequestEntityTooLarge: `Request entity too large: <message>`.
    #[error("Request entity too large: {0}")]
    RequestEntityTooLarge(String),
    /// 406 NotAcceptable: `only the following media types are accepted: ...`.
    #[error("only the following media types are accepted: {}", .accepted.join(", "))]
    NotAcceptable {
        /// Media types the server can produce.
        accepted: Vec<String>,
    },
    /// 415 UnsupportedMediaType.
    #[error("the body of the request was in an unknown format - accepted media types include: {}", .accepted.join(", "))]
    UnsupportedMediaType {
        /// Media types the server can decode.
        accepted: Vec<String>,
    },
    /// 500 InternalError: `Internal error occurred: <message>`.
    #[error("Internal error occurred: {0}")]
    InternalError(String),
    /// 504 Timeout: `Timeout: <message>`.
    #[error("Timeout: {message}")]
    Timeout {
        /// Message.
        message: String,
        /// Seconds the client should wait; 0 for no hint.
        retry_after_seconds: i32,
    },
    /// 503 ServiceUnavailable with the given message.
    #[error("{0}")]
    ServiceUnavailable(String),
}

/// What a request asked to do, for upstream's RBAC-style `Forbidden` message.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestAttributes<'a> {
    /// Authenticated user name.
    pub user: &'a str,
    /// Kubernetes verb (`get`, `list`, `create`, ...).
    pub verb: &'a str,
    /// True for requests on API resources, false for non-resource paths.
    pub resource_request: bool,
    /// API group.
    pub group: &'a str,
    /// Plural resource.
    pub resource: &'a str,
    /// Subresource, or empty.
    pub subresource: &'a str,
    /// Namespace, or empty.
    pub namespace: &'a str,
    /// Object name, or empty.
    pub name: &'a str,
    /// Request path, for non-resource requests.
    pub path: &'a str,
}

impl ApiError {
    /// 404 for an object of `info`.
    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        ApiError::NotFound {
            group: info.group.to_owned(),
            resource: info.plural.to_owned(),
            name: name.to_owned(),
        }
    }

    /// 409 AlreadyExists for an object of `info`.
    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        ApiError::AlreadyExists {
            group: info.group.to_owned(),
            resource: info.plural.to_owned(),
            name: name.to_owned(),
        }
    }

    /// 409 Conflict for a stale `resourceVersion` on an object of `info`.
    pub fn conflict_modified(info: &ResourceInfo, name: &str) -> Self {
        ApiError::Conflict {
            group: info.group.to_owned(),
            resource: info.plural.to_owned(),
            name: name.to_owned(),
            reason: OPTIMISTIC_LOCK_ERROR_MSG.to_owned(),
        }
    }

    /// 422 Invalid for an object of `info`.
    pub fn invalid(info: &ResourceInfo, name: &str, errors: ErrorList) -> Self {
        ApiError::Invalid {
            group: info.group.to_owned(),
            kind: info.kind.to_owned(),
            name: name.to_owned(),
            errors,
        }
    }

    /// 405 for a verb `info` does not support.
    pub fn method_not_allowed(info: &ResourceInfo, action: &str) -> Self {
        ApiError::MethodNotAllowed {
            group: info.group.to_owned(),
            resource: info.plural.to_owned(),
            action: action.to_owned(),
        }
    }

    /// 410 Expired for a resourceVersion older than the oldest one still held:
    /// `too old resource version: REQUESTED (OLDEST)`.
    pub fn too_old_resource_version(requested: u64, oldest: u64) -> Self {
        ApiError::Expired(format!("too old resource version: {requested} ({oldest})"))
    }

    /// 401 as the authentication filter sends it (`Unauthorized`).
    pub fn unauthenticated() -> Self {
        ApiError::Unauthorized("Unauthorized".to_owned())
    }

    /// 403 as the authorization filter sends it, e.g. `pods "x" is forbidden:
    /// User "bob" cannot get resource "pods" in API group "" in the namespace "ns"`;
    /// `reason` (may be empty) is appended after a colon.
    pub fn forbidden(attrs: &RequestAttributes<'_>, reason: &str) -> Self {
        let who = go_quote(attrs.user);
        let msg = if !attrs.resource_request {
            format!(
                "User {who} cannot {} path {}",
                attrs.verb,
                go_quote(attrs.path)
            )
        } else {
            let mut resource = attrs.resource.to_owned();
            if !attrs.subresource.is_empty() {
                resource.push('/');
                resource.push_str(attrs.subresource);
            }
            let scope = if attrs.namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace {}", go_quote(attrs.namespace))
            };
            format!(
                "User {who} cannot {} resource {} in API group {} {scope}",
                attrs.verb,
                go_quote(&resource),
                go_quote(attrs.group)
            )
        };
        // Upstream HTML-escapes the message: it may be rendered by browsers.
        let msg = msg
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let reason = if reason.is_empty() {
            msg
        } else {
            format!("{msg}: {reason}")
        };
        ApiError::Forbidden {
            group: attrs.group.to_owned(),
            resource: attrs.resource.to_owned(),
            name: attrs.name.to_owned(),
            reason,
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Gone(_) | ApiError::Expired(_) => 410,
            ApiError::Forbidden { .. } => 403,
            ApiError::Unauthorized(_) => 401,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::RequestEntityTooLarge(_) => 413,
            ApiError::NotAcceptable { .. } => 406,
            ApiError::UnsupportedMediaType { .. } => 415,
            ApiError::InternalError(_) => 500,
            ApiError::Timeout { .. } => 504,
            ApiError::ServiceUnavailable(_) => 503,
        }
    }

    /// The `reason` of the Status (`NotFound`, `Invalid`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::Gone(_) => "Gone",
            ApiError::Expired(_) => "Expired",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::NotAcceptable { .. } => "NotAcceptable",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::InternalError(_) => "InternalError",
            ApiError::Timeout { .. } => "Timeout",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
        }
    }

    /// Seconds for a `Retry-After` header, when the error carries a hint.
    pub fn retry_after_seconds(&self) -> Option<i32> {
        match self {
            ApiError::TooManyRequests {
                retry_after_seconds,
                ..
            }
            | ApiError::Timeout {
                retry_after_seconds,
                ..
            } if *retry_after_seconds > 0 => Some(*retry_after_seconds),
            _ => None,
        }
    }

    fn details(&self) -> Option<StatusDetails> {
        let object = |group: &str, kind: &str, name: &str| StatusDetails {
            group: non_empty(group),
            kind: non_empty(kind),
            name: non_empty(name),
            ..StatusDetails::default()
        };
        let retry = |seconds: i32| StatusDetails {
            retry_after_seconds: (seconds != 0).then_some(seconds),
            ..StatusDetails::default()
        };
        match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                resource,
                name,
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
                ..
            }
            | ApiError::Forbidden {
                group,
                resource,
                name,
                ..
            } => Some(object(group, resource, name)),
            ApiError::MethodNotAllowed {
                group, resource, ..
            } => Some(object(group, resource, "")),
            ApiError::Invalid {
                group,
                kind,
                name,
                errors,
            } => {
                let causes = errors
                    .iter()
                    .map(|e| StatusCause {
                        reason: Some(e.error_type.as_str().to_owned()),
                        message: Some(e.body()),
                        field: non_empty(&e.field),
                    })
                    .collect::<Vec<_>>();
                Some(StatusDetails {
                    causes: (!causes.is_empty()).then_some(causes),
                    ..object(group, kind, name)
                })
            }
            ApiError::TooManyRequests {
                retry_after_seconds,
                ..
            }
            | ApiError::Timeout {
                retry_after_seconds,
                ..
            } => Some(retry(*retry_after_seconds)),
            ApiError::InternalError(message) => Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    message: Some(message.clone()),
                    ..StatusCause::default()
                }]),
                ..StatusDetails::default()
            }),
            _ => None,
        }
    }

    /// The `metav1.Status` body to send (`status: Failure`, reason, code,
    /// message and details as upstream).
    pub fn status(&self) -> Status {
        Status {
            code: Some(i32::from(self.code())),
            details: self.details(),
            message: Some(self.to_string()),
            metadata: ListMeta::default(),
            reason: Some(self.reason().to_owned()),
            status: Some("Failure".to_owned()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        e.status()
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
