use serde_json::json;

use super::*;
use crate::field::{Error, Path};
use crate::resources::by_gvr;

fn json_of(e: &ApiError) -> serde_json::Value {
    serde_json::to_value(e.status()).unwrap()
}

#[test]
fn not_found_core_and_group() {
    let pods = by_gvr("", "v1", "pods").unwrap();
    let e = ApiError::not_found(pods, "x");
    assert_eq!(e.code(), 404);
    assert_eq!(
        json_of(&e),
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "pods \"x\" not found", "reason": "NotFound",
            "details": {"name": "x", "kind": "pods"}, "code": 404
        })
    );
    let deploy = by_gvr("apps", "v1", "deployments").unwrap();
    let e = ApiError::not_found(deploy, "web");
    assert_eq!(e.to_string(), "deployments.apps \"web\" not found");
    assert_eq!(
        json_of(&e)["details"],
        json!({"name": "web", "group": "apps", "kind": "deployments"})
    );
}

#[test]
fn already_exists_and_conflict() {
    let cm = by_gvr("", "v1", "configmaps").unwrap();
    let e = ApiError::already_exists(cm, "c");
    assert_eq!((e.code(), e.reason()), (409, "AlreadyExists"));
    assert_eq!(e.to_string(), "configmaps \"c\" already exists");
    let e = ApiError::conflict_modified(cm, "c");
    assert_eq!((e.code(), e.reason()), (409, "Conflict"));
    assert_eq!(
        e.to_string(),
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        json_of(&e)["details"],
        json!({"name": "c", "kind": "configmaps"})
    );
}

#[test]
fn invalid_with_causes() {
    let pods = by_gvr("", "v1", "pods").unwrap();
    let mut errs = crate::field::ErrorList::new();
    let containers = Path::new("spec").child("containers");
    errs.push(Error::required(&containers.index(0).child("name"), ""));
    errs.push(Error::invalid(
        &Path::new("metadata").child("name"),
        "Foo",
        "bad name",
    ));
    let e = ApiError::invalid(pods, "Foo", errs);
    assert_eq!(e.code(), 422);
    assert_eq!(
        e.to_string(),
        "Pod \"Foo\" is invalid: [spec.containers[0].name: Required value, metadata.name: Invalid value: \"Foo\": bad name]"
    );
    assert_eq!(
        json_of(&e)["details"],
        json!({
            "name": "Foo", "kind": "Pod",
            "causes": [
                {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].name"},
                {"reason": "FieldValueInvalid", "message": "Invalid value: \"Foo\": bad name", "field": "metadata.name"}
            ]
        })
    );
    let deploy = by_gvr("apps", "v1", "deployments").unwrap();
    let one = ApiError::invalid(
        deploy,
        "d",
        Error::forbidden(&Path::new("spec").child("selector"), "field is immutable").into(),
    );
    assert_eq!(
        one.to_string(),
        "Deployment.apps \"d\" is invalid: spec.selector: Forbidden: field is immutable"
    );
    assert_eq!(json_of(&one)["details"]["group"], "apps");
    let none = ApiError::invalid(pods, "p", crate::field::ErrorList::new());
    assert_eq!(none.to_string(), "Pod \"p\" is invalid");
    assert!(json_of(&none)["details"].get("causes").is_none());
}

#[test]
fn codes_reasons_messages() {
    let pods = by_gvr("", "v1", "pods").unwrap();
    let cases: Vec<(ApiError, u16, &str, &str)> = vec![
        (ApiError::BadRequest("bad".into()), 400, "BadRequest", "bad"),
        (
            ApiError::method_not_allowed(pods, "watch"),
            405,
            "MethodNotAllowed",
            "watch is not supported on resources of kind \"pods\"",
        ),
        (ApiError::Gone("gone".into()), 410, "Gone", "gone"),
        (
            ApiError::too_old_resource_version(5, 10),
            410,
            "Expired",
            "too old resource version: 5 (10)",
        ),
        (
            ApiError::unauthenticated(),
            401,
            "Unauthorized",
            "Unauthorized",
        ),
        (
            ApiError::Unauthorized(String::new()),
            401,
            "Unauthorized",
            "not authorized",
        ),
        (
            ApiError::TooManyRequests {
                message: "slow down".into(),
                retry_after_seconds: 1,
            },
            429,
            "TooManyRequests",
            "slow down",
        ),
        (
            ApiError::RequestEntityTooLarge("limit is 3145728".into()),
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        ),
        (
            ApiError::NotAcceptable {
                accepted: vec!["application/json".into(), "application/yaml".into()],
            },
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        ),
        (
            ApiError::UnsupportedMediaType {
                accepted: vec!["application/json".into()],
            },
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json",
        ),
        (
            ApiError::InternalError("boom".into()),
            500,
            "InternalError",
            "Internal error occurred: boom",
        ),
        (
            ApiError::Timeout {
                message: "request did not complete within the allotted timeout".into(),
                retry_after_seconds: 0,
            },
            504,
            "Timeout",
            "Timeout: request did not complete within the allotted timeout",
        ),
        (
            ApiError::ServiceUnavailable("down".into()),
            503,
            "ServiceUnavailable",
            "down",
        ),
    ];
    for (e, code, reason, message) in cases {
        assert_eq!(e.code(), code, "{e:?}");
        assert_eq!(e.reason(), reason);
        assert_eq!(e.to_string(), message);
        let s = e.status();
        assert_eq!(s.code, Some(i32::from(code)));
        assert_eq!(s.reason.as_deref(), Some(reason));
        assert_eq!(s.message.as_deref(), Some(message));
        assert_eq!(s.status.as_deref(), Some("Failure"));
    }
}

#[test]
fn details_of_special_errors() {
    let e = ApiError::InternalError("boom".into());
    assert_eq!(
        json_of(&e)["details"],
        json!({"causes": [{"message": "boom"}]})
    );
    let e = ApiError::TooManyRequests {
        message: "m".into(),
        retry_after_seconds: 3,
    };
    assert_eq!(json_of(&e)["details"], json!({"retryAfterSeconds": 3}));
    assert_eq!(e.retry_after_seconds(), Some(3));
    let e = ApiError::Timeout {
        message: "m".into(),
        retry_after_seconds: 0,
    };
    assert_eq!(json_of(&e)["details"], json!({}));
    assert_eq!(e.retry_after_seconds(), None);
    assert!(
        json_of(&ApiError::BadRequest("x".into()))
            .get("details")
            .is_none()
    );
}

#[test]
fn forbidden_messages() {
    let attrs = RequestAttributes {
        user: "bob",
        verb: "list",
        resource_request: true,
        group: "",
        resource: "pods",
        namespace: "default",
        ..RequestAttributes::default()
    };
    let e = ApiError::forbidden(&attrs, "");
    assert_eq!(e.code(), 403);
    assert_eq!(
        e.to_string(),
        "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let attrs = RequestAttributes {
        user: "system:anonymous",
        verb: "get",
        resource_request: true,
        group: "apps",
        resource: "deployments",
        subresource: "scale",
        name: "web",
        ..RequestAttributes::default()
    };
    let e = ApiError::forbidden(&attrs, "RBAC: denied");
    assert_eq!(
        e.to_string(),
        "deployments.apps \"web\" is forbidden: User \"system:anonymous\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope: RBAC: denied"
    );
    assert_eq!(
        json_of(&e)["details"],
        json!({"name": "web", "group": "apps", "kind": "deployments"})
    );
    let attrs = RequestAttributes {
        user: "u<x>",
        verb: "get",
        path: "/metrics",
        ..RequestAttributes::default()
    };
    assert_eq!(
        ApiError::forbidden(&attrs, "").to_string(),
        "forbidden: User \"u&lt;x&gt;\" cannot get path \"/metrics\""
    );
}

#[test]
fn names_are_go_quoted() {
    let pods = by_gvr("", "v1", "pods").unwrap();
    assert_eq!(
        ApiError::not_found(pods, "a\"b\n").to_string(),
        "pods \"a\\\"b\\n\" not found"
    );
}
