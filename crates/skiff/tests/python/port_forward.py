"""The official Python client's kubernetes.stream.portforward (WebSocket
v4.channel.k8s.io) against a Skiff pod running an echo server on port 80
and nothing on 81: `python port_forward.py KUBECONFIG POD`. Exits non-zero
on any mismatch."""
import sys
import time

from kubernetes import client, config
from kubernetes.stream import portforward

config.load_kube_config(config_file=sys.argv[1])
api = client.CoreV1Api()
pod = sys.argv[2]

pf = portforward(api.connect_get_namespaced_pod_portforward, pod, "default",
                 ports="80,81")

# Bytes through port 80 come back intact.
sock = pf.socket(80)
sock.setblocking(True)
data = bytes((i * 7 + i // 251) % 256 for i in range(100_000))
sock.sendall(data)
back = b""
while len(back) < len(data):
    chunk = sock.recv(65536)
    assert chunk, "port 80 closed after %d bytes" % len(back)
    back += chunk
assert back == data, "bytes differ"

# Nothing listens on 81: the error channel says so.
deadline = time.time() + 30
while pf.error(81) is None and time.time() < deadline:
    time.sleep(0.1)
err = pf.error(81)
assert err is not None and "error forwarding port 81" in err \
    and "connection refused" in err, repr(err)
assert pf.error(80) is None, repr(pf.error(80))
sock.close()
print("ok")
