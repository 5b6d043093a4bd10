"""The official Python client's kubernetes.stream against a Skiff pod:
`python exec_stream.py KUBECONFIG POD`. Exits non-zero on any mismatch."""
import sys

from kubernetes import client, config
from kubernetes.stream import stream

config.load_kube_config(config_file=sys.argv[1])
api = client.CoreV1Api()
pod = sys.argv[2]

# One-shot: stdout collected.
out = stream(api.connect_get_namespaced_pod_exec, pod, "default",
             command=["sh", "-c", "echo py-out"],
             stderr=True, stdin=False, stdout=True, tty=False)
assert out == "py-out\n", repr(out)

# Interactive: stdin in, stdout and stderr apart, the exit code back.
resp = stream(api.connect_get_namespaced_pod_exec, pod, "default",
              command=["sh", "-c", "read x; echo got-$x; echo oops >&2; exit 5"],
              stderr=True, stdin=True, stdout=True, tty=False,
              _preload_content=False)
resp.write_stdin("abc\n")
stdout, stderr = "", ""
while resp.is_open():
    resp.update(timeout=5)
    stdout += resp.read_stdout() if resp.peek_stdout() else ""
    stderr += resp.read_stderr() if resp.peek_stderr() else ""
resp.close()
assert stdout == "got-abc\n", repr(stdout)
assert stderr == "oops\n", repr(stderr)
assert resp.returncode == 5, resp.returncode
print("ok")
