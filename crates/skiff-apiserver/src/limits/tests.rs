use std::time::Duration;

use super::*;

#[test]
fn timeout_parameter_only_shortens_the_deadline() {
    let max = Duration::from_secs(60);
    let t = |q: &str| request_timeout(Some(q), max);
    assert_eq!(request_timeout(None, max).unwrap(), max);
    assert_eq!(t("timeout=").unwrap(), max);
    assert_eq!(t("timeout=250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(t("timeout=2m").unwrap(), max);
    assert_eq!(t("timeout=0s").unwrap(), max);
    assert_eq!(t("timeout=-1s").unwrap(), max);
    let err = t("timeout=soon").unwrap_err();
    assert_eq!(err.code(), 400);
    assert_eq!(
        err.to_string(),
        r#"invalid timeout specified in the request URL - time: invalid duration "soon""#
    );
}

#[test]
fn read_only_and_mutating_verbs() {
    for verb in ["get", "list", "watch"] {
        assert_eq!(RequestKind::of(verb), RequestKind::ReadOnly, "{verb}");
    }
    for verb in [
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "post",
        "head",
    ] {
        assert_eq!(RequestKind::of(verb), RequestKind::Mutating, "{verb}");
    }
}

#[test]
fn slots_run_out_and_come_back() {
    let metrics = Metrics::new();
    let limits = Limits::new(1, 2, &metrics);
    let a = limits.try_acquire(RequestKind::ReadOnly, false).unwrap();
    assert!(limits.try_acquire(RequestKind::ReadOnly, false).is_none());
    // system:masters always gets through, without counting.
    assert!(limits.try_acquire(RequestKind::ReadOnly, true).is_some());
    assert_eq!(metrics.inflight_gauge("readOnly").get(), 1);
    let b = limits.try_acquire(RequestKind::Mutating, false).unwrap();
    let c = limits.try_acquire(RequestKind::Mutating, false).unwrap();
    assert!(limits.try_acquire(RequestKind::Mutating, false).is_none());
    assert_eq!(metrics.inflight_gauge("mutating").get(), 2);
    drop((a, b));
    assert_eq!(metrics.inflight_gauge("readOnly").get(), 0);
    assert!(limits.try_acquire(RequestKind::ReadOnly, false).is_some());
    assert!(limits.try_acquire(RequestKind::Mutating, false).is_some());
    drop(c);
    // 0 means no limit.
    let unlimited = Limits::new(0, 0, &metrics);
    let held: Vec<_> = (0..1000)
        .map(|_| unlimited.try_acquire(RequestKind::Mutating, false).unwrap())
        .collect();
    assert_eq!(held.len(), 1000);
}

#[test]
fn long_running_requests() {
    let info = |method: http::Method, path: &str, query: Option<&str>| {
        crate::request_info::parse(&method, path, query)
    };
    use http::Method;
    assert!(is_long_running(&info(
        Method::GET,
        "/api/v1/pods",
        Some("watch=true")
    )));
    assert!(is_long_running(&info(
        Method::GET,
        "/api/v1/watch/namespaces/default/pods",
        None
    )));
    assert!(is_long_running(&info(
        Method::GET,
        "/api/v1/namespaces/default/pods/web/log",
        None
    )));
    assert!(is_long_running(&info(
        Method::POST,
        "/api/v1/namespaces/default/pods/web/exec",
        None
    )));
    assert!(!is_long_running(&info(Method::GET, "/api/v1/pods", None)));
    assert!(!is_long_running(&info(
        Method::GET,
        "/api/v1/namespaces/default/pods/web/status",
        None
    )));
    assert!(!is_long_running(&info(Method::GET, "/healthz", None)));
}

#[test]
fn probes_are_exempt() {
    for p in ["/healthz", "/livez", "/readyz", "/readyz/etcd"] {
        assert!(is_exempt_path(p), "{p}");
    }
    for p in ["/version", "/metrics", "/api/v1/pods", "/healthzz"] {
        assert!(!is_exempt_path(p), "{p}");
    }
}
