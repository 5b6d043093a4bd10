use std::time::Duration;

use http::{Method, StatusCode};

use super::*;
use crate::request_info;

fn labels(method: Method, path: &str, query: Option<&str>) -> RequestLabels {
    labels_typed(method, path, query, None)
}

fn labels_typed(
    method: Method,
    path: &str,
    query: Option<&str>,
    content_type: Option<&str>,
) -> RequestLabels {
    let info = request_info::parse(&method, path, query);
    Metrics::describe(&method, &info, query, content_type).unwrap()
}

#[test]
fn verbs_and_scopes_follow_upstream() {
    let vs = |l: RequestLabels| (l.verb, l.scope);
    assert_eq!(
        vs(labels(Method::GET, "/api/v1/namespaces/default/pods", None)),
        ("LIST", "namespace")
    );
    assert_eq!(
        vs(labels(Method::GET, "/api/v1/pods", None)),
        ("LIST", "cluster")
    );
    assert_eq!(
        vs(labels(
            Method::GET,
            "/api/v1/namespaces/default/pods/web",
            None
        )),
        ("GET", "resource")
    );
    assert_eq!(
        vs(labels(
            Method::HEAD,
            "/api/v1/namespaces/default/pods",
            None
        )),
        ("LIST", "namespace")
    );
    // Creates are scoped to the resource they create.
    assert_eq!(
        vs(labels(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            None
        )),
        ("POST", "resource")
    );
    assert_eq!(
        vs(labels(
            Method::PUT,
            "/api/v1/namespaces/default/pods/web",
            None
        )),
        ("PUT", "resource")
    );
    // A delete of a collection is reported as DELETE, as upstream does.
    assert_eq!(
        vs(labels(
            Method::DELETE,
            "/api/v1/namespaces/default/pods",
            None
        )),
        ("DELETE", "namespace")
    );
    assert_eq!(
        vs(labels(Method::GET, "/api/v1/pods", Some("watch=1"))),
        ("WATCH", "cluster")
    );
    assert_eq!(
        vs(labels(Method::GET, "/api/v1/pods", Some("watch=false"))),
        ("LIST", "cluster")
    );
    assert_eq!(
        vs(labels(
            Method::GET,
            "/api/v1/watch/namespaces/default/pods",
            None
        )),
        ("WATCH", "namespace")
    );
    assert_eq!(
        vs(labels_typed(
            Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/web",
            None,
            Some("application/apply-patch+yaml")
        )),
        ("APPLY", "resource")
    );
    assert_eq!(
        vs(labels_typed(
            Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/web",
            None,
            Some("application/merge-patch+json")
        )),
        ("PATCH", "resource")
    );
    assert_eq!(
        vs(labels(
            Method::GET,
            "/api/v1/namespaces/default/pods/web/log",
            None
        )),
        ("CONNECT", "resource")
    );
    assert_eq!(
        vs(labels(Method::OPTIONS, "/api/v1/pods", None)),
        ("other", "cluster")
    );
}

#[test]
fn resource_labels() {
    let l = labels(
        Method::PUT,
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        Some("dryRun=All"),
    );
    assert_eq!(l.component, "apiserver");
    assert_eq!(l.group, "apps");
    assert_eq!(l.version, "v1");
    assert_eq!(l.resource, "deployments");
    assert_eq!(l.subresource, "scale");
    assert_eq!(l.dry_run, "All");
}

#[test]
fn dry_run_values() {
    assert_eq!(dry_run(None), "");
    assert_eq!(dry_run(Some("limit=5")), "");
    assert_eq!(dry_run(Some("dryRun=All")), "All");
    assert_eq!(dry_run(Some("dryRun=All&dryRun=All")), "All");
    assert_eq!(dry_run(Some("dryRun=Some")), "invalid");
    assert_eq!(dry_run(Some("dryRun=All&dryRun=")), "invalid");
}

#[test]
fn health_paths_are_counted_without_component_others_not_at_all() {
    let l = labels(Method::GET, "/readyz/etcd", None);
    assert_eq!((l.verb, l.scope, l.component), ("GET", "", ""));
    assert_eq!(l.subresource, "/readyz/etcd");
    for path in [
        "/version",
        "/metrics",
        "/apis",
        "/api/v1",
        "/openapi/v3",
        "/api/v1/nosuchthings",
        "/apis/example.com/v1/widgets",
        "/api/v1/namespaces/default/pods/web/nosuchsub",
    ] {
        let info = request_info::parse(&Method::GET, path, None);
        assert!(
            Metrics::describe(&Method::GET, &info, None, None).is_none(),
            "{path}"
        );
    }
}

#[test]
fn exposition_has_upstream_names_labels_and_buckets() {
    let metrics = Metrics::new();
    let l = labels(Method::POST, "/api/v1/namespaces/default/configmaps", None);
    metrics.record(&l, StatusCode::CREATED, Duration::from_millis(30));
    metrics.record_dropped(&l);
    let open = metrics.long_running(&labels(Method::GET, "/api/v1/pods", Some("watch=true")));
    let text = metrics.encode();
    assert!(text.contains(
        r#"apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 1"#
    ), "{text}");
    assert!(text.contains(
        r#"apiserver_request_total{code="429",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 1"#
    ), "{text}");
    assert!(text.contains(
        r#"apiserver_request_terminations_total{code="429",component="apiserver",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 1"#
    ), "{text}");
    assert!(text.contains(
        r#"apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1",le="0.025"} 0"#
    ), "{text}");
    assert!(text.contains(
        r#"apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1",le="0.05"} 1"#
    ), "{text}");
    assert!(text.contains(
        r#"apiserver_longrunning_requests{component="apiserver",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 1"#
    ), "{text}");
    assert!(text.contains(r#"apiserver_current_inflight_requests{request_kind="readOnly"} 0"#));
    assert!(text.contains(r#"apiserver_current_inflight_requests{request_kind="mutating"} 0"#));
    assert!(text.contains("# TYPE apiserver_request_total counter"));
    assert!(text.contains("# TYPE apiserver_request_duration_seconds histogram"));
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    assert!(text.contains("process_start_time_seconds "), "{text}");
    drop(open);
    assert!(metrics.encode().contains(
        r#"apiserver_longrunning_requests{component="apiserver",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 0"#
    ));
}

#[test]
fn storage_latency_is_labelled_by_operation_and_type() {
    let metrics = Metrics::new();
    let observer = metrics.store_observer();
    observer.observe(
        Operation::Create,
        "/registry/configmaps/default/a",
        Duration::from_millis(1),
        true,
    );
    observer.observe(
        Operation::List,
        "/registry/apps/deployments/default/",
        Duration::from_millis(1),
        true,
    );
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"etcd_request_duration_seconds_count{operation="create",type="configmaps"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"etcd_request_duration_seconds_count{operation="list",type="deployments.apps"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"etcd_requests_total{operation="create",type="configmaps"} 1"#));
}

#[test]
fn proc_stat_parses_with_odd_command_names() {
    let stat = "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 12345 104857600 2560 18446744073709551615";
    let s = process::parse_stat(stat);
    assert_eq!(s.cpu_seconds, Some(3.0));
    assert_eq!(s.start_since_boot, Some(123.45));
    assert_eq!(s.virtual_bytes, Some(104_857_600.0));
    assert_eq!(process::parse_stat("garbage"), process::Sample::default());
    assert_eq!(
        process::parse_status_kb("Name:\tx\nVmRSS:\t    1936 kB\n", "VmRSS:"),
        Some(1936.0 * 1024.0)
    );
    assert_eq!(process::parse_status_kb("Name:\tx\n", "VmRSS:"), None);
}
