//! Validation of new objects: exact messages and field paths.

use serde_json::{Value, json};

use super::{create, messages, nginx_pod};

/// An edit of the nginx pod and the errors it must produce.
type Case = (Box<dyn FnOnce(&mut Value)>, Vec<&'static str>);

fn pod_errors(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut pod = nginx_pod();
    edit(&mut pod);
    messages(&create("Pod", pod).1)
}

#[test]
fn pod_spec_rules_give_upstreams_messages() {
    let cases: Vec<Case> = vec![
        (
            Box::new(|p| p["spec"]["containers"] = json!([])),
            vec!["spec.containers: Required value"],
        ),
        (
            Box::new(|p| p["spec"]["containers"][0]["name"] = json!("Web_1")),
            vec![
                "spec.containers[0].name: Invalid value: \"Web_1\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["initContainers"] = json!([{"name": "nginx", "image": "busybox"}]);
            }),
            vec!["spec.initContainers[0].name: Duplicate value: \"nginx\""],
        ),
        (
            Box::new(|p| {
                p["spec"]["containers"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("image");
            }),
            vec!["spec.containers[0].image: Required value"],
        ),
        (
            Box::new(|p| {
                p["spec"]["containers"][0]["ports"] =
                    json!([{"containerPort": 70000, "protocol": "HTTP", "name": "Web"}]);
            }),
            vec![
                "spec.containers[0].ports[0].name: Invalid value: \"Web\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["containers"][0]["resources"] =
                    json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}});
            }),
            vec![
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["containers"][0]["resources"] = json!({"requests": {"memory": "-1"}});
            }),
            vec![
                "spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["containers"][0]["volumeMounts"] =
                    json!([{"name": "data", "mountPath": "/data"}]);
            }),
            vec!["spec.containers[0].volumeMounts[0].name: Not found: \"data\""],
        ),
        (
            Box::new(|p| {
                p["spec"]["containers"][0]["env"] =
                    json!([{"name": "A=B"}, {"name": "X", "valueFrom": {}}]);
            }),
            vec![
                "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "spec.containers[0].env[1].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["containers"][0]["env"] = json!([{"name": "K",
                    "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a b"}}}]);
                p["spec"]["containers"][0]["envFrom"] = json!([{"prefix": "P"}]);
            }),
            vec![
                "spec.containers[0].env[0].valueFrom.configMapKeyRef.key: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "spec.containers[0].envFrom: Invalid value: \"\": must specify one of: `configMapRef` or `secretRef`",
            ],
        ),
        (
            Box::new(|p| p["spec"]["dnsPolicy"] = json!("None")),
            vec![
                "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["dnsConfig"] = json!({"nameservers": ["1.1.1.1", "dns"], "searches": ["_svc.example.com.", "a_"]});
            }),
            vec![
                "spec.dnsConfig.nameservers[1]: Invalid value: \"dns\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.dnsConfig.searches[1]: Invalid value: \"a_\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*')",
            ],
        ),
        (
            Box::new(|p| p["spec"]["restartPolicy"] = json!("Sometimes")),
            vec![
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ],
        ),
        (
            Box::new(|p| p["spec"]["dnsPolicy"] = json!("Cluster")),
            vec![
                "spec.dnsPolicy: Unsupported value: \"Cluster\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ],
        ),
        (
            Box::new(|p| p["spec"]["containers"][0]["imagePullPolicy"] = json!("Sometimes")),
            vec![
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["volumes"] = json!([
                    {"name": "a", "emptyDir": {}},
                    {"name": "a", "emptyDir": {}, "hostPath": {"path": "/x"}}
                ]);
            }),
            vec![
                "spec.volumes[1].hostPath: Forbidden: may not specify more than 1 volume type",
                "spec.volumes[1].name: Duplicate value: \"a\"",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["volumes"] = json!([
                    {"name": "s", "secret": {}},
                    {"name": "c", "configMap": {"name": "c", "items": [{"key": "k", "path": "/abs"}]}},
                    {"name": "h", "hostPath": {"path": "/x/../y", "type": "Pipe"}},
                    {"name": "t", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 60}}]}},
                    {"name": "e", "emptyDir": {"sizeLimit": "-1Gi"}}
                ]);
                p["spec"]["containers"][0]["volumeMounts"] =
                    json!([{"name": "s", "mountPath": "/s", "subPath": "../x"}]);
            }),
            vec![
                "spec.volumes[0].secret.secretName: Required value",
                "spec.volumes[1].configMap.items[0].path: Invalid value: \"/abs\": must be a relative path",
                "spec.volumes[2].hostPath.path: Invalid value: \"/x/../y\": must not contain '..'",
                "spec.volumes[2].hostPath.type: Unsupported value: \"Pipe\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"",
                "spec.volumes[3].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes",
                "spec.volumes[4].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity",
                "spec.containers[0].volumeMounts[0].name: Not found: \"s\"",
                "spec.containers[0].volumeMounts.subPath: Invalid value: \"../x\": must not contain '..'",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["tolerations"] = json!([
                    {"key": "k", "operator": "Maybe"},
                    {"operator": "Equal", "value": "v"},
                    {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}
                ]);
            }),
            vec![
                "spec.tolerations[0].operator: Unsupported value: \"Maybe\": supported values: \"Equal\", \"Exists\"",
                "spec.tolerations[1].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                "spec.tolerations[2].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
            ],
        ),
        (
            Box::new(|p| p["spec"]["activeDeadlineSeconds"] = json!(0)),
            vec![
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
            ],
        ),
        (
            Box::new(|p| p["spec"]["nodeSelector"] = json!({"disk": "ssd!"})),
            vec![
                "spec.nodeSelector: Invalid value: \"ssd!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["containers"][0]["livenessProbe"] =
                    json!({"successThreshold": 2, "exec": {"command": ["true"]}});
            }),
            vec!["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"],
        ),
        (
            Box::new(|p| {
                p["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
            }),
            vec!["spec.ephemeralContainers: Forbidden: cannot be set on create"],
        ),
        (
            Box::new(|p| {
                p["spec"]["containers"][0]["image"] = json!(" nginx");
                p["spec"]["containers"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "b", "image": "busybox",
                                 "ports": [{"containerPort": 80, "hostPort": 8080}]}));
                p["spec"]["containers"][0]["ports"] =
                    json!([{"containerPort": 80, "hostPort": 8080}]);
            }),
            vec![
                "spec.containers[1].ports[0].hostPort: Duplicate value: \"TCP//8080\"",
                "spec.containers[0].image: Invalid value: \" nginx\": must not have leading or trailing whitespace",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["tolerations"] =
                    json!([{"key": "k", "operator": "Exists", "value": "v"}]);
                p["spec"]["schedulingGates"] = json!([{"name": "a/b/c"}]);
            }),
            vec![
                "spec.schedulingGates[0]: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                "spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
            ],
        ),
        (
            Box::new(|p| {
                p["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox",
                    "readinessProbe": {"exec": {"command": ["true"]}}}]);
            }),
            vec![
                "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            ],
        ),
    ];
    for (edit, want) in cases {
        assert_eq!(pod_errors(edit), want);
    }
}

fn deployment() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}
            }
        }
    })
}

fn errors(kind: &str, obj: Value) -> Vec<String> {
    messages(&create(kind, obj).1)
}

#[test]
fn replicated_workload_rules() {
    assert!(errors("Deployment", deployment()).is_empty());

    let mut d = deployment();
    d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    assert_eq!(
        errors("Deployment", d),
        [
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
        ]
    );

    let mut d = deployment();
    d["spec"].as_object_mut().unwrap().remove("selector");
    // As upstream: a nil selector selects nothing, so the labels mismatch too.
    assert_eq!(
        errors("Deployment", d),
        [
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        ]
    );

    let mut d = deployment();
    d["spec"]["selector"] = json!({});
    assert_eq!(
        errors("Deployment", d),
        [
            "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{},MatchExpressions:[]LabelSelectorRequirement{},}: empty selector is invalid for deployment"
        ]
    );

    let mut d = deployment();
    d["spec"]["replicas"] = json!(-1);
    d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(
        errors("Deployment", d),
        [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
        ]
    );

    let mut d = deployment();
    d["spec"]["strategy"] = json!({"rollingUpdate": {"maxUnavailable": "150%"}});
    assert_eq!(
        errors("Deployment", d),
        [
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%"
        ]
    );

    for kind in ["ReplicaSet", "StatefulSet", "DaemonSet"] {
        assert!(errors(kind, deployment()).is_empty(), "{kind}");
    }
    let mut ds = deployment();
    ds["spec"]["updateStrategy"] = json!({"rollingUpdate": {"maxUnavailable": 0}});
    assert_eq!(
        errors("DaemonSet", ds),
        [
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
        ]
    );
    let mut ds = deployment();
    ds["spec"].as_object_mut().unwrap().remove("selector");
    ds["spec"]["updateStrategy"] = json!({"type": "Sometimes"});
    assert_eq!(
        errors("DaemonSet", ds),
        [
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            "spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:\"Sometimes\", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: \"RollingUpdate\", \"OnDelete\"",
        ]
    );
    // A StatefulSet's template may mount its volume claim templates.
    let mut ss = deployment();
    ss["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/data"}]);
    ss["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"}}]);
    ss["spec"]["updateStrategy"] = json!({"rollingUpdate": {"maxUnavailable": 0}});
    assert_eq!(
        errors("StatefulSet", ss),
        [
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: cannot be 0"
        ]
    );
    let mut rc = json!({"spec": {"template": deployment()["spec"]["template"].clone()}});
    rc["spec"]["selector"] = json!({"app": "nope"});
    assert_eq!(
        errors("ReplicationController", rc),
        [
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"
        ]
    );
}

#[test]
fn pod_template_rules() {
    let mut t = json!({"template": deployment()["spec"]["template"].clone()});
    assert!(errors("PodTemplate", t.clone()).is_empty());
    t["template"]["spec"]["containers"][0]["name"] = json!("");
    assert_eq!(
        errors("PodTemplate", t),
        ["template.spec.containers[0].name: Required value"]
    );
}

#[test]
fn job_rules() {
    let mut job = json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
        "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}}
    });
    assert_eq!(
        errors("Job", job.clone()),
        [
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        ]
    );
    job["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert!(errors("Job", job.clone()).is_empty());
    let mut selected = job.clone();
    selected["spec"]["selector"] = json!({"matchLabels": {"app": "pi"}});
    selected["spec"]["template"]["metadata"] = json!({"labels": {"app": "pi"}});
    assert_eq!(
        errors("Job", selected.clone()),
        [
            "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{app: pi,batch.kubernetes.io/controller-uid: u-1,},MatchExpressions:[]LabelSelectorRequirement{},}: `selector` not auto-generated"
        ]
    );
    selected["spec"]["manualSelector"] = json!(true);
    assert!(errors("Job", selected).is_empty());
    job["spec"]["backoffLimit"] = json!(-1);
    job["spec"]["completionMode"] = json!("Sometimes");
    assert_eq!(
        errors("Job", job),
        [
            "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
            "spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\"",
        ]
    );
}

#[test]
fn cron_job_rules() {
    let cron = |schedule: &str| {
        json!({
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "hello", "image": "busybox"}]}}}}}
        })
    };
    assert!(errors("CronJob", cron("*/1 * * * *")).is_empty());
    assert_eq!(
        errors("CronJob", cron("* * *")),
        ["spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]"]
    );
    assert_eq!(
        errors("CronJob", cron("")),
        ["spec.schedule: Required value"]
    );
    let mut c = cron("@daily");
    c["spec"]["concurrencyPolicy"] = json!("Sometimes");
    c["spec"]["timeZone"] = json!("Local");
    assert_eq!(
        errors("CronJob", c),
        [
            "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
        ]
    );
    let mut c = cron("TZ=UTC 0 * * * *");
    c["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
    assert_eq!(
        errors("CronJob", c),
        [
            "spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            "spec.jobTemplate.spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{a: b,},MatchExpressions:[]LabelSelectorRequirement{},}: `selector` will be auto-generated",
        ]
    );
}

#[test]
fn malformed_shapes_never_panic() {
    let shapes = [
        json!(null),
        json!("spec"),
        json!({"spec": "x", "metadata": 5}),
        json!({"spec": {"containers": {"a": 1}, "volumes": "v", "tolerations": [1, "x"]}}),
        json!({"spec": {"containers": [1, null, {"name": 5, "ports": "p", "env": [null],
            "resources": {"limits": [1], "requests": {"cpu": {}}}, "livenessProbe": 3,
            "volumeMounts": [{"name": null}]}], "volumes": [{"name": "a", "projected": 1},
            {"name": "b", "secret": {"items": "i"}}]}}),
        json!({"spec": {"selector": [], "template": {"metadata": {"labels": 1}, "spec": []},
            "strategy": "s", "updateStrategy": {"rollingUpdate": {"maxUnavailable": []}},
            "jobTemplate": 1, "schedule": 7, "volumeClaimTemplates": [1]}}),
        json!({"template": 1}),
    ];
    for kind in [
        "Pod",
        "PodTemplate",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "DaemonSet",
        "StatefulSet",
        "ControllerRevision",
        "Job",
        "CronJob",
    ] {
        for shape in &shapes {
            let mut obj = shape.clone();
            // Normalisation may reject the shape; the rest must cope anyway.
            let _ = super::super::normalize(kind, &mut obj);
            super::super::default(kind, &mut obj);
            super::super::prepare_create(kind, &mut obj);
            let _ = super::super::validate(kind, &obj);
            let mut new = obj.clone();
            super::super::prepare_update(kind, &mut new, shape);
            let _ = super::super::validate_update(kind, &new, shape);
            let _ = super::super::validate_status_update(kind, &new, shape);
        }
    }
    // And a spec this broken is reported, not accepted.
    let (_, errs) = create("Pod", json!({"spec": {"containers": {"a": 1}}}));
    assert_eq!(messages(&errs), ["spec.containers: Required value"]);
}
