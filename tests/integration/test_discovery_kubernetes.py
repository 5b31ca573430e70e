"""Kubernetes discovery against the fake API server (fakekube.py) and simulated engines: list +
watch of EndpointSlices and Pods, only ready addresses (serving-terminating ones as a fallback),
port by name, served names from the annotation or the label through model_label_names (what the
Helm chart renders), one endpoint per pod of a dual-stack Service, lists from the watch cache
(resourceVersion=0), resourceVersion resume after a dropped watch, 410 Gone -> relist,
/v1/models polling."""

import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fakekube import FakeKube, endpoint_slice, pod, slice_endpoint  # noqa: E402
from routerproc import chat_body as chat, call, open_stream, post_json, start_router, wait_for  # noqa: E402
from simproc import start_sim  # noqa: E402

CHAT = "/v1/chat/completions"
ANN = "vllm-router.io/served-model-names"
SEL = {"app": "vllm"}


@pytest.fixture(scope="module")
def sims():
    """Two replicas of org/model-a (A1, A2, also serving lora-x) and one of model-b (B)."""
    out = {
        "A1": start_sim("--model", "org/model-a", "--id", "A1", "--output-tokens", "1",
                        "--lora", "lora-x"),
        "A2": start_sim("--model", "org/model-a", "--id", "A2", "--output-tokens", "1",
                        "--lora", "lora-x"),
        "B": start_sim("--model", "model-b", "--id", "B", "--output-tokens", "1"),
    }
    yield out
    for s in out.values():
        s.stop()


@pytest.fixture
def kube():
    with FakeKube() as k:
        yield k


def start_with(source, models=None):
    """A router whose config file has `models` (default none) and one kubernetes source."""
    d = tempfile.mkdtemp()
    path = os.path.join(d, "config.json")
    entry = {"type": "kubernetes", "namespace": "default", "label_selector": "app=vllm",
             "port": "http", "backoff_initial_ms": 20, "backoff_max_ms": 200}
    entry.update(source)
    with open(path, "w") as f:
        json.dump({"models": models or [], "discovery": [entry]}, f)
    return start_router("--config", path, "--log-level", "debug")


def served(router):
    status, _, raw = call(router, "GET", "/v1/models")
    assert status == 200, raw
    return {m["id"]: m for m in json.loads(raw)["data"]}


def served_by(router, model, tries=12):
    """The set of sim ids that answered `tries` requests for `model` (404/503 count as None)."""
    ids = set()
    for _ in range(tries):
        status, hdrs, _ = post_json(router, CHAT, chat(model))
        ids.add(hdrs.get("x-sim-id") if status == 200 else None)
    return ids


def slice_of(name, sims, ready, port_of=None, annotations=None):
    eps = [("127.0.0.1", r) for r in ready]
    port = port_of or sims[0].port
    return endpoint_slice(name, eps, port=port, labels=SEL, annotations=annotations)


def test_endpointslices_list_watch_ready_only(kube, sims):
    a1, a2 = sims["A1"], sims["A2"]
    # Each sim listens on its own port, so one slice per sim (a Service's slices share a port).
    kube.put("endpointslices", "a1", endpoint_slice("a1", [("127.0.0.1", True)], port=a1.port,
                                                    labels=SEL, annotations={ANN: "org/model-a"}))
    kube.put("endpointslices", "a2", endpoint_slice("a2", [("127.0.0.1", False)], port=a2.port,
                                                    labels=SEL, annotations={ANN: "org/model-a"}))
    # Not selected (other label): never used.
    kube.put("endpointslices", "other", endpoint_slice("other", ["127.0.0.1"], port=sims["B"].port,
                                                       labels={"app": "x"},
                                                       annotations={ANN: "model-b"}))
    with start_with({"api_url": kube.url}) as router:
        assert wait_for(lambda: "org/model-a" in served(router), timeout=5)
        assert "model-b" not in served(router)
        assert wait_for(lambda: served_by(router, "org/model-a", 4) == {"A1"}, timeout=5)
        # The watch delivers the readiness change: A2 joins.
        kube.put("endpointslices", "a2", endpoint_slice("a2", [("127.0.0.1", True)], port=a2.port,
                                                        labels=SEL, annotations={ANN: "org/model-a"}))
        assert wait_for(lambda: served_by(router, "org/model-a") == {"A1", "A2"}, timeout=5)
        # Deleting both slices removes the model from the router.
        kube.delete("endpointslices", "a1")
        kube.delete("endpointslices", "a2")
        assert wait_for(lambda: "org/model-a" not in served(router), timeout=5)
        status, _, _ = post_json(router, CHAT, chat("org/model-a"))
        assert status == 404
        # One list, then watches resuming from the list's resourceVersion.
        assert len(kube.list_requests()) == 1
        watches = kube.watch_requests()
        assert watches and watches[0]["resourceVersion"] == "4"
        assert watches[0]["labelSelector"] == "app=vllm"


def test_dropped_watch_resumes_from_last_resource_version(kube, sims):
    b = sims["B"]
    kube.put("endpointslices", "b", endpoint_slice("b", ["127.0.0.1"], port=b.port, labels=SEL,
                                                   annotations={ANN: "model-b"}))
    with start_with({"api_url": kube.url}) as router:
        assert wait_for(lambda: "model-b" in served(router), timeout=5)
        assert wait_for(lambda: kube.open_watches == 1, timeout=5)
        rv_before = kube.rv
        kube.drop_watches()
        assert wait_for(lambda: len(kube.watch_requests()) >= 2 and kube.open_watches == 1, timeout=5)
        assert kube.watch_requests()[-1]["resourceVersion"] == str(rv_before)
        assert len(kube.list_requests()) == 1  # a drop is not a reason to relist
        kube.put("endpointslices", "a1", endpoint_slice("a1", ["127.0.0.1"], port=sims["A1"].port,
                                                        labels=SEL, annotations={ANN: "org/model-a"}))
        assert wait_for(lambda: "org/model-a" in served(router), timeout=5)


@pytest.mark.parametrize("as_status", [False, True], ids=["error-event", "http-410"])
def test_gone_forces_a_relist(kube, sims, as_status):
    b = sims["B"]
    kube.gone_as_status = as_status
    kube.put("endpointslices", "b", endpoint_slice("b", ["127.0.0.1"], port=b.port, labels=SEL,
                                                   annotations={ANN: "model-b"}))
    with start_with({"api_url": kube.url}) as router:
        assert wait_for(lambda: "model-b" in served(router), timeout=5)
        assert wait_for(lambda: kube.open_watches == 1, timeout=5)
        # While the router is cut off, the world changes and history is compacted: the resumed
        # watch is too old (410) and only a relist can see the change.
        kube.compact()
        kube.drop_watches()
        kube.delete("endpointslices", "b")
        kube.put("endpointslices", "a1", endpoint_slice("a1", ["127.0.0.1"], port=sims["A1"].port,
                                                        labels=SEL, annotations={ANN: "org/model-a"}))
        kube.compact()
        assert wait_for(lambda: "org/model-a" in served(router) and "model-b" not in served(router),
                        timeout=5)
        assert len(kube.list_requests()) >= 2
        # A live watch that receives an ERROR 410 event relists too.
        lists = len(kube.list_requests())
        assert wait_for(lambda: kube.open_watches == 1, timeout=5)
        kube.send_gone()
        assert wait_for(lambda: len(kube.list_requests()) > lists, timeout=5)


def test_failing_api_server_backs_off_then_recovers(kube, sims):
    kube.fail_lists = 3  # the first three lists answer 500
    kube.put("endpointslices", "b", endpoint_slice("b", ["127.0.0.1"], port=sims["B"].port,
                                                   labels=SEL, annotations={ANN: "model-b"}))
    with start_with({"api_url": kube.url}) as router:
        assert wait_for(lambda: call(router, "GET", "/ready")[0] == 200, timeout=5)
        assert len(kube.list_requests()) == 4
        assert "kubernetes list" in router.stderr_text()


def test_pods_with_label_port_by_number(kube, sims):
    b = sims["B"]
    kube.put("pods", "b-0", pod("b-0", "127.0.0.1", ready=True, port=b.port,
                                labels={"app": "vllm", "vllm-router.io/model": "model-b"}))
    kube.put("pods", "b-1", pod("b-1", "127.0.0.2", ready=False, port=b.port,
                                labels={"app": "vllm", "vllm-router.io/model": "model-b"}))
    with start_with({"api_url": kube.url, "resource": "pods", "port": b.port}) as router:
        assert wait_for(lambda: "model-b" in served(router), timeout=5)
        assert wait_for(lambda: served_by(router, "model-b", 4) == {"B"}, timeout=5)
        status, _, raw = call(router, "GET", "/metrics")
        assert "127.0.0.2" not in raw.decode()  # the unready pod never became an endpoint


def test_model_discovery_sorts_one_selector_by_model(kube, sims):
    """Slices without model names: /v1/models of each endpoint decides what it serves."""
    for key in ("A1", "A2", "B"):
        kube.put("endpointslices", key.lower(), endpoint_slice(key.lower(), ["127.0.0.1"],
                                                               port=sims[key].port, labels=SEL))
    with start_with({"api_url": kube.url,
                     "discover_models": {"interval_ms": 200, "timeout_ms": 1000}}) as router:
        assert wait_for(lambda: {"org/model-a", "model-b", "lora-x"} <= set(served(router)),
                        timeout=5)
        models = served(router)
        assert models["lora-x"]["parent"] == "org/model-a"
        assert wait_for(lambda: served_by(router, "org/model-a") == {"A1", "A2"}, timeout=5)
        assert served_by(router, "model-b", 4) == {"B"}
        assert served_by(router, "lora-x") == {"A1", "A2"}


def endpoint_urls(router):
    """The endpoint URLs the router's /metrics names (one series label per endpoint)."""
    status, _, raw = call(router, "GET", "/metrics")
    assert status == 200
    import re
    return set(re.findall(r'endpoint="([^"]+)"', raw.decode()))


def test_endpointslices_keep_model_ids_aliases_and_policy(kube, sims):
    """What the chart renders: slices carry only their Service's labels (vllm-router.io/model =
    the chart's model key), model_label_names maps them to the served id, and the configured
    model keeps its alias and policy (the slice path once listed the Service names instead)."""
    a1, a2 = sims["A1"], sims["A2"]
    labels = {"app": "vllm", "vllm-router.io/model": "model-a"}
    for key, sim in (("a1", a1), ("a2", a2)):
        kube.put("endpointslices", key, endpoint_slice(key, [slice_endpoint("127.0.0.1", key)],
                                                       port=sim.port, labels=labels))
    models = [{"name": "org/model-a", "aliases": ["alias-a"], "policy": "least_requests", "endpoints": []}]
    with start_with({"api_url": kube.url, "model_label_names": {"model-a": "org/model-a"}}, models) as router:
        assert wait_for(lambda: "org/model-a" in served(router), timeout=5)
        ids = set(served(router))
        assert "model-a" not in ids and "alias-a" in ids, ids
        assert wait_for(lambda: served_by(router, "org/model-a") == {"A1", "A2"}, timeout=5)
        assert served_by(router, "alias-a") == {"A1", "A2"}
        # Lists are served from the API server's watch cache.
        assert kube.list_requests()[0]["resourceVersion"] == "0"
        assert "limit" in kube.list_requests()[0]


def test_terminating_endpoints_serve_only_while_nothing_is_ready(kube, sims):
    a1, a2 = sims["A1"], sims["A2"]
    # One Service (one port) per sim here, so two slices of one model: A1's pod is terminating
    # but still serving, A2's is ready.
    def put(name, sim, ep):
        kube.put("endpointslices", name, endpoint_slice(name, [ep], port=sim.port, labels=SEL,
                                                        annotations={ANN: "org/model-a"}))
    put("a1", a1, slice_endpoint("127.0.0.1", "a1", ready=False, serving=True, terminating=True))
    put("a2", a2, slice_endpoint("127.0.0.1", "a2", ready=True, serving=True, terminating=False))
    with start_with({"api_url": kube.url}) as router:
        assert wait_for(lambda: served_by(router, "org/model-a", 6) == {"A2"}, timeout=5)
        # The ready one goes (its successor not ready yet): the terminating one carries the model
        # instead of a 404.
        put("a2", a2, slice_endpoint("127.0.0.1", "a2", ready=False, serving=False, terminating=False))
        assert wait_for(lambda: served_by(router, "org/model-a", 6) == {"A1"}, timeout=5)
        # Terminating and no longer serving: gone.
        put("a1", a1, slice_endpoint("127.0.0.1", "a1", ready=False, serving=False, terminating=True))
        assert wait_for(lambda: "org/model-a" not in served(router), timeout=5)


def test_dual_stack_slices_count_each_pod_once(kube, sims):
    """A dual-stack Service has an IPv4 and an IPv6 slice listing the same pods: one endpoint per
    pod (IPv4 by default, or the address_type asked for)."""
    b = sims["B"]
    v4 = endpoint_slice("b-v4", [slice_endpoint("127.0.0.1", "b")], port=b.port, labels=SEL,
                        annotations={ANN: "model-b"})
    v6 = endpoint_slice("b-v6", [slice_endpoint("::1", "b")], port=b.port, labels=SEL,
                        annotations={ANN: "model-b"})
    assert v6["addressType"] == "IPv6"
    kube.put("endpointslices", "b-v4", v4)
    kube.put("endpointslices", "b-v6", v6)
    with start_with({"api_url": kube.url}) as router:
        assert wait_for(lambda: "model-b" in served(router), timeout=5)
        urls = {u for u in endpoint_urls(router) if str(b.port) in u}
        assert urls == {"http://127.0.0.1:%d" % b.port}, urls
    with start_with({"api_url": kube.url, "address_type": "IPv6"}) as router:
        assert wait_for(lambda: "model-b" in served(router), timeout=5)
        urls = {u for u in endpoint_urls(router) if str(b.port) in u}
        assert urls == {"http://[::1]:%d" % b.port}, urls


def test_rollout_of_a_model_loses_no_stream(kube):
    """A model's Deployment rolls in the fake cluster while 200 streams run on its old pod: the
    new pod becomes ready, the old one turns terminating (serving, then not) and leaves its
    slice, as the EndpointSlice controller reports it. Every stream finishes with [DONE] on the
    old pod, and new requests go to the new one."""
    labels = {"app": "vllm", "vllm-router.io/model": "m"}
    sim_args = ("--model", "org/m", "--io", "epoll", "--max-num-seqs", "256")
    with start_sim(*sim_args, "--id", "OLD") as old, start_sim(*sim_args, "--id", "NEW") as new:
        # One Service port, so both pods listen on the same port number: here, two slices.
        def put(name, sim, ep):
            kube.put("endpointslices", name, endpoint_slice(name, [ep], port=sim.port, labels=labels))
        put("old", old, slice_endpoint("127.0.0.1", "old"))
        with start_with({"api_url": kube.url, "model_label_names": {"m": "org/m"}},
                        [{"name": "org/m", "endpoints": []}]) as router:
            assert wait_for(lambda: "org/m" in served(router), timeout=5)
            body = {"model": "org/m", "prompt": "x", "max_tokens": 60, "stream": True}
            streams = [open_stream(router, "/v1/completions", body,
                                   headers={"x-sim-ttft-ms": "0", "x-sim-itl-ms": "25"}, timeout=20)
                       for _ in range(200)]
            assert all("x-sim-id: OLD" in head.lower() or "x-sim-id: old" in head.lower() for _, head, _ in streams)
            # The rollout: the successor ready, the old pod terminating but serving, then gone.
            put("new", new, slice_endpoint("127.0.0.1", "new"))
            put("old", old, slice_endpoint("127.0.0.1", "old", ready=False, serving=True, terminating=True))
            assert wait_for(lambda: served_by(router, "org/m", 6) == {"NEW"}, timeout=5)
            kube.delete("endpointslices", "old")
            assert served_by(router, "org/m", 6) == {"NEW"}
            lost = 0
            for sock, _, got in streams:
                buf = got
                try:
                    while b"data: [DONE]" not in buf:
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                finally:
                    sock.close()
                lost += b"data: [DONE]" not in buf or b'"error"' in buf
            assert lost == 0, "%d of 200 streams cut" % lost
