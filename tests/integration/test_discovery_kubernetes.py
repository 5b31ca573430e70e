"""Kubernetes discovery against the fake API server (fakekube.py) and simulated engines: list +
watch of EndpointSlices and Pods, only ready addresses, port by name, served names from the
annotation, resourceVersion resume after a dropped watch, 410 Gone -> relist, /v1/models polling."""

import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fakekube import FakeKube, endpoint_slice, pod  # noqa: E402
from routerproc import chat_body as chat, call, post_json, start_router, wait_for  # noqa: E402
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
