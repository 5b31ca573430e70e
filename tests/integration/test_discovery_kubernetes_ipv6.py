"""Kubernetes discovery against an API server on an IPv6 address with hex digits (cpp-httplib
0.11's URL parser accepts only digits and colons inside brackets, so the client once never
listed anything from https://[fd00:10:96::1]:443), and the router's dual-stack listener.

The IPv6 test runs in a network namespace of its own (`unshare --net`, as root): fd00:10:96::a1
on its loopback, the fake API server there, the router and a simulated engine beside it. The
namespace goes away with the process."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fakekube import FakeKube, endpoint_slice  # noqa: E402
from routerproc import chat_body, call, post_json, start_router, wait_for  # noqa: E402
from simproc import start_sim  # noqa: E402

API_ADDRESS = "fd00:10:96::a1"


def inner():
    """In the new namespace: loopback up, the address added, then discovery through it."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-6", "addr", "add", API_ADDRESS + "/128", "dev", "lo", "nodad"], check=True)
    with FakeKube(host=API_ADDRESS) as kube, start_sim("--model", "org/m", "--id", "S", "--output-tokens", "1") as sim:
        assert kube.url == "http://[%s]:%d" % (API_ADDRESS, kube.port)
        kube.put("endpointslices", "s", endpoint_slice("s", ["127.0.0.1"], port=sim.port, labels={"app": "vllm"},
                                                       annotations={"vllm-router.io/served-model-names": "org/m"}))
        d = tempfile.mkdtemp()
        path = os.path.join(d, "config.json")
        with open(path, "w") as f:
            json.dump({"models": [], "discovery": [{"type": "kubernetes", "api_url": kube.url, "namespace": "default",
                                                    "label_selector": "app=vllm", "port": "http",
                                                    "backoff_initial_ms": 20, "backoff_max_ms": 200}]}, f)
        with start_router("--config", path) as router:
            def served():
                status, _, raw = call(router, "GET", "/v1/models")
                return status == 200 and "org/m" in {m["id"] for m in json.loads(raw)["data"]}
            assert wait_for(served, timeout=10), router.stderr_text()
            status, hdrs, _ = post_json(router, "/v1/chat/completions", chat_body("org/m"))
            assert status == 200 and hdrs.get("x-sim-id") == "S"
            # The Host header names the IPv6 literal in brackets, with the port.
            assert "[%s]:%d" % (API_ADDRESS, kube.port) in kube.hosts_seen, kube.hosts_seen[:3]
            assert kube.list_requests()[0]["resourceVersion"] == "0"


def test_api_server_on_an_ipv6_address_with_hex_digits():
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace (unshare --net)")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(tool + " not found (util-linux, iproute2)")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:  # a container without CAP_SYS_ADMIN: say so, do not pass
        pytest.skip("cannot create a network namespace here: " + probe.stderr.strip())
    proc = subprocess.run(["unshare", "--net", sys.executable, os.path.abspath(__file__), "inner"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_listener_default_is_dual_stack():
    """--host :: (the default) accepts IPv4 and IPv6 clients on one socket, whatever
    net.ipv6.bindv6only says; 0.0.0.0 is IPv4 only."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        pytest.skip("no ::1 on this host")
    with start_sim("--model", "m") as sim, start_router("--model", "m=" + sim.url, "--host", "::") as router:
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family) as c:
                c.settimeout(5)
                c.connect((address, router.port))
                c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert c.recv(64).startswith(b"HTTP/1.1 200"), address


if __name__ == "__main__" and sys.argv[1:] == ["inner"]:
    inner()
