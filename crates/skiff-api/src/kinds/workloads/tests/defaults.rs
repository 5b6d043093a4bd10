//! Defaulting and create-time strategy results, compared with what
//! upstream's API server stores.

use serde_json::{Value, json};

use super::{create, nginx_pod};

fn defaulted(kind: &str, obj: Value) -> Value {
    let (obj, errs) = create(kind, obj);
    assert!(errs.is_empty(), "{kind}: {errs}");
    obj
}

#[test]
fn kubectl_run_nginx_gets_upstreams_defaults() {
    let pod = defaulted("Pod", nginx_pod());
    // What kube-apiserver v1.33 stores, minus the fields of the
    // ServiceAccount and Priority admission plugins.
    let want = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nginx", "namespace": "default", "labels": {"run": "nginx"}},
        "spec": {
            "containers": [{
                "name": "nginx",
                "image": "nginx",
                "imagePullPolicy": "Always",
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready",
                 "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable",
                 "operator": "Exists", "tolerationSeconds": 300}
            ]
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"}
    });
    assert_eq!(pod, want);
}

fn sample(kind: &str) -> Value {
    let template = json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{
            "name": "web", "image": "nginx:1.27",
            "ports": [{"containerPort": 80}],
            "livenessProbe": {"httpGet": {"port": 80}},
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}
        }],
        "volumes": [
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "scratch"},
            {"name": "host", "hostPath": {"path": "/tmp"}},
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}
        ]}
    });
    let selector = json!({"matchLabels": {"app": "web"}});
    let meta = json!({"name": "web", "namespace": "default", "uid": "1234"});
    match kind {
        "Pod" => json!({"metadata": meta, "spec": template["spec"].clone()}),
        "PodTemplate" => json!({"metadata": meta, "template": template}),
        "ReplicationController" => json!({"metadata": meta, "spec": {"template": template}}),
        "Job" => {
            let mut t = template;
            t["spec"]["restartPolicy"] = json!("Never");
            json!({"metadata": meta, "spec": {"template": t}})
        }
        "CronJob" => {
            let mut t = template;
            t["spec"]["restartPolicy"] = json!("OnFailure");
            json!({"metadata": meta, "spec": {"schedule": "*/5 * * * *",
                   "jobTemplate": {"spec": {"template": t}}}})
        }
        _ => json!({"metadata": meta, "spec": {"selector": selector, "template": template}}),
    }
}

const KINDS: &[&str] = &[
    "Pod",
    "PodTemplate",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "Job",
    "CronJob",
];

#[test]
fn defaulting_is_idempotent_and_valid() {
    for kind in KINDS {
        let once = defaulted(kind, sample(kind));
        let mut twice = once.clone();
        super::super::default(kind, &mut twice);
        assert_eq!(once, twice, "{kind}");
    }
}

#[test]
fn pod_spec_members_get_their_defaults() {
    let pod = defaulted("Pod", sample("Pod"));
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
               "timeoutSeconds": 1, "periodSeconds": 10,
               "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    // Pods (not templates) get requests from their limits.
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "500m", "memory": "128Mi"})
    );
    let v = &pod["spec"]["volumes"];
    assert_eq!(v[0]["configMap"]["defaultMode"], 420);
    assert_eq!(v[1]["emptyDir"], json!({}));
    assert_eq!(v[2]["hostPath"]["type"], "");
    assert_eq!(v[3]["projected"]["defaultMode"], 420);
    assert_eq!(
        v[3]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3600
    );
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
}

#[test]
fn templates_do_not_get_pod_only_defaults() {
    let d = defaulted("Deployment", sample("Deployment"));
    let spec = &d["spec"]["template"]["spec"];
    assert!(spec.get("enableServiceLinks").is_none());
    assert!(spec.get("tolerations").is_none());
    assert!(spec["containers"][0]["resources"].get("requests").is_none());
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
}

#[test]
fn deployment_defaults_and_status() {
    let d = defaulted("Deployment", sample("Deployment"));
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate",
               "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(d["status"], json!({}));
    // Recreate gets no rollingUpdate block.
    let mut r = sample("Deployment");
    r["spec"]["strategy"] = json!({"type": "Recreate"});
    let r = defaulted("Deployment", r);
    assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn stateful_set_daemon_set_and_rc_defaults() {
    let mut s = sample("StatefulSet");
    s["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1024Mi"}}}}]);
    let s = defaulted("StatefulSet", s);
    let spec = &s["spec"];
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    let pvc = &spec["volumeClaimTemplates"][0];
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(pvc["status"], json!({"phase": "Pending"}));
    assert_eq!(s["status"], json!({"replicas": 0, "availableReplicas": 0}));

    let ds = defaulted("DaemonSet", sample("DaemonSet"));
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(
        ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
        "1"
    );

    let rc = defaulted("ReplicationController", sample("ReplicationController"));
    assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(rc["spec"]["replicas"], 1);
    assert_eq!(rc["status"], json!({"replicas": 0}));
}

#[test]
fn job_and_cron_job_defaults() {
    let j = defaulted("Job", sample("Job"));
    let spec = &j["spec"];
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(
        spec["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}})
    );
    assert_eq!(
        spec["template"]["metadata"]["labels"],
        json!({"app": "web", "batch.kubernetes.io/controller-uid": "1234",
               "batch.kubernetes.io/job-name": "web", "controller-uid": "1234",
               "job-name": "web"})
    );
    assert_eq!(j["metadata"]["labels"], json!({"app": "web"}));

    let mut parallel = sample("Job");
    parallel["spec"]["parallelism"] = json!(3);
    parallel["spec"]["backoffLimitPerIndex"] = json!(1);
    parallel["spec"]["completionMode"] = json!("Indexed");
    parallel["spec"]["completions"] = json!(3);
    let p = defaulted("Job", parallel);
    assert_eq!(p["spec"]["parallelism"], 3);
    assert_eq!(p["spec"]["backoffLimit"], 2_147_483_647);

    let c = defaulted("CronJob", sample("CronJob"));
    let spec = &c["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    // The job template is only pod-template defaulted.
    assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
    assert_eq!(
        spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );
}

#[test]
fn quantities_are_canonical_and_rounded_to_milli() {
    let mut pod = nginx_pod();
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": "1000m", "memory": "1024Mi"}, "requests": {"cpu": "1n"}});
    pod["spec"]["volumes"] = json!([{"name": "s", "emptyDir": {"sizeLimit": "0.5Gi"}}]);
    let pod = defaulted("Pod", pod);
    let r = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"], json!({"cpu": "1", "memory": "1Gi"}));
    assert_eq!(r["requests"], json!({"cpu": "1m", "memory": "1Gi"}));
    assert_eq!(pod["spec"]["volumes"][0]["emptyDir"]["sizeLimit"], "512Mi");
    assert_eq!(pod["status"]["qosClass"], "Burstable");
}

#[test]
fn malformed_quantities_fail_normalisation() {
    let mut pod = nginx_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "1GB"}});
    let err = super::super::normalize("Pod", &mut pod).unwrap_err();
    assert_eq!(
        err,
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    );
}

#[test]
fn existing_tolerations_are_respected() {
    let mut pod = nginx_pod();
    pod["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
    let pod = defaulted("Pod", pod);
    assert_eq!(pod["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    let mut pod = nginx_pod();
    pod["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/unreachable",
        "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 6000}]);
    let pod = defaulted("Pod", pod);
    let t = pod["spec"]["tolerations"].as_array().unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0]["tolerationSeconds"], 6000);
    assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
}

#[test]
fn qos_classes() {
    let qos = |resources: Value| {
        let mut pod = nginx_pod();
        pod["spec"]["containers"][0]["resources"] = resources;
        defaulted("Pod", pod)["status"]["qosClass"].clone()
    };
    assert_eq!(qos(json!({})), "BestEffort");
    assert_eq!(qos(json!({"requests": {"cpu": "100m"}})), "Burstable");
    assert_eq!(
        qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
        "Guaranteed"
    );
    assert_eq!(
        qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})),
        "Burstable"
    );
    assert_eq!(qos(json!({"requests": {"cpu": "0"}})), "BestEffort");
}

#[test]
fn scheduling_gates_add_the_gated_condition() {
    let mut pod = nginx_pod();
    pod["spec"]["schedulingGates"] = json!([{"name": "example.com/wait"}]);
    let pod = defaulted("Pod", pod);
    assert_eq!(pod["status"]["conditions"][0]["reason"], "SchedulingGated");
    assert_eq!(pod["status"]["conditions"][0]["status"], "False");
}

#[test]
fn pod_level_resources_are_dropped_while_the_gate_is_off() {
    let mut pod = nginx_pod();
    pod["spec"]["resources"] = json!({"limits": {"cpu": "1"}});
    let pod = defaulted("Pod", pod);
    assert!(pod["spec"].get("resources").is_none());
    let mut d = sample("Deployment");
    d["spec"]["template"]["spec"]["resources"] = json!({"limits": {"cpu": "1"}});
    let d = defaulted("Deployment", d);
    assert!(d["spec"]["template"]["spec"].get("resources").is_none());
}
