use serde_json::json;

use super::*;
use crate::resources::by_gvr;
use crate::selector::{selectable_fields, supported_field_labels};

fn fields(pairs: &[(&'static str, &str)]) -> Fields {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

#[test]
fn parse_and_print() {
    for (input, want) in [
        ("", ""),
        ("a=b", "a=b"),
        ("a==b", "a=b"),
        ("a!=b", "a!=b"),
        ("b=1,a=2", "a=2,b=1"),
        ("a=,b=c", "a=,b=c"),
        ("a=b\\,c", "a=b\\,c"),
        ("a=b\\=c\\\\d", "a=b\\=c\\\\d"),
        ("x=a,,y=b", "x=a,y=b"),
        (
            "spec.nodeName=node-1,status.phase!=Running",
            "spec.nodeName=node-1,status.phase!=Running",
        ),
        ("=b", "=b"),
    ] {
        assert_eq!(parse(input).unwrap().to_string(), want, "{input}");
    }
    let sel = parse("a=b\\,c").unwrap();
    assert_eq!(sel.requirements()[0].value, "b,c");
    let sel = parse("a!=b=c").unwrap_err();
    assert_eq!(
        sel.0,
        "invalid field selector: unescaped character in value: 61"
    );
}

#[test]
fn parse_errors_as_upstream() {
    for (input, want) in [
        ("a", "invalid selector: 'a'; can't understand 'a'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        (
            "a=b\\c",
            "invalid field selector: invalid escape sequence: \\c",
        ),
        (
            "a=b\\",
            "invalid field selector: invalid escape sequence: \\",
        ),
        (
            "a==b=c",
            "invalid field selector: unescaped character in value: 61",
        ),
        (
            "a=\\é",
            "invalid field selector: invalid escape sequence: \\é",
        ),
    ] {
        assert_eq!(parse(input).unwrap_err().0, want, "{input}");
    }
}

#[test]
fn escaping() {
    assert_eq!(escape_value("a,b=c\\d"), "a\\,b\\=c\\\\d");
    for s in ["", "plain", "a,b", "x=y", "\\", "é,ü"] {
        assert_eq!(unescape_value(&escape_value(s)).unwrap(), s);
    }
    assert_eq!(
        unescape_value("a,b").unwrap_err().0,
        "invalid field selector: unescaped character in value: 44"
    );
}

#[test]
fn matching() {
    let f = fields(&[("a", "1"), ("b", "")]);
    assert!(parse("a=1").unwrap().matches(&f));
    assert!(parse("a=1,b=").unwrap().matches(&f));
    assert!(
        parse("c=").unwrap().matches(&f),
        "missing fields read as empty"
    );
    assert!(parse("c!=x").unwrap().matches(&f));
    assert!(!parse("a!=1").unwrap().matches(&f));
    assert!(!parse("a=2").unwrap().matches(&f));
    assert!(FieldSelector::everything().matches(&f));
    assert!(FieldSelector::one_term_equal("a", "1").matches(&f));
    let sel = parse("metadata.name=x,spec.nodeName!=n").unwrap();
    assert_eq!(sel.requires_exact_match("metadata.name"), Some("x"));
    assert_eq!(sel.requires_exact_match("spec.nodeName"), None);
}

#[test]
fn supported_labels_per_resource() {
    let r = |g, p| by_gvr(g, "v1", p).unwrap();
    let err = |g, p, sel: &str| parse(sel).unwrap().for_resource(r(g, p)).unwrap_err().0;
    assert_eq!(err("", "pods", "foo=bar"), "field label not supported: foo");
    assert_eq!(
        err("", "pods", "spec.podIP=1"),
        "field label not supported: spec.podIP"
    );
    assert_eq!(
        err("", "nodes", "metadata.namespace=x"),
        "field label not supported: metadata.namespace"
    );
    assert_eq!(
        err("", "namespaces", "metadata.namespace=x"),
        "field label not supported: metadata.namespace"
    );
    assert_eq!(
        err("", "secrets", "data=x"),
        "field label not supported: data"
    );
    assert_eq!(
        err("batch", "jobs", "status.succeeded=1"),
        "field label \"status.succeeded\" not supported for batchv1.Job"
    );
    assert_eq!(
        err("", "configmaps", "data.x=1"),
        "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    assert_eq!(
        err("apps", "replicasets", "status.replicas=1"),
        "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    assert_eq!(
        err("events.k8s.io", "events", "involvedObject.name=x"),
        "field label not supported: involvedObject.name"
    );

    let ok = |g, p, sel: &str| {
        parse(sel)
            .unwrap()
            .for_resource(r(g, p))
            .unwrap()
            .to_string()
    };
    assert_eq!(ok("", "pods", "spec.host=n1"), "spec.nodeName=n1");
    assert_eq!(
        ok("", "pods", "status.phase=Running,spec.hostNetwork=true"),
        "spec.hostNetwork=true,status.phase=Running"
    );
    assert_eq!(
        ok(
            "events.k8s.io",
            "events",
            "regarding.name=x,reportingController=kubelet"
        ),
        "involvedObject.name=x,reportingComponent=kubelet"
    );
    assert_eq!(
        ok("", "events", "involvedObject.name=x,source=kubelet"),
        "involvedObject.name=x,source=kubelet"
    );
    assert_eq!(
        ok("", "services", "spec.type=NodePort"),
        "spec.type=NodePort"
    );
    assert_eq!(
        ok("", "replicationcontrollers", "status.replicas=0"),
        "status.replicas=0"
    );
    assert_eq!(
        ok(
            "certificates.k8s.io",
            "certificatesigningrequests",
            "spec.signerName=x"
        ),
        "spec.signerName=x"
    );
    assert_eq!(
        ok("", "persistentvolumes", "metadata.namespace="),
        "metadata.namespace="
    );
    assert_eq!(
        ok("", "namespaces", "status.phase=Active"),
        "status.phase=Active"
    );
    assert_eq!(
        ok("", "nodes", "spec.unschedulable=false"),
        "spec.unschedulable=false"
    );
    assert_eq!(
        ok("batch", "jobs", "status.successful=1"),
        "status.successful=1"
    );

    assert_eq!(
        supported_field_labels(r("", "pods")),
        [
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
            "spec.host"
        ]
    );
    assert_eq!(
        supported_field_labels(r("", "secrets")),
        ["type", "metadata.namespace", "metadata.name"]
    );
    assert_eq!(
        supported_field_labels(r("rbac.authorization.k8s.io", "roles")),
        ["metadata.name", "metadata.namespace"]
    );
}

#[test]
fn pod_fields() {
    let pods = by_gvr("", "v1", "pods").unwrap();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler", "serviceAccountName": "default"},
        "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}
    });
    let f = selectable_fields(pods, &pod);
    assert_eq!(
        f,
        fields(&[
            ("metadata.name", "p"),
            ("metadata.namespace", "ns"),
            ("spec.nodeName", "n1"),
            ("spec.restartPolicy", "Always"),
            ("spec.schedulerName", "default-scheduler"),
            ("spec.serviceAccountName", "default"),
            ("spec.hostNetwork", "false"),
            ("status.phase", "Running"),
            ("status.podIP", "10.0.0.1"),
            ("status.nominatedNodeName", ""),
        ])
    );
    let sel = parse("spec.host=n1,status.phase!=Pending")
        .unwrap()
        .for_resource(pods)
        .unwrap();
    assert!(sel.matches(&f));
    let host = selectable_fields(
        pods,
        &json!({"metadata": {"name": "h"}, "spec": {"hostNetwork": true}, "status": {"podIP": "1.2.3.4"}}),
    );
    assert_eq!(host["spec.hostNetwork"], "true");
    assert_eq!(host["status.podIP"], "1.2.3.4");
    assert_eq!(host["spec.nodeName"], "");
}

#[test]
fn other_kinds_fields() {
    let r = |g, p| by_gvr(g, "v1", p).unwrap();
    let node = selectable_fields(
        r("", "nodes"),
        &json!({"metadata": {"name": "n"}, "spec": {}}),
    );
    assert_eq!(
        node,
        fields(&[("metadata.name", "n"), ("spec.unschedulable", "false")])
    );
    let job = selectable_fields(
        r("batch", "jobs"),
        &json!({"metadata": {"name": "j", "namespace": "d"}, "status": {"succeeded": 2}}),
    );
    assert_eq!(job["status.successful"], "2");
    let rc = selectable_fields(
        r("", "replicationcontrollers"),
        &json!({"metadata": {"name": "r"}}),
    );
    assert_eq!(rc["status.replicas"], "0");
    let secret = selectable_fields(
        r("", "secrets"),
        &json!({"metadata": {"name": "s"}, "type": "Opaque"}),
    );
    assert_eq!(secret["type"], "Opaque");
    let svc = selectable_fields(
        r("", "services"),
        &json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1"}}),
    );
    assert_eq!(
        (svc["spec.type"].as_str(), svc["spec.clusterIP"].as_str()),
        ("ClusterIP", "10.43.0.1")
    );
    let ns = selectable_fields(
        r("", "namespaces"),
        &json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}}),
    );
    assert_eq!(
        ns,
        fields(&[("metadata.name", "default"), ("status.phase", "Active")])
    );
    let csr = selectable_fields(
        r("certificates.k8s.io", "certificatesigningrequests"),
        &json!({"metadata": {"name": "c"}, "spec": {"signerName": "kubernetes.io/kubelet-serving"}}),
    );
    assert_eq!(csr["spec.signerName"], "kubernetes.io/kubelet-serving");
    let cm = selectable_fields(
        r("", "configmaps"),
        &json!({"metadata": {"name": "c", "namespace": "x"}}),
    );
    assert_eq!(
        cm,
        fields(&[("metadata.name", "c"), ("metadata.namespace", "x")])
    );
    assert_eq!(
        selectable_fields(r("", "configmaps"), &json!(null))["metadata.name"],
        ""
    );
}

#[test]
fn event_fields_both_shapes() {
    let core = by_gvr("", "v1", "events").unwrap();
    let v1 = by_gvr("events.k8s.io", "v1", "events").unwrap();
    let core_event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "e", "namespace": "d"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d", "uid": "u1"},
        "reason": "Scheduled", "type": "Normal", "source": {}, "reportingComponent": "default-scheduler"
    });
    let f = selectable_fields(core, &core_event);
    assert_eq!(f["involvedObject.kind"], "Pod");
    assert_eq!(f["involvedObject.uid"], "u1");
    assert_eq!(f["involvedObject.fieldPath"], "");
    assert_eq!(
        f["source"], "default-scheduler",
        "source falls back to reportingComponent"
    );
    assert_eq!(f["reportingComponent"], "default-scheduler");
    let v1_event = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e", "namespace": "d"},
        "regarding": {"kind": "Pod", "name": "p"},
        "reason": "Pulled", "type": "Normal", "reportingController": "kubelet",
        "deprecatedSource": {"component": "kubelet-old"}
    });
    let f = selectable_fields(v1, &v1_event);
    assert_eq!(f["involvedObject.name"], "p");
    assert_eq!(f["reportingComponent"], "kubelet");
    assert_eq!(f["source"], "kubelet-old");
    let sel = parse("regarding.name=p,reason=Pulled")
        .unwrap()
        .for_resource(v1)
        .unwrap();
    assert!(sel.matches(&f));
}

#[test]
fn never_panics_on_odd_input() {
    for s in [
        "\\", ",", "=", "==", "!=", "é=\\", "a=\\\\\\", ",,,", "a=b,\\", "日=本", "!", "a!",
    ] {
        let _ = parse(s);
    }
    assert!(parse(",,,").unwrap().is_empty());
    assert_eq!(parse("=").unwrap().to_string(), "=");
}
