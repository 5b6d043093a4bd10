"""Drives the Skiff API server with the official Kubernetes Python client.

Usage: official_client.py KUBECONFIG. Exits non-zero (with a traceback) on
the first difference from what a kube-apiserver answers.
"""

import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def expect_status(fn, code, reason):
    try:
        fn()
    except ApiException as e:
        assert e.status == code, (e.status, e.body)
        assert f'"reason":"{reason}"' in e.body.replace(" ", ""), e.body
        return
    raise AssertionError(f"expected {code} {reason}")


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    v1 = client.CoreV1Api()
    apps = client.AppsV1Api()

    version = client.VersionApi().get_code()
    assert version.major == "1" and version.minor.startswith("33"), version

    ns = "py"
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    assert ns in [n.metadata.name for n in v1.list_namespace().items]

    # Typed create/read/replace/patch/delete of a ConfigMap.
    cm = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings", labels={"app": "py"}),
        data={"mode": "fast"},
    )
    created = v1.create_namespaced_config_map(ns, cm)
    assert created.metadata.uid and created.metadata.resource_version
    got = v1.read_namespaced_config_map("settings", ns)
    assert got.data == {"mode": "fast"}
    got.data["mode"] = "slow"
    replaced = v1.replace_namespaced_config_map("settings", ns, got)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    # A stale resourceVersion conflicts.
    expect_status(lambda: v1.replace_namespaced_config_map("settings", ns, got), 409, "Conflict")
    patched = v1.patch_namespaced_config_map("settings", ns, {"metadata": {"labels": {"tier": "gold"}}})
    assert patched.metadata.labels == {"app": "py", "tier": "gold"}
    expect_status(lambda: v1.read_namespaced_config_map("missing", ns), 404, "NotFound")
    expect_status(lambda: v1.create_namespaced_config_map(ns, cm), 409, "AlreadyExists")

    # Label selectors and paging.
    for i in range(5):
        v1.create_namespaced_config_map(
            ns,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"page-{i}", labels={"paged": "yes"})),
        )
    page = v1.list_namespaced_config_map(ns, label_selector="paged=yes", limit=2)
    names = [c.metadata.name for c in page.items]
    while page.metadata._continue:
        page = v1.list_namespaced_config_map(
            ns, label_selector="paged=yes", limit=2, _continue=page.metadata._continue
        )
        names += [c.metadata.name for c in page.items]
    assert names == [f"page-{i}" for i in range(5)], names

    # A Deployment with the server's defaults, then its scale subresource.
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image="nginx:1.27")]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(ns, dep)
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.revision_history_limit == 10
    assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment_scale("web", ns).spec.replicas == 3
    # Validation errors are 422 with field causes.
    bad = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Bad_Name"))
    expect_status(lambda: v1.create_namespaced_config_map(ns, bad), 422, "Invalid")

    # Watch: events after a resourceVersion, in order.
    rv = v1.list_namespaced_config_map(ns).metadata.resource_version
    seen = []

    def watcher():
        w = watch.Watch()
        for event in w.stream(v1.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=20):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 3:
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched")))
    v1.patch_namespaced_config_map("watched", ns, {"data": {"k": "v"}})
    v1.delete_namespaced_config_map("watched", ns)
    t.join(30)
    assert seen == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")], seen

    # Delete a collection by selector.
    v1.delete_collection_namespaced_config_map(ns, label_selector="paged=yes")
    assert v1.list_namespaced_config_map(ns, label_selector="paged=yes").items == []
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
